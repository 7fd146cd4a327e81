"""Code addresses: how the machine's instruction set (Python generators) is addressed.

Programs and kernel entry points are Python generator functions. Taking the address
of one (`&main` in C) registers it here and gives a stable integer, which can be
passed through registers and memory like any pointer. Jumping to an address that
holds no code is an invalid-opcode fault. A *code page* is how code is placed in a
physical frame (the AP start-up trampoline): a signature word and a code address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CODE_BASE = 0x08048000  # addresses look like IA-32 text addresses
CODE_STRIDE = 16
CODE_PAGE_MAGIC = 0xEA5AC0DE  # "far jump" signature at the start of a code page


class CodeStore:
    """The machine's text: code address <-> generator function. Deterministic numbering."""

    def __init__(self) -> None:
        self._by_addr: dict[int, Callable[..., Any]] = {}
        self._by_func: dict[Callable[..., Any], int] = {}

    def address_of(self, func: Callable[..., Any]) -> int:
        addr = self._by_func.get(func)
        if addr is None:
            addr = CODE_BASE + CODE_STRIDE * len(self._by_addr)
            self._by_addr[addr] = func
            self._by_func[func] = addr
        return addr

    def resolve(self, addr: int) -> Callable[..., Any] | None:
        return self._by_addr.get(addr)

    def name(self, addr: int) -> str:
        func = self._by_addr.get(addr)
        return getattr(func, "__name__", "?") if func else f"{addr:#x}"
