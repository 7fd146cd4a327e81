"""The giant kernel lock: one spinlock that every kernel entry takes (Linux 2.0's `kernel_flag`).

The word in kernel memory holds its owner, the id of the holding CPU + 1 (0
when free), so the machine's lock checker and a debugger can tell who holds it.
It belongs to a *CPU*, not a thread: a thread that blocks inside the kernel
switches to the next thread with the lock held, and that thread (or the CPU's
idle loop, or a new thread's first kernel code) releases it. So whatever kernel
code runs, it runs on the CPU that holds the lock, and the CPU holding the lock
is the one whose current thread the kernel means.

A CPU waiting for the lock spins with interrupts enabled (`portkit.owner_lock`): a TLB
shoot-down sent by the holder must get through, or the holder (waiting for its
acknowledgement with the lock held) and the spinner would wait for each other for ever.
"""

from __future__ import annotations

from ..hw import PhysicalMemory
from ..portkit.owner_lock import OwnerLock


class GiantLock(OwnerLock):
    """The lock word at kernel virtual address `kva` (physical `pa`, mapped in every address space)."""

    def __init__(self, memory: PhysicalMemory, kva: int, pa: int, cpus: int, name: str = "the kernel lock") -> None:
        super().__init__(memory, kva, pa, cpus, name)
