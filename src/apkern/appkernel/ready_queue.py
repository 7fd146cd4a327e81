"""The application kernel's ready queue: FIFO of READY TCBs, shared by all CPUs.

Invariant: hold the spinlock to change it. It is a `TCBList` in kernel memory;
idle application processors spin on its length word, so an insertion on any CPU
wakes them with a real memory write.
"""

from __future__ import annotations

from .tcb import READY_LINKS
from .tcb_list import TCBList


class ReadyQueue(TCBList):
    """The queue's head, tail and length words at kernel address `kva`."""

    def __init__(self, kva: int) -> None:
        super().__init__(kva, READY_LINKS)
