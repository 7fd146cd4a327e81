"""Pipes: a bounded kernel buffer with blocking reads and writes.

A read blocks while the pipe is empty and a writer remains, and returns 0 (end of
file) once none does. A write blocks while the buffer is full; with no reader left
it raises SIGPIPE and fails with EPIPE. Both sleeps are interruptible: a handled
signal ends them with EINTR (or the count moved so far).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import Op, ReadMem, WriteMem
from . import abi
from .file import File

if TYPE_CHECKING:
    from .kernel import BootKernel

Gen = Generator[Op, Any, Any]



class Pipe:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.readers = 0
        self.writers = 0


class PipeEnd(File):
    kind = "pipe"

    def __init__(self, pipe: Pipe, write: bool) -> None:
        super().__init__(readable=not write, writable=write)
        self.pipe = pipe
        if write:
            pipe.writers += 1
        else:
            pipe.readers += 1

    def read(self, k: BootKernel, buf: int, n: int) -> Gen:
        p = self.pipe
        while not p.buf:
            if p.writers == 0 or n == 0:
                return 0
            if (yield from k.sched.sleep((p, "r"), interruptible=True)):
                return -abi.EINTR
        data = bytes(p.buf[:n])
        yield WriteMem(buf, data)
        del p.buf[: len(data)]
        yield from k.sched.wake((p, "w"))
        return len(data)

    def write(self, k: BootKernel, buf: int, n: int) -> Gen:
        p = self.pipe
        done = 0
        while done < n:
            if p.readers == 0:
                k.signals.send(k.sched.current.proc, abi.SIGPIPE)
                return done or -abi.EPIPE
            room = abi.PIPE_BUF - len(p.buf)
            if room == 0:
                if (yield from k.sched.sleep((p, "w"), interruptible=True)):
                    return done or -abi.EINTR
                continue
            chunk = min(room, n - done)
            p.buf += yield ReadMem(buf + done, chunk)
            done += chunk
            yield from k.sched.wake((p, "r"))
        return done

    def close(self, k: BootKernel) -> Gen:
        p = self.pipe
        if self.writable:
            p.writers -= 1
            yield from k.sched.wake((p, "r"))
        else:
            p.readers -= 1
            yield from k.sched.wake((p, "w"))
