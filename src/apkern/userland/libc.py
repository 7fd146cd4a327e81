"""The C library: system-call wrappers and small helpers, as generator functions.

Use every function with `yield from`; a failed call raises `OSError(errno, strerror)`.
A system call is `Trap(SYSCALL, nr, *args)` with integer arguments; the kernel
returns a non-negative value or `-errno` (see `apkern.bootkernel.abi`).

Integer arguments: a register holds a number, and the kernels take nothing but a
plain `int` (anything else is EINVAL). libc therefore accepts any integer the way
Python does (`int` subclasses such as `signal.SIGKILL`, `signal.SIG_IGN` or an
`IntFlag`, and types with `__index__`) and passes plain ints on. Anything else
(a float, a str, None) raises `TypeError` naming the function and the argument,
in the program, before any instruction of the call. `bool` is refused where it
can only be a mistake (descriptors, pids, signal numbers, sizes, addresses,
flags) and taken as 0/1 where the argument is a value (exit statuses, thread
arguments and return values, a stored word), as `sys.exit(True)` is.

Per-thread memory: `ReadTP` gives the address of this thread's TLS_SIZE-byte local
storage. libc keeps its small scratch (status words, a path) in the first
SCRATCH_SIZE bytes and stages `write_bytes`, `read_bytes` and spawn blocks
through the rest (the staging buffer), so no call needs a heap.

Charged calls: getpid, gettid, waitpid, mmap, open, mkdir, stat, getdents, read,
write, close, lseek, dup, pipe, futex_wait and futex_wake take a keyword `spin=n`: with n > 0 the kernel
first spins n instructions and then makes the call, in one trap
(`SYS_SPIN_CALL`), so that a call replayed from a trace spends its measured
kernel time without a second call's entry and exit (`apkern replay`).

Static data: libc owns the first LIBC_DATA_SIZE bytes of the data segment
(DATA_BASE); the word at CRT0_WORD holds the code address of the crt0 this
process started under, which `spawn` passes on to its children. Programs may use
static data from PROGRAM_DATA on.
"""

from __future__ import annotations

import errno
import operator
import os
import re
import struct
from collections.abc import Callable, Generator
from typing import Any

from ..bootkernel import abi
from ..bootkernel.abi import SYSCALL
from ..hw.ops import (
    AtomicAdd,
    Call,
    CmpXchg,
    CodeAddr,
    Compute,
    Illegal,
    Load,
    Op,
    ReadMem,
    ReadTP,
    Store,
    Trap,
    WriteMem,
    Xchg,
)

Gen = Generator[Op, Any, Any]

# --- memory layout libc relies on ---------------------------------------------------
CRT0_WORD = abi.DATA_BASE  # crt0 stores its own code address here when it starts
LIBC_DATA_SIZE = 0x100  # libc's static data at the start of the data segment
PROGRAM_DATA = abi.DATA_BASE + LIBC_DATA_SIZE  # where a program's own static data may start
SCRATCH_SIZE = 256  # tls + 0 .. tls + 256: libc's per-thread scratch (status words, paths)
STAGING_OFFSET = SCRATCH_SIZE  # tls + 256 .. tls + TLS_SIZE: the staging buffer
STAGING_SIZE = abi.TLS_SIZE - SCRATCH_SIZE

_BIN_IMAGE = re.compile(rb"#!code 0x([0-9a-fA-F]{1,8})\n")
_BIN_IMAGE_MAX = 64  # a /bin file longer than this is not an image


def _error(err: int) -> OSError:
    return OSError(err, os.strerror(err))


def _s32(value: int) -> int:
    """A 32-bit word read from memory, as a signed int."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _int(func: str, name: str, value: Any, bool_ok: bool = False) -> int:
    """`value` as a plain int for argument `name` of libc's `func`; TypeError if it is not an integer."""
    if value.__class__ is int:
        return value  # the common case, unchanged
    if isinstance(value, bool) and not bool_ok:
        raise TypeError(f"libc.{func}(): argument {name!r} must be an integer, not bool")
    try:
        return operator.index(value)  # an int subclass becomes its plain value (its own __index__ is not called)
    except TypeError:
        raise TypeError(f"libc.{func}(): argument {name!r} must be an integer, not {type(value).__name__}") from None


def _code(func: str, name: str, value: Any) -> Callable[..., Any]:
    """`value` if it is callable (code whose address libc takes); TypeError otherwise."""
    if not callable(value):
        raise TypeError(f"libc.{func}(): argument {name!r} must be a generator function, not {type(value).__name__}")
    return value


def _pad4(n: int) -> int:
    return (n + 3) & ~3


# --- pure helpers (no machine needed) ---------------------------------------------------


def encode_spawn_block(main_addr: int, argv: list[str]) -> bytes:
    """The spawn block crt0 receives: words [main, argc], then per argument [length] + UTF-8 padded to 4."""
    if not 0 <= main_addr <= 0xFFFFFFFF:
        raise ValueError(f"code address {main_addr!r} out of range")
    parts = [struct.pack("<II", main_addr, len(argv))]
    for arg in argv:
        if not isinstance(arg, str):
            raise TypeError(f"argv items are str, not {type(arg).__name__}")
        raw = arg.encode()
        parts.append(struct.pack("<I", len(raw)) + raw.ljust(_pad4(len(raw)), b"\0"))
    return b"".join(parts)


def bin_image(main_addr: int) -> bytes:
    """The content of a /bin/NAME file for a program whose main is at `main_addr`."""
    return b"#!code 0x%08x\n" % main_addr


def parse_bin_image(data: bytes) -> int:
    """main's code address from a /bin file's content; raise OSError ENOEXEC if it is malformed."""
    m = _BIN_IMAGE.fullmatch(data)
    if m is None:
        raise _error(errno.ENOEXEC)
    return int(m.group(1), 16)


# --- the system call -------------------------------------------------------------


def syscall(nr: int, *args: int) -> Gen:
    """Trap into the kernel; return its non-negative result or raise OSError(-result).

    `nr` and `args` may be any integers (bool only among `args`, which libc cannot interpret).
    """
    words = [_int("syscall", "nr", nr)]
    words += [_int("syscall", f"args[{i}]", a, bool_ok=True) for i, a in enumerate(args)]
    rv = yield Trap(SYSCALL, *words)
    if rv < 0:
        raise _error(-rv)
    return rv


def _call(spin: int, nr: int, *args: int) -> Gen:
    """System call `nr(*args)`; with `spin` > 0, after the kernel has spun that many instructions, in the same trap."""
    if spin == 0:
        return (yield from syscall(nr, *args))
    return (yield from syscall(abi.SYS_SPIN_CALL, spin, nr, *args, *(0,) * (3 - len(args))))


# --- processes ---------------------------------------------------------------------


def getpid(*, spin: int = 0) -> Generator[Op, Any, int]:
    """This process's id."""
    spin = _int("getpid", "spin", spin)
    return (yield from _call(spin, abi.SYS_GETPID))


def gettid(*, spin: int = 0) -> Generator[Op, Any, int]:
    """This thread's id."""
    spin = _int("gettid", "spin", spin)
    return (yield from _call(spin, abi.SYS_GETTID))


def exit(status: int) -> Generator[Op, Any, None]:
    """End the process with `status` (True and False are 1 and 0, as for `sys.exit`); never returns."""
    yield from syscall(abi.SYS_EXIT, _int("exit", "status", status, bool_ok=True))
    while True:  # the kernel never returns from exit; if it did, crash
        yield Illegal()


def _crt0_address() -> Generator[Op, Any, int]:
    """The code address of the crt0 this process runs under (plain crt0 if none recorded one)."""
    entry = yield Load(CRT0_WORD)
    if entry == 0:
        from .crt0 import crt0  # a process started without crt0: children get the plain one

        entry = yield CodeAddr(crt0)
    return entry


def _program_address(program: str) -> Generator[Op, Any, int]:
    """main's code address from /bin/NAME (or from the path itself if it contains a slash)."""
    path = program if "/" in program else f"/bin/{program}"
    fd = yield from open(path, abi.O_RDONLY)
    try:
        data = yield from read_bytes(fd, _BIN_IMAGE_MAX + 1)
    finally:
        yield from close(fd)
    return parse_bin_image(data)


def spawn(program: Callable[..., Any] | str, argv: list[str]) -> Generator[Op, Any, int]:
    """Start `program` (a main function or a built-in program's name) in a new process; return its pid."""
    if isinstance(program, str):
        main_addr = yield from _program_address(program)
    else:
        main_addr = yield CodeAddr(_code("spawn", "program", program))
    block = encode_spawn_block(main_addr, list(argv))
    if len(block) > STAGING_SIZE:
        raise _error(errno.E2BIG)
    buf = (yield ReadTP()) + STAGING_OFFSET
    yield WriteMem(buf, block)
    entry = yield from _crt0_address()
    return (yield from syscall(abi.SYS_SPAWN, entry, buf, len(block)))


def waitpid(pid: int = -1, *, spin: int = 0) -> Generator[Op, Any, int]:
    """Wait for a child (any child if -1) to end; return its exit status (-SIG if a signal killed it)."""
    spin = _int("waitpid", "spin", spin)
    pid = _int("waitpid", "pid", pid)
    status_ptr = yield ReadTP()
    yield from _call(spin, abi.SYS_WAITPID, pid, status_ptr)
    return _s32((yield Load(status_ptr)))


def kill(pid: int, sig: int) -> Generator[Op, Any, None]:
    """Send signal `sig` (a number or a `signal.Signals`) to process `pid`."""
    yield from syscall(abi.SYS_KILL, _int("kill", "pid", pid), _int("kill", "sig", sig))


def sigaction(sig: int, handler: Callable[..., Any] | int) -> Generator[Op, Any, int]:
    """Set the handler of `sig`; return the previous one (a code address, SIG_DFL or SIG_IGN).

    `handler` is a generator function `handler(sig)`, or an integer: SIG_DFL, SIG_IGN
    (`signal.SIG_DFL` and `signal.SIG_IGN` have the same values) or a code address a
    previous call returned.
    """
    sig = _int("sigaction", "sig", sig)
    if callable(handler):
        addr = yield CodeAddr(handler)
    elif isinstance(handler, bool) or not hasattr(handler, "__index__"):
        what = type(handler).__name__
        raise TypeError(f"libc.sigaction(): argument 'handler' must be a generator function or an integer, not {what}")
    else:
        addr = _int("sigaction", "handler", handler)
    return (yield from syscall(abi.SYS_SIGACTION, sig, addr))


def yield_() -> Generator[Op, Any, None]:
    """Give up the processor to another ready thread."""
    yield from syscall(abi.SYS_YIELD)


def sleep(n: int) -> Generator[Op, Any, None]:
    """Sleep for `n` instructions of machine time."""
    yield from syscall(abi.SYS_SLEEP, _int("sleep", "n", n))


# --- threads ---------------------------------------------------------------------------


def _thread_start(func_addr: int, arg: int) -> Gen:
    """Entry of every new thread: call func(arg) and end the thread with its return value.

    `arg` reached this thread as a register (the uniprocessor kernel) or as a word of the
    application kernel's message (unsigned): func gets it as a signed 32-bit value either way.
    """
    rv = yield Call(func_addr, _s32(arg))
    yield from thread_exit(0 if rv is None else rv)


def thread_create(func: Callable[..., Any], arg: int) -> Generator[Op, Any, int]:
    """Start `func(arg)` (a generator function) in a new thread of this process; return its tid.

    `func` receives `arg` as a signed 32-bit int (so 0xFFFFFFFF arrives as -1, as `thread_join`
    returns values); its return value (None for 0) is the thread's exit value.
    """
    func = _code("thread_create", "func", func)
    arg = _int("thread_create", "arg", arg, bool_ok=True)
    entry = yield CodeAddr(_thread_start)
    func_addr = yield CodeAddr(func)
    return (yield from syscall(abi.SYS_THREAD_CREATE, entry, func_addr, arg))


def thread_join(tid: int) -> Generator[Op, Any, int]:
    """Wait for thread `tid` to end; return its return value."""
    tid = _int("thread_join", "tid", tid)
    retval_ptr = yield ReadTP()
    yield from syscall(abi.SYS_THREAD_JOIN, tid, retval_ptr)
    return _s32((yield Load(retval_ptr)))


def thread_exit(value: int) -> Generator[Op, Any, None]:
    """End the calling thread with `value` (an integer; True and False are 1 and 0); never returns."""
    yield from syscall(abi.SYS_THREAD_EXIT, _int("thread_exit", "value", value, bool_ok=True))
    while True:
        yield Illegal()


# --- memory ------------------------------------------------------------------------------


def mmap(length: int, *, spin: int = 0) -> Generator[Op, Any, int]:
    """Map `length` bytes of zero-filled memory; return its address."""
    spin = _int("mmap", "spin", spin)
    return (yield from _call(spin, abi.SYS_MMAP, _int("mmap", "length", length)))


def munmap(addr: int, length: int) -> Generator[Op, Any, None]:
    """Unmap `length` bytes at `addr`."""
    yield from syscall(abi.SYS_MUNMAP, _int("munmap", "addr", addr), _int("munmap", "length", length))


def mlock(addr: int, length: int) -> Generator[Op, Any, None]:
    """Bring `length` bytes at `addr` into memory and keep them there (the swapper leaves them)."""
    yield from syscall(abi.SYS_MLOCK, _int("mlock", "addr", addr), _int("mlock", "length", length))


def munlock(addr: int, length: int) -> Generator[Op, Any, None]:
    """Let the swapper evict `length` bytes at `addr` again."""
    yield from syscall(abi.SYS_MUNLOCK, _int("munlock", "addr", addr), _int("munlock", "length", length))


def load(addr: int) -> Generator[Op, Any, int]:
    """Read the 32-bit word at `addr`."""
    return (yield Load(_int("load", "addr", addr)))


def store(addr: int, value: int) -> Generator[Op, Any, None]:
    """Write the 32-bit word `value` at `addr` (True and False are 1 and 0)."""
    yield Store(_int("store", "addr", addr), _int("store", "value", value, bool_ok=True))


def read_mem(addr: int, n: int) -> Generator[Op, Any, bytes]:
    """Read `n` bytes at `addr`."""
    return (yield ReadMem(_int("read_mem", "addr", addr), _int("read_mem", "n", n)))


def write_mem(addr: int, data: bytes) -> Generator[Op, Any, None]:
    """Write `data` at `addr`."""
    yield WriteMem(_int("write_mem", "addr", addr), data)


# --- files ---------------------------------------------------------------------------------


def open(path: str, flags: int = abi.O_RDONLY, *, spin: int = 0) -> Generator[Op, Any, int]:
    """Open `path`; return a file descriptor.

    `flags` are `abi.O_*` (the host's `os.O_*` values) combined with `|`, a plain int or an `IntFlag`.
    """
    spin = _int("open", "spin", spin)
    flags = _int("open", "flags", flags)
    path_ptr = yield from _stage_path(path)
    return (yield from _call(spin, abi.SYS_OPEN, path_ptr, flags))


def _stage_path(path: str) -> Generator[Op, Any, int]:
    """Copy `path`, NUL-terminated, to this thread's scratch area; return its address."""
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise _error(errno.EINVAL)
    if len(raw) > abi.PATH_MAX - 1:
        raise _error(errno.ENAMETOOLONG)
    path_ptr = yield ReadTP()
    yield WriteMem(path_ptr, raw + b"\0")
    return path_ptr


def mkdir(path: str, *, spin: int = 0) -> Generator[Op, Any, None]:
    """Make the directory `path` (its parent must exist)."""
    spin = _int("mkdir", "spin", spin)
    yield from _call(spin, abi.SYS_MKDIR, (yield from _stage_path(path)))


def stat(path: str, *, spin: int = 0) -> Generator[Op, Any, tuple[int, int]]:
    """(mode, size) of `path`; `stat.S_ISDIR(mode)` tells a directory."""
    spin = _int("stat", "spin", spin)
    path_ptr = yield from _stage_path(path)
    buf = path_ptr + abi.PATH_MAX
    yield from _call(spin, abi.SYS_STAT, path_ptr, buf)
    return struct.unpack("<2I", (yield ReadMem(buf, abi.STAT_SIZE)))


def getdents(fd: int, n: int = 1024, *, spin: int = 0) -> Generator[Op, Any, list[tuple[str, int]]]:
    """The next directory entries of `fd` (an open directory) as (name, DT_REG or DT_DIR); [] at the end."""
    spin = _int("getdents", "spin", spin)
    fd, n = _int("getdents", "fd", fd), _int("getdents", "n", n)
    if not 0 < n <= STAGING_SIZE:
        raise _error(errno.EINVAL)
    buf = (yield ReadTP()) + STAGING_OFFSET
    got = yield from _call(spin, abi.SYS_GETDENTS, fd, buf, n)
    data = (yield ReadMem(buf, got)) if got else b""
    out, p = [], 0
    while p < len(data):
        reclen, kind = struct.unpack_from("<2I", data, p)
        out.append((data[p + abi.DIRENT_HEADER : p + reclen].split(b"\0", 1)[0].decode(), kind))
        p += reclen
    return out


def listdir(path: str) -> Generator[Op, Any, list[str]]:
    """The names in directory `path`, in the order the kernel gives them."""
    fd = yield from open(path)
    names: list[str] = []
    try:
        while batch := (yield from getdents(fd)):
            names += [name for name, _ in batch]
    finally:
        yield from close(fd)
    return names


def read(fd: int, buf_addr: int, n: int, *, spin: int = 0) -> Generator[Op, Any, int]:
    """Read up to `n` bytes from `fd` into user memory at `buf_addr`; return the count (0 at end of file)."""
    spin = _int("read", "spin", spin)
    fd, buf_addr, n = _int("read", "fd", fd), _int("read", "buf_addr", buf_addr), _int("read", "n", n)
    return (yield from _call(spin, abi.SYS_READ, fd, buf_addr, n))


def write(fd: int, buf_addr: int, n: int, *, spin: int = 0) -> Generator[Op, Any, int]:
    """Write up to `n` bytes from user memory at `buf_addr` to `fd`; return the count written."""
    spin = _int("write", "spin", spin)
    fd, buf_addr, n = _int("write", "fd", fd), _int("write", "buf_addr", buf_addr), _int("write", "n", n)
    return (yield from _call(spin, abi.SYS_WRITE, fd, buf_addr, n))


def close(fd: int, *, spin: int = 0) -> Generator[Op, Any, None]:
    """Close `fd`."""
    spin = _int("close", "spin", spin)
    yield from _call(spin, abi.SYS_CLOSE, _int("close", "fd", fd))


def lseek(fd: int, offset: int, whence: int = os.SEEK_SET, *, spin: int = 0) -> Generator[Op, Any, int]:
    """Move `fd`'s offset (`os.SEEK_SET`, `SEEK_CUR` or `SEEK_END`); return the new offset."""
    spin = _int("lseek", "spin", spin)
    fd, offset, whence = _int("lseek", "fd", fd), _int("lseek", "offset", offset), _int("lseek", "whence", whence)
    return (yield from _call(spin, abi.SYS_LSEEK, fd, offset, whence))


def dup(fd: int, *, spin: int = 0) -> Generator[Op, Any, int]:
    """A new descriptor (the lowest free one) for `fd`'s open file: they share one offset."""
    spin = _int("dup", "spin", spin)
    return (yield from _call(spin, abi.SYS_DUP, _int("dup", "fd", fd)))


def pipe(*, spin: int = 0) -> Generator[Op, Any, tuple[int, int]]:
    """Create a pipe; return (read end, write end)."""
    spin = _int("pipe", "spin", spin)
    fds_ptr = yield ReadTP()
    yield from _call(spin, abi.SYS_PIPE, fds_ptr)
    rfd = yield Load(fds_ptr)
    wfd = yield Load(fds_ptr + 4)
    return rfd, wfd


def _write_all(fd: int, buf: int, n: int) -> Generator[Op, Any, None]:
    """Write `n` bytes at `buf` to `fd`, looping over short writes."""
    done = 0
    while done < n:
        k = yield from write(fd, buf + done, n - done)
        if k == 0:
            raise _error(errno.EIO)  # a write that makes no progress would loop forever
        done += k


def write_bytes(fd: int, data: bytes) -> Generator[Op, Any, int]:
    """Write all of `data` to `fd`, staged through this thread's buffer; return the count written."""
    fd = _int("write_bytes", "fd", fd)
    data = bytes(data)
    buf = (yield ReadTP()) + STAGING_OFFSET
    for off in range(0, len(data), STAGING_SIZE):
        chunk = data[off : off + STAGING_SIZE]
        yield WriteMem(buf, chunk)
        yield from _write_all(fd, buf, len(chunk))
    return len(data)


def read_bytes(fd: int, n: int) -> Generator[Op, Any, bytes]:
    """Read up to `n` bytes from `fd`; stops early at a short read or end of file."""
    fd, n = _int("read_bytes", "fd", fd), _int("read_bytes", "n", n)
    buf = (yield ReadTP()) + STAGING_OFFSET
    parts: list[bytes] = []
    left = n
    while left > 0:
        want = min(left, STAGING_SIZE)
        k = yield from read(fd, buf, want)
        if k > 0:
            parts.append((yield ReadMem(buf, k)))
        left -= k
        if k < want:
            break
    return b"".join(parts)


def print(text: str) -> Generator[Op, Any, int]:
    """Write `text` to standard output (fd 1)."""
    return (yield from write_bytes(1, text.encode()))


# --- the CPU ---------------------------------------------------------------------------


def compute(n: int) -> Generator[Op, Any, None]:
    """`n` instructions of plain user work; ValueError if `n` is negative (no instruction takes back time)."""
    n = _int("compute", "n", n)
    if n < 0:
        raise ValueError(f"libc.compute(): argument 'n' must not be negative, not {n}")
    yield Compute(n)


def spin(n: int) -> Generator[Op, Any, None]:
    """The benchmark system call: the kernel spins `n` instructions."""
    yield from syscall(abi.SYS_SPIN, _int("spin", "n", n))


def illegal() -> Generator[Op, Any, None]:
    """Execute an undefined instruction (`ud2`): raises #UD, normally fatal (SIGILL)."""
    yield Illegal()


# --- futexes and what is built on them (as SPLASH-2's macros build on pthreads) -------------------------


def futex_wait(addr: int, value: int, *, spin: int = 0) -> Generator[Op, Any, bool]:
    """Sleep while the word at `addr` holds `value`; False if it held another value already."""
    spin = _int("futex_wait", "spin", spin)
    addr, value = _int("futex_wait", "addr", addr), _int("futex_wait", "value", value)
    try:
        yield from _call(spin, abi.SYS_FUTEX, addr, abi.FUTEX_WAIT, value)
    except OSError as e:
        if e.errno == errno.EAGAIN:
            return False
        raise
    return True


def futex_wake(addr: int, n: int = 1, *, spin: int = 0) -> Generator[Op, Any, int]:
    """Wake up to `n` threads sleeping on the word at `addr`; return how many woke."""
    spin = _int("futex_wake", "spin", spin)
    addr, n = _int("futex_wake", "addr", addr), _int("futex_wake", "n", n)
    return (yield from _call(spin, abi.SYS_FUTEX, addr, abi.FUTEX_WAKE, n))


class Mutex:
    """A mutex in one word of user memory at `addr` (zero: unlocked), Drepper's three-state futex mutex.

    0 unlocked, 1 locked, 2 locked with (maybe) sleepers: an uncontended lock and unlock make no system call.
    """

    def __init__(self, addr: int) -> None:
        self.addr = _int("Mutex", "addr", addr)

    def lock(self) -> Generator[Op, Any, None]:
        c = yield CmpXchg(self.addr, 0, 1)
        if c == 0:
            return
        if c != 2:
            c = yield Xchg(self.addr, 2)
        while c != 0:
            try:
                yield from futex_wait(self.addr, 2)
            except OSError as e:  # a signal: look again
                if e.errno != errno.EINTR:
                    raise
            c = yield Xchg(self.addr, 2)

    def unlock(self) -> Generator[Op, Any, None]:
        if (yield AtomicAdd(self.addr, -1)) != 1:  # there may be sleepers
            yield Store(self.addr, 0)
            yield from futex_wake(self.addr, 1)


class Condition:
    """A condition variable: a sequence word at `addr`, bumped by every signal."""

    def __init__(self, addr: int) -> None:
        self.addr = _int("Condition", "addr", addr)

    def wait(self, mutex: Mutex) -> Generator[Op, Any, None]:
        """Release `mutex`, sleep until signalled (or spuriously, as POSIX allows), take `mutex` again."""
        seq = yield Load(self.addr)
        yield from mutex.unlock()
        try:
            yield from futex_wait(self.addr, seq)
        except OSError as e:
            if e.errno != errno.EINTR:
                raise
        yield from mutex.lock()

    def signal(self) -> Generator[Op, Any, None]:
        yield AtomicAdd(self.addr, 1)
        yield from futex_wake(self.addr, 1)

    def broadcast(self) -> Generator[Op, Any, None]:
        yield AtomicAdd(self.addr, 1)
        yield from futex_wake(self.addr, 0x7FFFFFFF)


class Barrier:
    """A barrier for `n` threads in three words at `addr`: threads arrived, generation, n.

    Call `init` once before any thread waits.
    """

    def __init__(self, addr: int, n: int) -> None:
        self.addr = _int("Barrier", "addr", addr)
        self.n = _int("Barrier", "n", n)
        if self.n < 1:
            raise ValueError(f"a barrier is for at least one thread, not {n}")

    def init(self) -> Generator[Op, Any, None]:
        yield WriteMem(self.addr, struct.pack("<3I", 0, 0, self.n))

    def wait(self) -> Generator[Op, Any, bool]:
        """Wait until all `n` have arrived; True in exactly one of them (the last to arrive)."""
        gen_addr = self.addr + 4
        gen = yield Load(gen_addr)
        if (yield AtomicAdd(self.addr, 1)) + 1 == self.n:
            yield Store(self.addr, 0)
            yield AtomicAdd(gen_addr, 1)
            yield from futex_wake(gen_addr, 0x7FFFFFFF)
            return True
        while (yield Load(gen_addr)) == gen:
            try:
                yield from futex_wait(gen_addr, gen)
            except OSError as e:
                if e.errno != errno.EINTR:
                    raise
        return False
