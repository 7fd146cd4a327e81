"""The built-in programs: each a generator function `main(argv) -> exit status`.

They reach the kernel only through libc, print deterministic text to fd 1 (errors
to fd 2) and run unmodified on either kernel. `PROGRAMS` maps a name to its main;
the system installs each as `/bin/NAME` (see `bin_files`) so `spawn(NAME, argv)`
finds it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Generator
from typing import Any

from ..bootkernel import abi
from ..hw.memory import PAGE_SIZE
from ..hw.ops import Op, Rdtsc, ReadTP
from . import libc

Main = Callable[[list[str]], Generator[Op, Any, int]]
STDOUT = 1
STDERR = 2


def _say(fd: int, text: str) -> Generator[Op, Any, None]:
    """Write `text` to `fd`."""
    yield from libc.write_bytes(fd, text.encode())


class _Usage(Exception):
    """A bad command line; the program prints its usage and exits with status 2."""


def _int_arg(argv: list[str], i: int, default: int, minimum: int = 0) -> int:
    """argv[i] as an int at least `minimum` (default when absent); raise _Usage otherwise."""
    if len(argv) <= i:
        return default
    try:
        value = int(argv[i], 0)
    except ValueError:
        raise _Usage from None
    if value < minimum:
        raise _Usage
    return value


def _usage(name: str) -> Generator[Op, Any, int]:
    """Print the usage line of program `name` to fd 2; return status 2."""
    yield from _say(STDERR, f"usage: {USAGE[name]}\n")
    return 2


# --- hello, cat, wc ------------------------------------------------------------------------


def hello(argv: list[str]) -> Generator[Op, Any, int]:
    """Print a greeting."""
    yield from libc.print("hello, world\n")
    return 0


def _copy_fd(fd: int, out: int) -> Generator[Op, Any, None]:
    """Copy `fd` to `out` until end of file through libc's staging buffer, as `cat` does."""
    buf = (yield ReadTP()) + libc.STAGING_OFFSET
    while True:
        n = yield from libc.read(fd, buf, libc.STAGING_SIZE)
        if n == 0:
            return
        done = 0
        while done < n:
            k = yield from libc.write(out, buf + done, n - done)
            if k == 0:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            done += k


def cat(argv: list[str]) -> Generator[Op, Any, int]:
    """Copy each FILE to standard output."""
    if len(argv) < 2:
        return (yield from _usage("cat"))
    status = 0
    for name in argv[1:]:
        try:
            fd = yield from libc.open(name, abi.O_RDONLY)
        except OSError as e:
            yield from _say(STDERR, f"cat: {name}: {e.strerror}\n")
            status = 1
            continue
        try:
            yield from _copy_fd(fd, STDOUT)
        except OSError as e:
            yield from _say(STDERR, f"cat: {name}: {e.strerror}\n")
            status = 1
        finally:
            yield from libc.close(fd)
    return status


def _count(data: bytes, in_word: bool) -> tuple[int, int, bool]:
    """(newlines, words started, still inside a word) for a chunk of text, continuing from `in_word`."""
    words = 0
    for b in data:
        space = b in b" \t\n\v\f\r"
        if not space and not in_word:
            words += 1
        in_word = not space
    return data.count(b"\n"), words, in_word


def wc(argv: list[str]) -> Generator[Op, Any, int]:
    """Print the line, word and byte counts of each FILE (and a total for several)."""
    if len(argv) < 2:
        return (yield from _usage("wc"))
    status = 0
    total = [0, 0, 0]
    for name in argv[1:]:
        try:
            fd = yield from libc.open(name, abi.O_RDONLY)
        except OSError as e:
            yield from _say(STDERR, f"wc: {name}: {e.strerror}\n")
            status = 1
            continue
        lines = words = size = 0
        in_word = False
        try:
            while True:
                chunk = yield from libc.read_bytes(fd, libc.STAGING_SIZE)
                if not chunk:
                    break
                yield from libc.compute(len(chunk))  # the counting loop: one instruction per byte
                nl, nw, in_word = _count(chunk, in_word)
                lines, words, size = lines + nl, words + nw, size + len(chunk)
        except OSError as e:
            yield from _say(STDERR, f"wc: {name}: {e.strerror}\n")
            status = 1
            continue
        finally:
            yield from libc.close(fd)
        total = [total[0] + lines, total[1] + words, total[2] + size]
        yield from libc.print(f"{lines} {words} {size} {name}\n")
    if len(argv) > 2:
        yield from libc.print(f"{total[0]} {total[1]} {total[2]} total\n")
    return status


# --- pipeline -----------------------------------------------------------------------------


def pipeline(argv: list[str]) -> Generator[Op, Any, int]:
    """Send N lines from a child through a pipe and count them in the parent."""
    try:
        if len(argv) >= 2 and argv[1] == "--child":
            if len(argv) != 4:
                raise _Usage
            wfd, n = _int_arg(argv, 2, 0), _int_arg(argv, 3, 0)
            for i in range(n):
                yield from libc.write_bytes(wfd, f"line {i}\n".encode())
            yield from libc.close(wfd)
            return 0
        if len(argv) > 2:
            raise _Usage
        n = _int_arg(argv, 1, 20)
    except _Usage:
        return (yield from _usage("pipeline"))
    rfd, wfd = yield from libc.pipe()
    pid = yield from libc.spawn("pipeline", ["pipeline", "--child", str(wfd), str(n)])
    yield from libc.close(wfd)  # else the read end never sees end of file
    received = b""
    while True:
        chunk = yield from libc.read_bytes(rfd, abi.PIPE_BUF)
        if not chunk:
            break
        received += chunk
    yield from libc.close(rfd)
    status = yield from libc.waitpid(pid)
    lines = received.count(b"\n")
    yield from libc.print(f"pipeline: received {lines} lines, {len(received)} bytes, child exit {status}\n")
    return 0 if status == 0 else 1


# --- pagetouch ------------------------------------------------------------------------------


def _pattern(page: int) -> int:
    """The word written at the start of page `page` (its complement goes at the end)."""
    return (page * 2654435761) & 0xFFFFFFFF


def pagetouch(argv: list[str]) -> Generator[Op, Any, int]:
    """Map PAGES pages, check they are zero, write a pattern into each and read it back."""
    try:
        if len(argv) > 2:
            raise _Usage
        pages = _int_arg(argv, 1, 64, minimum=1)
    except _Usage:
        return (yield from _usage("pagetouch"))
    length = pages * PAGE_SIZE
    try:
        base = yield from libc.mmap(length)
    except OSError as e:
        yield from _say(STDERR, f"pagetouch: cannot map {pages} pages: {e.strerror}\n")
        return 1
    for p in range(pages):
        data = yield from libc.read_mem(base + p * PAGE_SIZE, PAGE_SIZE)
        if data.count(0) != PAGE_SIZE:
            yield from libc.print(f"pagetouch: page {p} at {base + p * PAGE_SIZE:#x} is not zero-filled\n")
            return 1
    for p in range(pages):
        page = base + p * PAGE_SIZE
        yield from libc.store(page, _pattern(p))
        yield from libc.store(page + PAGE_SIZE - 4, _pattern(p) ^ 0xFFFFFFFF)
    for p in range(pages):
        page = base + p * PAGE_SIZE
        for addr, want in ((page, _pattern(p)), (page + PAGE_SIZE - 4, _pattern(p) ^ 0xFFFFFFFF)):
            got = yield from libc.load(addr)
            if got != want:
                yield from libc.print(f"pagetouch: mismatch at {addr:#x}: read {got:#010x}, wrote {want:#010x}\n")
                return 1
    yield from libc.munmap(base, length)
    yield from libc.print(f"pagetouch: {pages} pages ok\n")
    return 0


# --- signals ------------------------------------------------------------------------------

# The program's static data (C: `static volatile sig_atomic_t caught, last;`), per process.
_SIG_CAUGHT = libc.PROGRAM_DATA
_SIG_LAST = libc.PROGRAM_DATA + 4


def _on_signal(sig: int) -> Generator[Op, Any, None]:
    """Signal handler: count the signal and remember its number."""
    caught = yield from libc.load(_SIG_CAUGHT)
    yield from libc.store(_SIG_CAUGHT, caught + 1)
    yield from libc.store(_SIG_LAST, sig)


def _wait_for_handler(count: int) -> Generator[Op, Any, bool]:
    """Give a pending handler a few chances to run; true once `count` signals were caught."""
    for _ in range(50):
        if (yield from libc.load(_SIG_CAUGHT)) >= count:
            return True
        yield from libc.yield_()
    return (yield from libc.load(_SIG_CAUGHT)) >= count


def _signals_child(argv: list[str]) -> Generator[Op, Any, int]:
    """The helper children of `signals`: --child PID (signal PID later) or --loop (run until killed)."""
    if argv[1] == "--loop":
        while True:
            yield from libc.compute(1000)
    if len(argv) != 3:
        raise _Usage
    parent = _int_arg(argv, 2, 0, minimum=1)
    yield from libc.compute(20000)
    yield from libc.kill(parent, abi.SIGUSR1)
    return 0


def signals(argv: list[str]) -> Generator[Op, Any, int]:
    """Check signal delivery: a handler, EINTR on a blocked read, and SIGKILL of a running child."""
    try:
        if len(argv) >= 2 and argv[1] in ("--child", "--loop"):
            return (yield from _signals_child(argv))
        if len(argv) > 1:
            raise _Usage
    except _Usage:
        return (yield from _usage("signals"))

    # 1. a handler runs for a signal sent to ourselves
    yield from libc.store(_SIG_CAUGHT, 0)
    yield from libc.sigaction(abi.SIGUSR1, _on_signal)
    me = yield from libc.getpid()
    yield from libc.kill(me, abi.SIGUSR1)
    if not (yield from _wait_for_handler(1)):
        yield from libc.print("signals: handler did not run\n")
        return 1
    last = yield from libc.load(_SIG_LAST)
    yield from libc.print(f"signals: handler ran for signal {last}\n")

    # 2. a signal from a child interrupts a read blocked on an empty pipe
    rfd, wfd = yield from libc.pipe()
    child = yield from libc.spawn("signals", ["signals", "--child", str(me)])
    buf = (yield ReadTP()) + libc.STAGING_OFFSET
    try:
        n = yield from libc.read(rfd, buf, 1)
        yield from libc.print(f"signals: read returned {n} instead of failing with EINTR\n")
        return 1
    except OSError as e:
        if e.errno != abi.EINTR:
            yield from libc.print(f"signals: read failed with {e.strerror} instead of EINTR\n")
            return 1
    yield from libc.print("signals: read interrupted: EINTR\n")
    yield from libc.close(rfd)
    yield from libc.close(wfd)
    status = yield from libc.waitpid(child)
    if status != 0:
        yield from libc.print(f"signals: signalling child exited with {status}\n")
        return 1

    # 3. SIGKILL ends a child that is running, and waitpid reports it
    child = yield from libc.spawn("signals", ["signals", "--loop"])
    yield from libc.sleep(20000)  # let it get going
    yield from libc.kill(child, abi.SIGKILL)
    status = yield from libc.waitpid(child)
    if status != -abi.SIGKILL:
        yield from libc.print(f"signals: killed child ended with status {status}\n")
        return 1
    yield from libc.print(f"signals: child killed by signal {-status}\n")
    return 0


# --- threads ------------------------------------------------------------------------------


def _worker(slot: int) -> Generator[Op, Any, int]:
    """Thread body: read its number i from its slot, work, store and return i*i."""
    i = yield from libc.load(slot)
    yield from libc.compute(1000 * i)
    yield from libc.store(slot, i * i)
    return i * i


def threads(argv: list[str]) -> Generator[Op, Any, int]:
    """Start N threads sharing a mapped array, join them and check their results."""
    try:
        if len(argv) > 2:
            raise _Usage
        n = _int_arg(argv, 1, 4, minimum=1)
    except _Usage:
        return (yield from _usage("threads"))
    length = (4 * n + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
    try:
        array = yield from libc.mmap(length)
    except OSError as e:
        yield from _say(STDERR, f"threads: cannot map an array of {n} words: {e.strerror}\n")
        return 1
    tids = []
    for i in range(n):
        yield from libc.store(array + 4 * i, i + 1)
        try:
            tids.append((yield from libc.thread_create(_worker, array + 4 * i)))
        except OSError as e:
            yield from _say(STDERR, f"threads: cannot start thread {i}: {e.strerror}\n")
            for tid in tids:  # the ones started still finish
                yield from libc.thread_join(tid)
            return 1
    total = 0
    for i, tid in enumerate(tids):
        rv = yield from libc.thread_join(tid)
        stored = yield from libc.load(array + 4 * i)
        want = (i + 1) * (i + 1)
        if rv != want or stored != want:
            yield from libc.print(f"threads: thread {i} returned {rv} and stored {stored}, expected {want}\n")
            return 1
        total += rv
    yield from libc.munmap(array, length)
    yield from libc.print(f"threads: {n} threads joined, sum {total}\n")
    return 0


# --- fatal exceptions --------------------------------------------------------------------------


def segv(argv: list[str]) -> Generator[Op, Any, int]:
    """Load from an unmapped address; SIGSEGV should end the process."""
    yield from libc.print("segv: touching 0x10\n")
    yield from libc.load(0x10)
    yield from libc.print("segv: survived\n")
    return 1


def illegal(argv: list[str]) -> Generator[Op, Any, int]:
    """Execute an undefined instruction; SIGILL should end the process."""
    yield from libc.print("illegal: executing ud2\n")
    yield from libc.illegal()
    yield from libc.print("illegal: survived\n")
    return 1


# --- the paper's benchmark programs ----------------------------------------------------------


def loop(argv: list[str]) -> Generator[Op, Any, int]:
    """The throughput program: N times (0: forever) compute(U) then the spin(K) system call.

    An optional fifth argument computes that many instructions first, so that many
    copies started together do not run in lock step; a sixth makes that many getpid
    calls after each compute (calls the application kernel may serve itself).
    """
    try:
        if len(argv) > 6:
            raise _Usage
        u = _int_arg(argv, 1, 1000)
        k = _int_arg(argv, 2, 151)
        n = _int_arg(argv, 3, 1000)
        skew = _int_arg(argv, 4, 0)
        extra = _int_arg(argv, 5, 0)
    except _Usage:
        return (yield from _usage("loop"))
    if skew:
        yield from libc.compute(skew)
    i = 0
    while n == 0 or i < n:
        yield from libc.compute(u)
        for _ in range(extra):
            yield from libc.getpid()
        yield from libc.spin(k)
        i += 1
    yield from libc.print(f"loop: {n} iterations\n")
    return 0


def gettid(argv: list[str]) -> Generator[Op, Any, int]:
    """The latency program: mean cost of gettid between two inspection points, over N calls."""
    try:
        if len(argv) > 2:
            raise _Usage
        n = _int_arg(argv, 1, 1000, minimum=1)
    except _Usage:
        return (yield from _usage("gettid"))
    t0 = yield Rdtsc()
    t1 = yield Rdtsc()
    inspection = t1 - t0  # the cost of the inspection point itself
    total = 0
    for _ in range(n):
        t0 = yield Rdtsc()
        yield from libc.gettid()
        t1 = yield Rdtsc()
        total += t1 - t0 - inspection
    yield from libc.print(f"gettid: {n} calls, mean {total / n:.2f} instructions\n")
    return 0


# --- the registry ---------------------------------------------------------------------------

PROGRAMS: dict[str, Main] = {
    "hello": hello,
    "cat": cat,
    "wc": wc,
    "pipeline": pipeline,
    "pagetouch": pagetouch,
    "signals": signals,
    "threads": threads,
    "segv": segv,
    "illegal": illegal,
    "loop": loop,
    "gettid": gettid,
}

USAGE: dict[str, str] = {
    "hello": "hello",
    "cat": "cat FILE...",
    "wc": "wc FILE...",
    "pipeline": "pipeline [N]",
    "pagetouch": "pagetouch [PAGES]",
    "signals": "signals",
    "threads": "threads [N]",
    "segv": "segv",
    "illegal": "illegal",
    "loop": "loop [U K N [SKEW [GETPIDS]]]",
    "gettid": "gettid [N]",
}

DESCRIPTIONS: dict[str, str] = {
    "hello": "print 'hello, world'",
    "cat": "copy files to standard output",
    "wc": "count lines, words and bytes of files",
    "pipeline": "send N lines (default 20) from a child through a pipe",
    "pagetouch": "map PAGES pages (default 64), check zero fill, write and verify a pattern",
    "signals": "signal handler, EINTR on a blocked read, SIGKILL of a running child",
    "threads": "start N threads (default 4) on a shared array and join them",
    "segv": "touch an unmapped address (killed by SIGSEGV)",
    "illegal": "execute an undefined instruction (killed by SIGILL)",
    "loop": "throughput benchmark: N times compute(U) then spin(K) (defaults 1000 151 1000; N=0 forever)",
    "gettid": "latency benchmark: mean gettid cost over N calls (default 1000)",
}


def describe(name: str) -> str:
    """The one-line description of built-in program `name`."""
    return DESCRIPTIONS[name]


def bin_files(address_of: Callable[[Callable[..., Any]], int]) -> dict[str, bytes]:
    """The /bin/NAME files for every built-in program, given the machine's `code.address_of`."""
    return {f"/bin/{name}": libc.bin_image(address_of(main)) for name, main in PROGRAMS.items()}
