"""The plain C start-up code: what the kernel starts in a new process.

`SYS_SPAWN(entry, block, len)` copies the spawn block into the child and starts
`entry(block_address)` there. crt0 records its own code address (so `spawn`
passes the same start-up code on to this process's children), decodes main's
code address and argv from the block, calls main, and exits with its status.

Spawn block (little-endian 32-bit words): [main_addr, argc], then for each
argument [byte length] followed by its UTF-8 bytes padded to a multiple of 4.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from typing import Any

from ..hw.ops import Call, CodeAddr, Load, Op, ReadMem, Store
from . import libc
from .libc import CRT0_WORD


def decode_spawn_block(data: bytes) -> tuple[int, list[str]]:
    """(main_addr, argv) from a spawn block; the inverse of `libc.encode_spawn_block`."""
    if len(data) < 8:
        raise ValueError("spawn block shorter than its header")
    main_addr, argc = struct.unpack_from("<II", data, 0)
    argv: list[str] = []
    p = 8
    for i in range(argc):
        if p + 4 > len(data):
            raise ValueError(f"spawn block ends before argument {i}")
        (n,) = struct.unpack_from("<I", data, p)
        if p + 4 + n > len(data):
            raise ValueError(f"spawn block ends inside argument {i}")
        argv.append(data[p + 4 : p + 4 + n].decode())
        p += 4 + ((n + 3) & ~3)
    return main_addr, argv


def read_spawn_block(block_addr: int) -> Generator[Op, Any, tuple[int, list[str]]]:
    """Read (main_addr, argv) from the spawn block at user address `block_addr`."""
    main_addr, argc = struct.unpack("<II", (yield ReadMem(block_addr, 8)))
    argv: list[str] = []
    p = block_addr + 8
    for _ in range(argc):
        n = yield Load(p)
        argv.append((yield ReadMem(p + 4, n)).decode())
        p += 4 + ((n + 3) & ~3)
    return main_addr, argv


def crt0(block_addr: int) -> Generator[Op, Any, None]:
    """Process start-up: record this crt0, decode the block, run main(argv), exit with its status."""
    yield Store(CRT0_WORD, (yield CodeAddr(crt0)))
    main_addr, argv = yield from read_spawn_block(block_addr)
    status = yield Call(main_addr, argv)  # a nested call: main's own exceptions do not come back here
    yield from libc.exit(0 if status is None else status)  # libc checks it is an integer
