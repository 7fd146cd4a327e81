"""Physical frame allocation and kernel memory for drivers.

Low memory (below 1 MiB) is kept apart: ordinary allocations never take it, so a
driver asking for a start-up trampoline page can always get one. Frame 0 is never
handed out. Allocation is lowest-free-first, so runs are deterministic. Freed
frames are reported to the machine, which checks that no running CPU still uses
one as its page directory.
"""

from __future__ import annotations

import heapq

from ..hw import LOW_MEMORY, PAGE_SHIFT, PAGE_SIZE, Machine

LOW_FRAMES = LOW_MEMORY >> PAGE_SHIFT


class OutOfMemory(Exception):
    """No free frame is left."""


class FrameAllocator:
    """Free lists of physical frames: one for low memory, one for the rest."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        total = machine.memory.frames
        self._low = list(range(1, min(LOW_FRAMES, total)))
        self._high = list(range(LOW_FRAMES, total))
        heapq.heapify(self._low)
        heapq.heapify(self._high)
        self.in_use = 0
        self.peak = 0

    @property
    def free(self) -> int:
        return len(self._high)

    def alloc(self, zero: bool = True) -> int:
        """A frame number above low memory (zero-filled unless `zero` is False)."""
        if not self._high:
            raise OutOfMemory("out of physical frames")
        return self._take(heapq.heappop(self._high), zero)

    def alloc_low(self) -> int:
        """A frame below 1 MiB (for an AP start-up trampoline)."""
        if not self._low:
            raise OutOfMemory("out of low memory")
        return self._take(heapq.heappop(self._low), True)

    def _take(self, pfn: int, zero: bool) -> int:
        if zero:
            self.machine.memory.zero_frame(pfn)
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)
        return pfn

    def release(self, pfn: int) -> None:
        self.machine.frame_released(pfn)
        self.in_use -= 1
        heapq.heappush(self._low if pfn < LOW_FRAMES else self._high, pfn)


class KernelHeap:
    """`kmalloc`/`kfree` for drivers: whole frames, contiguous by construction for up to one page.

    Larger requests get several frames; the returned address is the physical
    (direct-mapped) address of the first. Kernel code reaches the bytes through
    physical memory.
    """

    def __init__(self, frames: FrameAllocator) -> None:
        self.frames = frames
        self._blocks: dict[int, list[int]] = {}
        self.bytes = 0

    def kmalloc(self, size: int) -> int:
        if size <= 0:
            raise ValueError("kmalloc of a non-positive size")
        n = (size + PAGE_SIZE - 1) // PAGE_SIZE
        pfns = [self.frames.alloc() for _ in range(n)]
        if pfns != list(range(pfns[0], pfns[0] + n)):
            for p in pfns:
                self.frames.release(p)
            raise OutOfMemory(f"no {n} contiguous frames")
        addr = pfns[0] << PAGE_SHIFT
        self._blocks[addr] = pfns
        self.bytes += n * PAGE_SIZE
        return addr

    def kfree(self, addr: int) -> None:
        pfns = self._blocks.pop(addr)
        self.bytes -= len(pfns) * PAGE_SIZE
        for p in pfns:
            self.frames.release(p)
