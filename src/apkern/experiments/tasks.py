"""Running an experiment's tasks: in this process, or in a pool of worker processes, with a progress callback.

A task is `(kind, args, cost)`: `funcs[kind](*args)` runs it (a module-level function, so
that a worker process can find it) and `cost` is a rough estimate of its host time, by
which a planner sorts the big ones first. The results come back in the order of the
task list, whatever order the workers finish them in, so the numbers an experiment
writes do not depend on `jobs`.

With a `TaskCache`, a task whose result is in the cache is not run again: an experiment
run twice, or again after Ctrl-C, simulates only what it lacks. Each result goes into the
cache as soon as it arrives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import runner

Task = tuple[str, tuple[Any, ...], float]
Result = tuple[str, tuple[Any, ...], Any]
Progress = Callable[[int, int], None]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during `run_tasks`: `finished` holds the (kind, args, result) of the tasks done by then."""

    def __init__(self, finished: list[Result], total: int, cached: bool = False) -> None:
        super().__init__(f"{len(finished)} of {total} tasks finished")
        self.finished = finished
        self.total = total
        self.cached = cached  # they are in a `TaskCache` too: a run again goes on from there


class TaskCache:
    """Task results by content: one JSON file per task under `root`, for one `context` and one version of the code.

    A task's key is the SHA-256 of its kind, its arguments, `context` (what else its result
    depends on: the cost profile, say) and the fingerprint of the code (`code_fingerprint`).
    Only a result that JSON gives back unchanged is kept, so a result read back is the very
    value the task returned, its dicts in their order (a float sum over one follows it), and
    only if `keep(result)` (a crash of the simulator is run again, not served); any other runs
    again next time. `not_kept` counts those; a result the disk refused (`OSError`) is counted
    too, and `error` says why, but the run goes on.
    """

    def __init__(
        self, root: str | os.PathLike[str], context: Any = None, keep: Callable[[Any], bool] | None = None
    ) -> None:
        self.root = Path(root)
        self.context = context
        self.keep = keep
        self.fingerprint = code_fingerprint()
        self.hits = 0
        self.not_kept = 0
        self.error: str | None = None

    def key(self, kind: str, args: tuple[Any, ...]) -> str:
        """The task's key; a TypeError if its arguments are not plain data (numbers, strings, lists, dataclasses)."""
        text = json.dumps(
            {"kind": kind, "args": list(args), "context": self.context, "code": self.fingerprint},
            sort_keys=True,
            separators=(",", ":"),
            default=_plain,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, kind: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        """(True, result) if the task's result is cached, else (False, None)."""
        try:
            record = json.loads(self._path(self.key(kind, args)).read_text())
        except (OSError, ValueError, TypeError):
            return False, None  # absent, unreadable (it runs and is written again), or no key for its arguments
        if not isinstance(record, dict) or "result" not in record:
            return False, None
        self.hits += 1
        return True, record["result"]

    def put(self, kind: str, args: tuple[Any, ...], result: Any) -> bool:
        """Keep `result` if it comes back unchanged and `keep` says so; whether it was kept."""
        try:
            path = self._path(self.key(kind, args))
            text = json.dumps({"kind": kind, "args": list(args), "result": result}, default=_plain)  # in its order
            kept = json.loads(text)["result"] == result and _plain_types(result)
            kept = kept and (self.keep is None or self.keep(result))
        except (TypeError, ValueError):
            kept = False
        if kept:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, text.encode())
            except OSError as e:
                self.error = self.error or f"{e.strerror or e}: {e.filename or path}"
                kept = False
        if not kept:
            self.not_kept += 1
        return kept


def write_atomically(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: into a file beside it, then renamed over it (no temporary file stays)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _plain_types(v: Any) -> bool:
    """Only JSON's own types, exactly: a subclass (an IntEnum, a Counter) would come back as its base."""
    t = type(v)
    if t is dict:
        return all(type(k) is str and _plain_types(x) for k, x in v.items())
    if t is list:
        return all(_plain_types(x) for x in v)
    return t in (str, int, float, bool, type(None))


def _plain(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {"dataclass": type(o).__qualname__, **dataclasses.asdict(o)}
    raise TypeError(f"{type(o).__name__} is not plain data")


# what no task's result depends on: the command line and the writers of tables, figures and reports
PRESENTATION = ("cli.py", "experiments/plots.py", "experiments/report.py", "experiments/html_report.py")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The fingerprint of every file of the package but `PRESENTATION`: all that a task's result may depend on."""
    return package_fingerprint(lambda rel: rel in PRESENTATION)


def package_fingerprint(leave_out: Callable[[str], bool], root: Path | None = None) -> str:
    """SHA-256 (32 hex digits) of apkern's version, Python's (major.minor), SimPy's and the bytes of every file
    of the package (or of the tree at `root`) whose path (relative to it, with /) `leave_out` does not name."""
    from importlib.metadata import version

    from .. import __version__

    root = root or Path(__file__).resolve().parent.parent
    # SimPy's too: the machine builds on its internals (hw/lockstep.py)
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    h = hashlib.sha256(f"apkern {__version__} python {py} simpy {version('simpy')}\n".encode())
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or "__pycache__" in rel or rel.endswith((".pyc", ".pyo")) or leave_out(rel):
            continue
        data = path.read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:32]


def run_tasks(
    tasks: list[Task],
    funcs: Mapping[str, Callable[..., Any]],
    jobs: int,
    progress: Progress | None = None,
    cache: TaskCache | None = None,
) -> list[Result]:
    """Run every task (`jobs` worker processes; one runs them here) and return (kind, args, result) in task order.

    The calls go through the sweep's machinery (`runner.run_calls`). With `cache`, the tasks it
    holds are not run, and each result is written to it as it arrives. On Ctrl-C, the rest are
    cancelled at once and `Interrupted` is raised with the results finished so far.
    """
    out: list[Result] = []
    todo: list[Task] = []
    for kind, args, cost in tasks:
        found, result = cache.get(kind, args) if cache is not None else (False, None)
        if found:
            out.append((kind, args, result))
        else:
            todo.append((kind, args, cost))
    done = len(out)
    if progress is not None and done:
        progress(done, len(tasks))

    def keep(i: int, result: Any) -> None:
        if cache is not None:  # first: a result said to be finished is in the cache, unless it could not be
            cache.put(todo[i][0], todo[i][1], result)
        out.append((todo[i][0], todo[i][1], result))

    def step(finished: int, _: int) -> None:
        if progress is not None:
            progress(done + finished, len(tasks))

    try:
        if todo:
            runner.run_calls([(funcs[kind], args) for kind, args, _ in todo], jobs, on_result=keep, progress=step)
    except KeyboardInterrupt:
        raise Interrupted(out, len(tasks), cache is not None and not cache.not_kept) from None
    order = {(kind, args): i for i, (kind, args, _) in enumerate(tasks)}
    out.sort(key=lambda r: order[(r[0], r[1])])
    return out
