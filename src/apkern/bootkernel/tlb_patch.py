"""PATCH (paper section 4.3): tell other processors when a page mapping is removed asynchronously.

The only change to the bootstrap kernel made for the application kernel's sake,
and off by default. The paper: "the bootstrap kernel must be modified to send
invalidation messages to the application processors". The swapper is the one
place that changes a page table behind a process's back (munmap, exit and join
are the process's own calls, which the application kernel sees coming). With the
patch, a driver may register a pair of hooks (`DriverServices.register_tlb_hook`):
`begin(cr3, vaddr)` runs before the swapper copies a page out and clears its PTE,
`end(cr3, vaddr)` after, and only then is the frame freed. A shoot-down needs
both: between them no other processor may touch the page, so no write is lost
and no stale translation is used. Without the patch both calls do nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from ..hw import Op

Hook = Callable[[int, int], Generator[Op, Any, Any]]


class TLBPatch:
    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.hooks: list[tuple[Hook, Hook]] = []

    def register(self, begin: Hook, end: Hook) -> bool:
        if self.enabled:
            self.hooks.append((begin, end))
        return self.enabled

    def unmap_begin(self, cr3: int, vaddr: int) -> Generator[Op, Any, None]:
        for begin, _ in self.hooks:
            yield from begin(cr3, vaddr)

    def unmap_end(self, cr3: int, vaddr: int) -> Generator[Op, Any, None]:
        for _, end in self.hooks:
            yield from end(cr3, vaddr)
