"""A test-and-test-and-set spinlock on a word of kernel memory that records its owner.

Both the bootstrap processor (inside the driver) and the application processors
take it, so it guards everything the two sides share: the ready queue, the TCBs'
scheduling state, the process records. The word holds the owner, the id of the
holding CPU + 1 (0 when free), as owner-recording spinlocks do: a debugger, and
the machine's lock checker, can tell who holds it. Contention costs real
instructions: a failed compare-exchange, then a spin on the word until it changes.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..hw import CmpXchg, MachineError, Op, SpinAcquire, Store


class Spinlock:
    """The lock word lives at kernel virtual address `kva` (mapped in every address space)."""

    def __init__(self, kva: int, name: str = "lock") -> None:
        self.kva = kva
        self.name = name
        self.acquisitions = 0
        self.contended = 0  # acquisitions that found the lock taken
        self.spins = 0  # failed compare-exchanges

    def acquire(self, cpu_id: int) -> Generator[Op, Any, None]:
        """Compare-exchange; if that fails, spin on the word and retry (`SpinAcquire`: the same loop)."""
        holder = yield CmpXchg(self.kva, 0, cpu_id + 1)
        if holder != 0:
            if holder == cpu_id + 1:  # it would spin for ever: say so (lockdep's recursive locking)
                raise MachineError(f"cpu{cpu_id} takes {self.name}, which it already holds")
            self.contended += 1
            self.spins += 1
            yield SpinAcquire(self.kva, holder, cpu_id + 1, self)
        self.acquisitions += 1

    def release(self) -> Generator[Op, Any, None]:
        yield Store(self.kva, 0)
