"""Death from outside: SIGKILL, exit and fatal exceptions never leave an AP in a destroyed address space.

The machine checks the invariant itself: when the bootstrap kernel frees a page
directory that a running CPU still has in CR3, `Machine.frame_released` raises
`MachineError` (and strict systems let it out of `run`). Each kill test also
records, through a wrapper around the driver's `flush` (what `exit_process` calls
when it closes the driver descriptor, before the address space goes), what the
victim's application threads were doing when death reached them, and asserts
that the chosen delays really land the kill in the phases the scenario is about.
"""

from __future__ import annotations

from typing import Any

import pytest
from akkit import LIMIT, ak_system, assert_clean, errno_of, run_beside, run_isolated

from apkern import libc, profiles
from apkern.bootkernel import abi
from apkern.hw import Illegal, Machine, MachineError

CPUS = (2, 3, 4, 8)
PAGE = 4096

# --- victims ------------------------------------------------------------------------------------


def v_compute(argv: list[str]) -> Any:
    """(a) computes forever on an AP."""
    while True:
        yield from libc.compute(1000)


def v_pipe(argv: list[str]) -> Any:
    """(b) blocks in a forwarded read on an empty pipe whose write end the parent keeps."""
    yield from libc.read(int(argv[1]), libc.PROGRAM_DATA, 16)
    return 3


def _sleeper(argv: list[str]) -> Any:
    yield from libc.sleep(int(argv[1]))
    return 0


def v_wait(argv: list[str]) -> Any:
    """(b) blocks in a forwarded waitpid on a child that sleeps (the child outlives it and ends alone)."""
    pid = yield from libc.spawn(_sleeper, ["sleeper", "200000"])
    yield from libc.waitpid(pid)
    return 3


def v_sleep(argv: list[str]) -> Any:
    """(b) blocks in a forwarded sleep of 10**9 instructions."""
    yield from libc.sleep(10**9)
    return 3


def v_mmap(argv: list[str]) -> Any:
    """Page faults in flight: touches fresh mmap pages in a loop (each store is a forwarded #PF)."""
    while True:
        base = yield from libc.mmap(16 * PAGE)
        for p in range(16):
            yield from libc.store(base + p * PAGE, p)
        yield from libc.munmap(base, 16 * PAGE)


def _t_compute(arg: int) -> Any:
    while True:
        yield from libc.compute(500 + arg)


def _t_sleep(arg: int) -> Any:
    yield from libc.sleep(10**9)


def _t_touch(arg: int) -> Any:
    while True:
        base = yield from libc.mmap(4 * PAGE)
        for p in range(4):
            yield from libc.store(base + p * PAGE, p)
        yield from libc.munmap(base, 4 * PAGE)


def v_threads(argv: list[str]) -> Any:
    """(c) multithreaded: two threads compute, one sleeps in a forwarded call, one takes page faults."""
    for f, a in ((_t_compute, 0), (_t_compute, 7), (_t_sleep, 0), (_t_touch, 0)):
        yield from libc.thread_create(f, a)
    while True:
        yield from libc.compute(700)


# Phases a kill can land in (what `flush` finds for the victim's application threads):
BEFORE_START = "before-start"  # no application thread yet (crt0 had not created it)
ON_CPU = "on-cpu"  # a thread is on an AP (computing)
CALL = "call-in-flight"  # a thread waits for a forwarded system call
FAULT = "fault-in-flight"  # a thread waits for a forwarded page fault

# victim -> (delays in instructions; the phases those delays must hit together)
# (every scenario also runs once with a racing killer thread: BEFORE_START)
SCENARIOS = {
    v_compute: ((0, 1, 2000, 20000, 60000), {BEFORE_START, ON_CPU}),
    v_pipe: ((0, 3000, 20000, 60000), {BEFORE_START, CALL}),
    v_wait: ((0, 3000, 20000, 60000), {BEFORE_START, CALL}),
    v_sleep: ((0, 3000, 20000, 60000), {BEFORE_START, CALL}),
    v_mmap: ((1000, 5000, 9000, 20000, 31000, 45000, 60000), {BEFORE_START, FAULT}),
    # its page-faulting thread holds the others off their CPUs most of the time (section 4.3)
    v_threads: ((0, 5000, 20000, 40000, 80000), {BEFORE_START, CALL}),
}


def _phases(snapshot: list[tuple[str, bool, bool, bool]] | None) -> set[str]:
    if not snapshot:
        return {BEFORE_START}
    out = set()
    for state, on_cpu, waiting, fault in snapshot:
        if state == "running" and on_cpu:
            out.add(ON_CPU)
        if waiting and not fault:
            out.add(CALL)
        if fault:
            out.add(FAULT)
    return out


def _watch_flush(sim: Any) -> dict[int, list[tuple[str, bool, bool, bool]]]:
    """Record, per process, its application threads' states when its driver descriptor is closed."""
    seen: dict[int, list[tuple[str, bool, bool, bool]]] = {}
    drv = sim.appkernel
    real = drv.flush

    def flush(file: Any, caller: Any) -> Any:
        seen.setdefault(caller.pid, []).extend(
            (t.state, t.cpu is not None, t.waiting, t.fault)
            for t in drv.ak.tcbs.live.values()
            if t.pid == caller.pid and t.state != "dead"
        )
        return (yield from real(file, caller))

    drv.flush = flush
    return seen


def _racer(pid: int) -> Any:
    """Send SIGKILL to `pid` until it exists: lands before the victim's crt0 has even run."""
    while (yield from errno_of(libc.kill(pid, abi.SIGKILL))) is not None:
        pass
    return 0


def _killer(victim: Any, delay: int, mode: str, out: list[Any]) -> Any:
    def parent(argv: list[str]) -> Any:
        rfd, wfd = yield from libc.pipe()  # the victim inherits both ends; we keep the write end open
        racer = None
        if mode == "race":  # the victim's pid is the next one (pids are handed out in order)
            racer = yield from libc.thread_create(_racer, (yield from libc.getpid()) + 1)
        pid = yield from libc.spawn(victim, [victim.__name__, str(rfd)])
        if delay and mode == "sleep":
            yield from libc.sleep(delay)
        elif delay and mode == "compute":
            yield from libc.compute(delay)
        if racer is None:
            yield from libc.kill(pid, abi.SIGKILL)
        status = yield from libc.waitpid(pid)
        out.append((pid, status))
        if racer is not None:
            yield from libc.thread_join(racer)
        return 0

    return parent


def kill_once(cpus: int, victim: Any, delay: int, mode: str) -> set[str]:
    out: list[Any] = []
    sim = ak_system(cpus)
    seen = _watch_flush(sim)
    parent = sim.spawn(_killer(victim, delay, mode, out), ["killer"])
    sim.run(limit=LIMIT)  # a MachineError (AP in a freed address space) would propagate here
    assert parent.exit_status == 0
    assert len(out) == 1 and out[0][1] == -abi.SIGKILL, (victim.__name__, delay, mode, out)
    assert_clean(sim)
    return _phases(seen.get(out[0][0]))


@pytest.mark.parametrize("cpus", CPUS)
@pytest.mark.parametrize("victim", list(SCENARIOS), ids=lambda v: v.__name__)
def test_sigkill_from_outside(cpus: int, victim: Any) -> None:
    delays, wanted = SCENARIOS[victim]
    phases = kill_once(cpus, victim, 0, "race")
    for i, delay in enumerate(delays):
        phases |= kill_once(cpus, victim, delay, "sleep" if i % 2 == 0 else "compute")
    assert wanted <= phases, f"kills landed only in {sorted(phases)}"


# --- a process ends itself while other threads of it are out on the APs --------------------------


def _mt_ender(nthreads: int, body: Any, pre: int, how: str) -> Any:
    def main(argv: list[str]) -> Any:
        for i in range(nthreads):
            yield from libc.thread_create(body, 37 * i)
        yield from libc.compute(pre)
        if how == "exit":
            yield from libc.exit(7)
        if how == "illegal":
            yield Illegal()
        return 7  # main returns: crt0 calls exit(7)

    return main


@pytest.mark.parametrize("cpus", CPUS)
@pytest.mark.parametrize("how", ["exit", "return", "illegal"])
def test_exit_while_threads_compute(cpus: int, how: str) -> None:
    want = -abi.SIGILL if how == "illegal" else 7
    for nthreads, pre in ((1, 0), (3, 2000), (cpus + 1, 30000)):
        sim, _, proc = run_beside(cpus, "pipeline", _mt_ender(nthreads, _t_compute, pre, how), ["ender"])
        assert proc.exit_status == want
        assert sim.stats["tcbs_created"] == nthreads + 1 + 2  # + pipeline and its child


@pytest.mark.parametrize("cpus", CPUS)
def test_main_returns_while_threads_blocked(cpus: int) -> None:
    def blocked_reader(fd: int) -> Any:
        yield from libc.read(fd, libc.PROGRAM_DATA + 64, 4)

    def main(argv: list[str]) -> Any:
        rfd, _wfd = yield from libc.pipe()
        for _ in range(2):
            yield from libc.thread_create(_t_sleep, 0)
        yield from libc.thread_create(blocked_reader, rfd)
        yield from libc.thread_create(_t_compute, 3)
        yield from libc.sleep(30000)  # everyone is out there: blocked in calls, or on an AP
        return 5

    sim, _, proc = run_beside(cpus, "pagetouch", main, ["main"])
    assert proc.exit_status == 5


# --- the invariant itself ------------------------------------------------------------------------


def test_invariant_is_machine_checked() -> None:
    """A running CPU whose CR3 is a frame being freed is a MachineError; other cases are not."""
    m = Machine(cpus=2)
    ap = m.cpus[1]
    pfn = 0x123
    ap.state = "running"
    ap.mmu.paging = True
    ap.mmu.cr3 = pfn << 12
    with pytest.raises(MachineError, match="cpu1"):
        m.frame_released(pfn)
    m.frame_released(pfn + 1)  # another frame: fine
    ap.mmu.paging = False
    m.frame_released(pfn)  # paging off: CR3 is not in use
    ap.mmu.paging = True
    ap.state = "wait-for-sipi"
    m.frame_released(pfn)  # a CPU that does not run


def test_invariant_trips_without_the_driver_flush() -> None:
    """The paper's unhandled case: if the driver did not remove the threads, the kill would be caught."""

    def no_flush(file: Any, caller: Any = None) -> Any:
        return
        yield

    def build() -> Any:
        sim = ak_system(3)
        sim.appkernel.flush = no_flush
        sim.appkernel.release = no_flush
        sim.spawn(_killer(v_compute, 20000, "sleep", []), ["killer"])
        return sim, lambda: None

    with pytest.raises(MachineError, match="still runs in the address space"):
        run_isolated(build)


# --- known bugs ----------------------------------------------------------------------------------


def _call_looper(arg: int) -> Any:
    while True:
        yield from libc.getpid()


def test_exit_races_threads_leaving_their_cpus() -> None:
    """Threads that trap all the time (getpid loops) while the process exits, beside another process."""

    def build(nthreads: int, pre: int) -> Any:
        sim = ak_system(2)
        proc = sim.spawn(_mt_ender(nthreads, _call_looper, pre, "return"), ["ender"])
        sim.spawn("pipeline", ["pipeline", "5"])

        def check() -> None:
            assert proc.exit_status == 7
            assert_clean(sim)

        return sim, check

    for nthreads in (2, 3):
        for pre in (5000, 15000, 20000, 25000, 30000, 35000):
            run_isolated(build, nthreads, pre)


@pytest.mark.parametrize("how", ["exit", "illegal"])
def test_exit_with_a_slow_ap(how: str) -> None:
    """The invariant must not depend on relative speeds: make an AP's context switch slow (2000)."""
    slow = profiles.DEFAULT.with_values("slow AP switch", {"appkernel.CONTEXT_SWITCH": 2000})

    def build() -> Any:
        sim = ak_system(2, costs=slow)
        proc = sim.spawn(_mt_ender(0, _t_compute, 100, how), ["ender"])

        def check() -> None:
            assert proc.exit_status == (7 if how == "exit" else -abi.SIGILL)
            assert_clean(sim)

        return sim, check

    run_isolated(build)
