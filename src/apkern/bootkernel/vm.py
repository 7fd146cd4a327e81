"""Address spaces: regions, IA-32 page tables in physical memory, demand paging.

A process's memory is a list of regions (code, data, mmap, stack). Pages are not
mapped until touched: a fault inside a region gets a zero-filled frame (or its
swapped-out contents back); a fault outside every region, or a write to a
read-only region, is a segmentation fault. Every page directory also maps
all of physical memory at KERNBASE for the kernel (supervisor-only); the kernel's
own page directory maps nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..hw import PAGE_SHIFT, PAGE_SIZE
from ..hw.mmu import PTE_A, PTE_ADDR, PTE_D, PTE_P, PTE_U, PTE_W, pde_index, pte_index
from . import abi

if TYPE_CHECKING:
    from .kalloc import FrameAllocator
    from .swap import SwapStore


@dataclass
class Region:
    start: int
    end: int
    kind: str  # "code" | "data" | "mmap" | "stack"
    writable: bool

    def __contains__(self, vaddr: int) -> bool:
        return self.start <= vaddr < self.end


def page_round_up(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class AddressSpace:
    """One process's page directory and regions."""

    def __init__(self, frames: FrameAllocator, kmap: KernelMap, swap: SwapStore | None = None) -> None:
        self.frames = frames
        self.mem = frames.machine.memory
        self.swap = swap
        self.pgdir = frames.alloc()
        kmap.install(self.pgdir, self.mem)
        self.tables: dict[int, int] = {}  # PDE index -> page-table frame
        self.resident: dict[int, int] = {}  # virtual page number -> frame
        self.regions: list[Region] = []
        self.mmap_next = abi.MMAP_BASE
        self.destroyed = False
        self.pinned: set[int] = set()  # pages the swapper must leave alone (mlock)

    @property
    def cr3(self) -> int:
        return self.pgdir << PAGE_SHIFT

    # --- regions -----------------------------------------------------------------

    def add_region(self, start: int, size: int, kind: str, writable: bool) -> Region:
        r = Region(start, start + page_round_up(size), kind, writable)
        if r.end > abi.USER_TOP or any(r.start < o.end and o.start < r.end for o in self.regions):
            raise ValueError(f"region {r} overlaps or leaves user space")
        self.regions.append(r)
        return r

    def find(self, vaddr: int) -> Region | None:
        for r in self.regions:
            if vaddr in r:
                return r
        return None

    def mmap(self, length: int) -> int | None:
        size = page_round_up(length)
        if self.mmap_next + size > abi.STACK_TOP - 64 * abi.STACK_STRIDE:
            return None
        addr = self.mmap_next
        self.add_region(addr, size, "mmap", True)
        self.mmap_next += size + PAGE_SIZE  # a guard page between mappings
        return addr

    def remove_region(self, r: Region) -> list[int]:
        """Drop a region and its pages; returns the virtual pages that were mapped."""
        self.regions.remove(r)
        gone = []
        for vpn in range(r.start >> PAGE_SHIFT, r.end >> PAGE_SHIFT):
            self.pinned.discard(vpn)
            if vpn in self.resident:
                self.frames.release(self.unmap(vpn))
                gone.append(vpn)
            if self.swap is not None:
                self.swap.discard(self, vpn)
        return gone

    # --- page tables -----------------------------------------------------------------

    def _pte_addr(self, vaddr: int, create: bool) -> int | None:
        di = pde_index(vaddr)
        pt = self.tables.get(di)
        if pt is None:
            if not create:
                return None
            pt = self.frames.alloc()
            self.tables[di] = pt
            self.mem.write_u32(self.cr3 + di * 4, (pt << PAGE_SHIFT) | PTE_P | PTE_W | PTE_U)
        return (pt << PAGE_SHIFT) + pte_index(vaddr) * 4

    def map(self, vpn: int, pfn: int, writable: bool) -> None:
        addr = self._pte_addr(vpn << PAGE_SHIFT, True)
        self.mem.write_u32(addr, (pfn << PAGE_SHIFT) | PTE_P | PTE_U | (PTE_W if writable else 0))
        self.resident[vpn] = pfn

    def unmap(self, vpn: int) -> int:
        """Clear the PTE of a resident page; returns its frame (the caller frees or reuses it)."""
        addr = self._pte_addr(vpn << PAGE_SHIFT, False)
        assert addr is not None
        self.mem.write_u32(addr, 0)
        return self.resident.pop(vpn)

    def pte(self, vpn: int) -> int:
        addr = self._pte_addr(vpn << PAGE_SHIFT, False)
        return 0 if addr is None else self.mem.read_u32(addr)

    def clear_accessed(self, vpn: int) -> bool:
        """Test and clear the A bit (the swapper's clock); True if the page was used."""
        addr = self._pte_addr(vpn << PAGE_SHIFT, False)
        if addr is None:
            return False
        pte = self.mem.read_u32(addr)
        if pte & PTE_A:
            self.mem.write_u32(addr, pte & ~PTE_A)
            return True
        return False

    def frame_of(self, vaddr: int) -> int | None:
        pte = self.pte(vaddr >> PAGE_SHIFT)
        return (pte & PTE_ADDR) >> PAGE_SHIFT if pte & PTE_P else None

    # --- demand paging ----------------------------------------------------------------

    def resolve_fault(self, vaddr: int, write: bool) -> str:
        """Make `vaddr` accessible: "zero" (fresh page), "swap" (brought back), or "segv"."""
        r = self.find(vaddr)
        if r is None or (write and not r.writable):
            return "segv"
        vpn = vaddr >> PAGE_SHIFT
        if vpn in self.resident:
            return "segv" if write and not r.writable else "spurious"
        self._pte_addr(vaddr, True)  # the page table first: a failed allocation then leaks nothing
        if self.swap is not None and self.swap.holds(self, vpn):
            pfn = self.frames.alloc(zero=False)
            self.mem.write(pfn << PAGE_SHIFT, self.swap.take(self, vpn))
            self.map(vpn, pfn, r.writable)
            return "swap"
        self.map(vpn, self.frames.alloc(), r.writable)
        return "zero"

    def copyout(self, vaddr: int, data: bytes) -> None:
        """Kernel-side write into this (not necessarily current) address space, paging in as needed."""
        off = 0
        while off < len(data):
            va = vaddr + off
            if self.frame_of(va) is None and self.resolve_fault(va, True) == "segv":
                raise ValueError(f"copyout to unmapped {va:#x}")
            chunk = min(len(data) - off, PAGE_SIZE - (va & 0xFFF))
            pa = (self.frame_of(va) << PAGE_SHIFT) | (va & 0xFFF)
            self.mem.write(pa, data[off : off + chunk])
            self.mem.write_u32(self._pte_addr(va, False), self.pte(va >> PAGE_SHIFT) | PTE_A | PTE_D)
            off += chunk

    def destroy(self) -> None:
        """Free every frame: pages, page tables, then the page directory (which must not be live)."""
        for vpn in list(self.resident):
            self.frames.release(self.resident.pop(vpn))
        for pt in self.tables.values():
            self.frames.release(pt)
        self.tables.clear()
        if self.swap is not None:
            self.swap.discard_all(self)
        self.frames.release(self.pgdir)
        self.regions.clear()
        self.destroyed = True


KERNBASE = abi.USER_TOP  # physical memory is mapped here, supervisor-only, in every page directory


class KernelMap:
    """The kernel half of every address space: physical memory at KERNBASE, shared page tables.

    Kernel code may reach any physical address `pa` as the virtual address
    KERNBASE + pa whatever CR3 holds, as in any higher-half IA-32 kernel.
    """

    def __init__(self, frames: FrameAllocator) -> None:
        mem = frames.machine.memory
        self.pdes: dict[int, int] = {}
        for base in range(0, mem.size, 1 << 22):
            pt = frames.alloc()
            for i in range(1024):
                pa = base + (i << PAGE_SHIFT)
                if pa < mem.size:
                    mem.write_u32((pt << PAGE_SHIFT) + i * 4, pa | PTE_P | PTE_W)
            self.pdes[pde_index(KERNBASE + base)] = (pt << PAGE_SHIFT) | PTE_P | PTE_W
        self.pgdir = frames.alloc()
        self.install(self.pgdir, mem)

    @property
    def cr3(self) -> int:
        return self.pgdir << PAGE_SHIFT

    def install(self, pgdir: int, mem: object) -> None:
        for i, pde in self.pdes.items():
            mem.write_u32((pgdir << PAGE_SHIFT) + i * 4, pde)  # type: ignore[attr-defined]
