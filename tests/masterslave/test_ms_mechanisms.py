"""The master-slave port's mechanisms, each with a test that fails when the mechanism is taken out.

The differential suite (tests/differential, every kernel of `diffkit.PORTS`) shows that
programs behave as on the uniprocessor, with the TLB checker on; test_ms_death.py that no
CPU is left in a dying address space. The tests here catch what only costs time when
missing, and check the port's division of labour and its accounting:
- no bootstrap-kernel code ever runs on a slave (only the port's stub, scheduler and IPIs);
- user code goes to idle slaves first: in an otherwise empty system every call is handed
  over, and the master runs no user code (the idle test on the way back to user mode, and
  `wakes`, which keeps the master from taking a thread a woken slave is coming for);
- a thread made runnable starts at once on an idle slave (the wake-up IPI);
- a call queued while the master runs user code is served at once (the master's state
  word and the IPI to it), not at the master's next tick;
- a kill reaches a thread computing on a slave at once (the kick IPI);
- threads share the CPUs: the slaves' time slices, and the master's;
- only the master keeps time, every CPU has its own timer; the slaves are all up
  before anything is scheduled; the queues in memory are the lists the port keeps;
- lock misuse stops the machine; the same seed gives the same numbers.
"""

from __future__ import annotations

import collections
import re
from typing import Any

import pytest
from mskit import KERNEL, call_latency_beside_hogs, dies_at_once, fair_share, kill_delay, run, thread_start_delay

from apkern import System
from apkern.bootkernel import costs as boot_costs
from apkern.bootkernel.trap import Traps
from apkern.experiments.attribution import _innermost_file
from apkern.hw import MachineError
from apkern.masterslave.trap import MSTraps
from apkern.workloads import radix

START_BOUND = 2_000  # an IPI wakes an idle slave in a few hundred instructions; a tick takes 10,000
KILL_BOUND = 3_000
CALL_BOUND = 2_000  # a handed-over call with the master in user mode: a few hundred instructions


def _number(text: str, what: str) -> int:
    m = re.search(rf"{what} ([0-9.]+)", text)
    assert m, text
    return float(m.group(1)) if "." in m.group(1) else int(m.group(1))


class _WhoRuns:
    """A profiler: the files whose code the slaves ran, by account (kernel, idle, spin)."""

    def __init__(self) -> None:
        self.files: collections.Counter[tuple[str, str]] = collections.Counter()

    def charge(self, cpu: Any, frame: Any, account: str, n: int) -> None:
        if cpu.id and account != "user":
            self.files[(_innermost_file(frame).rsplit("/apkern/", 1)[-1], account)] += n


def _slave_code(program: str, argv: list[str], cpus: int = 4) -> set[str]:
    sim = System(kernel=KERNEL, cpus=cpus, strict=True, check_tlb=True, check_locks=True)
    who = _WhoRuns()
    sim.machine.profile(who)
    proc = sim.spawn(program, argv)
    sim.run(limit=200_000_000)
    assert proc.exit_status == 0
    assert sum(c["user_instructions"] for c in sim.stats["per_cpu"][1:]) > 0  # the slaves did run user code
    return {f for f, _ in who.files}


@pytest.mark.parametrize("prog", [["threads", "9"], ["signals"], ["pipeline", "40"], ["pagetouch", "24"]], ids=str)
def test_no_bootstrap_kernel_code_runs_on_a_slave(prog: list[str]) -> None:
    files = _slave_code(prog[0], prog)
    assert files and all(f.startswith(("masterslave/", "portkit/")) for f in files), files  # the port's code only


def test_the_check_sees_kernel_code_on_a_slave(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port whose slaves keep time themselves (the kernel's timer handler) is caught."""
    monkeypatch.setattr(MSTraps, "slave_timer", Traps.timer)
    assert "bootkernel/trap.py" in _slave_code("threads", ["threads", "3"])


@pytest.mark.parametrize("cpus", [2, 4, 8])
def test_in_an_empty_system_every_call_is_handed_over_and_the_master_runs_no_user_code(cpus: int) -> None:
    sim, proc = run("gettid", ["gettid", "50"], cpus, limit=5_000_000)
    assert proc.exit_status == 0
    st = sim.stats
    assert st["per_cpu"][0]["user_instructions"] == 0 and st["master_user_picks"] == 0
    assert st["handoffs"] == st["syscalls"] + st["page_faults"]  # every trap and exception
    assert st["wakeup_ipis"] >= st["handoffs"] and st["notify_ipis"] >= st["handoffs"]


@pytest.mark.parametrize("cpus", [2, 4, 8])
def test_a_new_thread_starts_at_once_on_an_idle_slave(cpus: int) -> None:
    sim, proc = run(thread_start_delay, ["tsd", "5"], cpus)
    assert proc.exit_status == 0
    assert 0 < _number(sim.console(), "worst start delay") < START_BOUND
    assert sim.stats["wakeup_ipis"] >= 5


@pytest.mark.parametrize("cpus", [2, 4])
def test_a_call_queued_while_the_master_runs_user_code_is_served_at_once(cpus: int) -> None:
    sim, proc = run(call_latency_beside_hogs, ["cl", str(cpus), "300"], cpus)
    assert proc.exit_status == 0
    st = sim.stats
    assert st["master_user_picks"] > 0 and st["notify_ipis"] > 0  # the master did run user code, and was told
    assert 0 < _number(sim.console(), "worst call latency") < CALL_BOUND


@pytest.mark.parametrize("cpus", [2, 4, 8])
def test_sigkill_reaches_a_thread_computing_on_a_slave_at_once(cpus: int) -> None:
    sim, proc = run(kill_delay, ["kd", "5"], cpus)
    assert proc.exit_status == 0
    assert 0 < _number(sim.console(), "worst kill delay") < KILL_BOUND
    assert sim.stats["kick_ipis"] > 0


@pytest.mark.parametrize(("cpus", "threads"), [(2, 3), (4, 6)])
def test_threads_share_the_cpus(cpus: int, threads: int) -> None:
    """More computing threads than CPUs finish close together: slaves and master both give way at a slice's end."""
    sim, proc = run(fair_share, ["fs", str(threads)], cpus)
    assert proc.exit_status == 0
    assert _number(sim.console(), "finish spread") < 1.25
    assert sim.stats["slave_preemptions"] > 0 and sim.stats["master_user_picks"] > 0


@pytest.mark.parametrize("cpus", [1, 8])
def test_only_the_master_keeps_time_but_every_cpu_has_its_timer(cpus: int) -> None:
    sim, proc = run(radix, ["radix", "4", "3001", "8"], cpus)
    assert proc.exit_status == 0
    st = sim.stats
    assert abs(st["ticks"] - st["time"] // boot_costs.TICK) <= 1
    assert all(c["timer_interrupts"] > 0 for c in st["per_cpu"])


@pytest.mark.parametrize("cpus", [4, 8])
def test_every_slave_is_up_before_anything_runs(cpus: int) -> None:
    sim, proc = run(dies_at_once, ["die"], cpus, perturb=2)
    assert proc.exit_status == -11
    assert sim.stats["aps_started"] == cpus - 1


def test_the_queues_in_memory_are_the_queues_the_port_keeps() -> None:
    """Stopped at many points of a busy run, each queue's words, walked as a debugger would, list its threads."""
    sim = System(kernel=KERNEL, cpus=3, strict=True, check_tlb=True, check_locks=True)
    proc = sim.spawn(radix, ["radix", "6", "2000", "8"])
    seen = 0
    while proc.exit_status is None:
        sim.run(until=sim.now + 7_919)
        for q in (sim.kernel.masterq, sim.kernel.userq):
            if sim.kernel.qlock.holder() is None:  # between two changes
                assert q.words() == list(q)
                seen += len(q)
    assert seen > 0


def test_the_lock_refuses_recursion_and_foreign_release() -> None:
    sim = System(kernel=KERNEL, cpus=2)
    lock = sim.kernel.qlock
    mem = sim.machine.memory
    mem.write_u32(lock.pa, 0 + 1)  # held by cpu0
    acquire = lock.acquire(0)
    next(acquire)  # the compare-exchange
    with pytest.raises(MachineError, match="already holds"):
        acquire.send(1)  # it finds its own id in the word
    with pytest.raises(MachineError, match="held by cpu0"):
        next(lock.release(1))
    mem.write_u32(lock.pa, 0)
    with pytest.raises(MachineError, match="which is free"):
        next(lock.release(0))


def test_the_port_is_a_kernel_choice_on_any_machine() -> None:
    one = System(kernel=KERNEL, cpus=1)  # no slave: the master runs everything
    proc = one.spawn("pipeline", ["pipeline", "5"])
    one.run()
    assert proc.exit_status == 0 and one.stats["kernel"] == KERNEL and one.stats["handoffs"] == 0


def test_same_seed_same_numbers() -> None:
    a, _ = run(radix, ["radix", "4", "2000", "8", "7"], 4, seed=3, perturb=3)
    b, _ = run(radix, ["radix", "4", "2000", "8", "7"], 4, seed=3, perturb=3)
    assert a.stats == b.stats and a.console() == b.console()
