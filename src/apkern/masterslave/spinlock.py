"""The queue lock: the one spinlock of the master-slave port (the dual VAX's run-queue lock).

Only the master runs kernel code, so the kernel's own data needs no lock. What
master and slaves share does: the two queues between them, the threads' queue
links, the idle flags, the per-CPU current words and the shoot-down request
(kernel.py). It is the ports' owner-recording spinlock (`portkit.owner_lock`):
the word in kernel memory holds the id of the holding CPU + 1.

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

from ..hw import PhysicalMemory
from ..portkit.owner_lock import OwnerLock

MASTER = 0


class QueueLock(OwnerLock):
    """The lock word at kernel virtual address `kva` (physical `pa`, mapped in every address space)."""

    def __init__(self, memory: PhysicalMemory, kva: int, pa: int, cpus: int, name: str = "the queue lock") -> None:
        super().__init__(memory, kva, pa, cpus, name)

    def spins_with_interrupts(self, cid: int) -> bool:
        """A slave, so that a shoot-down reaches it; not the master (see the module)."""
        return cid != MASTER
