"""File system calls: open, read, write, lseek, dup, close, pipe, mkdir, stat, unlink, getdents, driver_control."""

from __future__ import annotations

import struct
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import PAGE_SIZE, Compute, Op, ReadMem, Store, WriteMem
from . import abi
from .driver import DeviceFile
from .file import DirFile, InodeFile, close_file
from .fs import FileSystemError
from .pipe import Pipe, PipeEnd

if TYPE_CHECKING:
    from .kernel import BootKernel

Gen = Generator[Op, Any, Any]


def fetch_path(k: BootKernel, addr: int) -> Gen:
    """Copy a NUL-terminated path in, a page piece at a time; None if it is too long or not text."""
    out = b""
    while len(out) < abi.PATH_MAX:
        a = addr + len(out)
        k.check_user_range(a, 1)
        chunk = yield ReadMem(a, min(64, PAGE_SIZE - (a & 0xFFF), abi.PATH_MAX - len(out)))
        nul = chunk.find(b"\0")
        if nul >= 0:
            try:
                return (out + chunk[:nul]).decode()
            except UnicodeDecodeError:
                return None
        out += chunk
    return None


def path_arg(k: BootKernel, addr: int) -> Gen:
    """The absolute path a call names at `addr`, or -ENAMETOOLONG / -ENOENT (not absolute)."""
    path = yield from fetch_path(k, addr)
    if path is None:
        return -abi.ENAMETOOLONG
    if not path.startswith("/"):
        return -abi.ENOENT
    return path


def sys_open(k: BootKernel, path_ptr: int, flags: int) -> Gen:
    yield Compute(k.costs.OPEN)
    path = yield from path_arg(k, path_ptr)
    if isinstance(path, int):
        return path
    p = k.sched.current.proc
    cloexec = bool(flags & abi.O_CLOEXEC)
    if path.startswith("/dev/"):
        driver = k.drivers.get(path[5:])
        if driver is None:
            return -abi.ENOENT
        f = DeviceFile(driver, k.caller())
        r = yield from driver.open(f)
        if r < 0:
            return r
        fd = p.files.install(f, cloexec)
        if fd < 0:
            yield from close_file(k, f)
        return fd
    mode = flags & abi.O_ACCMODE
    if mode == 3:
        return -abi.EINVAL
    fs = k.fs
    try:
        if fs.is_dir(path):
            if flags & abi.O_ACCMODE != abi.O_RDONLY:
                return -abi.EISDIR
            entries = [
                (n, abi.DT_DIR if fs.is_dir(path.rstrip("/") + "/" + n) else abi.DT_REG) for n in fs.listdir(path)
            ]
            return p.files.install(DirFile(entries), cloexec)
        node = fs.lookup(path)
        if node is not None and flags & abi.O_CREAT and flags & abi.O_EXCL:
            return -abi.EEXIST
        if node is None:
            if not flags & abi.O_CREAT:
                return -abi.ENOENT
            node = fs.create(path)
    except NotADirectoryError:
        return -abi.ENOTDIR
    except FileSystemError:
        return -abi.ENOENT
    writable = mode in (abi.O_WRONLY, abi.O_RDWR)
    if writable and flags & abi.O_TRUNC:
        node.data.clear()
    fd = p.files.install(InodeFile(node, mode != abi.O_WRONLY, writable, bool(flags & abi.O_APPEND)), cloexec)
    return fd


def _rw(k: BootKernel, fd: int, buf: int, n: int, write: bool) -> Gen:
    yield Compute(k.costs.FD_LOOKUP)
    f = k.sched.current.proc.files.get(fd)
    if f is None or not (f.writable if write else f.readable):
        return -abi.EBADF
    if n < 0:
        return -abi.EINVAL
    k.check_user_range(buf, n)
    yield Compute(k.costs.FILE_RW)
    if write:
        return (yield from f.write(k, buf, n))
    return (yield from f.read(k, buf, n))


def sys_read(k: BootKernel, fd: int, buf: int, n: int) -> Gen:
    return (yield from _rw(k, fd, buf, n, False))


def sys_write(k: BootKernel, fd: int, buf: int, n: int) -> Gen:
    return (yield from _rw(k, fd, buf, n, True))


def sys_lseek(k: BootKernel, fd: int, offset: int, whence: int) -> Gen:
    yield Compute(k.costs.FD_LOOKUP)
    f = k.sched.current.proc.files.get(fd)
    if f is None:
        return -abi.EBADF
    if not isinstance(f, InodeFile):  # pipes, the console, devices
        return -abi.ESPIPE
    yield Compute(k.costs.LSEEK)
    base = {abi.SEEK_SET: 0, abi.SEEK_CUR: f.offset, abi.SEEK_END: len(f.inode.data)}.get(whence)
    if base is None or base + offset < 0 or base + offset >= 1 << 31:
        return -abi.EINVAL
    f.offset = base + offset
    return f.offset


def sys_dup(k: BootKernel, fd: int) -> Gen:
    yield Compute(k.costs.FD_LOOKUP)
    files = k.sched.current.proc.files
    f = files.get(fd)
    if f is None:
        return -abi.EBADF
    yield Compute(k.costs.DUP)
    return files.install(f)  # a new descriptor of the same open file: one offset for both


def sys_close(k: BootKernel, fd: int) -> Gen:
    yield Compute(k.costs.FD_LOOKUP)
    f = k.sched.current.proc.files.remove(fd)
    if f is None:
        return -abi.EBADF
    yield from close_file(k, f)
    return 0


def sys_mkdir(k: BootKernel, path_ptr: int) -> Gen:
    yield Compute(k.costs.MKDIR)
    path = yield from path_arg(k, path_ptr)
    if isinstance(path, int):
        return path
    try:
        k.fs.mkdir(path)
    except FileExistsError:
        return -abi.EEXIST
    except NotADirectoryError:
        return -abi.ENOTDIR
    except (FileNotFoundError, FileSystemError):
        return -abi.ENOENT
    return 0


def sys_stat(k: BootKernel, path_ptr: int, buf: int) -> Gen:
    yield Compute(k.costs.STAT)
    k.check_user_range(buf, abi.STAT_SIZE)
    path = yield from path_arg(k, path_ptr)
    if isinstance(path, int):
        return path
    fs = k.fs
    try:
        if fs.is_dir(path):
            mode, size = abi.S_IFDIR | 0o755, 0
        else:
            node = fs.lookup(path)
            if node is None:
                return -abi.ENOENT
            mode, size = abi.S_IFREG | 0o644, len(node.data)
    except FileSystemError:
        return -abi.ENOENT
    yield WriteMem(buf, struct.pack("<2I", mode, size))
    return 0


def sys_unlink(k: BootKernel, path_ptr: int) -> Gen:
    yield Compute(k.costs.UNLINK)
    path = yield from path_arg(k, path_ptr)
    if isinstance(path, int):
        return path
    try:
        k.fs.unlink(path)
    except IsADirectoryError:
        return -abi.EISDIR
    except NotADirectoryError:
        return -abi.ENOTDIR
    except (FileNotFoundError, FileSystemError):
        return -abi.ENOENT
    return 0


def sys_getdents(k: BootKernel, fd: int, buf: int, n: int) -> Gen:
    yield Compute(k.costs.FD_LOOKUP)
    f = k.sched.current.proc.files.get(fd)
    if f is None:
        return -abi.EBADF
    if not isinstance(f, DirFile):
        return -abi.ENOTDIR
    if n < 0:
        return -abi.EINVAL
    k.check_user_range(buf, n)
    yield Compute(k.costs.GETDENTS)
    out = b""
    while f.pos < len(f.entries):
        name, kind = f.entries[f.pos]
        raw = name.encode() + b"\0"
        rec = struct.pack("<2I", abi.DIRENT_HEADER + (len(raw) + 3) // 4 * 4, kind) + raw.ljust(
            (len(raw) + 3) // 4 * 4, b"\0"
        )
        if len(out) + len(rec) > n:
            if not out:
                return -abi.EINVAL  # the buffer cannot hold one entry
            break
        yield Compute(k.costs.DIRENT)
        out += rec
        f.pos += 1
    if out:
        yield WriteMem(buf, out)
    return len(out)


def sys_pipe(k: BootKernel, fds_ptr: int) -> Gen:
    yield Compute(k.costs.PIPE_CREATE)
    k.check_user_range(fds_ptr, 8)
    files = k.sched.current.proc.files
    pipe = Pipe()
    r, w = PipeEnd(pipe, False), PipeEnd(pipe, True)
    rfd = files.install(r)
    wfd = files.install(w) if rfd >= 0 else -abi.EMFILE
    if wfd < 0:
        for fd in (rfd,) if rfd >= 0 else ():
            files.remove(fd)
        return -abi.EMFILE
    try:
        yield Store(fds_ptr, rfd)
        yield Store(fds_ptr + 4, wfd)
    except Exception:
        for fd in (rfd, wfd):
            yield from close_file(k, files.remove(fd))
        raise
    return 0


def sys_driver_control(k: BootKernel, fd: int, op: int, arg: int) -> Gen:
    yield Compute(k.costs.FD_LOOKUP)
    f = k.sched.current.proc.files.get(fd)
    if f is None:
        return -abi.EBADF
    if not isinstance(f, DeviceFile):
        return -abi.ENOTTY
    yield Compute(k.costs.DRIVER_CONTROL)
    result = yield from f.driver.control(f, k.caller(), op, arg)
    return result
