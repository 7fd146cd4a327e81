"""lseek, dup and the futex call, and libc's Mutex, Condition and Barrier built on it, on every kernel.

The bootstrap kernel grew these as a uniprocessor kernel would; the application kernel
forwards them with no code of its own. Each program's output is independent of timing
(counts, sums and error numbers), so the uniprocessor run is the oracle.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Generator
from typing import Any

import pytest
from diffkit import compare_all, observe

from apkern import libc

DATA = libc.PROGRAM_DATA
PAGE = 4096


def seek_and_dup(argv: list[str]) -> Generator[Any, Any, int]:
    out = []
    fd = yield from libc.open("/f", os.O_RDWR | os.O_CREAT)
    yield from libc.write_bytes(fd, b"0123456789")
    out.append((yield from libc.lseek(fd, 2)))
    out.append((yield from libc.read_bytes(fd, 3)))
    out.append((yield from libc.lseek(fd, -1, os.SEEK_CUR)))
    out.append((yield from libc.lseek(fd, -2, os.SEEK_END)))
    out.append((yield from libc.read_bytes(fd, 5)))
    out.append((yield from libc.lseek(fd, 20)))
    yield from libc.write_bytes(fd, b"!")  # past the end: the gap reads as zeros
    d = yield from libc.dup(fd)
    out.append((yield from libc.lseek(d, 0, os.SEEK_CUR)))  # one offset for both
    yield from libc.lseek(fd, 0)
    yield from libc.close(fd)
    out.append((yield from libc.read_bytes(d, 30)))  # the dup outlives the original
    r, w = yield from libc.pipe()
    for name, call in (
        ("pipe", libc.lseek(r, 0)),
        ("console", libc.lseek(1, 0)),
        ("whence", libc.lseek(d, 0, 7)),
        ("negative", libc.lseek(d, -5)),
        ("closed", libc.lseek(60, 0)),  # (fd itself is the pipe's read end by now: lowest free)
        ("dup closed", libc.dup(60)),
    ):
        try:
            yield from call
            out.append((name, "ok"))
        except OSError as e:
            out.append((name, errno.errorcode[e.errno]))
    yield from libc.print(f"{out}\n")
    return 0


COUNT = DATA + 0x100
LOCK = DATA + 0x104


def _adder(n: int) -> Generator[Any, Any, int]:
    m = libc.Mutex(LOCK)
    for _ in range(n):
        yield from m.lock()
        v = yield from libc.load(COUNT)
        yield from libc.compute(200)  # inside the critical section: others contend
        yield from libc.store(COUNT, v + 1)
        yield from m.unlock()
        yield from libc.compute(100)
    return 0


def mutex_counter(argv: list[str]) -> Generator[Any, Any, int]:
    threads, n = int(argv[1]), int(argv[2])
    tids = []
    for _ in range(threads):
        tids.append((yield from libc.thread_create(_adder, n)))
    for t in tids:
        yield from libc.thread_join(t)
    yield from libc.print(f"count {(yield from libc.load(COUNT))} of {threads * n}\n")
    return 0


BARRIER = DATA + 0x200
SLOTS = DATA + 0x300


def _phaser(arg: int) -> Generator[Any, Any, int]:
    me, threads, phases = arg & 0xFF, (arg >> 8) & 0xFF, arg >> 16
    b = libc.Barrier(BARRIER, threads)
    wrong = serial = 0
    for phase in range(1, phases + 1):
        yield from libc.compute(100 * (me + 1) * phase)  # arrive at different times
        yield from libc.store(SLOTS + 4 * me, phase)
        serial += yield from b.wait()
        for other in range(threads):
            wrong += (yield from libc.load(SLOTS + 4 * other)) < phase
        serial += 0 * (yield from b.wait())  # nobody writes the next phase before all have checked
    return wrong * 1000 + serial


def barrier_phases(argv: list[str]) -> Generator[Any, Any, int]:
    threads, phases = int(argv[1]), int(argv[2])
    yield from libc.Barrier(BARRIER, threads).init()
    tids = []
    for me in range(threads):
        tids.append((yield from libc.thread_create(_phaser, me | threads << 8 | phases << 16)))
    results = []
    for t in tids:
        results.append((yield from libc.thread_join(t)))
    wrong = sum(r // 1000 for r in results)
    serial = sum(r % 1000 for r in results)
    yield from libc.print(f"wrong {wrong}, last arrivals {serial} for {phases} phases\n")
    return 0


COND_LOCK, COND, SLOT, FULL = DATA + 0x400, DATA + 0x404, DATA + 0x408, DATA + 0x40C


def _consumer(n: int) -> Generator[Any, Any, int]:
    m, c = libc.Mutex(COND_LOCK), libc.Condition(COND)
    total = 0
    for _ in range(n):
        yield from m.lock()
        while not (yield from libc.load(FULL)):
            yield from c.wait(m)
        total += yield from libc.load(SLOT)
        yield from libc.store(FULL, 0)
        yield from c.broadcast()
        yield from m.unlock()
    return total


def producer_consumer(argv: list[str]) -> Generator[Any, Any, int]:
    n = int(argv[1])
    m, c = libc.Mutex(COND_LOCK), libc.Condition(COND)
    tid = yield from libc.thread_create(_consumer, n)
    for i in range(1, n + 1):
        yield from m.lock()
        while (yield from libc.load(FULL)):
            yield from c.wait(m)
        yield from libc.store(SLOT, i)
        yield from libc.store(FULL, 1)
        yield from c.signal()
        yield from m.unlock()
        yield from libc.compute(150)
    total = yield from libc.thread_join(tid)
    yield from libc.print(f"consumed {total} of {n * (n + 1) // 2}\n")
    return 0


def futex_edges(argv: list[str]) -> Generator[Any, Any, int]:
    out = []
    yield from libc.store(DATA + 0x500, 5)
    out.append((yield from libc.futex_wait(DATA + 0x500, 6)))  # the word moved on: no sleep
    out.append((yield from libc.futex_wake(DATA + 0x500, 3)))  # nobody sleeps there
    for name, call in (("misaligned", libc.futex_wait(DATA + 0x502, 0)), ("op", libc.syscall(26, DATA, 9, 0))):
        try:
            yield from call
            out.append((name, "ok"))
        except OSError as e:
            out.append((name, errno.errorcode[e.errno]))
    yield from libc.print(f"{out}\n")
    return 0


EXPECTED = {
    "seek_and_dup": "[2, b'234', 4, 8, b'89', 20, 21, b'0123456789" + "\\x00" * 10 + "!', "
    "('pipe', 'ESPIPE'), ('console', 'ESPIPE'), ('whence', 'EINVAL'), ('negative', 'EINVAL'), "
    "('closed', 'EBADF'), ('dup closed', 'EBADF')]\n",
    "mutex_counter": "count 240 of 240\n",
    "barrier_phases": "wrong 0, last arrivals 5 for 5 phases\n",
    "producer_consumer": "consumed 1275 of 1275\n",
    "futex_edges": "[False, 0, ('misaligned', 'EINVAL'), ('op', 'ENOSYS')]\n",
}
PROGRAMS = {
    "seek_and_dup": (seek_and_dup, ["sd"]),
    "mutex_counter": (mutex_counter, ["mc", "4", "60"]),
    "barrier_phases": (barrier_phases, ["bp", "4", "5"]),
    "producer_consumer": (producer_consumer, ["pc", "50"]),
    "futex_edges": (futex_edges, ["fe"]),
}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_same_on_every_kernel(name: str) -> None:
    prog, argv = PROGRAMS[name]
    ref, runs = compare_all(prog, argv, [2, 4, 8])
    assert ref.console == EXPECTED[name]
    assert ref.stats["syscalls_by_name"].get("futex", 0) >= (name in ("barrier_phases", "producer_consumer"))


@pytest.mark.parametrize("name", ["mutex_counter", "barrier_phases", "producer_consumer"])
@pytest.mark.parametrize("seed", [1, 2])
def test_synchronisation_on_a_perturbed_machine(name: str, seed: int) -> None:
    prog, argv = PROGRAMS[name]
    got = observe(prog, argv, "apkern", 3 + seed, perturb=seed, extensions=("local_calls",))
    assert got.console == EXPECTED[name]
    assert got.stats["syscalls_by_name"].get("futex", 0) > 0  # they really slept and woke each other


@pytest.mark.parametrize("kernel", ["smp", "master-slave"])
@pytest.mark.parametrize("name", ["mutex_counter", "barrier_phases", "producer_consumer"])
def test_synchronisation_on_a_perturbed_port(name: str, kernel: str) -> None:
    prog, argv = PROGRAMS[name]
    got = observe(prog, argv, kernel, 4, perturb=3)
    assert got.console == EXPECTED[name]
    assert got.stats["syscalls_by_name"].get("futex", 0) > 0


def directories(argv: list[str]) -> Generator[Any, Any, int]:
    """mkdir, stat, getdents (listdir) and their errors, then a walk of the tree like `find`."""
    import stat as st

    out = []
    for d in ("/d", "/d/e", "/d/e/f"):
        yield from libc.mkdir(d)
    for name, path in (("a", "/d/a"), ("b", "/d/e/b")):
        fd = yield from libc.open(path, os.O_WRONLY | os.O_CREAT)
        yield from libc.write_bytes(fd, name.encode() * 3)
        yield from libc.close(fd)
    for name, call in (
        ("exists", libc.mkdir("/d")),
        ("under a file", libc.mkdir("/d/a/x")),
        ("no parent", libc.mkdir("/nope/x")),
        ("stat missing", libc.stat("/d/zz")),
        ("write a dir", libc.open("/d", os.O_WRONLY)),
        ("getdents a file", libc.getdents(0)),
    ):
        try:
            yield from call
            out.append((name, "ok"))
        except OSError as e:
            out.append((name, errno.errorcode[e.errno]))
    mode, size = yield from libc.stat("/d/a")
    out.append((st.S_ISREG(mode), size))
    mode, size = yield from libc.stat("/d/e")
    out.append(st.S_ISDIR(mode))
    fd = yield from libc.open("/d")
    try:
        yield from libc.read_bytes(fd, 4)
    except OSError as e:
        out.append(("read a dir", errno.errorcode[e.errno]))
    try:
        yield from libc.getdents(fd, 4)  # not even one entry fits
    except OSError as e:
        out.append(("getdents tiny", errno.errorcode[e.errno]))
    out.append((yield from libc.getdents(fd)))
    yield from libc.close(fd)
    found = []

    def walk(path: str) -> Generator[Any, Any, None]:
        for name in (yield from libc.listdir(path)):
            full = path.rstrip("/") + "/" + name
            mode, _ = yield from libc.stat(full)
            found.append(full + ("/" if st.S_ISDIR(mode) else ""))
            if st.S_ISDIR(mode):
                yield from walk(full)

    yield from walk("/d")
    out.append(found)
    yield from libc.print(f"{out}\n")
    return 0


def test_directories_on_every_kernel() -> None:
    ref, runs = compare_all(directories, ["dirs"], [2, 4])
    assert ref.console == (
        "[('exists', 'EEXIST'), ('under a file', 'ENOTDIR'), ('no parent', 'ENOENT'), ('stat missing', 'ENOENT'), "
        "('write a dir', 'EISDIR'), ('getdents a file', 'ENOTDIR'), (True, 3), True, ('read a dir', 'EISDIR'), "
        "('getdents tiny', 'EINVAL'), [('a', 8), ('e', 4)], ['/d/a', '/d/e/', '/d/e/b', '/d/e/f/']]\n"
    )
    assert {"/d/", "/d/e/", "/d/e/f/"} <= set(ref.files) and ref.files["/d/e/b"] == b"bbb"
