"""Death from outside and from inside under the SMP port: no CPU is ever left in a destroyed address space.

The machine checks the invariant itself: freeing a page directory that a running CPU
still has in CR3 is a `MachineError` (`Machine.frame_released`), and these systems are
strict, so it propagates out of `run`. Under the port every thread of the victim may be
running on some CPU when the kill or the exit comes: `SMPKernel.stop_others` must get each
off its CPU first. Each kill test records what the victim's threads were doing when the
SIGKILL was sent, and asserts that the chosen delays really land kills in the phases the
scenario is about (a thread computing on another CPU, one asleep in a call).
"""

from __future__ import annotations

from typing import Any

import pytest
from smpkit import run

from apkern import System, libc
from apkern.bootkernel import abi
from apkern.bootkernel.proc import RUNNING, SLEEPING
from apkern.hw import Illegal

CPUS = (2, 3, 4, 8)
PAGE = 4096
LIMIT = 60_000_000

# --- victims ------------------------------------------------------------------------------------


def v_compute(argv: list[str]) -> Any:
    while True:
        yield from libc.compute(1000)


def v_pipe(argv: list[str]) -> Any:
    """Blocks in a read on an empty pipe whose write end the parent keeps."""
    yield from libc.read(int(argv[1]), libc.PROGRAM_DATA, 16)
    return 3


def v_sleep(argv: list[str]) -> Any:
    yield from libc.sleep(10**9)
    return 3


def _t_compute(arg: int) -> Any:
    while True:
        yield from libc.compute(500 + arg)


def _t_sleep(arg: int) -> Any:
    yield from libc.sleep(10**9)


def _t_touch(arg: int) -> Any:
    """Page faults and munmaps (shoot-downs) in a loop."""
    while True:
        base = yield from libc.mmap(4 * PAGE)
        for p in range(4):
            yield from libc.store(base + p * PAGE, p)
        yield from libc.munmap(base, 4 * PAGE)


def v_threads(argv: list[str]) -> Any:
    """Two threads compute, one sleeps in a call, one takes page faults and unmaps, main computes."""
    for f, a in ((_t_compute, 0), (_t_compute, 7), (_t_sleep, 0), (_t_touch, 0)):
        yield from libc.thread_create(f, a)
    while True:
        yield from libc.compute(700)


ON_CPU = "on-cpu"  # a thread of the victim runs on another CPU
ASLEEP = "asleep"  # a thread of the victim sleeps in a call
NOT_STARTED = "not-started"  # the victim has not run yet

SCENARIOS = {
    v_compute: ((0, 2000, 20000, 60000), {ON_CPU}),
    v_pipe: ((0, 3000, 20000), {ASLEEP}),
    v_sleep: ((0, 3000, 20000), {ASLEEP}),
    v_threads: ((0, 5000, 40000, 200_000), {ON_CPU, ASLEEP}),  # on few CPUs the sleeper starts after quanta
}


def _killer(victim: Any, delay: int, out: list[Any]) -> Any:
    def parent(argv: list[str]) -> Any:
        rfd, wfd = yield from libc.pipe()  # the victim inherits both ends; we keep the write end open
        pid = yield from libc.spawn(victim, [victim.__name__, str(rfd)])
        if delay:
            yield from libc.compute(delay)
        yield from libc.kill(pid, abi.SIGKILL)
        out.append((pid, (yield from libc.waitpid(pid))))
        return 0

    return parent


def _watch_kills(sim: System) -> list[set[str]]:
    """What the target's threads were doing at each SIGKILL sent (recorded around the port's `send`)."""
    seen: list[set[str]] = []
    signals = sim.kernel.signals
    real = signals.send

    def send(p: Any, sig: int) -> None:
        if sig == abi.SIGKILL:
            phases = set()
            for t in p.threads:
                if t.state == RUNNING and sim.kernel.sched.cpu_of(t) is not None:
                    phases.add(ON_CPU)
                elif t.state == SLEEPING:
                    phases.add(ASLEEP)
            seen.append(phases or {NOT_STARTED})
        real(p, sig)

    signals.send = send
    return seen


def kill_once(cpus: int, victim: Any, delay: int) -> set[str]:
    out: list[Any] = []
    sim = System(kernel="smp", cpus=cpus, strict=True, check_tlb=True, check_locks=True)
    seen = _watch_kills(sim)
    parent = sim.spawn(_killer(victim, delay, out), ["killer"])
    sim.run(limit=LIMIT)  # a MachineError (a CPU in a freed address space) would propagate here
    assert parent.exit_status == 0
    assert out == [(2, -abi.SIGKILL)], (victim.__name__, delay, out)
    assert not sim.stats["cpus_on_dead_processes"]
    return seen[0]


@pytest.mark.parametrize("cpus", CPUS)
@pytest.mark.parametrize("victim", list(SCENARIOS), ids=lambda v: v.__name__)
def test_sigkill_from_outside(cpus: int, victim: Any) -> None:
    delays, wanted = SCENARIOS[victim]
    phases: set[str] = set()
    for delay in delays:
        phases |= kill_once(cpus, victim, delay)
    assert wanted <= phases, f"kills landed only in {sorted(phases)}"


# --- a process ends itself while other threads of it run on other CPUs -------------------------------


def _ender(nthreads: int, pre: int, how: str) -> Any:
    def main(argv: list[str]) -> Any:
        for i in range(nthreads):
            yield from libc.thread_create(_t_touch if i % 3 == 2 else _t_compute, 37 * i)
        yield from libc.compute(pre)
        if how == "exit":
            yield from libc.exit(7)
        if how == "illegal":
            yield Illegal()
        return 7  # main returns: crt0 calls exit(7)

    return main


@pytest.mark.parametrize("cpus", CPUS)
@pytest.mark.parametrize("how", ["exit", "return", "illegal"])
def test_exit_while_threads_run_elsewhere(cpus: int, how: str) -> None:
    want = -abi.SIGILL if how == "illegal" else 7
    for nthreads, pre in ((1, 0), (3, 2000), (cpus + 1, 30000)):
        sim = System(kernel="smp", cpus=cpus, strict=True, check_tlb=True, check_locks=True)
        innocent = sim.spawn("pipeline", ["pipeline", "12"])
        proc = sim.spawn(_ender(nthreads, pre, how), ["ender"])
        sim.run(limit=LIMIT)
        assert proc.exit_status == want
        assert innocent.exit_status == 0 and "received 12 lines" in sim.console(innocent.pid)
        assert not sim.stats["cpus_on_dead_processes"]


def test_two_threads_exit_at_once() -> None:
    """Both enter exit together: the second finds itself dead at its kernel entry and leaves."""

    def twin(arg: int) -> Any:
        yield from libc.compute(5_000)
        yield from libc.exit(arg)

    def main(argv: list[str]) -> Any:
        yield from libc.thread_create(twin, 11)
        yield from libc.thread_create(twin, 11)
        while True:
            yield from libc.compute(1000)

    sim, proc = run(main, ["twins"], 3)
    assert proc.exit_status == 11
    assert sim.stats["lock_contended"] > 0
