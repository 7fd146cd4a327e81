"""A debugger attached to the machine: reads simulated memory from outside, without touching it.

Observers (statistics, experiments, tests) read kernel and user memory the way a
hardware debugger or a crash-dump tool does: the page tables are walked in
software, and nothing of the machine changes (no accessed or dirty bit, no TLB
entry, no time, no fault). Kernels never use it: their reads are `Load` ops.
"""

from __future__ import annotations

from .memory import PhysicalMemory
from .mmu import PTE_ADDR, PTE_P, pde_index, pte_index


class Debugger:
    """Side-effect-free reads of `memory` through any page directory."""

    def __init__(self, memory: PhysicalMemory) -> None:
        self.memory = memory

    def translate(self, cr3: int, vaddr: int) -> int | None:
        """The physical address of `vaddr` under the page directory `cr3`, or None if it is not mapped."""
        mem = self.memory
        pde = mem.read_u32((cr3 & PTE_ADDR) + pde_index(vaddr) * 4)
        if not pde & PTE_P:
            return None
        pte = mem.read_u32((pde & PTE_ADDR) + pte_index(vaddr) * 4)
        if not pte & PTE_P:
            return None
        return (pte & PTE_ADDR) | (vaddr & 0xFFF)

    def read_u32(self, cr3: int, vaddr: int) -> int | None:
        """The word at `vaddr` (aligned) in the address space of `cr3`, or None if it is not mapped."""
        pa = self.translate(cr3, vaddr)
        return None if pa is None else self.memory.read_u32(pa)
