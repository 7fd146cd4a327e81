"""Running an experiment's tasks: in this process, or in a pool of worker processes, with a progress callback.

A task is `(kind, args, cost)`: `funcs[kind](*args)` runs it (a module-level function, so
that a worker process can find it) and `cost` is a rough estimate of its host time, by
which a planner sorts the big ones first. The results come back in the order of the
task list, whatever order the workers finish them in, so the numbers an experiment
writes do not depend on `jobs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

Task = tuple[str, tuple[Any, ...], float]
Result = tuple[str, tuple[Any, ...], Any]
Progress = Callable[[int, int], None]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during `run_tasks`: `finished` holds the (kind, args, result) of the tasks done by then."""

    def __init__(self, finished: list[Result], total: int) -> None:
        super().__init__(f"{len(finished)} of {total} tasks finished")
        self.finished = finished
        self.total = total


def run_tasks(
    tasks: list[Task], funcs: Mapping[str, Callable[..., Any]], jobs: int, progress: Progress | None = None
) -> list[Result]:
    """Run every task (`jobs` worker processes; one runs them here) and return (kind, args, result) in task order.

    On Ctrl-C, cancel the rest at once and raise `Interrupted` with the results finished so far.
    """
    out: list[Result] = []
    if jobs <= 1:
        try:
            for i, (kind, args, _) in enumerate(tasks):
                out.append((kind, args, funcs[kind](*args)))
                if progress:
                    progress(i + 1, len(tasks))
        except KeyboardInterrupt:
            raise Interrupted(out, len(tasks)) from None
    else:
        pool = ProcessPoolExecutor(max_workers=jobs)
        try:
            futs = {pool.submit(funcs[kind], *args): (kind, args) for kind, args, _ in tasks}
            for i, fut in enumerate(as_completed(futs)):
                kind, args = futs[fut]
                out.append((kind, args, fut.result()))
                if progress:
                    progress(i + 1, len(tasks))
        except KeyboardInterrupt:
            workers = list((getattr(pool, "_processes", None) or {}).values())
            for proc in workers:  # at once, not after their tasks
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise Interrupted(out, len(tasks)) from None
        pool.shutdown()
    order = {(kind, args): i for i, (kind, args, _) in enumerate(tasks)}
    out.sort(key=lambda r: order[(r[0], r[1])])
    return out
