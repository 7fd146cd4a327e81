"""The swapper: evicts resident user pages asynchronously (off unless the kernel is built with it).

Every `period` timer ticks it runs a clock over the processes' resident pages:
a page whose accessed bit is set gets a second chance (the bit is cleared), the
others are copied to the swap store, their PTE cleared and their frame freed.
Being a uniprocessor kernel it invalidates only its own CPU's TLB, and only when
the address space is the one loaded. A later fault brings the page back.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import PAGE_SHIFT, PAGE_SIZE, Compute, InvalidatePage, Op
from . import costs

if TYPE_CHECKING:
    from .kernel import BootKernel
    from .vm import AddressSpace

Gen = Generator[Op, Any, Any]


class SwapStore:
    """Swapped-out page contents, by address space and virtual page."""

    def __init__(self) -> None:
        self.pages: dict[tuple[int, int], bytes] = {}

    def put(self, aspace: AddressSpace, vpn: int, data: bytes) -> None:
        self.pages[(id(aspace), vpn)] = data

    def holds(self, aspace: AddressSpace, vpn: int) -> bool:
        return (id(aspace), vpn) in self.pages

    def take(self, aspace: AddressSpace, vpn: int) -> bytes:
        return self.pages.pop((id(aspace), vpn))

    def discard(self, aspace: AddressSpace, vpn: int) -> None:
        self.pages.pop((id(aspace), vpn), None)

    def discard_all(self, aspace: AddressSpace) -> None:
        key = id(aspace)
        for k in [k for k in self.pages if k[0] == key]:
            del self.pages[k]


class Swapper:
    def __init__(self, kernel: BootKernel, period: int = 50, batch: int = 4) -> None:
        self.k = kernel
        self.period = period
        self.batch = batch
        self.evicted = 0
        self._hand: tuple[int, int] = (0, -1)  # (pid, vpn) where the clock hand stands

    def on_tick(self) -> Gen:
        if self.k.ticks % self.period:
            return
        for aspace, vpn in self._victims():
            yield from self.evict(aspace, vpn)

    def _victims(self) -> list[tuple[AddressSpace, int]]:
        cands = []
        for p in sorted(self.k.live_processes(), key=lambda p: p.pid):
            a = p.aspace
            cands += [((p.pid, vpn), a, vpn) for vpn in sorted(a.resident) if vpn not in a.pinned]
        if not cands:
            return []
        start = next((i for i, c in enumerate(cands) if c[0] > self._hand), 0)
        out: list[tuple[AddressSpace, int]] = []
        for i in range(2 * len(cands)):
            key, a, vpn = cands[(start + i) % len(cands)]
            if vpn not in a.resident or (a, vpn) in out:
                continue
            self._hand = key
            if a.clear_accessed(vpn):
                continue
            out.append((a, vpn))
            if len(out) == self.batch:
                break
        return out

    def evict(self, aspace: AddressSpace, vpn: int) -> Gen:
        """Write one page out and unmap it."""
        mem = self.k.machine.memory
        pfn = aspace.resident[vpn]
        aspace.swap.put(aspace, vpn, mem.read(pfn << PAGE_SHIFT, PAGE_SIZE))
        aspace.unmap(vpn)
        yield Compute(costs.COPY_PAGE + costs.UNMAP_PAGE)
        if self.k.sched.loaded_cr3 == aspace.cr3:
            yield InvalidatePage(vpn << PAGE_SHIFT)
        yield from self.k.tlb_patch.page_unmapped(aspace.cr3, vpn << PAGE_SHIFT)
        self.k.frames.release(pfn)
        self.evicted += 1
