"""A fake process for testing user land without a kernel: it interprets the ops user code yields.

Memory is a sparse byte map; `Call` resolves through the fake's own code table;
`Trap(SYSCALL, nr, ...)` goes to a tiny in-Python kernel with files, a console and
recorded calls. It checks libc's use of the ABI, not the machine's timing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from apkern.bootkernel import abi
from apkern.hw.ops import (
    AtomicAdd,
    Call,
    CodeAddr,
    Compute,
    Illegal,
    Load,
    Op,
    Rdtsc,
    ReadMem,
    ReadTP,
    Store,
    Trap,
    WriteMem,
)

TLS = abi.STACK_TOP - abi.TLS_SIZE


class Exited(Exception):
    """The program called SYS_EXIT (or SYS_THREAD_EXIT) with `status`."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class UndefinedOpcode(Exception):
    """The program executed `Illegal` or called an address without code."""


class FakeProcess:
    """One single-threaded process and just enough kernel to serve libc."""

    def __init__(self, files: dict[str, bytes] | None = None, write_limit: int = 1 << 30) -> None:
        self.mem: dict[int, int] = {}
        self.code: dict[int, Callable[..., Any]] = {}
        self.addrs: dict[Callable[..., Any], int] = {}
        self.files = dict(files or {})
        self.fds: dict[int, list[Any]] = {}  # fd -> [content, offset]
        self.out = {1: bytearray(), 2: bytearray()}
        self.write_limit = write_limit  # the most one write call accepts: short writes
        self.calls: list[tuple[str, tuple[int, ...]]] = []
        self.results: dict[int, Any] = {}  # syscall number -> canned result (int, or callable(*args))
        self.time = 0

    # --- memory -------------------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.mem.get(addr + i, 0) for i in range(n))

    def write(self, addr: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.mem[addr + i] = b

    def word(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def set_word(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def address_of(self, func: Callable[..., Any]) -> int:
        if func not in self.addrs:
            addr = abi.CODE_BASE + 16 * len(self.code)
            self.code[addr] = func
            self.addrs[func] = addr
        return self.addrs[func]

    # --- the kernel -------------------------------------------------------------------
    def syscall(self, nr: int, *args: int) -> int:
        name = abi.SYSCALL_NAMES[nr]
        self.calls.append((name, args))
        if nr in self.results:
            r = self.results[nr]
            return r(*args) if callable(r) else r
        if nr in (abi.SYS_EXIT, abi.SYS_THREAD_EXIT):
            raise Exited(args[0])
        if nr == abi.SYS_OPEN:
            raw = bytearray()
            p = args[0]
            while self.mem.get(p, 0):
                raw.append(self.mem[p])
                p += 1
            path = raw.decode()
            if path not in self.files:
                return -abi.ENOENT
            fd = 3 + len(self.fds)
            self.fds[fd] = [self.files[path], 0]
            return fd
        if nr == abi.SYS_READ:
            fd, buf, n = args
            if fd not in self.fds:
                return -abi.EBADF
            content, off = self.fds[fd]
            data = content[off : off + n]
            self.fds[fd][1] = off + len(data)
            self.write(buf, data)
            return len(data)
        if nr == abi.SYS_WRITE:
            fd, buf, n = args
            if fd not in self.out:
                return -abi.EBADF
            n = min(n, self.write_limit)
            self.out[fd] += self.read(buf, n)
            return n
        if nr == abi.SYS_CLOSE:
            return 0 if self.fds.pop(args[0], None) is not None else -abi.EBADF
        return -abi.ENOSYS

    # --- the CPU --------------------------------------------------------------------------
    def run(self, gen: Generator[Op, Any, Any]) -> Any:
        """Run `gen` (and what it calls) to completion; return its value."""
        stack = [gen]
        send: Any = None
        while True:
            try:
                op = stack[-1].send(send)
            except StopIteration as stop:
                stack.pop()
                if not stack:
                    return stop.value
                send = stop.value
                continue
            send = None
            if isinstance(op, Compute):
                self.time += op.n
            elif isinstance(op, Load):
                send = self.word(op.vaddr)
            elif isinstance(op, Store):
                self.set_word(op.vaddr, op.value)
            elif isinstance(op, AtomicAdd):
                send = self.word(op.vaddr)
                self.set_word(op.vaddr, (send + op.delta) & 0xFFFFFFFF)
            elif isinstance(op, ReadMem):
                send = self.read(op.vaddr, op.n)
            elif isinstance(op, WriteMem):
                self.write(op.vaddr, op.data)
            elif isinstance(op, ReadTP):
                send = TLS
            elif isinstance(op, CodeAddr):
                send = self.address_of(op.func)
            elif isinstance(op, Rdtsc):
                send = self.time
            elif isinstance(op, Trap):
                assert op.vector == abi.SYSCALL
                send = self.syscall(*op.args)
            elif isinstance(op, Call):
                if op.addr not in self.code:
                    raise UndefinedOpcode(hex(op.addr))
                stack.append(self.code[op.addr](*op.args))
            elif isinstance(op, Illegal):
                raise UndefinedOpcode("ud2")
            else:  # pragma: no cover - an op this fake does not know
                raise AssertionError(f"unexpected op {op!r}")
            self.time += 1
