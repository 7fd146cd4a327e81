"""Random test programs for differential testing: a small action language and its interpreter.

A program (`Prog`) is a tuple of actions followed by one ending. Actions are
plain tuples, so hypothesis can generate, shrink and print them:

  ("compute", n)                      n user instructions
  ("getpid",) / ("gettid",)           print the id (ids are handed out in order by the
                                      bootstrap kernel, so they agree between kernels)
  ("yield",) / ("sleep", n) / ("spin", n)
  ("print", fd, text)                 text to fd 1 or 2
  ("mem", pages, seed, unmap)         mmap, check zero fill, store/load patterns over
                                      every page and across page boundaries (page faults)
  ("file", slot, size, seed, append)  write a file (truncate or append), read it back
  ("errors", probe)                   a call that must fail: print its errno
  ("spawn", child)                    spawn a child running its own program; waitpid
  ("pipe_child", child, nlines)       the child runs its program then writes nlines
                                      lines into a pipe; the parent reads to EOF, waits
  ("kill_child", child, how)          the child runs its program, says "ready" through a
                                      pipe and waits; the parent signals it (SIGKILL,
                                      SIGTERM, or SIGUSR1 caught by a printing handler)
  ("sig_self", sig, mode)             sigaction (handler that prints / SIG_IGN), kill self,
                                      then (mode "handler") wait for the handler or
                                      (mode "handler_now") look at once, restore SIG_DFL
  ("threads", computes, serial)       one thread per entry of computes on a shared mapping;
                                      serial: create+join one at a time, and they print

Endings: ("return", s), ("exit", s), ("segv",), ("illegal",), ("gp",),
("kill_self", sig), ("after_munmap",).

Determinism by construction: at any moment only one process prints (a parent
blocks in read/waitpid while its child runs), concurrent threads never print,
and no output depends on an address, an fd number or a time.

The interpreter `rp_main` is one module-level program (the machine addresses code
by function); a program reaches it through `REGISTRY`, keyed by the index in argv:
argv = ["rp", KEY, MODE, ...].
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from apkern import libc
from apkern.bootkernel import abi
from apkern.hw.ops import Halt

PAGE = 4096
COUNTER = libc.PROGRAM_DATA + 0x40  # static data of each process: signal handler invocations
SIGNAL_CHOICES = (abi.SIGUSR1, abi.SIGUSR2, abi.SIGHUP, abi.SIGTERM, abi.SIGALRM, abi.SIGINT)
ERROR_PROBES = (
    "close_bad",
    "waitpid_none",
    "kill_none",
    "open_missing",
    "munmap_bad",
    "read_badaddr",
    "write_rdonly",
    "join_bad",
    "sigaction_kill",
    "spin_neg",
    "open_dir_write",
)


@dataclass(frozen=True)
class Prog:
    actions: tuple[tuple[Any, ...], ...]
    end: tuple[Any, ...]


# key -> (tag, actions with children replaced by their keys, end)
REGISTRY: dict[int, tuple[str, tuple[tuple[Any, ...], ...], tuple[Any, ...]]] = {}


def register(prog: Prog) -> int:
    """Give `prog` and (recursively) its children keys in REGISTRY; return prog's key."""
    key = len(REGISTRY)
    REGISTRY[key] = ("", (), ("return", 0))  # reserve the key before the children take theirs
    actions = []
    for act in prog.actions:
        if act[0] in ("spawn", "pipe_child", "kill_child"):
            act = (act[0], register(act[1]), *act[2:])
        actions.append(act)
    REGISTRY[key] = (f"p{key}", tuple(actions), prog.end)
    return key


def argv_for(key: int, mode: str = "top", *extra: object) -> list[str]:
    return ["rp", str(key), mode, *(str(e) for e in extra)]


def count_programs(prog: Prog) -> int:
    """Programs in the tree (the top one and every child's)."""
    return 1 + sum(count_programs(a[1]) for a in prog.actions if a[0] in ("spawn", "pipe_child", "kill_child"))


# --- helpers running inside the machine -------------------------------------------------------------


def _say(text: str, fd: int = 1) -> Generator[Any, Any, None]:
    yield from libc.write_bytes(fd, text.encode())


def _crc(data: bytes) -> str:
    return f"{zlib.crc32(data):08x}"


def _read_all(fd: int) -> Generator[Any, Any, bytes]:
    out = b""
    while True:
        chunk = yield from libc.read_bytes(fd, abi.PIPE_BUF)
        if not chunk:
            return out
        out += chunk


def rp_on_signal(sig: int) -> Generator[Any, Any, None]:
    """Signal handler: print, then count (the counter tells the waiting code the print is done)."""
    yield from _say(f"handler: signal {sig}\n")
    n = yield from libc.load(COUNTER)
    yield from libc.store(COUNTER, n + 1)


def _wait_counter(before: int, forever: bool = False) -> Generator[Any, Any, int]:
    """Wait (yielding) until the handler counter moves past `before`; return how many ran."""
    tries = 0
    while forever or tries < 500:
        now = yield from libc.load(COUNTER)
        if now > before:
            return now - before
        yield from libc.compute(100)
        yield from libc.yield_()
        tries += 1
    return (yield from libc.load(COUNTER)) - before


# thread slot layout, 16 bytes each: [compute, index, serial flag, result]
def rp_worker(slot: int) -> Generator[Any, Any, int]:
    """Thread body: compute, fill its own page of the shared mapping, store and return a result."""
    n = yield from libc.load(slot)
    i = yield from libc.load(slot + 4)
    serial = yield from libc.load(slot + 8)
    area = slot - 16 * i
    yield from libc.compute(n)
    page = area + PAGE * (1 + i)
    for off in range(0, PAGE, 1024):
        yield from libc.store(page + off, (i << 16) ^ off ^ n)
    pid = yield from libc.getpid()
    if serial:
        yield from _say(f"thread {i}: computed {n} in pid {pid}\n")
    result = i * 100000 + n % 99991
    yield from libc.store(slot + 12, result)
    return result


def _do_threads(tag: str, computes: tuple[int, ...], serial: bool) -> Generator[Any, Any, None]:
    k = len(computes)
    length = PAGE * (k + 1)
    area = yield from libc.mmap(length)
    for i, n in enumerate(computes):
        yield from libc.store(area + 16 * i, n)
        yield from libc.store(area + 16 * i + 4, i)
        yield from libc.store(area + 16 * i + 8, int(serial))
    results = []
    if serial:
        for i in range(k):
            tid = yield from libc.thread_create(rp_worker, area + 16 * i)
            rv = yield from libc.thread_join(tid)
            results.append((tid, rv))
    else:
        tids = []
        for i in range(k):
            tids.append((yield from libc.thread_create(rp_worker, area + 16 * i)))
        for tid in tids:
            results.append((tid, (yield from libc.thread_join(tid))))
    me = yield from libc.gettid()
    bad = 0
    for i, n in enumerate(computes):
        stored = yield from libc.load(area + 16 * i + 12)
        if stored != results[i][1]:
            bad += 1
        page = area + PAGE * (1 + i)
        for off in range(0, PAGE, 1024):
            if (yield from libc.load(page + off)) != (i << 16) ^ off ^ n:
                bad += 1
    yield from libc.munmap(area, length)
    desc = " ".join(f"t{tid - me}={rv}" for tid, rv in results)
    yield from _say(f"{tag} threads {'serial' if serial else 'concurrent'} {desc} bad {bad}\n")


def _do_mem(tag: str, pages: int, seed: int, unmap: bool) -> Generator[Any, Any, None]:
    rng = random.Random(seed)
    length = pages * PAGE
    base = yield from libc.mmap(length)
    zero = yield from libc.read_mem(base + length - 64, 64)
    want: dict[int, int] = {}
    for p in range(pages):
        for _ in range(rng.randint(1, 3)):
            addr = base + p * PAGE + 4 * rng.randrange(PAGE // 4)
            value = rng.getrandbits(32)
            yield from libc.store(addr, value)
            want[addr] = value
    blob = bytes(rng.getrandbits(8) for _ in range(24))
    if pages >= 2:  # a block write across a page boundary
        at = base + PAGE * rng.randrange(1, pages) - 10
        yield from libc.write_mem(at, blob)
        for a in [a for a in want if at <= a < at + len(blob)]:
            del want[a]
        back = yield from libc.read_mem(at, len(blob))
    else:
        back = blob
    mismatches = 0
    for addr, value in sorted(want.items()):
        if (yield from libc.load(addr)) != value:
            mismatches += 1
    total = sum(want.values()) & 0xFFFFFFFF
    if unmap:
        yield from libc.munmap(base, length)
    yield from _say(
        f"{tag} mem {pages}p zero={zero.count(0) == 64} words={len(want)} sum={total:08x} "
        f"block={back == blob} bad={mismatches}\n"
    )


def _do_file(tag: str, slot: int, size: int, seed: int, append: bool) -> Generator[Any, Any, None]:
    rng = random.Random(seed)
    data = bytes(rng.choice(b"abcdefgh \n") for _ in range(size))
    path = f"/rp_{tag}_{slot}"
    flags = abi.O_WRONLY | abi.O_CREAT | (abi.O_APPEND if append else abi.O_TRUNC)
    fd = yield from libc.open(path, flags)
    yield from libc.write_bytes(fd, data)
    yield from libc.close(fd)
    fd = yield from libc.open(path, abi.O_RDONLY)
    back = yield from _read_all(fd)
    yield from libc.close(fd)
    yield from _say(f"{tag} file {slot} {'append' if append else 'trunc'} wrote {size} read {len(back)} {_crc(back)}\n")


def _probe(name: str) -> Generator[Any, Any, Any]:
    if name == "close_bad":
        return (yield from libc.close(77))
    if name == "waitpid_none":
        return (yield from libc.waitpid(-1))
    if name == "kill_none":
        return (yield from libc.kill(4000, abi.SIGUSR1))
    if name == "open_missing":
        return (yield from libc.open("/no/such/file", abi.O_RDONLY))
    if name == "munmap_bad":
        return (yield from libc.munmap(0x30000000, PAGE))
    if name == "read_badaddr":
        fd = yield from libc.open("/bin/hello", abi.O_RDONLY)
        try:
            return (yield from libc.read(fd, 0x10, 4))
        finally:
            yield from libc.close(fd)
    if name == "write_rdonly":
        fd = yield from libc.open("/bin/hello", abi.O_RDONLY)
        try:
            return (yield from libc.write_bytes(fd, b"x"))
        finally:
            yield from libc.close(fd)
    if name == "join_bad":
        return (yield from libc.thread_join(99999))
    if name == "sigaction_kill":
        return (yield from libc.sigaction(abi.SIGKILL, rp_on_signal))
    if name == "spin_neg":
        return (yield from libc.spin(-1))
    if name == "open_dir_write":
        return (yield from libc.open("/bin", abi.O_WRONLY))
    raise AssertionError(name)


def _do_errors(tag: str, name: str) -> Generator[Any, Any, None]:
    try:
        rv = yield from _probe(name)
        yield from _say(f"{tag} err {name}: no error ({rv})\n")
    except OSError as e:
        yield from _say(f"{tag} err {name}: errno {e.errno}\n")


def _do_sig_self(tag: str, sig: int, mode: str) -> Generator[Any, Any, None]:
    before = yield from libc.load(COUNTER)
    handler = abi.SIG_IGN if mode == "ignore" else rp_on_signal
    prev = yield from libc.sigaction(sig, handler)
    me = yield from libc.getpid()
    yield from libc.kill(me, sig)
    if mode == "handler":
        ran = yield from _wait_counter(before)
    else:  # POSIX: a signal a process sends itself is delivered before kill returns
        ran = (yield from libc.load(COUNTER)) - before
    prev_kind = {abi.SIG_DFL: "dfl", abi.SIG_IGN: "ign"}.get(prev, "handler")
    yield from _say(f"{tag} sig_self {sig} {mode}: handler ran {ran} (previous {prev_kind})\n")
    yield from libc.sigaction(sig, abi.SIG_DFL)


def _do_spawn(tag: str, child: int) -> Generator[Any, Any, None]:
    pid = yield from libc.spawn(rp_main, argv_for(child, "child"))
    status = yield from libc.waitpid(pid)
    yield from _say(f"{tag} spawn p{child} pid {pid} status {status}\n")


def _do_pipe_child(tag: str, child: int, nlines: int) -> Generator[Any, Any, None]:
    rfd, wfd = yield from libc.pipe()
    pid = yield from libc.spawn(rp_main, argv_for(child, "pipe", wfd, nlines))
    yield from libc.close(wfd)
    data = yield from _read_all(rfd)
    yield from libc.close(rfd)
    status = yield from libc.waitpid(pid)
    lines = data.count(b"\n")
    yield from _say(f"{tag} pipe p{child}: {lines} lines {len(data)} bytes {_crc(data)} status {status}\n")


KILL_SIGNALS = {"kill9": abi.SIGKILL, "term": abi.SIGTERM, "handler": abi.SIGUSR1}


def _do_kill_child(tag: str, child: int, how: str) -> Generator[Any, Any, None]:
    rfd, wfd = yield from libc.pipe()
    pid = yield from libc.spawn(rp_main, argv_for(child, "victim", wfd, how))
    yield from libc.close(wfd)
    ready = yield from libc.read_bytes(rfd, 1)
    yield from libc.close(rfd)
    if ready == b"r":
        yield from libc.kill(pid, KILL_SIGNALS[how])
    status = yield from libc.waitpid(pid)
    yield from _say(f"{tag} kill_child p{child} {how}: ready {ready!r} status {status}\n")


def _act(tag: str, act: tuple[Any, ...]) -> Generator[Any, Any, None]:
    kind = act[0]
    if kind == "compute":
        yield from libc.compute(act[1])
    elif kind == "getpid":
        yield from _say(f"{tag} pid {(yield from libc.getpid())}\n")
    elif kind == "gettid":
        yield from _say(f"{tag} tid {(yield from libc.gettid())}\n")
    elif kind == "yield":
        yield from libc.yield_()
    elif kind == "sleep":
        yield from libc.sleep(act[1])
    elif kind == "spin":
        yield from libc.spin(act[1])
    elif kind == "print":
        yield from _say(f"{tag} says {act[2]}\n", act[1])
    elif kind == "mem":
        yield from _do_mem(tag, *act[1:])
    elif kind == "file":
        yield from _do_file(tag, *act[1:])
    elif kind == "errors":
        yield from _do_errors(tag, act[1])
    elif kind == "spawn":
        yield from _do_spawn(tag, act[1])
    elif kind == "pipe_child":
        yield from _do_pipe_child(tag, act[1], act[2])
    elif kind == "kill_child":
        yield from _do_kill_child(tag, act[1], act[2])
    elif kind == "sig_self":
        yield from _do_sig_self(tag, act[1], act[2])
    elif kind == "threads":
        yield from _do_threads(tag, act[1], act[2])
    else:
        raise AssertionError(f"unknown action {act!r}")


def _end(tag: str, end: tuple[Any, ...]) -> Generator[Any, Any, int]:
    kind = end[0]
    if kind == "return":
        return end[1]
    if kind == "exit":
        yield from libc.exit(end[1])
    elif kind == "segv":
        yield from libc.load(0x10)
    elif kind == "illegal":
        yield from libc.illegal()
    elif kind == "gp":
        yield Halt()  # a privileged instruction in user mode: #GP
    elif kind == "kill_self":
        me = yield from libc.getpid()
        yield from libc.kill(me, end[1])
    elif kind == "after_munmap":
        base = yield from libc.mmap(PAGE)
        yield from libc.store(base, 0x5A5A)
        _ = yield from libc.load(base)
        yield from libc.munmap(base, PAGE)
        yield from libc.load(base)  # the page is gone: SIGSEGV
    else:
        raise AssertionError(f"unknown ending {end!r}")
    yield from _say(f"{tag} survived {kind}\n")
    return 99


def rp_main(argv: list[str]) -> Generator[Any, Any, int]:
    """The interpreter: argv = ["rp", KEY, MODE, ...]; MODE is top, child, pipe WFD N or victim WFD HOW."""
    key, mode = int(argv[1]), argv[2]
    tag, actions, end = REGISTRY[key]
    for act in actions:
        yield from _act(tag, act)
    if mode == "pipe":
        wfd, nlines = int(argv[3]), int(argv[4])
        for i in range(nlines):
            yield from libc.write_bytes(wfd, f"{tag} line {i}\n".encode())
        yield from libc.close(wfd)
    elif mode == "victim":
        wfd, how = int(argv[3]), argv[4]
        if how == "handler":
            yield from libc.sigaction(abi.SIGUSR1, rp_on_signal)
        before = yield from libc.load(COUNTER)
        yield from libc.write_bytes(wfd, b"r")
        yield from libc.close(wfd)
        if how != "handler":
            while True:  # run until killed
                yield from libc.compute(500)
                yield from libc.yield_()
        ran = yield from _wait_counter(before, forever=True)
        yield from _say(f"{tag} victim: handler ran {ran}\n")
        yield from libc.sigaction(abi.SIGUSR1, abi.SIG_DFL)
    return (yield from _end(tag, end))
