"""Hostile processes: the offender gets an error or dies (or hangs only itself); nobody else notices.

Every run puts an innocent program beside the offender (spawned first, so it has
the same pid as when it runs alone) and asserts that its exit status and console
text are exactly those of a run alone (`akkit.run_beside`), that no TCB survives
(`tcbs_live == 0`, created == freed) and that no `MachineError` happened.

The communication area of the main thread pair is found as a C program would:
crt0 stores its address at `ak_crt0.MAIN_COMM_WORD`; the layout is `appkernel.abi`.

What counts as reasonable for an offender that breaks its own bootstrap channel
(closes the driver, erases its own messages): it may hang itself, like any
process that deadlocks itself, as long as only it hangs and it stays killable:
SIGKILL from its parent ends it with -9 and frees every TCB.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from akkit import INNOCENTS, LIMIT, ak_system, alone, assert_clean, errno_of, run_beside, run_isolated

from apkern import libc
from apkern.appkernel import abi as ak
from apkern.bootkernel import abi
from apkern.hw import CodeAddr, Load, ReadTP, Store, Trap, WriteMem
from apkern.userland.ak_crt0 import MAIN_COMM_WORD

PAGE = 4096
U32 = 0xFFFFFFFF


def main_comm() -> Any:
    return (yield Load(MAIN_COMM_WORD))


def wait_empty(comm: int) -> Any:
    """Spin in user mode until the bootstrap thread has answered the message in `comm` (or give up)."""
    for _ in range(2000):
        if (yield Load(comm + ak.STATE)) == ak.EMPTY:
            return True
        yield from libc.compute(50)
    return False


# --- garbage in its own communication area ------------------------------------------------------


def h_garbage_kind(argv: list[str]) -> Any:
    """STATE=POSTED with a KIND no one knows: the bootstrap thread answers EINVAL; the process goes on."""
    c = yield from main_comm()
    yield Store(c + ak.KIND, 0xDEAD)
    yield Store(c + ak.STATE, ak.POSTED)
    if not (yield from wait_empty(c)):
        return 1
    if (yield Load(c + ak.RESULT)) != -abi.EINVAL & U32:
        return 2
    yield from libc.getpid()  # the channel still works
    return 10


def h_garbage_result(argv: list[str]) -> Any:
    """Scribbles on RESULT between calls: every real result still comes through."""
    c = yield from main_comm()
    me = yield from libc.getpid()
    for _ in range(30):
        yield Store(c + ak.RESULT, 0xFFFFFFF0)
        if (yield from libc.getpid()) != me:
            return 2
    return 10


def h_garbage_state(argv: list[str]) -> Any:
    """Odd STATE values (and a garbage message) between calls."""
    c = yield from main_comm()
    for v in (7, U32, ak.PENDING, ak.POSTED, 0x80000000):
        yield Store(c + ak.STATE, v)
        yield Store(c + ak.KIND, 99)
        yield Store(c + ak.NR, U32)
        yield from libc.compute(3000)
        yield from libc.getpid()
    return 10


def _on_usr1(sig: int) -> Any:
    yield from libc.compute(10)


def h_overwrite_tcb(argv: list[str]) -> Any:
    """Points the TCB word (which crt0's signal forwarding reads) at the innocent's thread, then signals itself:
    the bootstrap thread's handler asks the driver to activate the innocent's thread (EPERM)."""
    c = yield from main_comm()
    yield Store(c + ak.TCB, 1)  # the innocent was spawned first: its application thread is TCB 1
    yield from libc.sigaction(abi.SIGUSR1, _on_usr1)
    yield from libc.kill((yield from libc.getpid()), abi.SIGUSR1)
    yield from libc.compute(20000)
    yield from libc.getpid()
    return 10


def h_overwrite_fd(argv: list[str]) -> Any:
    """Overwrites the FD word (read by crt0's signal forwarding), then signals itself (EBADF there)."""
    c = yield from main_comm()
    yield Store(c + ak.FD, 0xFFFF)
    yield from libc.sigaction(abi.SIGUSR1, _on_usr1)
    yield from libc.kill((yield from libc.getpid()), abi.SIGUSR1)
    yield from libc.compute(20000)
    yield from libc.getpid()
    return 10


def h_munmap_comm(argv: list[str]) -> Any:
    """Unmaps its own communication area (a forwarded munmap): the bootstrap thread faults storing the result."""
    c = yield from main_comm()
    yield from libc.munmap(c, PAGE)
    return 10


def h_close_driver(argv: list[str]) -> Any:
    """Closes crt0's /dev/apkern descriptor: the driver removes its application thread (this one)."""
    c = yield from main_comm()
    yield from libc.close((yield Load(c + ak.FD)))
    return 10


def _forge(c: int, kind: int, nr: int, args: tuple[int, ...] = (), addr: int = 0, error: int = 0) -> Any:
    yield Store(c + ak.KIND, kind)
    yield Store(c + ak.NR, nr)
    for i, a in enumerate(args):
        yield Store(c + ak.ARGS + 4 * i, a)
    yield Store(c + ak.ADDR, addr)
    yield Store(c + ak.ERROR, error)
    yield Store(c + ak.STATE, ak.POSTED)


def h_forged_exit(argv: list[str]) -> Any:
    """A forged exit(42): the bootstrap thread re-issues it while the application thread computes."""
    c = yield from main_comm()
    yield from _forge(c, ak.KIND_SYSCALL, abi.SYS_EXIT, (42,))
    while True:
        yield from libc.compute(50)


def h_forged_kernel_fault(argv: list[str]) -> Any:
    """A forged page fault at a kernel address: the bootstrap thread's reference is a user #PF there."""
    c = yield from main_comm()
    yield from _forge(c, ak.KIND_PAGE_FAULT, 14, addr=0xC0001000, error=ak.FAULT_WRITE)
    while True:
        yield from libc.compute(50)


def h_forged_thread_create(argv: list[str]) -> Any:
    """A forged thread_create with a garbage entry: the new application thread executes no code (#UD)."""
    c = yield from main_comm()
    yield from _forge(c, ak.KIND_SYSCALL, abi.SYS_THREAD_CREATE, (0x12345678, 0, 0))
    while True:
        yield from libc.compute(50)


# program -> expected exit status of the offender
OFFENDERS = {
    h_garbage_kind: 10,
    h_garbage_result: 10,
    h_garbage_state: 10,
    h_overwrite_tcb: 10,
    h_overwrite_fd: 10,
    h_munmap_comm: -abi.SIGSEGV,
    h_close_driver: -abi.SIGKILL,  # its bootstrap thread sees ESRCH on activation: the process kills itself
    h_forged_exit: 42,
    h_forged_kernel_fault: -abi.SIGSEGV,
    h_forged_thread_create: -abi.SIGILL,
}


@pytest.mark.parametrize("cpus", [2, 4])
@pytest.mark.parametrize("innocent", ["pipeline", "pagetouch"])
@pytest.mark.parametrize("offender", list(OFFENDERS), ids=lambda f: f.__name__)
def test_comm_area_garbage(offender: Any, innocent: str, cpus: int) -> None:
    _, _, proc = run_beside(cpus, innocent, offender, [offender.__name__])
    assert proc.exit_status == OFFENDERS[offender]


def test_forged_message_is_reissued() -> None:
    """The process writes a getpid message itself: its bootstrap thread re-issues it, as any other."""
    seen: list[int] = []

    def forger(argv: list[str]) -> Any:
        c = yield from main_comm()
        yield Store(c + ak.RESULT, 0)
        yield from _forge(c, ak.KIND_SYSCALL, abi.SYS_GETPID)
        assert (yield from wait_empty(c))
        seen.append((yield Load(c + ak.RESULT)))
        seen.append((yield from libc.getpid()))  # a real call afterwards still works
        return 0

    sim, _, proc = run_beside(3, "pipeline", forger, ["forger"])
    assert proc.exit_status == 0
    assert seen == [proc.pid, proc.pid]
    s = sim.stats
    assert s["syscalls_by_name"]["getpid"] == 2  # the forged one reached the bootstrap kernel too
    # but the application kernel forwarded only the real calls: getpid and exit (and the pipeline's)
    solo = ak_system(3)
    solo.spawn(*INNOCENTS["pipeline"])
    solo.run(limit=LIMIT)
    assert s["forwarded_calls"] == solo.stats["forwarded_calls"] + 2


# --- hanging itself: only itself, and still killable ---------------------------------------------


def _spin(arg: int) -> Any:
    while True:
        yield from libc.compute(200)


def _sleep_long(arg: int) -> Any:
    yield from libc.sleep(10**9)


def h_close_driver_mt(argv: list[str]) -> Any:
    """Closes the driver with sibling threads out: their bootstrap loops poll forever (only this process)."""
    yield from libc.thread_create(_spin, 0)
    yield from libc.thread_create(_sleep_long, 0)
    yield from libc.compute(5000)
    yield from h_close_driver(argv)
    return 10


def _eraser(comm: int) -> Any:
    while True:
        yield Store(comm + ak.STATE, ak.EMPTY)
        yield from libc.compute(20)


def h_erase_own_messages(argv: list[str]) -> Any:
    """A sibling keeps erasing the main thread's messages: the main thread waits forever."""
    c = yield from main_comm()
    yield from libc.thread_create(_eraser, c)
    for _ in range(100):
        yield from libc.getpid()
    return 10


@pytest.mark.parametrize("cpus", [2, 4])
@pytest.mark.parametrize("offender", [h_erase_own_messages], ids=lambda f: f.__name__)
def test_self_hang_is_confined_and_killable(offender: Any, cpus: int) -> None:
    statuses: list[int] = []

    def parent(argv: list[str]) -> Any:
        pid = yield from libc.spawn(offender, [offender.__name__])
        yield from libc.sleep(400_000)
        yield from libc.kill(pid, abi.SIGKILL)
        statuses.append((yield from libc.waitpid(pid)))
        return 0

    _, _, proc = run_beside(cpus, "pipeline", parent, ["parent"])
    assert proc.exit_status == 0
    assert statuses == [-abi.SIGKILL]  # it was still hanging after 400,000 instructions, and SIGKILL ended it


# --- driver_control from a program: the driver's permission and argument checks ------------------


def _create_block(comm: int, entry: int, tls: int, handlers: int) -> bytes:
    return struct.pack("<6I", comm, entry, 0, 0, tls, handlers)


def test_driver_control_checks() -> None:
    results: dict[str, Any] = {}
    acts: list[tuple[int, int, Any, Any]] = []
    stops: list[tuple[int, int, Any, Any]] = []
    holder: dict[str, Any] = {}

    def owners() -> dict[int, tuple[int, int]]:
        return {t.id: (t.pid, t.owner) for t in holder["sim"].appkernel.ak.tcbs.live.values() if t.state != "dead"}

    def hostile(argv: list[str]) -> Any:
        me = yield from libc.getpid()
        yield from libc.sleep(20000)  # the innocents' application threads exist by now
        fd = yield from libc.open(ak.DEVICE, abi.O_RDWR)
        sibling = yield from libc.thread_create(_sleep_long, 0)
        yield from libc.sleep(20000)
        results["me"] = me
        results["sibling_btid"] = sibling
        for tid in [*range(0, 12), 255, 256, 257, 10**6, -1]:
            before = owners().get(tid)
            r = yield from errno_of(libc.syscall(abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_ACTIVATE_THREAD, tid))
            acts.append((tid, r, before, owners().get(tid)))
            r = yield from errno_of(libc.syscall(abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_STOP_THREADS, tid))
            stops.append((tid, r, before, owners().get(tid)))
        for op in (0, 4, 99, -1, 1 << 31):
            results[f"op {op}"] = yield from errno_of(libc.syscall(abi.SYS_DRIVER_CONTROL, fd, op, 0))
        good = yield from libc.mmap(2 * PAGE)
        yield Store(good, 0)
        yield Store(good + PAGE, 0)
        buf = (yield ReadTP()) + libc.STAGING_OFFSET
        entry = 0x08048000
        for name, block in [
            ("comm in kernel", _create_block(0xC0001000, entry, good + PAGE, good)),
            ("comm unmapped", _create_block(0x50000000, entry, good + PAGE, good)),
            ("comm across USER_TOP", _create_block(0xBFFFFF80, entry, good + PAGE, good)),
            ("comm at 0", _create_block(0, entry, good + PAGE, good)),
            ("handlers in kernel", _create_block(good, entry, good + PAGE, 0xC0000000)),
            ("tls in kernel", _create_block(good, entry, 0xC0000010, good)),
        ]:
            yield WriteMem(buf, block)
            results[name] = yield from errno_of(libc.syscall(abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_CREATE_THREAD, buf))
        for name, ptr in [("block unmapped", 0x50000000), ("block in kernel", 0xC0000000), ("block at 0", 0)]:
            results[name] = yield from errno_of(libc.syscall(abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_CREATE_THREAD, ptr))
        results["block across USER_TOP"] = yield from errno_of(
            libc.syscall(abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_CREATE_THREAD, 0xBFFFFFF0)
        )
        mine = yield Load((yield from main_comm()) + ak.TCB)
        for bad in (999, 64, -5):
            results[f"fd {bad}"] = yield from errno_of(
                libc.syscall(abi.SYS_DRIVER_CONTROL, bad, ak.APKERN_ACTIVATE_THREAD, mine)
            )
        results["fd 1 (console)"] = yield from errno_of(
            libc.syscall(abi.SYS_DRIVER_CONTROL, 1, ak.APKERN_ACTIVATE_THREAD, mine)
        )
        results["mine"] = mine
        yield from libc.exit(0)  # the sleeping sibling goes with the process

    sim = ak_system(3)
    holder["sim"] = sim
    innocents = {name: sim.spawn(*INNOCENTS[name]) for name in ("long_sleeper", "pipeline")}
    proc = sim.spawn(hostile, ["hostile"])
    sim.run(limit=LIMIT)
    assert proc.exit_status == 0
    for name, inno in innocents.items():
        assert (inno.exit_status, sim.console(inno.pid)) == alone(3, name)
    assert_clean(sim)

    me = results["me"]
    verdicts = {"EPERM other process": 0, "EPERM own sibling": 0, "own": 0, "ESRCH": 0}
    for tid, r, before, after in acts:
        if before is None and after is None:
            assert r == -abi.ESRCH, (tid, r)
            verdicts["ESRCH"] += 1
        elif before is not None and before == after and before[0] != me:
            assert r == -abi.EPERM, (tid, r, before)
            verdicts["EPERM other process"] += 1
        elif before is not None and before == after and tid == results["mine"]:
            assert r == 0, (tid, r)  # its own thread, named by the bootstrap thread that owns it
            verdicts["own"] += 1
        elif before is not None and before == after:
            assert r == -abi.EPERM, (tid, r, before)  # a thread of its own, owned by another bootstrap thread
            assert before[1] == results["sibling_btid"]
            verdicts["EPERM own sibling"] += 1
    assert verdicts["EPERM other process"] >= 1 and verdicts["EPERM own sibling"] == 1, verdicts
    assert verdicts["own"] == 1 and verdicts["ESRCH"] >= 10, verdicts
    # the unmap protocol's stop: only the bootstrap thread that owns a thread may stop its siblings
    stop_verdicts = {"EPERM": 0, "own": 0, "ESRCH": 0}
    for tid, r, before, after in stops:
        if before is None and after is None:
            assert r == -abi.ESRCH, (tid, r)
            stop_verdicts["ESRCH"] += 1
        elif before is not None and before == after and tid == results["mine"]:
            assert r == 0, (tid, r)  # its own thread, while its message is handled: holds its own siblings
            stop_verdicts["own"] += 1
        elif before is not None and before == after:
            assert r == -abi.EPERM, (tid, r, before)
            stop_verdicts["EPERM"] += 1
    assert stop_verdicts["EPERM"] >= 2 and stop_verdicts["own"] == 1 and stop_verdicts["ESRCH"] >= 10, stop_verdicts
    for op in (0, 4, 99, -1, 1 << 31):
        assert results[f"op {op}"] == -abi.EINVAL
    for name in (
        "comm in kernel",
        "comm unmapped",
        "comm across USER_TOP",
        "comm at 0",
        "handlers in kernel",
        "tls in kernel",
        "block unmapped",
        "block in kernel",
        "block at 0",
        "block across USER_TOP",
    ):
        assert results[name] == -abi.EFAULT, name
    assert results["fd 999"] == results["fd 64"] == results["fd -5"] == -abi.EBADF
    assert results["fd 1 (console)"] == -abi.ENOTTY


def test_rogue_application_threads_are_cleaned_up() -> None:
    """A valid create block through its own descriptor: the extra threads die with the process."""
    created: list[int] = []

    def rogue(a0: int, a1: int) -> Any:
        yield from libc.compute(3000)
        yield from libc.getpid()  # posted into a communication area no bootstrap thread serves: waits forever

    def hostile(argv: list[str]) -> Any:
        fd = yield from libc.open(ak.DEVICE, abi.O_RDWR)
        area = yield from libc.mmap(4 * PAGE)
        for p in range(4):
            yield Store(area + p * PAGE, 0)
        buf = (yield ReadTP()) + libc.STAGING_OFFSET
        stack_tls = area + 3 * PAGE
        for entry in ((yield from code_addr(rogue)), 0x12345678):  # real code, then garbage (#UD)
            yield WriteMem(buf, _create_block(area, entry, stack_tls, area + PAGE))
            created.append((yield from libc.syscall(abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_CREATE_THREAD, buf)))
        yield from libc.sleep(50_000)
        return 4

    sim, _, proc = run_beside(3, "pagetouch", hostile, ["hostile"])
    assert proc.exit_status == 4
    assert len(created) == 2 and all(t > 0 for t in created)
    assert sim.stats["forwarded_exceptions"] == 1  # the garbage entry ran into #UD on an AP


def code_addr(func: Any) -> Any:
    return (yield CodeAddr(func))


# --- raw traps from the application thread ------------------------------------------------------


def test_raw_traps_are_rejected_on_the_ap() -> None:
    got: dict[str, int] = {}

    def prog(argv: list[str]) -> Any:
        got["junk"] = yield Trap(abi.SYSCALL, "junk")
        got["empty"] = yield Trap(abi.SYSCALL)
        got["huge arg"] = yield Trap(abi.SYSCALL, abi.SYS_GETPID, 1 << 40)
        got["huge nr"] = yield Trap(abi.SYSCALL, 1 << 33)
        got["float arg"] = yield Trap(abi.SYSCALL, abi.SYS_GETPID, 1.5)
        got["bool nr"] = yield Trap(abi.SYSCALL, True)
        got["unknown nr"] = yield Trap(abi.SYSCALL, 999)
        got["pid"] = yield Trap(abi.SYSCALL, abi.SYS_GETPID)
        return 0

    sim, _, proc = run_beside(2, "pipeline", prog, ["prog"])
    assert proc.exit_status == 0
    for k in ("junk", "empty", "huge arg", "huge nr", "float arg", "bool nr"):
        assert got[k] == -abi.EINVAL, k
    assert got["unknown nr"] == -abi.ENOSYS  # a well-formed call: forwarded, and the bootstrap kernel says ENOSYS
    assert got["pid"] == proc.pid


@pytest.mark.parametrize("nr", [-1, -(1 << 31)])
def test_negative_syscall_number(nr: int) -> None:
    def build() -> Any:
        got: list[int] = []

        def prog(argv: list[str]) -> Any:
            got.append((yield Trap(abi.SYSCALL, nr)))
            return 0

        sim = ak_system(2)
        inno = sim.spawn("pipeline", ["pipeline", "3"])
        proc = sim.spawn(prog, ["prog"])

        def check() -> None:
            assert got == [-abi.ENOSYS] and proc.exit_status == 0 and inno.exit_status == 0

        return sim, check

    run_isolated(build)


# --- a stale TLB entry on an AP after the process unmaps memory ---------------------------------


def _scribbler(base: int) -> Any:
    while True:
        yield Store(base, 0xBADBAD)
        yield Store(base + PAGE - 4, 0xBADBAD)
        yield from libc.compute(30)


def h_unmap_under_sibling(argv: list[str]) -> Any:
    """One thread keeps writing a page (its AP caches the translation) while another unmaps it."""
    base = yield from libc.mmap(PAGE)
    yield Store(base, 1)
    yield from libc.thread_create(_scribbler, base)
    yield from libc.compute(20000)
    yield from libc.munmap(base, PAGE)
    yield from libc.sleep(400_000)
    yield from libc.exit(3)


@pytest.mark.parametrize("cpus", [3, 4])
def test_unmap_does_not_leak_into_other_processes(cpus: int) -> None:
    def build() -> Any:
        sim = ak_system(cpus)
        proc = sim.spawn(h_unmap_under_sibling, ["h"])
        inno = sim.spawn("pagetouch", ["pagetouch", "64"])

        def check() -> None:
            # as on the uniprocessor kernel: the scribbler's next write after the unmap faults
            assert proc.exit_status == -abi.SIGSEGV
            assert (inno.exit_status, sim.console(inno.pid)) == (0, "pagetouch: 64 pages ok\n")

        return sim, check

    run_isolated(build)


@pytest.mark.parametrize("cpus", [2, 4])
def test_closing_the_driver_with_threads_running_kills_only_the_offender(cpus: int) -> None:
    _, _, offender = run_beside(cpus, "pipeline", h_close_driver_mt, ["h_close_driver_mt"])
    assert offender.exit_status == -abi.SIGKILL
