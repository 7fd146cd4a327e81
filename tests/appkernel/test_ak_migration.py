"""Migration (section 4.3) against hostile and careless processes, and its configuration.

The driver's two migration calls must refuse anything but the protocol (the right
thread, the right state, the right context); a process that forges migration
messages or breaks its entry hurts only itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from akkit import INNOCENTS, LIMIT, alone, assert_clean, errno_of

from apkern import ConfigError, System, libc
from apkern.appkernel import abi as ak
from apkern.bootkernel import abi
from apkern.hw import Load, Perturbation, ReadSysinfo, Store
from apkern.userland.ak_crt0 import MAIN_COMM_WORD

MIG = ("migration",)
STICKY = {"WINDOW_CALLS": 2, "HOME_USER": 10**9, "AWAY_USER": 10**9}  # home after two calls, back only if it must


@pytest.fixture
def sticky(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in STICKY.items():
        monkeypatch.setattr(ak, name, value)


def mig_system(cpus: int) -> System:
    return System(kernel="apkern", cpus=cpus, strict=True, check_tlb=True, check_locks=True, extensions=MIG)


def _driver(fd: int, op: int, tid: int) -> Any:
    return (yield from errno_of(libc.syscall(abi.SYS_DRIVER_CONTROL, fd, op, tid)))


def _idle(_arg: int) -> Any:
    yield from libc.sleep(200_000)
    return 0


def test_driver_refuses_migration_calls_out_of_protocol(sticky: None) -> None:
    results: dict[str, Any] = {}

    def hostile(argv: list[str]) -> Any:
        comm = yield Load(MAIN_COMM_WORD)
        fd = yield Load(comm + ak.FD)
        mine = yield Load(comm + ak.TCB)
        results["home at start"] = yield ReadSysinfo()
        results["home on AP"] = yield from _driver(fd, ak.APKERN_MIGRATE_HOME, mine)
        yield from libc.getpid()
        # the second call ended the window: the thread went home, where its calls are issued now
        results["home after calls"] = (yield ReadSysinfo()) == comm
        yield from libc.thread_create(_idle, 0)
        results["home again"] = yield from _driver(fd, ak.APKERN_MIGRATE_HOME, mine)
        others = [t for t in range(1, 8) if t != mine]
        seen = set()
        for t in others:
            seen.add((yield from _driver(fd, ak.APKERN_MIGRATE_AWAY, t)))
        results["away for others"] = sorted(seen)
        results["still home"] = (yield ReadSysinfo()) == comm
        # its own "away", asked for by the program: it goes back, and the call, issued on the AP, is refused
        results["away by the program"] = yield from _driver(fd, ak.APKERN_MIGRATE_AWAY, mine)
        results["home after that"] = yield ReadSysinfo()
        yield from libc.getpid()
        yield from libc.getpid()
        results["home in the end"] = (yield ReadSysinfo()) == comm
        yield from libc.exit(0)

    sim = mig_system(3)
    innocents = {name: sim.spawn(*INNOCENTS[name]) for name in ("long_sleeper", "pipeline")}
    proc = sim.spawn(hostile, ["hostile"], placement="auto")
    sim.run(limit=LIMIT)
    assert proc.exit_status == 0
    for name, inno in innocents.items():
        assert (inno.exit_status, sim.console(inno.pid)) == alone(3, name)
    assert_clean(sim)
    assert results["home at start"] == 0
    assert results["home on AP"] == -abi.EINVAL
    assert results["home after calls"] and results["still home"] and results["home in the end"]
    assert results["home again"] == -abi.EINVAL
    assert results["away for others"] == [-abi.ESRCH, -abi.EPERM], results["away for others"]
    assert results["away by the program"] == -abi.EINVAL
    assert results["home after that"] == 0
    assert sim.stats["migrations_away"] >= 1 and sim.stats["migrations_home"] >= 2


def test_a_forged_migration_message_is_refused(sticky: None) -> None:
    def forger(argv: list[str]) -> Any:
        comm = yield Load(MAIN_COMM_WORD)
        yield Store(comm + ak.KIND, ak.KIND_MIGRATE)
        yield Store(comm + ak.STATE, ak.POSTED)
        for _ in range(2000):  # the bootstrap thread answers (MIGRATE_HOME refuses) and empties it
            if (yield Load(comm + ak.STATE)) == ak.EMPTY:
                break
            yield from libc.compute(50)
        else:
            return 1
        yield from libc.print(f"pid {(yield from libc.getpid())}\n")
        return 10

    for placement in ("auto", "ap"):
        sim = mig_system(3)
        inno = sim.spawn(*INNOCENTS["pipeline"])
        proc = sim.spawn(forger, ["forger"], placement=placement)
        sim.run(limit=LIMIT)
        assert proc.exit_status == 10, placement
        assert (inno.exit_status, sim.console(inno.pid)) == alone(3, "pipeline")
        assert_clean(sim)


def test_a_broken_entry_kills_only_its_process(sticky: None) -> None:
    def breaker(argv: list[str]) -> Any:
        comm = yield Load(MAIN_COMM_WORD)
        yield Store(comm + ak.MIG_ENTRY, 0x1234)  # not code: its calls at home cannot be made
        yield from libc.getpid()
        yield from libc.getpid()
        yield from libc.print("not reached\n")
        return 0

    sim = mig_system(3)
    inno = sim.spawn(*INNOCENTS["pipeline"])
    proc = sim.spawn(breaker, ["breaker"], placement="auto")
    sim.run(limit=LIMIT)
    assert proc.exit_status == -abi.SIGSEGV
    assert "not reached" not in sim.console(proc.pid)
    assert (inno.exit_status, sim.console(inno.pid)) == alone(3, "pipeline")
    assert_clean(sim)


def test_placement_auto_needs_the_extension() -> None:
    with pytest.raises(ConfigError, match="migration"):
        System(kernel="apkern", cpus=2).spawn("gettid", placement="auto")
    with pytest.raises(ConfigError, match="migration"):
        System(kernel="up").spawn("gettid", placement="auto")
    sim = System(kernel="apkern", cpus=2, extensions=MIG)
    p = sim.spawn("gettid", ["gettid", "3"], placement="auto")
    sim.run()
    assert p.exit_status == 0


def _caller(_arg: int) -> Any:
    while True:
        yield from libc.getpid()


def exit_beside_callers(argv: list[str]) -> Any:
    for i in range(4):
        yield from libc.thread_create(_caller, i)
    yield from libc.compute(int(argv[1]))
    yield from libc.exit(0)


@pytest.mark.parametrize(("cpus", "seed", "delay"), [(2, 3, 20000), (2, 11, 20000), (5, 3, 33333)])
def test_a_thread_killed_on_its_way_home_is_freed(
    cpus: int, seed: int, delay: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process exits while one of its threads is between its system call's entry and its move home
    (these perturbed runs hit that window): the move must find it dead and leave it so, or its TCB leaks."""
    for name, value in {"WINDOW_CALLS": 2, "HOME_USER": 10**9, "AWAY_USER": 0}.items():
        monkeypatch.setattr(ak, name, value)
    sim = System(kernel="apkern", cpus=cpus, extensions=MIG, perturb=seed, check_tlb=True, check_locks=True)
    proc = sim.spawn(exit_beside_callers, ["ebc", str(delay)], placement="auto")
    sim.run(limit=50_000_000)
    assert proc.exit_status == 0
    assert_clean(sim)


def _ping_pong_worker(n: int) -> Any:
    pid = yield from libc.getpid()
    for _ in range(40):
        if (yield from libc.getpid()) != pid:
            return 1
        yield from libc.compute(1)
    return 0


def _ping_pong(argv: list[str]) -> Any:
    tid = yield from libc.thread_create(_ping_pong_worker, 0)
    status = yield from _ping_pong_worker(0)
    joined = yield from libc.thread_join(tid)
    yield from libc.exit(status or joined)


def _aways_before_the_ap_left(sim: System) -> int:
    """MIGRATE_AWAY calls made while the AP that sent the thread home was still on its old context.

    From the trace: the thread's "ak_migrate_home" on an AP, then its "ak_migrate_away" on the
    bootstrap processor before that AP's next context switch.
    """
    tracer = sim.machine.tracer
    hits = 0
    home: dict[Any, tuple[int, int]] = {}
    for m in tracer.marks:
        if m.name == "ak_migrate_home":
            home[m.key] = (m.time, m.cpu)
        elif m.name == "ak_migrate_away" and m.key in home:
            went, cpu = home.pop(m.key)
            left = min((t for t, c, _, _ in tracer.switches if c == cpu and t >= went), default=None)
            hits += left is not None and left > m.time
    return hits


def test_a_thread_sent_back_before_its_ap_left_gets_a_fresh_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ping-pong migration with every CPU's kernel paths stalling: the bootstrap side sends the thread
    back while the AP that sent it home is still on its old context (the run asserts it reached that).
    MIGRATE_AWAY builds a new context, so the AP leaves the old one and the thread runs where it is
    picked. Seen failing with the old context reused: the leaving AP runs the thread's frames instead of
    switching away, outside the scheduler's books, and the run never ends."""
    for name, value in {"WINDOW_CALLS": 2, "HOME_USER": 10**9, "AWAY_USER": 0}.items():
        monkeypatch.setattr(ak, name, value)
    sim = System(
        kernel="apkern",
        cpus=2,
        trace=True,
        check_tlb=True,
        check_locks=True,
        extensions=MIG,
        perturb=Perturbation(3, stall=1.0),
    )
    proc = sim.spawn(_ping_pong, ["ping-pong"], placement="auto")
    sim.run(limit=LIMIT)
    assert proc.exit_status == 0
    assert _aways_before_the_ap_left(sim) >= 1
    assert sim.appkernel.ak.migration.away >= 20
    assert_clean(sim)
