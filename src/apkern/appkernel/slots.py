"""Fixed-size records in kernel memory, handed out from a free list (as a C kernel's slab of TCBs).

Slot numbers start at 1 (0 means none). Slots never used are taken in order
(`hwm`, the high-water mark); a freed slot goes on the free list, which is linked
through the first word of the free slots, its head in a word of kernel memory.
The Python stack mirrors that list. Lock held to allocate or free.

The table is a list of pages, as a slab is: the first ones allocated together at
start-up, then one more page whenever every slot is in use (`grow`), until kernel
memory runs out. So the table never limits what the bootstrap kernel's memory allows.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from ..hw import PAGE_SIZE, Op, Store

# grow(table): a generator that returns the kernel address of one more zeroed page for `table`, or None
Grow = Callable[["SlotTable"], Generator[Op, Any, int | None]]


class SlotTable:
    """`count` slots of `size` bytes at kernel address `base` (whole pages); free-list head and high-water
    mark at `head_kva`. With `grow`, a full table takes one more page at a time."""

    def __init__(self, base: int, size: int, count: int, head_kva: int, grow: Grow | None = None) -> None:
        if PAGE_SIZE % size or count * size % PAGE_SIZE:
            raise ValueError(f"slots of {size} bytes, {count} of them, do not fill whole pages")
        self.base = base
        self.size = size
        self.per_page = PAGE_SIZE // size
        self.pages = [base + i * PAGE_SIZE for i in range(count * size // PAGE_SIZE)]
        self.count = count
        self.head_kva = head_kva
        self.hwm_kva = head_kva + 4
        self.hwm = 0
        self.grow = grow
        self.free: list[int] = []  # top last: the head of the list in memory

    def kva(self, n: int) -> int:
        i = n - 1
        return self.pages[i // self.per_page] + i % self.per_page * self.size

    def alloc(self) -> Generator[Op, Any, int | None]:
        """A free slot's number, or None when all are in use and the table cannot grow."""
        if self.free:
            n = self.free.pop()
            yield Store(self.head_kva, self.free[-1] if self.free else 0)  # head = n's link
            return n
        if self.hwm == self.count:
            page = None if self.grow is None else (yield from self.grow(self))
            if page is None:
                return None
            self.pages.append(page)
            self.count += self.per_page
        self.hwm += 1
        yield Store(self.hwm_kva, self.hwm)
        return self.hwm

    def release(self, n: int) -> Generator[Op, Any, None]:
        link = self.free[-1] if self.free else 0
        self.free.append(n)
        yield Store(self.kva(n), link)
        yield Store(self.head_kva, n)
