"""The swapper of the SMP port: each eviction is shot down on every CPU that may cache the page."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..bootkernel.swap import Swapper
from ..bootkernel.vm import AddressSpace
from ..hw import PAGE_SHIFT, Op

if TYPE_CHECKING:
    from .kernel import SMPKernel

Gen = Generator[Op, Any, Any]


class SMPSwapper(Swapper):
    def __init__(self, kernel: SMPKernel) -> None:
        super().__init__(kernel)
        self.k: SMPKernel = kernel

    def evict(self, aspace: AddressSpace, vpn: int) -> Gen:
        """The uniprocessor eviction (copy out, clear the PTE, local invlpg, free) with the other CPUs parked."""
        yield from self.k.shootdown.begin(aspace.cr3, vpn << PAGE_SHIFT)
        yield from super().evict(aspace, vpn)
        yield from self.k.shootdown.end()
