"""The application kernel's ready queue: FIFO of READY TCBs, shared by all CPUs.

Invariant: hold the spinlock to change it. Its length is mirrored in a word of
kernel memory that idle application processors spin on, so an insertion on any
CPU wakes them with a real memory write.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import Compute, Op, Store
from . import costs

if TYPE_CHECKING:
    from .tcb import TCB


class ReadyQueue:
    def __init__(self, count_kva: int) -> None:
        self.count_kva = count_kva
        self.q: deque[TCB] = deque()

    def __len__(self) -> int:
        return len(self.q)

    def push(self, tcb: TCB) -> Generator[Op, Any, None]:
        yield Compute(costs.QUEUE_OP)
        self.q.append(tcb)
        yield Store(self.count_kva, len(self.q))

    def pop(self) -> Generator[Op, Any, TCB | None]:
        yield Compute(costs.QUEUE_OP)
        tcb = self.q.popleft() if self.q else None
        yield Store(self.count_kva, len(self.q))
        return tcb

    def remove(self, tcb: TCB) -> Generator[Op, Any, None]:
        if tcb in self.q:
            yield Compute(costs.QUEUE_OP)
            self.q.remove(tcb)
            yield Store(self.count_kva, len(self.q))
