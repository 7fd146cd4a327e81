"""A team of threads, as SPLASH-2's CREATE and WAIT_FOR_END macros make one: the caller is thread 0."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from ..hw.ops import Op
from ..userland import libc


def run_team(worker: Callable[[int], Generator[Op, Any, Any]], threads: int) -> Generator[Op, Any, None]:
    """Start `worker(me)` for me = 1 .. threads-1, run `worker(0)` here, then join them all."""
    tids = []
    for me in range(1, threads):
        tids.append((yield from libc.thread_create(worker, me)))
    yield from worker(0)
    for t in tids:
        yield from libc.thread_join(t)
