"""The swapper of the master-slave port: each eviction is shot down on every slave that may cache the page."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..bootkernel.swap import Swapper
from ..bootkernel.vm import AddressSpace
from ..hw import PAGE_SHIFT, Op

if TYPE_CHECKING:
    from .kernel import MasterSlaveKernel

Gen = Generator[Op, Any, Any]


class MSSwapper(Swapper):
    def __init__(self, kernel: MasterSlaveKernel) -> None:
        super().__init__(kernel)
        self.k: MasterSlaveKernel = kernel

    def evict(self, aspace: AddressSpace, vpn: int) -> Gen:
        """The uniprocessor eviction (copy out, clear the PTE, local invlpg, free) with the slaves parked."""
        yield from self.k.shootdown.begin(aspace.cr3, vpn << PAGE_SHIFT)
        yield from super().evict(aspace, vpn)
        yield from self.k.shootdown.end()
