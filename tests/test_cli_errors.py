"""Nothing dies silently, nothing is lost: crash lines, the old tracebacks, limits, timeouts, Ctrl-C.

A process killed by a signal gets one line on stderr naming the signal, with the
Python exception and its file:line when its code raised; a user's mistake is one
line and status 2; a run stopped by --limit or --timeout says what it reached and
exits 3; Ctrl-C on `reproduce` cancels at once, keeps what was finished and exits 130.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apkern import SimulationTimeout, System, libc
from apkern.experiments.reproduce import Interrupted, run_tasks
from test_cli import SCRIPT, assert_usage_error, call

MP = ("up", "apkern", "smp")
RAISE_LINE = 0  # set below: the line of the raise in `divides_by_zero`


def divides_by_zero(argv: list[str]) -> Generator[Any, Any, int]:
    yield from libc.print("about to divide\n")
    return 1 // (len(argv) - 1)  # argv has one element: ZeroDivisionError


RAISE_LINE = divides_by_zero.__code__.co_firstlineno + 2


def hog(argv: list[str]) -> Generator[Any, Any, int]:
    """Touch more memory than the machine has (no swapper): its kernel kills it for that."""
    base = yield from libc.mmap(8 << 20)
    for page in range(0, 8 << 20, 4096):
        yield from libc.store(base + page, page)
    return 0


@pytest.mark.parametrize("kernel", MP)
def test_a_raising_program_is_named_with_its_exception_and_line(kernel: str) -> None:
    sim = System(kernel=kernel, cpus=1 if kernel == "up" else 3)
    p = sim.spawn(divides_by_zero, ["dz"])
    sim.run()
    assert p.exit_status == -signal.SIGILL
    crash = p.crash
    assert crash["signal"] == "SIGILL" and crash["description"] == "Illegal instruction"
    assert "ZeroDivisionError" in crash["why"]
    assert crash["where"] == f"{__file__}:{RAISE_LINE}"


@pytest.mark.parametrize("kernel", MP)
def test_a_process_killed_for_lack_of_memory_says_so(kernel: str) -> None:
    sim = System(kernel=kernel, cpus=1 if kernel == "up" else 3, memory=4 << 20)
    p = sim.spawn(hog, ["hog"])
    sim.run()
    assert p.exit_status == -signal.SIGKILL
    assert p.crash == {"signal": "SIGKILL", "description": "Killed", "death": "out of memory"}


def test_a_clean_exit_has_no_crash() -> None:
    sim = System(kernel="apkern", cpus=2)
    p = sim.spawn("hello")
    sim.run()
    assert p.exit_status == 0 and p.crash is None


@pytest.mark.parametrize("kernel", MP)
def test_run_prints_one_line_for_a_killed_program(capsys, kernel: str) -> None:
    code, out, err = call(capsys, "run", "segv", "--kernel", kernel)
    assert code == 128 + signal.SIGSEGV
    assert err.splitlines() == ["apkern: segv (pid 1): Segmentation fault (SIGSEGV)"]
    code, out, _ = call(capsys, "run", "segv", "--kernel", kernel, "--json")
    d = json.loads(out)
    assert d["crash"] == {"signal": "SIGSEGV", "description": "Segmentation fault"}
    assert [c["pid"] for c in d["crashes"]] == [1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pagetouch", "99999999999"], "pagetouch: cannot map 99999999999 pages: Invalid argument\n"),
        (["threads", "100000"], "threads: cannot start thread 63: Resource temporarily unavailable\n"),
    ],
)
def test_builtins_report_their_own_errors_the_same_on_every_kernel(capsys, argv: list[str], message: str) -> None:
    for kernel in MP:
        code, out, err = call(capsys, "run", *argv, "--kernel", kernel)
        assert (code, out, err) == (1, "", message), kernel


def test_bench_throughput_errors_that_were_tracebacks(capsys) -> None:
    base = ["bench", "throughput", "--syscall-instr", "151", "--cpus", "2"]
    assert_usage_error(*call(capsys, *base, "--user-pct", "0.001", "--window", "1000"))  # no user instruction
    assert_usage_error(*call(capsys, *base, "--user-pct", "50", "--window", "10"))  # no whole loop in the window


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_model_refuses_numbers_that_are_not_finite(capsys, value: str) -> None:
    for opt in ("--ipsc", "--interval", "--opsc", "--ips"):
        args = {"--ipsc": "1000", "--interval": "15000", "--opsc": "2000", "--ips": "1e8", opt: value}
        assert_usage_error(*call(capsys, "model", *[x for kv in args.items() for x in kv]))


def test_reproduce_checks_its_output_folder_before_simulating(capsys, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    t = time.perf_counter()
    code, out, err = call(capsys, "reproduce", "--quick", "--out", str(blocker / "results"))
    assert time.perf_counter() - t < 5  # not after minutes of simulation
    assert_usage_error(code, out, err)
    assert "cannot write" in err


# --- limits and timeouts ----------------------------------------------------------------------------------


def test_limit_and_timeout_stop_with_their_own_status_and_say_what_was_reached(capsys) -> None:
    code, out, err = call(capsys, "run", "loop", "1000", "151", "0", "--limit", "200000")
    assert code == 3 and err.splitlines() == ["apkern: stopped: 1 process(es) still running after 200000 instructions"]
    code, out, err = call(capsys, "run", "loop", "1000", "151", "0", "--timeout", "0.2", "--json")
    assert code == 3
    d = json.loads(out)
    assert "wall time" in d["unfinished"] and d["exit_status"] is None and d["stats"]["time"] > 0
    assert_usage_error(*call(capsys, "run", "hello", "--timeout", "0"))
    assert_usage_error(*call(capsys, "run", "hello", "--limit", "0"))


def test_the_default_limit_is_minutes_not_hours() -> None:
    from apkern.cli import DEFAULT_LIMIT

    assert DEFAULT_LIMIT <= 1_000_000_000  # at about 1 us of host time per instruction at worst


def test_a_run_with_a_timeout_is_the_same_run(tmp_path: Path) -> None:
    """Looking at the wall clock between steps of machine time changes no figure."""
    runs = []
    for timeout in (None, 3600.0):
        sim = System(kernel="apkern", cpus=3)
        p = sim.spawn("pipeline")
        sim.run(timeout=timeout)
        runs.append((p.exit_status, sim.console(), sim.stats))
    assert runs[0] == runs[1]
    sim = System(kernel="up")
    sim.spawn("loop", ["loop", "1000", "151", "0"])
    with pytest.raises(SimulationTimeout):
        sim.run(timeout=0.05)


def test_memory_is_an_option_where_an_error_asks_for_more(capsys) -> None:
    code, out, _ = call(capsys, "run", "pagetouch", "100", "--memory", "64M")
    assert code == 0 and "100 pages ok" in out
    assert_usage_error(*call(capsys, "run", "hello", "--memory", "64Q"))
    assert_usage_error(*call(capsys, "run", "hello", "--memory", "1M"))  # below the machine's least


def test_seed_says_what_it_changes(capsys) -> None:
    outs = [call(capsys, "run", "pipeline", "--kernel", "apkern", "--seed", s, "--json")[1] for s in ("0", "7")]
    assert json.loads(outs[0])["stats"] == json.loads(outs[1])["stats"]  # no randomness in a run ...
    code, out, _ = call(capsys, "run", "--help")
    assert "does not depend on it" in " ".join(out.split())  # ... and its help says so


# --- Ctrl-C -------------------------------------------------------------------------------------------------


def test_run_tasks_keeps_what_was_finished_when_interrupted() -> None:
    tasks = [("latency", ("up", 1, 20, s), 1.0) for s in range(4)]

    def progress(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as e:
        run_tasks(tasks, 1, progress)
    assert e.value.total == 4 and [args for _, args, _ in e.value.finished] == [t[1] for t in tasks[:2]]
    assert all(r["iterations"] == 20 for _, _, r in e.value.finished)


def test_ctrl_c_on_reproduce_cancels_at_once_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "results"
    p = subprocess.Popen(
        [str(SCRIPT), "reproduce", "--quick", "--out", str(out), "--jobs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    t = time.perf_counter()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert time.perf_counter() - t < 5
    assert p.returncode == 130
    assert err.splitlines()[-1].startswith("apkern: interrupted: ")
    kept = json.loads((out / "partial.json").read_text())
    assert kept["total"] > 100 and kept["finished"] == len(kept["tasks"]) < kept["total"]
    assert len(list((out / "cache").rglob("*.json"))) == kept["finished"]  # each also in the cache


def test_run_tasks_interrupted_keeps_the_finished_in_the_cache_and_a_run_again_goes_on(tmp_path: Path) -> None:
    from apkern.experiments.tasks import TaskCache
    from apkern.experiments.tasks import run_tasks as run_cached

    ran: list[int] = []

    def square(n: int) -> int:
        ran.append(n)
        return n * n

    def stop_at_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    tasks = [("square", (n,), 1.0) for n in range(5)]
    with pytest.raises(Interrupted) as e:
        run_cached(tasks, {"square": square}, 1, stop_at_two, TaskCache(tmp_path))
    assert e.value.cached and len(e.value.finished) == 2 and ran == [0, 1]
    assert [r for *_, r in run_cached(tasks, {"square": square}, 1, None, TaskCache(tmp_path))] == [0, 1, 4, 9, 16]
    assert ran == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("cached", [True, False])
def test_an_interrupted_reproduction_says_where_its_finished_tasks_are(monkeypatch, capsys, tmp_path, cached) -> None:
    from apkern.experiments import reproduce as rp

    def interrupted(out, **kw):
        raise Interrupted([("latency", ("up", 1, 20, 0), {})], 7, cached)

    from apkern.cli import main

    monkeypatch.setattr(rp, "reproduce", interrupted)
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--quick", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 130
    assert err.startswith("apkern: interrupted: 1 of 7 tasks had finished, kept in partial.json")
    assert err.endswith("(the same command again goes on from there)") is cached


# --- fuzzing the numeric options ------------------------------------------------------------------------

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from(["", "x", "1e", "--", "0x10"]),
)


def _no_traceback(code: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err
    assert code in (0, 2, 3), (code, err)
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("apkern: error:")


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ipsc=numbers, interval=numbers, opsc=numbers, ips=numbers)
def test_fuzz_model_options(capsys, ipsc: Any, interval: Any, opsc: Any, ips: Any) -> None:
    args = ["model", "--ipsc", str(ipsc), "--interval", str(interval), "--opsc", str(opsc), "--ips", str(ips)]
    code, out, err = call(capsys, *args, "--json")
    _no_traceback(code, out, err)
    if code == 0:
        d = json.loads(out)
        assert all(math.isfinite(v) for v in d.values() if isinstance(v, float)), d


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    k=st.integers(-5, 5000),
    p=st.floats(-1, 101, allow_nan=False),
    cpus=st.integers(-1, 70),
    procs=st.integers(-1, 3),
    window=st.integers(-10, 4000),
)
def test_fuzz_bench_throughput_options(capsys, k: int, p: float, cpus: int, procs: int, window: int) -> None:
    args = ["bench", "throughput", "--syscall-instr", str(k), "--user-pct", repr(p), "--cpus", str(cpus)]
    args += ["--procs", str(procs), "--window", str(window), "--warmup", "0", "--json"]
    _no_traceback(*call(capsys, *args))


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cpus=st.one_of(st.integers(-2, 80), st.just("x")),
    limit=st.integers(-5, 3_000_000),
    timeout=st.one_of(st.floats(-1, 5), st.sampled_from(["nan", "soon"])),
    memory=st.sampled_from(["64M", "4M", "3M", "0", "-8M", "12345", "1G", "M", "64MiB"]),
)
def test_fuzz_run_options(capsys, cpus: Any, limit: int, timeout: Any, memory: str) -> None:
    args = ["run", "pipeline", "--kernel", "apkern", "--cpus", str(cpus), "--limit", str(limit)]
    args += ["--timeout", str(timeout), "--memory", memory]
    code, out, err = call(capsys, *args)
    assert "Traceback" not in out + err
    assert code in (0, 2, 3), (code, err)
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("apkern: error:")
