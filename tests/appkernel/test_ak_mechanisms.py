"""The paper's mechanisms really happen: observed through counters and trace marks the code paths produce.

- AP start-up by INIT + SIPI through a trampoline page below 1 MiB; per-CPU vector tables (section 3.2);
- every system call and page fault of an application thread is forwarded to the bootstrap thread,
  which re-issues it (Figure 2's seven steps, in the trace);
- user code runs on the APs only; the BSP runs the bootstrap kernel and the bootstrap threads;
- timer preemption among ready threads on the APs;
- section 4.3: a page fault of one thread stops the other threads of its process until it is resolved;
- the ready-queue spinlock is contended, and that costs spinning.
"""

from __future__ import annotations

from typing import Any

import pytest
from akkit import INNOCENTS, LIMIT, ak_system, assert_clean, run_isolated

import apkern
from apkern import libc
from apkern.hw import Compute, Machine, Rdtsc, Store
from apkern.hw import traps as vec

PAGE = 4096


# --- configuration and start-up -----------------------------------------------------------------


@pytest.mark.parametrize("cpus", [1, 0, True])
def test_apkern_needs_an_application_processor(cpus: Any) -> None:
    with pytest.raises(apkern.ConfigError):
        apkern.System(kernel="apkern", cpus=cpus)


def _hello(argv: list[str]) -> Any:
    yield from libc.getpid()
    yield from libc.compute(30_000)  # a few timer periods
    return 0


@pytest.mark.parametrize("cpus", [2, 3, 8])
def test_aps_start_by_init_sipi_through_low_memory(cpus: int) -> None:
    sim = ak_system(cpus)
    sent: list[tuple[int, int, str, int]] = []
    intc = sim.machine.intc
    real = intc.send_ipi

    def send_ipi(src: int, dest: int, kind: str, vector: int = 0) -> None:
        sent.append((src, dest, kind, vector))
        real(src, dest, kind, vector)

    intc.send_ipi = send_ipi  # the machine has not run yet: the kernel boots inside run()
    assert all(c.state == "reset" for c in sim.machine.cpus[1:])
    sim.spawn(_hello, ["hello"])
    sim.run(limit=LIMIT)
    cpus_ = sim.machine.cpus
    assert [c.state for c in cpus_] == ["running"] * cpus
    assert sim.stats["ipis"] >= 2 * (cpus - 1)
    for ap in range(1, cpus):
        mine = [(kind, vector) for src, dest, kind, vector in sent if dest == ap and kind in ("init", "sipi")]
        assert [k for k, _ in mine] == ["init", "sipi"], mine  # INIT first, then one SIPI
        assert all(src == 0 for src, dest, _, _ in sent if dest == ap and _ in ("init", "sipi"))
        page = mine[1][1]
        assert 0 < page < 0x100  # the trampoline page lies below 1 MiB (an 8-bit page number)
    # requirement 4: the BSP's vector table is the bootstrap kernel's, each AP has the application kernel's own
    bsp = cpus_[0]
    assert bsp.ivt[vec.SYSCALL].handler.__self__ is sim.kernel.traps
    assert bsp.ivt[vec.PF].handler.__self__ is sim.kernel.traps
    ivts = [c.ivt for c in cpus_[1:]]
    for ivt in ivts:
        assert ivt is not bsp.ivt
        assert ivt[vec.SYSCALL].handler.__self__ is sim.appkernel.ak.traps
        assert ivt[vec.PF].handler.__self__ is sim.appkernel.ak.traps
    assert len({id(i) for i in ivts}) == cpus - 1
    # requirement 2: each AP has its own timer, and it ticks; paging is on
    for c in cpus_[1:]:
        assert c.timer.fired > 0 and c.mmu.paging


def test_nothing_but_init_then_sipi_to_code_starts_an_ap() -> None:
    m = Machine(cpus=3)
    page = 0x10
    m.intc.send_ipi(0, 1, "sipi", page)  # a SIPI without INIT is ignored
    assert m.cpus[1].state == "reset"
    m.intc.send_ipi(0, 2, "init")
    m.intc.send_ipi(0, 2, "sipi", page)  # the page holds no start-up code
    assert m.cpus[2].state == "shutdown"


# --- forwarding ----------------------------------------------------------------------------------

N_GETPID, N_GETTID = 5, 3


def _caller(out: list[Any]) -> Any:
    def prog(argv: list[str]) -> Any:
        yield from libc.compute(1000)
        for _ in range(N_GETPID):
            out.append(("getpid", (yield from libc.getpid())))
        for _ in range(N_GETTID):
            out.append(("gettid", (yield from libc.gettid())))
        return 0

    return prog


def test_every_system_call_is_forwarded_and_reissued() -> None:
    out: list[Any] = []
    sim = ak_system(3, trace=True)
    proc = sim.spawn(_caller(out), ["caller"])
    sim.run(limit=LIMIT)
    s = sim.stats
    assert proc.exit_status == 0
    assert s["forwarded_calls"] == N_GETPID + N_GETTID + 1  # and the exit crt0 makes after main returns
    assert s["syscalls_by_name"]["getpid"] == N_GETPID  # the bootstrap kernel served them
    assert s["syscalls_by_name"]["gettid"] == N_GETTID + 1  # and crt0's own: it notes the main pair's thread
    bootstrap_tid = sim.kernel.procs[proc.pid].threads[0].tid
    # the bootstrap thread re-issued them: gettid answers *its* id, in the bootstrap kernel
    assert out == [("getpid", proc.pid)] * N_GETPID + [("gettid", bootstrap_tid)] * N_GETTID

    # Figure 2 in the trace, for every call: trap and post on an AP, re-issue on the BSP, activation, resume
    marks = sorted(sim.machine.tracer.marks, key=lambda m: m.time)
    pos = 0

    def find(name: str, key: Any = None, call: str | None = None) -> Any:
        """The next mark called `name` (for `key`, or with a system call among `call`, 'exit')."""
        nonlocal pos
        while pos < len(marks):
            m = marks[pos]
            pos += 1
            if m.name != name or (key is not None and m.key != key):
                continue
            if call is not None and m.args.get("call") not in (call, "exit"):
                continue
            return m
        raise AssertionError(f"no {name} mark where Figure 2 needs one")

    chains = 0
    for call, _ in out:
        trap = find("ak_trap")  # step 1: the application thread traps, on an AP
        post = find("ak_posted", trap.key)  # step 2: the message goes into the communication area
        reissue = find("sys_enter", call=call)  # steps 3-4: the bootstrap thread issues the same call
        act = find("ak_activated", trap.key)  # step 6: apkern_activate_thread, on the BSP
        resumed = find("ak_resumed", trap.key)  # step 7: the application thread goes on, on an AP
        assert trap.cpu != 0 and post.cpu != 0 and resumed.cpu != 0
        assert reissue.cpu == 0 and act.cpu == 0
        assert reissue.args["call"] == call and reissue.key == bootstrap_tid
        assert trap.time <= post.time < reissue.time < act.time < resumed.time
        chains += 1
    assert chains == N_GETPID + N_GETTID

    # the uniprocessor kernel alone makes the same calls itself, with nothing forwarded
    out_up: list[Any] = []
    up = apkern.System(kernel="up", strict=True)
    up.spawn(_caller(out_up), ["caller"])
    up.run(limit=LIMIT)
    assert "forwarded_calls" not in up.stats
    assert up.stats["syscalls_by_name"]["getpid"] == N_GETPID


def _toucher(pages: int) -> Any:
    def prog(argv: list[str]) -> Any:
        base = yield from libc.mmap(pages * PAGE)
        for p in range(pages):
            yield Store(base + p * PAGE, p)
        return 0

    return prog


def test_page_faults_are_forwarded() -> None:
    stats = []
    for pages in (4, 20):
        sim = ak_system(3)
        sim.spawn(_toucher(pages), ["toucher"])
        sim.run(limit=LIMIT)
        assert_clean(sim)
        stats.append(sim.stats)
    assert stats[1]["forwarded_page_faults"] - stats[0]["forwarded_page_faults"] == 16
    assert stats[1]["page_faults"] - stats[0]["page_faults"] == 16  # each one re-raised on the BSP
    assert stats[1]["forwarded_calls"] == stats[0]["forwarded_calls"]


def _computer(n: int) -> Any:
    def prog(argv: list[str]) -> Any:
        yield from libc.compute(n)
        return 0

    return prog


@pytest.mark.parametrize("cpus", [2, 4])
def test_user_code_runs_only_on_aps(cpus: int) -> None:
    user = []
    for n in (200_000, 600_000):
        sim = ak_system(cpus, trace=True)
        proc = sim.spawn(_computer(n), ["computer"])
        sim.run(limit=LIMIT)
        pc = sim.stats["per_cpu"]
        user.append((pc[0]["user_instructions"], sum(c["user_instructions"] for c in pc[1:])))
        # what each CPU ran: the BSP only the bootstrap kernel's contexts (its idle loop, the bootstrap
        # thread), the APs only application threads, their idle loops and start-up code
        app_ctx = f"{proc.pid}:app"
        for _, cpu, _, new in sim.machine.tracer.switches:
            if cpu == 0:
                assert not new.startswith(app_ctx) and not new.startswith("ak-"), new
            else:
                assert new.startswith((app_ctx, "ak-idle", f"ap{cpu}-startup")), new
    (bsp1, aps1), (bsp2, aps2) = user
    assert aps2 - aps1 == 400_000  # the extra computation ran, all of it, on the APs
    assert bsp2 - bsp1 < 400_000 // 4  # the BSP only polled (the bootstrap loop)
    assert bsp1 < aps1 // 4


# --- scheduling on the APs -------------------------------------------------------------------------


def _progress(log: list[tuple[int, int]], i: int) -> Any:
    def prog(argv: list[str]) -> Any:
        for _ in range(30):
            yield from libc.compute(10_000)
            log.append((i, (yield Rdtsc())))
        return 0

    return prog


@pytest.mark.parametrize("cpus", [2, 3])
def test_timer_preemption_shares_the_aps(cpus: int) -> None:
    """More compute-bound processes than APs: all progress together, by preemption."""
    log: list[tuple[int, int]] = []
    sim = ak_system(cpus)
    nprocs = cpus + 1  # cpus - 1 APs
    procs = [sim.spawn(_progress(log, i), [f"w{i}"]) for i in range(nprocs)]
    sim.run(limit=LIMIT)
    assert [p.exit_status for p in procs] == [0] * nprocs
    assert sim.stats["ak_preemptions"] > 0
    first = [min(t for j, t in log if j == i) for i in range(nprocs)]
    last = [max(t for j, t in log if j == i) for i in range(nprocs)]
    assert max(first) < min(last)  # everyone had started before anyone finished
    assert_clean(sim)


# --- section 4.3: a page fault stops the other threads of the process ------------------------------


class FaultRun:
    """A main thread touching fresh pages while `nsib` siblings compute and time-stamp in user mode."""

    def __init__(self, cpus: int, nsib: int, pages: int) -> None:
        self.pages = pages
        self.stamps: list[tuple[int, int]] = []  # (sibling, time)
        self.resolved: list[tuple[int, int]] = []  # (time, address) of page-table changes on the BSP
        self.region: list[int] = []
        stop: list[bool] = []
        stamps = self.stamps

        def sibling(i: int) -> Any:
            while not stop:
                yield Compute(20)  # user instructions, then a time stamp: a gap > ~25 means it did not run
                stamps.append((i, (yield Rdtsc())))
            return 0

        def main(argv: list[str]) -> Any:
            base = yield from libc.mmap(pages * PAGE)
            self.region.append(base)
            tids = []
            for i in range(nsib):
                tids.append((yield from libc.thread_create(sibling, i)))
            yield from libc.compute(30000)  # the siblings are out on the APs
            for p in range(pages):
                yield Store(base + p * PAGE, p)
                yield from libc.compute(3000)
            stop.append(True)
            for t in tids:
                yield from libc.thread_join(t)
            return 0

        self.sim = sim = ak_system(cpus, trace=True)
        self.proc = sim.spawn(main, ["main"])
        aspace = sim.kernel.procs[self.proc.pid].aspace
        real = aspace.resolve_fault

        def resolve_fault(addr: int, *args: Any, **kw: Any) -> Any:
            self.resolved.append((sim.now, addr))  # the bootstrap kernel changes this address space now
            return real(addr, *args, **kw)

        aspace.resolve_fault = resolve_fault

    def windows(self) -> list[tuple[int, int]]:
        """For each fault of the main thread in its region: (page table changed, faulting thread activated)."""
        marks = self.sim.machine.tracer.marks
        main_tcb = min(m.key for m in marks if m.name == "ak_trap" and m.cpu != 0)
        acts = [m.time for m in marks if m.name == "ak_activated" and m.key == main_tcb]
        lo = self.region[0]
        return [(t, min(a for a in acts if a >= t)) for t, addr in self.resolved if lo <= addr < lo + self.pages * PAGE]


@pytest.mark.parametrize(("cpus", "nsib"), [(4, 1), (4, 2), (8, 3), (8, 6)])
def test_page_fault_stops_sibling_threads(cpus: int, nsib: int) -> None:
    """Observable: the siblings stamp the time (Rdtsc) every ~21 user instructions. For every fault of the
    main thread, from the moment the bootstrap kernel changes the page table (resolve_fault on the BSP)
    until the application kernel activates the faulting thread, no sibling stamps: none executes user code.
    Yet they stamp before the first and after the last window, so they were running, not idle."""
    run = FaultRun(cpus, nsib, pages=10)
    run.sim.run(limit=LIMIT)
    assert run.proc.exit_status == 0
    windows = run.windows()
    assert len(windows) == run.pages
    assert run.sim.stats["forwarded_page_faults"] >= run.pages
    for start, end in windows:
        assert end > start
        inside = [s for s in run.stamps if start <= s[1] <= end]
        assert not inside, (start, end, inside[:5])
    for i in range(nsib):
        mine = [t for j, t in run.stamps if j == i]
        assert min(mine) < windows[0][0] and max(mine) > windows[-1][1]
    assert_clean(run.sim)


def _segv_with_siblings(nsib: int) -> Any:
    def main(argv: list[str]) -> Any:
        for i in range(nsib):
            yield from libc.thread_create(_spinner, 37 * i)
        yield from libc.load(0x10)  # a forwarded page fault that the bootstrap kernel answers with SIGSEGV
        return 7

    return main


def _spinner(arg: int) -> Any:
    while True:
        yield from libc.compute(300 + arg)


@pytest.mark.parametrize(
    ("kind", "cpus", "nsib"), [("segv", 3, 3), ("segv", 4, 5), ("segv", 4, 7), ("touch", 3, 2)], ids=str
)
def test_page_fault_while_siblings_are_preempted(kind: str, cpus: int, nsib: int) -> None:
    """More threads than APs, so siblings are often in the kernel when a fault stops them.
    Correct runs need at most ~1,050,000 instructions (checked with the race closed)."""

    def build() -> Any:
        if kind == "touch":
            run = FaultRun(cpus, nsib, pages=10)
            return run.sim, lambda: None
        sim = ak_system(cpus)
        proc = sim.spawn(_segv_with_siblings(nsib), ["segv"])

        def check() -> None:
            assert proc.exit_status == -11
            assert_clean(sim)

        return sim, check

    run_isolated(build, limit=2_500_000)


# --- the spinlock ---------------------------------------------------------------------------------


def test_spinlock_contention_is_counted() -> None:
    sim = ak_system(8)
    for name in ("pipeline", "pagetouch"):
        sim.spawn(*INNOCENTS[name])
    sim.spawn(_progress([], 0), ["w"])
    sim.run(limit=LIMIT)
    s = sim.stats
    assert s["spinlock_contended"] > 0
    assert s["spinlock_spins"] >= s["spinlock_contended"]
    assert s["spinlock_acquisitions"] > s["spinlock_contended"]
    assert any(c["spin_instructions"] > 0 for c in s["per_cpu"][1:])  # APs spun on the lock word
    assert_clean(sim)
