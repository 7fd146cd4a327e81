"""Programs and helpers for the master-slave port's own tests."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from apkern import System, libc
from apkern.bootkernel import abi
from apkern.hw import Rdtsc

KERNEL = "master-slave"
STAMP = libc.PROGRAM_DATA + 0x100  # where a thread or child leaves a time stamp
LIMIT = 50_000_000  # ten times the longest program here


def run(program: Any, argv: list[str], cpus: int, limit: int = LIMIT, **system: Any) -> tuple[System, Any]:
    """`program` alone on a fresh checked system under the port; returns the system and the process."""
    sim = System(kernel=KERNEL, cpus=cpus, strict=True, check_tlb=True, check_locks=True, **system)
    proc = sim.spawn(program, argv)
    sim.run(limit=limit)
    return sim, proc


def _stamp(_arg: int) -> Generator[Any, Any, int]:
    yield from libc.store(STAMP, (yield Rdtsc()))
    return 0


def thread_start_delay(argv: list[str]) -> Generator[Any, Any, int]:
    """How long after thread_create its new thread starts running, while this one keeps computing."""
    worst = 0
    for i in range(int(argv[1])):
        yield from libc.store(STAMP, 0)
        before = yield Rdtsc()
        tid = yield from libc.thread_create(_stamp, 0)
        while not (started := (yield from libc.load(STAMP))):
            yield from libc.compute(100)
        worst = max(worst, started - before)
        yield from libc.thread_join(tid)
        yield from libc.compute(1_000 + 1_700 * i)  # the next one at another phase of the idle CPUs' timers
    yield from libc.print(f"worst start delay {worst}\n")
    return 0


def _busy(argv: list[str]) -> Generator[Any, Any, int]:
    yield from libc.write_bytes(int(argv[1]), b"r")
    while True:
        yield from libc.compute(1000)


def kill_delay(argv: list[str]) -> Generator[Any, Any, int]:
    """How long SIGKILL takes to end a child that computes on another CPU (kill to waitpid's return)."""
    worst = 0
    for i in range(int(argv[1])):
        rfd, wfd = yield from libc.pipe()
        pid = yield from libc.spawn(_busy, ["busy", str(wfd)])
        yield from libc.close(wfd)
        yield from libc.read_bytes(rfd, 1)
        yield from libc.close(rfd)
        yield from libc.compute(2_000 + 1_700 * i)  # the child is well into its loop, at another phase each time
        before = yield Rdtsc()
        yield from libc.kill(pid, abi.SIGKILL)
        status = yield from libc.waitpid(pid)
        worst = max(worst, (yield Rdtsc()) - before)
        assert status == -abi.SIGKILL
    yield from libc.print(f"worst kill delay {worst}\n")
    return 0


def _hog(arg: int) -> Generator[Any, Any, int]:
    while True:
        yield from libc.compute(1000)


def call_latency_beside_hogs(argv: list[str]) -> Generator[Any, Any, int]:
    """The worst gettid latency of a thread while `hogs` threads compute: the master runs user code too.

    Each call made on a slave is queued for a master that runs one of the hogs, or whatever thread.
    """
    for _ in range(int(argv[1])):
        yield from libc.thread_create(_hog, 0)
    worst = 0
    for i in range(int(argv[2])):
        yield from libc.compute(3_000 + 370 * (i % 7))
        before = yield Rdtsc()
        yield from libc.gettid()
        worst = max(worst, (yield Rdtsc()) - before)
    yield from libc.print(f"worst call latency {worst}\n")
    yield from libc.exit(0)
    return 0


DONE = libc.PROGRAM_DATA + 0x200  # + 4 * i: when worker i finished


def _worker(i: int) -> Generator[Any, Any, int]:
    for _ in range(60):
        yield from libc.compute(20_000)
    yield from libc.store(DONE + 4 * i, (yield Rdtsc()))
    return 0


def fair_share(argv: list[str]) -> Generator[Any, Any, int]:
    """`n` threads compute the same amount with no system call: their finishing times, as a spread."""
    n = int(argv[1])
    tids = []
    for i in range(n):
        tids.append((yield from libc.thread_create(_worker, i)))
    for tid in tids:
        yield from libc.thread_join(tid)
    done = []
    for i in range(n):
        done.append((yield from libc.load(DONE + 4 * i)))
    yield from libc.print(f"finish spread {max(done) / min(done):.3f}\n")
    return 0


def dies_at_once(argv: list[str]) -> Generator[Any, Any, int]:
    """Its first instruction faults: the whole run lasts a few thousand instructions."""
    yield from libc.load(0x10)
    return 0
