"""A test-and-test-and-set spinlock on a word of kernel memory.

Both the bootstrap processor (inside the driver) and the application processors
take it, so it guards everything the two sides share: the ready queue and the
TCBs' scheduling state. Contention costs real instructions: a failed exchange,
then a spin on the word until it reads free.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..hw import Op, SpinWhile, Store, Xchg


class Spinlock:
    """The lock word lives at kernel virtual address `kva` (mapped in every address space)."""

    def __init__(self, kva: int, name: str = "lock") -> None:
        self.kva = kva
        self.name = name
        self.acquisitions = 0
        self.contended = 0  # acquisitions that found the lock taken
        self.spins = 0  # failed exchanges

    def acquire(self, cpu_id: int) -> Generator[Op, Any, None]:
        first = True
        while (yield Xchg(self.kva, 1)) != 0:
            if first:
                self.contended += 1
                first = False
            self.spins += 1
            yield SpinWhile(self.kva, 1)
        self.acquisitions += 1

    def release(self) -> Generator[Op, Any, None]:
        yield Store(self.kva, 0)
