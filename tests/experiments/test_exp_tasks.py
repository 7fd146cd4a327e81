"""`tasks.TaskCache`: a task's result is kept by content (kind, arguments, context, code) and read back unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apkern.experiments import tasks
from apkern.experiments.tasks import TaskCache, run_tasks

PLAN = [("square", (n,), 1.0) for n in range(5)]


def _square(n: int) -> dict[str, Any]:
    return {"n": n, "square": n * n, "half": n / 2}


def _run(cache: TaskCache, ran: list[int]) -> list[Any]:
    def square(n: int) -> dict[str, Any]:
        ran.append(n)
        return _square(n)

    return run_tasks(PLAN, {"square": square}, 1, cache=cache)


def test_a_second_run_takes_every_result_from_the_cache(tmp_path) -> None:
    ran: list[int] = []
    first = _run(TaskCache(tmp_path, {"costs": "xv6"}), ran)
    assert ran == [0, 1, 2, 3, 4]
    cache = TaskCache(tmp_path, {"costs": "xv6"})
    seen: list[tuple[int, int]] = []
    again = run_tasks(PLAN, {"square": lambda n: pytest.fail("ran")}, 1, lambda d, t: seen.append((d, t)), cache)
    assert again == first and cache.hits == 5 and seen == [(5, 5)]


def test_another_context_or_other_code_runs_again(tmp_path, monkeypatch) -> None:
    ran: list[int] = []
    _run(TaskCache(tmp_path, {"costs": "xv6"}), ran)
    _run(TaskCache(tmp_path, {"costs": "linux-2.4"}), ran)
    assert ran == [0, 1, 2, 3, 4] * 2
    monkeypatch.setattr(tasks, "code_fingerprint", lambda: "0" * 32)
    _run(TaskCache(tmp_path, {"costs": "xv6"}), ran)
    assert ran == [0, 1, 2, 3, 4] * 3


def test_only_what_json_gives_back_unchanged_is_kept(tmp_path) -> None:
    """A tuple comes back a list, an int key a string: such a result runs again rather than come back changed."""
    odd = {"pair": (1, 2)}, {1: "one"}, {"x": float("nan")}
    cache = TaskCache(tmp_path)
    for i, result in enumerate(odd):
        cache.put("odd", (i,), result)
    assert cache.not_kept == 3 and all(cache.get("odd", (i,)) == (False, None) for i in range(3))
    cache.put("even", (0,), {"pair": [1, 2], "one": 1.5})
    assert cache.get("even", (0,)) == (True, {"pair": [1, 2], "one": 1.5})
    cache.put("order", (0,), {"z": 0.1, "a": 0.2, "m": 0.3})  # a sum over a dict follows its order
    assert list(cache.get("order", (0,))[1]) == ["z", "a", "m"]


def test_a_damaged_entry_is_run_again(tmp_path) -> None:
    ran: list[int] = []
    cache = TaskCache(tmp_path)
    _run(cache, ran)
    path = cache._path(cache.key("square", (3,)))
    path.write_text(path.read_text()[:10])  # cut short
    (cache._path(cache.key("square", (4,)))).write_text(json.dumps(["not", "a", "record"]))
    _run(TaskCache(tmp_path), ran)
    assert ran == [0, 1, 2, 3, 4, 3, 4]


def test_the_fingerprint_follows_the_code_but_not_the_presentation(tmp_path) -> None:
    """On a copy of the package: a change to a kernel or an experiment's measuring code changes the key,
    a change to the writers of figures and reports does not."""
    import shutil
    from pathlib import Path

    import apkern

    copy = tmp_path / "apkern"
    shutil.copytree(Path(apkern.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))

    def fingerprint() -> str:
        return tasks.package_fingerprint(lambda rel: rel in tasks.PRESENTATION, copy)

    base = fingerprint()
    assert base == tasks.code_fingerprint()  # the copy is the package
    for rel in tasks.PRESENTATION:
        (copy / rel).write_text((copy / rel).read_text() + "\n# a comment\n")
    assert fingerprint() == base
    (copy / "bootkernel" / "sched.py").write_text((copy / "bootkernel" / "sched.py").read_text() + "\n")
    changed = fingerprint()
    assert changed != base
    (copy / "experiments" / "throughput.py").write_text((copy / "experiments" / "throughput.py").read_text() + " ")
    assert fingerprint() not in (base, changed)


def test_a_subclass_that_json_would_turn_into_its_base_is_not_kept(tmp_path) -> None:
    import enum
    from collections import Counter

    class Kind(enum.IntEnum):
        A = 1

    cache = TaskCache(tmp_path)
    assert not cache.put("enum", (0,), {"k": Kind.A}) and not cache.put("counter", (0,), {"c": Counter(a=1)})
    assert cache.not_kept == 2 and cache.get("enum", (0,)) == (False, None)


def test_keep_says_what_is_worth_keeping(tmp_path) -> None:
    cache = TaskCache(tmp_path, keep=lambda r: not r["crashed"])
    assert cache.put("run", (1,), {"crashed": False}) and not cache.put("run", (2,), {"crashed": True})
    assert cache.get("run", (1,))[0] and not cache.get("run", (2,))[0] and cache.not_kept == 1


def test_a_cache_the_disk_refuses_does_not_stop_the_run(tmp_path) -> None:
    (tmp_path / "cache").write_text("a file where the cache's folder would go")
    cache = TaskCache(tmp_path / "cache")
    ran: list[int] = []
    results = _run(cache, ran)
    assert [r for *_, r in results] == [_square(n) for n in range(5)] and ran == [0, 1, 2, 3, 4]
    assert cache.not_kept == 5 and "cache" in cache.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no temporary file left behind
