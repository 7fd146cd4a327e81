"""The swapper: evicts resident user pages (off unless the kernel is built with it).

It runs a clock over the processes' resident pages: a page whose accessed bit is
set gets a second chance (the bit is cleared), the others are copied to the swap
store, their PTE cleared and their frame freed. It runs every `period` timer
ticks, and on demand when a page fault finds no free frame (`reclaim`: evict,
then the fault retries its allocation). Being a uniprocessor kernel it
invalidates only its own CPU's TLB, and only when the address space is the one
loaded. A later fault brings the page back.
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

        self.reclaims = 0  # page faults that found no free frame and evicted to make room

    def on_tick(self) -> Gen:
        if self.k.ticks % self.period:
            return
        yield from self.sweep(self.batch)

    def reclaim(self) -> Gen:
        """Evict a batch of pages now, for an allocation that found no frame; returns how many."""
        self.reclaims += 1
        return (yield from self.sweep(costs.RECLAIM_BATCH))

    def sweep(self, want: int) -> Gen:
        """Run the clock until `want` pages are evicted or every page had its chance; returns how many."""
        victims, examined = self._victims(want)
        yield Compute(examined * self.k.costs.CLOCK_STEP)
        for aspace, vpn in victims:
            yield from self.evict(aspace, vpn)
        return len(victims)

    def _victims(self, want: int) -> tuple[list[tuple[AddressSpace, int]], int]:
        """The pages the clock picks, and how many entries it looked at."""
        cands = []
        for p in sorted(self.k.live_processes(), key=lambda p: p.pid):
            a = p.aspace
            cands += [((p.pid, vpn), a, vpn) for vpn in sorted(a.resident) if vpn not in a.pinned]
        if not cands:
            return [], 0
        start = next((i for i, c in enumerate(cands) if c[0] > self._hand), 0)
        out: list[tuple[AddressSpace, int]] = []
        examined = 0
        for i in range(2 * len(cands)):
            examined += 1
            key, a, vpn = cands[(start + i) % len(cands)]
            if vpn not in a.resident or (a, vpn) in out:
                continue
            self._hand = key
            if a.clear_accessed(vpn):
                continue
            out.append((a, vpn))
            if len(out) == want:
                break
        return out, examined

    def evict(self, aspace: AddressSpace, vpn: int) -> Gen:
        """Write one page out and unmap it."""
        mem = self.k.machine.memory
        pfn = aspace.resident[vpn]
        yield from self.k.tlb_patch.unmap_begin(aspace.cr3, vpn << PAGE_SHIFT)  # PATCH (section 4.3)
        aspace.swap.put(aspace, vpn, mem.read(pfn << PAGE_SHIFT, PAGE_SIZE))
        aspace.unmap(vpn)
        yield Compute(self.k.costs.COPY_PAGE + self.k.costs.UNMAP_PAGE)
        if self.k.sched.loaded_cr3 == aspace.cr3:
            yield InvalidatePage(vpn << PAGE_SHIFT)
        yield from self.k.tlb_patch.unmap_end(aspace.cr3, vpn << PAGE_SHIFT)  # PATCH (section 4.3)
        self.k.frames.release(pfn)
        self.evicted += 1
