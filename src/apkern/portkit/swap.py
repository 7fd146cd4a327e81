"""The swapper of both ports: each eviction is shot down on every other CPU that may cache the page."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..bootkernel.swap import Swapper
from ..bootkernel.vm import AddressSpace
from ..hw import PAGE_SHIFT, Op

Gen = Generator[Op, Any, Any]


class PortSwapper(Swapper):
    """The bootstrap kernel's swapper for a port whose kernel has a `shootdown`."""

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        self.k: Any = kernel

    def evict(self, aspace: AddressSpace, vpn: int) -> Gen:
        """The uniprocessor eviction (copy out, clear the PTE, local invlpg, free) with the other CPUs parked."""
        yield from self.k.shootdown.begin(aspace.cr3, vpn << PAGE_SHIFT)
        yield from super().evict(aspace, vpn)
        yield from self.k.shootdown.end()
