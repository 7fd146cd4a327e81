"""Programs and helpers for the SMP port's own tests."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from apkern import System, libc
from apkern.bootkernel import abi
from apkern.hw import Rdtsc

STAMP = libc.PROGRAM_DATA + 0x100  # where a thread or child leaves a time stamp


def run(program: Any, argv: list[str], cpus: int, kernel: str = "smp", **system: Any) -> tuple[System, Any]:
    """`program` alone on a fresh checked system; returns the system and the process."""
    sim = System(kernel=kernel, cpus=cpus, strict=True, check_tlb=True, check_locks=True, **system)
    proc = sim.spawn(program, argv)
    sim.run(limit=500_000_000)
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


FLAG = libc.PROGRAM_DATA + 0x104
RUNNER = libc.PROGRAM_DATA + 0x108


def _long_call(_arg: int) -> Generator[Any, Any, int]:
    yield from libc.store(FLAG, 1)
    yield from libc.spin(300_000)  # 30 timer ticks inside the kernel, holding the lock
    while (yield from libc.load(FLAG)) != 2:  # then keep its CPU, in user mode, until told
        yield from libc.compute(100)
    return 0


def _runner(_arg: int) -> Generator[Any, Any, int]:
    yield from libc.store(RUNNER, (yield Rdtsc()))
    return 0


def preempted_at_entry(argv: list[str]) -> Generator[Any, Any, int]:
    """Does a thread that spins for the kernel lock at a system call's entry lose its CPU to a ready thread?

    One thread holds the lock for 30 ticks; a third waits to run; this one enters the kernel meanwhile.
    Its CPU's timer ticks while it spins, but a thread is preempted only on its way back to user mode.
    """
    long = yield from libc.thread_create(_long_call, 0)
    runner = yield from libc.thread_create(_runner, 0)
    while not (yield from libc.load(FLAG)):
        yield from libc.compute(100)
    yield from libc.compute(2_000)  # the long call is well under way
    yield from libc.getpid()
    back = yield Rdtsc()
    ran = yield from libc.load(RUNNER)
    yield from libc.print(f"the ready thread ran before the call returned: {0 < ran < back}\n")
    yield from libc.store(FLAG, 2)
    for tid in (long, runner):
        yield from libc.thread_join(tid)
    return 0


def dies_at_once(argv: list[str]) -> Generator[Any, Any, int]:
    """Its first instruction faults: the whole run lasts a few thousand instructions."""
    yield from libc.load(0x10)
    return 0
