"""TLB shoot-down in the SMP port (`portkit/shootdown.py`): any CPU may send a request, holding the kernel lock.

The CPU that unmaps holds the kernel lock already (every kernel entry takes it), so no CR3
changes meanwhile. Exit needs no request: the exiting thread first gets every other thread
of its process off its CPU (`SMPKernel.stop_others`), and a CPU that leaves an address
space loads another CR3, which flushes its TLB.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import AssertHeld, Op
from ..portkit.shootdown import PortShootdown

if TYPE_CHECKING:
    from .kernel import SMPKernel

Gen = Generator[Op, Any, Any]


class Shootdown(PortShootdown):
    def __init__(self, kernel: SMPKernel, base: int) -> None:
        super().__init__(kernel, base, kernel.lock)

    def enter(self) -> Gen:
        """The kernel lock is held: the sender is its holder."""
        yield AssertHeld(self.lock.kva, "the shoot-down request", self.lock.name)
        return self.lock.holder()
