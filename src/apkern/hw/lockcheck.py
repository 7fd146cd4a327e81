"""The lock-discipline checker: writes to lock-guarded kernel data by a CPU not holding the lock fail.

In the spirit of Linux's lockdep (`lockdep_assert_held`, `__guarded_by`), checked
where the machine sees every write: kernel code states which spinlock guards a
range of kernel virtual addresses (the `GuardedBy` annotation, no instruction),
and the lock word holds its owner (the id of the holding CPU + 1, 0 when free),
as owner-recording spinlocks do. With the checker on (`Machine(check_locks=True)`),
every kernel-mode write into a guarded range by a CPU that does not hold its lock
raises `LockViolation`, naming the structure, the CPU and the holder. Reads are not
checked. The checker costs no simulated time: a run is the same with it on or off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cpu import MachineError

if TYPE_CHECKING:
    from .cpu import CPU
    from .memory import PhysicalMemory


class LockViolation(MachineError):
    """Lock-guarded data written by a CPU that does not hold the lock."""


class LockChecker:
    """Guarded ranges (kernel virtual addresses) and the physical addresses of their lock words."""

    def __init__(self, memory: PhysicalMemory) -> None:
        self.memory = memory
        self.ranges: list[tuple[int, int, int, str, str]] = []  # start, end, lock word (physical), what, lock
        self.checked = 0  # guarded writes seen (a test can tell the checker really looked)

    def guard(self, start: int, size: int, lock_pa: int, what: str, lock: str) -> None:
        if size <= 0:
            raise ValueError(f"guarded range {what!r} is empty")
        self.ranges.append((start, start + size, lock_pa, what, lock))

    def check(self, cpu: CPU, vaddr: int, n: int) -> None:
        """Called before CPU `cpu` writes `n` bytes at `vaddr` in kernel mode."""
        for start, end, lock_pa, what, lock in self.ranges:
            if vaddr < end and start < vaddr + n:
                self.checked += 1
                holder = self.memory.read_u32(lock_pa)
                if holder != cpu.id + 1:
                    by = "free" if holder == 0 else f"held by cpu{holder - 1}"
                    raise LockViolation(f"cpu{cpu.id} wrote {what} (+{vaddr - start:#x}) without holding {lock} ({by})")
