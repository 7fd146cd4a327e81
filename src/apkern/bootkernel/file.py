"""Open files and file-descriptor tables.

A `File` is an open file description, shared by every descriptor that refers to
it (across processes after spawn); its `close` runs when the last reference goes,
which for a device is the driver's release callback. Data moves between the
kernel and user memory only through `ReadMem`/`WriteMem` ops at user addresses,
so a bad buffer faults and becomes EFAULT.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import Compute, Op, ReadMem, WriteMem
from . import abi
from .fs import Inode

if TYPE_CHECKING:
    from .kernel import BootKernel

Gen = Generator[Op, Any, Any]
MAX_FDS = 64


class File:
    """An open file description."""

    kind = "file"

    def __init__(self, readable: bool, writable: bool) -> None:
        self.readable = readable
        self.writable = writable
        self.refs = 0

    def read(self, k: BootKernel, buf: int, n: int) -> Gen:
        return -abi.EINVAL
        yield

    def write(self, k: BootKernel, buf: int, n: int) -> Gen:
        return -abi.EINVAL
        yield

    def flush(self, k: BootKernel) -> Gen:
        """One descriptor of this file is being closed by the current process."""
        return
        yield

    def close(self, k: BootKernel) -> Gen:
        """The last descriptor is gone."""
        return
        yield


class InodeFile(File):
    """A regular file of the in-memory file system, with its own offset."""

    kind = "inode"

    def __init__(self, inode: Inode, readable: bool, writable: bool, append: bool) -> None:
        super().__init__(readable, writable)
        self.inode = inode
        self.append = append
        self.offset = 0

    def read(self, k: BootKernel, buf: int, n: int) -> Gen:
        data = bytes(self.inode.data[self.offset : self.offset + n])
        if data:
            yield WriteMem(buf, data)
        self.offset += len(data)
        return len(data)

    def write(self, k: BootKernel, buf: int, n: int) -> Gen:
        if not n:
            return 0
        data = yield ReadMem(buf, n)
        d = self.inode.data
        if self.append:
            self.offset = len(d)
        if self.offset > len(d):
            d.extend(bytes(self.offset - len(d)))
        d[self.offset : self.offset + n] = data
        self.offset += n
        return n


class DirFile(File):
    """An open directory: its entries as they were at open, read out by getdents; read and write refuse."""

    kind = "dir"

    def __init__(self, entries: list[tuple[str, int]]) -> None:
        super().__init__(readable=True, writable=False)
        self.entries = entries  # (name, DT_REG or DT_DIR)
        self.pos = 0

    def read(self, k: BootKernel, buf: int, n: int) -> Gen:
        return -abi.EISDIR
        yield


class ConsoleFile(File):
    """Standard input, output and error: reads see end of file, writes go to the console log."""

    kind = "console"

    def __init__(self, fd: int) -> None:
        super().__init__(readable=fd == 0, writable=fd != 0)
        self.fd = fd

    def read(self, k: BootKernel, buf: int, n: int) -> Gen:
        return 0
        yield

    def write(self, k: BootKernel, buf: int, n: int) -> Gen:
        if not n:
            return 0
        data = yield ReadMem(buf, n)
        k.console.write(k.sched.current.proc.pid, self.fd, data)
        return n


class FileTable:
    """A process's descriptors: fd -> (file, close-on-spawn)."""

    def __init__(self) -> None:
        self.fds: dict[int, tuple[File, bool]] = {}

    def install(self, f: File, cloexec: bool = False) -> int:
        for fd in range(MAX_FDS):
            if fd not in self.fds:
                self.fds[fd] = (f, cloexec)
                f.refs += 1
                return fd
        return -abi.EMFILE

    def get(self, fd: int) -> File | None:
        entry = self.fds.get(fd)
        return entry[0] if entry else None

    def inherit(self) -> FileTable:
        """The table a spawned child starts with: every descriptor not marked close-on-spawn."""
        child = FileTable()
        for fd, (f, cloexec) in self.fds.items():
            if not cloexec:
                child.fds[fd] = (f, False)
                f.refs += 1
        return child

    def remove(self, fd: int) -> File | None:
        entry = self.fds.pop(fd, None)
        if entry is None:
            return None
        entry[0].refs -= 1
        return entry[0]


def close_file(k: BootKernel, f: File) -> Gen:
    """Drop one reference (already removed from a table); the last one closes the file."""
    yield Compute(k.costs.CLOSE)
    yield from f.flush(k)
    if f.refs == 0:
        yield from f.close(k)
