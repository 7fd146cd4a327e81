"""Running an experiment's tasks: in this process, or in a pool of worker processes, with a progress callback.

A task is `(kind, args, cost)`: `funcs[kind](*args)` runs it (a module-level function, so
that a worker process can find it) and `cost` is a rough estimate of its host time, by
which a planner sorts the big ones first. The results come back in the order of the
task list, whatever order the workers finish them in, so the numbers an experiment
writes do not depend on `jobs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import runner

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

    The calls go through the sweep's machinery (`runner.run_calls`). On Ctrl-C, the rest are
    cancelled at once and `Interrupted` is raised with the results finished so far.
    """
    out: list[Result] = []

    def keep(i: int, result: Any) -> None:
        out.append((tasks[i][0], tasks[i][1], result))

    try:
        runner.run_calls([(funcs[kind], args) for kind, args, _ in tasks], jobs, on_result=keep, progress=progress)
    except KeyboardInterrupt:
        raise Interrupted(out, len(tasks)) from None
    order = {(kind, args): i for i, (kind, args, _) in enumerate(tasks)}
    out.sort(key=lambda r: order[(r[0], r[1])])
    return out
