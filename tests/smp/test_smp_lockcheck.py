"""Lock discipline of the SMP port: what it adds in kernel memory is written only under the kernel lock.

The machine's lock checker (`System(check_locks=True)`, on in every port and differential
test) fails a write to a guarded range (the idle flags and their count, the shoot-down
request) by a CPU that does not hold the kernel lock, and an `AssertHeld` (the run queue
at every pick, a shoot-down's start, the threads of a dying process) reached without it.
Here: the port's own paths pass it, and planted bugs of the kind the fixed instruction
costs hide from the other tests are caught by it.
"""

from __future__ import annotations

from typing import Any

import pytest
from smpkit import run

from apkern.hw import Compute, DisableInterrupts, Halt, LockViolation
from apkern.smp.sched import SMPScheduler
from apkern.workloads import radix

RADIX = (radix, ["radix", "4", "2000", "8"])


def test_the_ports_own_paths_keep_the_discipline() -> None:
    sim, proc = run(*RADIX, 4)
    assert proc.exit_status == 0
    assert sim.machine.locks.checked > 100  # the checker really looked, many times
    assert sim.stats["tlb_shootdowns"] > 0  # joins shot stacks down: the request was written too


def _idle_marks_itself_after_the_release(self: SMPScheduler, cid: int) -> Any:
    k = self.k
    while True:
        yield DisableInterrupts()
        yield from k.lock.acquire(cid)
        yield from k.set_idle(cid, False)
        if self.runq:
            yield Compute(k.costs.CONTEXT_SWITCH)
            self.switches += 1
            yield from self._run(self.runq.popleft())
        yield from k.unlock(cid)
        yield from k.set_idle(cid, True)  # BUG: after the release
        yield Halt()


@pytest.mark.parametrize("cpus", [2, 4])
def test_an_idle_flag_set_without_the_lock_is_caught(monkeypatch: pytest.MonkeyPatch, cpus: int) -> None:
    monkeypatch.setattr(SMPScheduler, "idle_loop", _idle_marks_itself_after_the_release)
    with pytest.raises(LockViolation, match="wrote the idle (flags|count).*without holding the kernel lock"):
        run(*RADIX, cpus)


def test_a_pick_from_the_run_queue_without_the_lock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def idle_loop(self: SMPScheduler, cid: int) -> Any:
        k = self.k
        while True:
            yield DisableInterrupts()
            yield from k.lock.acquire(cid)
            yield from k.set_idle(cid, False)
            queued = bool(self.runq)
            yield from k.unlock(cid)
            if queued:  # BUG: the lock was let go before the pick
                yield from self.schedule()
            yield from k.lock.acquire(cid)
            yield from k.set_idle(cid, True)
            yield from k.unlock(cid)
            yield Halt()

    monkeypatch.setattr(SMPScheduler, "idle_loop", idle_loop)
    with pytest.raises(LockViolation, match="changed the run queue without holding the kernel lock"):
        run(*RADIX, 2)


def test_a_shootdown_begun_without_the_lock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from apkern.smp.kernel import SMPKernel

    def free_thread(self: SMPKernel, t: Any) -> Any:
        cid = self.lock.holder()
        yield from self.lock.release(cid)  # BUG: the lock is let go around the join's unmap
        yield from self.shootdown.begin(t.proc.aspace.cr3)
        yield from self.lock.acquire(cid)
        yield from self.shootdown.end()
        yield from super(SMPKernel, self).free_thread(t)

    monkeypatch.setattr(SMPKernel, "free_thread", free_thread)
    with pytest.raises(LockViolation, match="changed the shoot-down request without holding the kernel lock"):
        run(*RADIX, 4)
