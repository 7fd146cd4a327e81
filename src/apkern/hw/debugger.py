"""A debugger attached to the machine: reads simulated memory from outside, without touching it.

Observers (statistics, experiments, tests) read kernel and user memory the way a
hardware debugger or a crash-dump tool does: the page tables are walked in
software, and nothing of the machine changes (no accessed or dirty bit, no TLB
entry, no time, no fault). Kernels never use it: their reads are `Load` ops.
"""

from __future__ import annotations

from .memory import PAGE_SHIFT, PhysicalMemory
from .mmu import lookup


class Debugger:
    """Side-effect-free reads of `memory` through any page directory."""

    def __init__(self, memory: PhysicalMemory) -> None:
        self.memory = memory

    def translate(self, cr3: int, vaddr: int) -> int | None:
        """The physical address of `vaddr` under the page directory `cr3`, or None if it is not mapped."""
        e = lookup(self.memory, cr3, vaddr)
        return None if e is None else (e[0] << PAGE_SHIFT) | (vaddr & 0xFFF)

    def read_u32(self, cr3: int, vaddr: int) -> int | None:
        """The word at `vaddr` (aligned) in the address space of `cr3`, or None if it is not mapped."""
        pa = self.translate(cr3, vaddr)
        return None if pa is None else self.memory.read_u32(pa)
