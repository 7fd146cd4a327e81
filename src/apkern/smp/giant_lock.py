"""The giant kernel lock: one spinlock that every kernel entry takes (Linux 2.0's `kernel_flag`).

The word in kernel memory holds its owner, the id of the holding CPU + 1 (0
when free), so the machine's lock checker and a debugger can tell who holds it.
It belongs to a *CPU*, not a thread: a thread that blocks inside the kernel
switches to the next thread with the lock held, and that thread (or the CPU's
idle loop, or a new thread's first kernel code) releases it. So whatever kernel
code runs, it runs on the CPU that holds the lock, and the CPU holding the lock
is the one whose current thread the kernel means.

A CPU waiting for the lock spins with interrupts enabled: a TLB shoot-down sent
by the holder must get through, or the holder (waiting for its acknowledgement
with the lock held) and the spinner would wait for each other for ever. An
interrupt that arrives meanwhile runs its handler, which queues for the lock in
turn, and returns to the spin. The lock is taken with interrupts disabled, and
kernel code never enables them while it holds the lock.

Spinning costs real instructions: the failed compare-exchange, then the spin on
the word (counted under the CPU's "spin" account) until it changes.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..hw import CmpXchg, DisableInterrupts, EnableInterrupts, MachineError, Op, PhysicalMemory, SpinWhile, Store


class GiantLock:
    """The lock word at kernel virtual address `kva` (physical `pa`, mapped in every address space)."""

    def __init__(self, memory: PhysicalMemory, kva: int, pa: int, cpus: int, name: str = "the kernel lock") -> None:
        self.memory = memory
        self.kva = kva
        self.pa = pa
        self.name = name
        self.acquisitions = 0
        self.contended = 0  # acquisitions that found the lock taken
        self.spins = 0  # failed compare-exchanges
        self.contended_by_cpu = [0] * cpus

    def holder(self) -> int | None:
        """The CPU that holds the lock, or None (reading the owner word, as a debugger would)."""
        owner = self.memory.read_u32(self.pa)
        return owner - 1 if owner else None

    def acquire(self, cid: int, acct: str = "spin") -> Generator[Op, Any, None]:
        """Take the lock for CPU `cid`; called and returning with interrupts disabled, spinning with them enabled."""
        first = True
        while (owner := (yield CmpXchg(self.kva, 0, cid + 1))) != 0:
            if owner == cid + 1:  # it would spin for ever: say so (lockdep's recursive locking)
                raise MachineError(f"cpu{cid} takes {self.name}, which it already holds")
            if first:
                self.contended += 1
                self.contended_by_cpu[cid] += 1
                first = False
            self.spins += 1
            yield EnableInterrupts()
            yield SpinWhile(self.kva, owner, acct)
            yield DisableInterrupts()
        self.acquisitions += 1

    def release(self, cid: int) -> Generator[Op, Any, None]:
        """CPU `cid` lets the lock go; releasing a lock another CPU holds is a kernel bug."""
        owner = self.holder()
        if owner != cid:
            by = "free" if owner is None else f"held by cpu{owner}"
            raise MachineError(f"cpu{cid} releases {self.name}, which is {by}")
        yield Store(self.kva, 0)
