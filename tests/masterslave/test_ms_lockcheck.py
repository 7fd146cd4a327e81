"""Lock discipline of the master-slave port: what master and slaves share changes only under the queue lock.

The machine's lock checker (`System(check_locks=True)`, on in every port and differential
test) fails a write to a guarded range (the queues' words, the thread table's links, the
idle flags and their count, the current-thread words, the shoot-down request) by a CPU
that does not hold the queue lock, and an `AssertHeld` (the threads of a dying process)
reached without it. Here: the port's own paths pass it, planted bugs of the kind the fixed
instruction costs hide from the other tests are caught by it, and the two rules the
checker cannot see fail the runs that depend on them: the lock is held across a switch
(no CPU takes a thread another still runs on), and a slave spins for it with interrupts
enabled (a shoot-down the master sends while holding it must get through).
"""

from __future__ import annotations

from typing import Any

import pytest
from mskit import run

from apkern import libc
from apkern.bootkernel.proc import RUNNABLE
from apkern.hw import CmpXchg, DisableInterrupts, Halt, LockViolation, MachineError, SpinWhile, Store
from apkern.masterslave.sched import MSScheduler
from apkern.masterslave.shootdown import Shootdown
from apkern.masterslave.spinlock import QueueLock
from apkern.system import SimulationLimit
from apkern.workloads import radix

RADIX = (radix, ["radix", "4", "2000", "8"])


def test_the_ports_own_paths_keep_the_discipline() -> None:
    sim, proc = run(*RADIX, 4)
    assert proc.exit_status == 0
    assert sim.machine.locks.checked > 100  # the checker really looked, many times
    assert sim.stats["handoffs"] > 0 and sim.stats["requeues"] > 0


PAGE = 4096


def _caller(arg: int) -> Any:
    while True:
        yield from libc.getpid()


def unmaps_beside_callers(argv: list[str]) -> Any:
    """Siblings trap all the time (their slaves queue them under the lock) while this thread unmaps."""
    for _ in range(3):
        yield from libc.thread_create(_caller, 0)
    for _ in range(40):
        base = yield from libc.mmap(PAGE)
        yield from libc.store(base, 1)
        yield from libc.munmap(base, PAGE)
    yield from libc.exit(0)
    return 0


def _idle_marks_itself_after_the_release(self: MSScheduler, cid: int) -> Any:
    k = self.k
    yield DisableInterrupts()
    yield from k.qlock.acquire(cid)
    while True:
        if k.userq:
            yield from self._run(cid, (yield from k.userq.pop()))
            continue
        yield from k.qlock.release(cid)
        yield from self.set_idle(cid, True)  # BUG: after the release
        yield Halt()
        yield DisableInterrupts()
        yield from k.qlock.acquire(cid)
        if not self.idle[cid]:
            self.wakes -= 1
            yield Store(k.page + k.WAKES, self.wakes)
        yield from self.set_idle(cid, False)


def test_an_idle_flag_set_without_the_lock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MSScheduler, "slave_idle", _idle_marks_itself_after_the_release)
    with pytest.raises(LockViolation, match="wrote the idle (flags|count).*without holding the queue lock"):
        run(*RADIX, 3)


def test_a_thread_queued_for_the_master_without_the_lock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def push_master(self: MSScheduler, cid: int, t: Any) -> Any:
        yield from self.k.qlock.release(cid)
        yield from self.k.masterq.push(t)  # BUG: the lock was let go before the push
        yield from self.k.qlock.acquire(cid)

    monkeypatch.setattr(MSScheduler, "push_master", push_master)
    with pytest.raises(LockViolation, match="wrote the (master queue|thread table).*without holding the queue lock"):
        run(*RADIX, 3)


def test_a_shootdown_begun_without_the_lock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real_acquire = QueueLock.acquire

    def begin(self: Shootdown, cr3: int, vaddr: int = 0xFFFFFFFF) -> Any:
        monkeypatch.setattr(QueueLock, "acquire", lambda lock, cid: iter(()))  # BUG: begin takes no lock
        try:
            yield from real_begin(self, cr3, vaddr)
        finally:
            monkeypatch.setattr(QueueLock, "acquire", real_acquire)
        yield from real_acquire(self.k.qlock, 0)  # so that `end` has one to release

    real_begin = Shootdown.begin
    monkeypatch.setattr(Shootdown, "begin", begin)
    with pytest.raises(LockViolation, match="wrote the shoot-down request.*without holding the queue lock"):
        run(unmaps_beside_callers, ["ubc"], 4)


def test_a_thread_queued_before_its_cpu_left_it_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The way back to user mode queues the thread and lets the lock go before switching away:
    a slave takes the thread while the master still runs on it."""

    def user_return(self: MSScheduler, t: Any, slice_over: bool = False) -> Any:
        k = self.k
        if not (k.masterq or k.sched.idle.count(True) or self.runq):
            return
        yield from k.qlock.acquire(0)
        t.state = RUNNABLE
        yield from self.push_user(t)
        yield from k.qlock.release(0)  # BUG: released before the switch
        yield SpinWhile(k.userq.count_kva, 1)  # (the master lingers a moment, as a slower CPU would)
        yield from k.qlock.acquire(0)
        yield from self._master_switch()
        yield from self.resume_to_user(t, (yield from self._tail(t)))

    monkeypatch.setattr(MSScheduler, "user_return", user_return)
    with pytest.raises(MachineError, match="is already running on cpu0"):
        run(*RADIX, 3)


def test_slaves_take_the_shootdown_while_they_spin_for_the_lock() -> None:
    sim, proc = run(unmaps_beside_callers, ["ubc"], 4)
    assert proc.exit_status == 0
    st = sim.stats
    assert st["tlb_shootdown_ipis"] > 0 and st["queue_lock_contended"] > 0


def test_a_slave_spinning_with_interrupts_disabled_deadlocks_the_shootdown(monkeypatch: pytest.MonkeyPatch) -> None:
    def acquire(self: QueueLock, cid: int) -> Any:
        while (owner := (yield CmpXchg(self.kva, 0, cid + 1))) != 0:
            yield SpinWhile(self.kva, owner)  # BUG: a slave spins with interrupts disabled too

    monkeypatch.setattr(QueueLock, "acquire", acquire)
    with pytest.raises(SimulationLimit):
        run(unmaps_beside_callers, ["ubc"], 4, limit=20_000_000)
