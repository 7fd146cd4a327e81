"""Death from outside and from inside under the master-slave port: no CPU is left in a destroyed address space.

The machine checks the invariant itself: freeing a page directory that a running CPU
still has in CR3 is a `MachineError` (`Machine.frame_released`), and these systems are
strict, so it propagates out of `run`. When a process dies on the master its other
threads may run user code on slaves, wait in the user queue, or be in a slave's trap
stub: `MasterSlaveKernel.stop_others` unlinks the queued ones, IPIs the slaves and waits
until each has given its thread up (`drop`). A SIGKILL from outside reaches threads on
slaves by an IPI and threads in the user queue by moving them to the master
(`flush_kicks`): without either, a victim that computes without system calls would run
for ever. Each kill test records what the victim's threads were doing when the SIGKILL
was sent, and asserts that the delays really land kills in the phases the scenario is about.
"""

from __future__ import annotations

from typing import Any

import pytest
from mskit import KERNEL

from apkern import System, libc
from apkern.bootkernel import abi
from apkern.bootkernel import costs as boot_costs
from apkern.bootkernel.proc import RUNNABLE, RUNNING, SLEEPING
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
    """Computing threads (more than two CPUs run), one asleep in a call, one faulting and unmapping, main computes."""
    for f, a in ((_t_compute, 0), (_t_compute, 7), (_t_compute, 11), (_t_sleep, 0), (_t_touch, 0)):
        yield from libc.thread_create(f, a)
    while True:
        yield from libc.compute(700)


ON_SLAVE = "on-slave"  # a thread of the victim runs on a slave
QUEUED = "queued"  # a thread of the victim waits in the user queue (or the master's)
ASLEEP = "asleep"  # a thread of the victim sleeps in a call
NOT_STARTED = "not-started"

SCENARIOS = {
    v_compute: ((0, 2000, 20000, 60000), {ON_SLAVE}),
    v_pipe: ((0, 3000, 20000), {ASLEEP}),
    v_threads: ((0, 5000, 40000, 200_000), {ON_SLAVE, ASLEEP}),
}


def _killer(victim: Any, delay: int, out: list[Any], crowd: int = 0) -> Any:
    """Kill the victim after `delay`; `crowd` computing processes spawned after it keep every CPU busy."""

    def parent(argv: list[str]) -> Any:
        rfd, wfd = yield from libc.pipe()  # the victim inherits both ends; we keep the write end open
        pid = yield from libc.spawn(victim, [victim.__name__, str(rfd)])
        others = []
        for _ in range(crowd):
            others.append((yield from libc.spawn(v_compute, ["crowd"])))
        if delay:
            yield from libc.compute(delay)
        yield from libc.kill(pid, abi.SIGKILL)
        out.append((pid, (yield from libc.waitpid(pid))))
        for other in others:
            yield from libc.kill(other, abi.SIGKILL)
            yield from libc.waitpid(other)
        return 0

    return parent


def _watch_kills(sim: System) -> list[tuple[set[str], int]]:
    """What the target's threads were doing at each SIGKILL sent, and when (recorded around the port's `send`)."""
    seen: list[tuple[set[str], int]] = []
    signals = sim.kernel.signals
    real = signals.send

    def send(p: Any, sig: int) -> None:
        if sig == abi.SIGKILL:
            phases = set()
            for t in p.threads:
                if t.state == RUNNING and sim.kernel.sched.cpu_of(t) not in (None, 0):
                    phases.add(ON_SLAVE)
                elif t.state == RUNNABLE:
                    phases.add(QUEUED)
                elif t.state == SLEEPING:
                    phases.add(ASLEEP)
            seen.append((phases or {NOT_STARTED}, sim.now))
        real(p, sig)

    signals.send = send
    return seen


def kill_once(cpus: int, victim: Any, delay: int, crowd: int = 0, deaths: list[int] | None = None) -> set[str]:
    """Kill `victim` after `delay`: what its threads were doing then; `deaths` gets how long it took to die."""
    out: list[Any] = []
    sim = System(kernel=KERNEL, cpus=cpus, strict=True, check_tlb=True, check_locks=True)
    seen = _watch_kills(sim)
    parent = sim.spawn(_killer(victim, delay, out, crowd), ["killer"])
    sim.run(limit=LIMIT)  # a MachineError (a CPU in a freed address space) would propagate here
    assert parent.exit_status == 0
    assert out == [(2, -abi.SIGKILL)], (victim.__name__, delay, out)
    assert not sim.stats["cpus_on_dead_processes"] and not sim.stats["thread_table_slots"]
    if deaths is not None:
        deaths.append(sim.kernel.procs[2].exited_at - seen[0][1])
    return seen[0][0]


@pytest.mark.parametrize("cpus", CPUS)
@pytest.mark.parametrize("victim", list(SCENARIOS), ids=lambda v: v.__name__)
def test_sigkill_from_outside(cpus: int, victim: Any) -> None:
    delays, wanted = SCENARIOS[victim]
    phases: set[str] = set()
    for delay in delays:
        phases |= kill_once(cpus, victim, delay)
    assert wanted <= phases, f"kills landed only in {sorted(phases)}"
    if victim is v_threads and cpus <= 4:  # more threads than CPUs: some wait in the user queue
        assert QUEUED in phases, f"kills landed only in {sorted(phases)}"


@pytest.mark.parametrize("cpus", [2, 4])
def test_sigkill_reaches_a_process_whose_only_thread_waits_in_the_user_queue(cpus: int) -> None:
    """Every CPU is busy: the victim, computing without system calls, waits its turn in the user queue.
    The kill moves it to the master, which acts on it at once; left there, it would go on until the
    master happened to take it in its spare time, time slices later."""
    deaths: list[int] = []
    phases = [kill_once(cpus, v_compute, delay, cpus, deaths) for delay in (30_000, 70_000, 150_000)]
    queued = [d for p, d in zip(phases, deaths, strict=True) if p == {QUEUED}]
    assert queued and max(queued) < boot_costs.TICK, (phases, deaths)


# --- a process ends itself while other threads of it run on slaves ---------------------------------------


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
        sim = System(kernel=KERNEL, cpus=cpus, strict=True, check_tlb=True, check_locks=True)
        innocent = sim.spawn("pipeline", ["pipeline", "12"])
        proc = sim.spawn(_ender(nthreads, pre, how), ["ender"])
        sim.run(limit=LIMIT)
        assert proc.exit_status == want
        assert innocent.exit_status == 0 and "received 12 lines" in sim.console(innocent.pid)
        assert not sim.stats["cpus_on_dead_processes"] and not sim.stats["thread_table_slots"]


def test_two_threads_exit_at_once() -> None:
    """Both trap to exit together: the second waits in the master queue and is unlinked by the first's exit."""

    def twin(arg: int) -> Any:
        yield from libc.compute(5_000)
        yield from libc.exit(arg)

    def main(argv: list[str]) -> Any:
        yield from libc.thread_create(twin, 11)
        yield from libc.thread_create(twin, 11)
        while True:
            yield from libc.compute(1000)

    sim = System(kernel=KERNEL, cpus=3, strict=True, check_tlb=True, check_locks=True)
    proc = sim.spawn(main, ["twins"])
    sim.run(limit=LIMIT)
    assert proc.exit_status == 11
    assert not sim.stats["cpus_on_dead_processes"] and not sim.stats["thread_table_slots"]


@pytest.mark.parametrize("seed", range(1, 7))
def test_exit_while_threads_run_elsewhere_on_a_perturbed_machine(seed: int) -> None:
    """Late IPIs and stalls in the slaves' stubs: the exit must wait until each slave has let its thread go."""
    cpus = (2, 3, 4, 8)[seed % 4]
    for nthreads, pre in ((3, 2000), (cpus + 1, 30000)):
        sim = System(kernel=KERNEL, cpus=cpus, strict=True, check_tlb=True, check_locks=True, perturb=seed)
        proc = sim.spawn(_ender(nthreads, pre, "exit"), ["ender"])
        sim.run(limit=LIMIT)
        assert proc.exit_status == 7
        assert not sim.stats["cpus_on_dead_processes"] and not sim.stats["thread_table_slots"]
