"""The queue lock: the one spinlock of the master-slave port (the dual VAX's run-queue lock).

Only the master runs kernel code, so the kernel's own data needs no lock. What
master and slaves share does: the two queues between them, the threads' queue
links, the idle flags, the per-CPU current words and the shoot-down request
(kernel.py). The word in kernel memory holds its owner, the id of the holding
CPU + 1 (0 when free), so the machine's lock checker and a debugger can tell
who holds it.

It belongs to a *CPU*, not a thread: a CPU that queues its thread switches away
with the lock held, and the CPU that picks the thread up next holds the lock
when it switches to it; the code that runs first on the new context (the
thread's resume path, or an idle loop) releases it. So no CPU can take a thread
whose context another CPU still runs on.

A slave waiting for the lock spins with interrupts enabled: a TLB shoot-down
sent by the master, which holds the lock while it waits for the slaves'
acknowledgements, must get through. The master spins with them disabled: it is
the uniprocessor kernel, whose code is not written to be interrupted, and no
slave holding the lock ever waits for the master.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..hw import CmpXchg, DisableInterrupts, EnableInterrupts, MachineError, Op, PhysicalMemory, SpinWhile, Store

MASTER = 0


class QueueLock:
    """The lock word at kernel virtual address `kva` (physical `pa`, mapped in every address space)."""

    def __init__(self, memory: PhysicalMemory, kva: int, pa: int, cpus: int, name: str = "the queue lock") -> None:
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

    def acquire(self, cid: int) -> Generator[Op, Any, None]:
        """Take the lock for CPU `cid`, called and returning with interrupts disabled.

        A slave spins with interrupts enabled (a shoot-down must reach it), the master with them disabled.
        """
        first = True
        while (owner := (yield CmpXchg(self.kva, 0, cid + 1))) != 0:
            if owner == cid + 1:  # it would spin for ever: say so (lockdep's recursive locking)
                raise MachineError(f"cpu{cid} takes {self.name}, which it already holds")
            if first:
                self.contended += 1
                self.contended_by_cpu[cid] += 1
                first = False
            self.spins += 1
            if cid != MASTER:
                yield EnableInterrupts()
            yield SpinWhile(self.kva, owner)
            if cid != MASTER:
                yield DisableInterrupts()
        self.acquisitions += 1

    def release(self, cid: int) -> Generator[Op, Any, None]:
        """CPU `cid` lets the lock go; releasing a lock another CPU holds is a kernel bug."""
        owner = self.holder()
        if owner != cid:
            by = "free" if owner is None else f"held by cpu{owner}"
            raise MachineError(f"cpu{cid} releases {self.name}, which is {by}")
        yield Store(self.kva, 0)
