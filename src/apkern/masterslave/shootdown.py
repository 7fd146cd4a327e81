"""TLB shoot-down in the master-slave port (`portkit/shootdown.py`): only the master sends, taking the queue lock.

Only the master changes page tables, and it invalidates its own TLB as the uniprocessor
kernel does; the slaves that may hold an entry are those whose loaded CR3 is that address
space (an idle slave has the kernel's loaded). The master holds the queue lock from
`begin` to `end`, so no slave switches to a thread of that address space meanwhile.
Exit needs no request: the exiting thread first gets every other thread of its process
off the slaves (`MasterSlaveKernel.stop_others`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import Op
from ..portkit.shootdown import PortShootdown
from .sched import MASTER

if TYPE_CHECKING:
    from .kernel import MasterSlaveKernel

Gen = Generator[Op, Any, Any]


class Shootdown(PortShootdown):
    def __init__(self, kernel: MasterSlaveKernel, base: int) -> None:
        super().__init__(kernel, base, kernel.qlock)
        self._in_flight = False  # between begin and end

    def enter(self) -> Gen:
        """The master takes the queue lock."""
        yield from self.lock.acquire(MASTER)
        self._in_flight = True
        return MASTER

    def end(self) -> Gen:
        self._in_flight = False  # from here on, as the request is marked done
        yield from super().end()

    def leave(self) -> Gen:
        yield from self.lock.release(MASTER)

    def in_flight(self) -> bool:
        """Between `begin` and `end`, whether or not the request had targets."""
        return self._in_flight
