"""The application kernel's ready queue: FIFO of READY TCBs, shared by all CPUs.

Invariant: hold the spinlock to change it. It is a `TCBList` in kernel memory;
idle application processors spin on its length word, so an insertion on any CPU
wakes them with a real memory write. The `balance` extension replaces it with a
queue per application processor (`balance.Runqueues`), which answers the same calls.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import Op
from .tcb import READY_LINKS
from .tcb_list import TCBList

if TYPE_CHECKING:
    from .costs import Costs
    from .tcb import TCB


class ReadyQueue(TCBList):
    """The queue's head, tail and length words at kernel address `kva`."""

    def __init__(self, kva: int, costs: Costs) -> None:
        super().__init__(kva, READY_LINKS, costs)

    def wait_kva(self, cid: int) -> int:
        """The word an idle AP spins on: the queue's length (every AP the same)."""
        return self.count_kva

    def take(self, cid: int) -> Generator[Op, Any, TCB | None]:
        """The next TCB for AP `cid`: the head, whoever asks."""
        return (yield from self.pop())

    def worth_locking(self, cid: int) -> Generator[Op, Any, bool]:
        """Before a quantum's end takes the lock: the prototype always takes it and looks under it."""
        return True
        yield

    def worth_preempting(self, cid: int) -> Generator[Op, Any, bool]:
        """A quantum ended on AP `cid`: does any thread wait? (The length is at hand: nothing to charge.)"""
        return self.n > 0
        yield

    def stats(self) -> dict[str, int]:
        return {}
