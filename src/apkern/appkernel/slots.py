"""Fixed-size records in a table of kernel memory, handed out from a free list (as a C kernel's slab of TCBs).

Slot numbers start at 1 (0 means none). Slots never used are taken in order
(`hwm`, the high-water mark); a freed slot goes on the free list, which is linked
through the first word of the free slots, its head in a word of kernel memory.
The Python stack mirrors that list. Lock held to allocate or free.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..hw import Op, Store


class SlotTable:
    """`count` slots of `size` bytes at kernel address `base`; free-list head and high-water mark at `head_kva`."""

    def __init__(self, base: int, size: int, count: int, head_kva: int) -> None:
        self.base = base
        self.size = size
        self.count = count
        self.head_kva = head_kva
        self.hwm_kva = head_kva + 4
        self.hwm = 0
        self.free: list[int] = []  # top last: the head of the list in memory

    def kva(self, n: int) -> int:
        return self.base + (n - 1) * self.size

    def alloc(self) -> Generator[Op, Any, int | None]:
        """A free slot's number, or None when all are in use."""
        if self.free:
            n = self.free.pop()
            yield Store(self.head_kva, self.free[-1] if self.free else 0)  # head = n's link
            return n
        if self.hwm == self.count:
            return None
        self.hwm += 1
        yield Store(self.hwm_kva, self.hwm)
        return self.hwm

    def release(self, n: int) -> Generator[Op, Any, None]:
        link = self.free[-1] if self.free else 0
        self.free.append(n)
        yield Store(self.kva(n), link)
        yield Store(self.head_kva, n)
