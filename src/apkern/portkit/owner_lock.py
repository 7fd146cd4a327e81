"""A spinlock whose word records its owner, spun on with interrupts enabled: the one lock of each SMP port.

The word in kernel memory holds the id of the holding CPU + 1 (0 when free), so the
machine's lock checker and a debugger can tell who holds it. It belongs to a *CPU*, not
a thread: the ports hand it over across context switches (their modules say how).

A CPU waiting for it spins with interrupts enabled, so that a TLB shoot-down sent by the
holder, which waits for the acknowledgements with the lock held, gets through; an
interrupt that arrives meanwhile runs its handler, which queues for the lock in turn, and
returns to the spin. A port may keep a CPU's interrupts disabled while it spins
(`spins_with_interrupts`) when no holder ever waits for that CPU. The lock is taken with
interrupts disabled, and kernel code never enables them while it holds it.

Spinning costs real instructions: the failed compare-exchange, then the spin on the word
(counted under the CPU's "spin" account) until it changes.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..hw import CmpXchg, DisableInterrupts, EnableInterrupts, MachineError, Op, PhysicalMemory, SpinWhile, Store


class OwnerLock:
    """The lock word at kernel virtual address `kva` (physical `pa`, mapped in every address space)."""

    def __init__(self, memory: PhysicalMemory, kva: int, pa: int, cpus: int, name: str) -> None:
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

    def spins_with_interrupts(self, cid: int) -> bool:
        """Whether CPU `cid` takes interrupts while it waits for the lock (every CPU, unless a port says)."""
        return True

    def acquire(self, cid: int, acct: str = "spin") -> Generator[Op, Any, None]:
        """Take the lock for CPU `cid`; called and returning with interrupts disabled."""
        first = True
        while (owner := (yield CmpXchg(self.kva, 0, cid + 1))) != 0:
            if owner == cid + 1:  # it would spin for ever: say so (lockdep's recursive locking)
                raise MachineError(f"cpu{cid} takes {self.name}, which it already holds")
            if first:
                self.contended += 1
                self.contended_by_cpu[cid] += 1
                first = False
            self.spins += 1
            interruptible = self.spins_with_interrupts(cid)
            if interruptible:
                yield EnableInterrupts()
            yield SpinWhile(self.kva, owner, acct)
            if interruptible:
                yield DisableInterrupts()
        self.acquisitions += 1

    def release(self, cid: int) -> Generator[Op, Any, None]:
        """CPU `cid` lets the lock go; releasing a lock another CPU holds is a kernel bug."""
        owner = self.holder()
        if owner != cid:
            by = "free" if owner is None else f"held by cpu{owner}"
            raise MachineError(f"cpu{cid} releases {self.name}, which is {by}")
        yield Store(self.kva, 0)
