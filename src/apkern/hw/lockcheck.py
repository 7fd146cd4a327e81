"""The lock-discipline checker: writes to lock-guarded kernel data by a CPU not holding the lock fail.

In the spirit of Linux's lockdep (`lockdep_assert_held`, `__guarded_by`), checked
where the machine sees every write: kernel code states which spinlock guards a
range of kernel virtual addresses (the `GuardedBy` annotation, no instruction),
or asserts that it holds the lock where it changes data kept outside simulated
memory (`AssertHeld`, no instruction). The lock word holds its owner (the id of
the holding CPU + 1, 0 when free), as owner-recording spinlocks do. With the
checker on (`Machine(check_locks=True)`), every kernel-mode write into a guarded
range, and every `AssertHeld`, by a CPU that does not hold the lock raises
`LockViolation`, naming the structure, the CPU and the holder. Reads are not
checked. The checker costs no simulated time: a run is the same with it on or off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cpu import MachineError
from .debugger import Debugger

if TYPE_CHECKING:
    from .cpu import CPU
    from .memory import PhysicalMemory


class LockViolation(MachineError):
    """Lock-guarded data written by a CPU that does not hold the lock."""


class LockChecker:
    """Guarded ranges (kernel virtual addresses) and the physical addresses of their lock words."""

    def __init__(self, memory: PhysicalMemory) -> None:
        self.memory = memory
        self.debugger = Debugger(memory)
        self.ranges: list[tuple[int, int, int, str, str]] = []  # start, end, lock word (physical), what, lock
        self.checked = 0  # guarded writes seen (a test can tell the checker really looked)

    def lock_word(self, cpu: CPU, lock_vaddr: int) -> int:
        """The physical address of a lock word, as `cpu` maps it (kernel addresses are the same everywhere)."""
        pa = self.debugger.translate(cpu.mmu.cr3, lock_vaddr) if cpu.mmu.paging else lock_vaddr
        if pa is None:
            raise MachineError(f"cpu{cpu.id}: lock word {lock_vaddr:#x} is not mapped")
        return pa

    def guard(self, cpu: CPU, start: int, size: int, lock_vaddr: int, what: str, lock: str) -> None:
        if size <= 0:
            raise ValueError(f"guarded range {what!r} is empty")
        self.ranges.append((start, start + size, self.lock_word(cpu, lock_vaddr), what, lock))

    def check(self, cpu: CPU, vaddr: int, n: int) -> None:
        """Called before CPU `cpu` writes `n` bytes at `vaddr` in kernel mode."""
        for start, end, lock_pa, what, lock in self.ranges:
            if vaddr < end and start < vaddr + n:
                self.checked += 1
                self._held(cpu, lock_pa, f"wrote {what} (+{vaddr - start:#x})", lock)

    def assert_held(self, cpu: CPU, lock_vaddr: int, what: str, lock: str) -> None:
        """CPU `cpu` is about to change `what` (data outside simulated memory): it must hold the lock."""
        self.checked += 1
        self._held(cpu, self.lock_word(cpu, lock_vaddr), f"changed {what}", lock)

    def _held(self, cpu: CPU, lock_pa: int, did: str, lock: str) -> None:
        holder = self.memory.read_u32(lock_pa)
        if holder != cpu.id + 1:
            by = "free" if holder == 0 else f"held by cpu{holder - 1}"
            raise LockViolation(f"cpu{cpu.id} {did} without holding {lock} ({by})")
