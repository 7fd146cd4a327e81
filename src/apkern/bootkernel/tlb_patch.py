"""PATCH (paper section 4.3): tell other processors when a page mapping is removed asynchronously.

The only change to the bootstrap kernel made for the application kernel's sake,
and off by default. The paper: "the bootstrap kernel must be modified to send
invalidation messages to the application processors". With no hook registered
(the unpatched kernel) `page_unmapped` does nothing; a driver registers a hook
through `DriverServices.register_tlb_hook`, and the swapper calls it after it
clears a PTE and before the frame is reused.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from ..hw import Op

Hook = Callable[[int, int], Generator[Op, Any, Any]]


class TLBPatch:
    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.hooks: list[Hook] = []

    def register(self, hook: Hook) -> bool:
        if self.enabled:
            self.hooks.append(hook)
        return self.enabled

    def page_unmapped(self, cr3: int, vaddr: int) -> Generator[Op, Any, None]:
        for hook in self.hooks:
            yield from hook(cr3, vaddr)
