"""Lock discipline: the application kernel's shared data lives in kernel memory, and only the lock holder writes it.

The machine's lock checker (`System(check_locks=True)`, on in every application-kernel
and differential test) fails a write to a guarded structure by a CPU that does not hold
the spinlock. Here: the kernel's own paths pass it, its memory agrees with the Python
mirrors at every moment looked at, and planted bugs of the kind the fixed instruction
costs hide from the other tests (a ready-queue or TCB-state change without the lock)
are caught by it, and by nothing else.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from akkit import LIMIT, ak_system, assert_clean

from apkern import System, libc
from apkern.appkernel.kernel import AppKernel
from apkern.appkernel.process import PROC_FAULTS, PROC_PID, PROC_THREADS
from apkern.appkernel.tcb import (
    BLOCKED,
    DEAD,
    READY,
    READY_LINKS,
    SIBLING_LINKS,
    SLOT_FLAGS,
    SLOT_ID,
    SLOT_LINKS,
    SLOT_ON_CPU,
    SLOT_PID,
    SLOT_STATE,
    STATE_CODES,
)
from apkern.hw import LockViolation

PAGE = 4096


def _worker(arg: int) -> Any:
    page = yield from libc.mmap(PAGE)  # a page fault and an unmap: siblings are stopped and held
    yield from libc.compute(250_000)  # a few quanta: more threads than APs, so they are preempted
    for i in range(12):
        yield from libc.store(page + 4 * i, arg)
        yield from libc.getpid()
    yield from libc.munmap(page, PAGE)
    return arg


def _team(argv: list[str]) -> Any:
    """Five threads that compute, trap, fault and unmap at once, then are joined: every path of the kernel."""
    tids = []
    for i in range(5):
        tids.append((yield from libc.thread_create(_worker, i)))
    total = 0
    for tid in tids:
        total += yield from libc.thread_join(tid)
    yield from libc.print(f"team: {total}\n")
    return 0


THREADS = (_team, ["team"])


def _words(sim: System, kva: int, n: int) -> tuple[int, ...]:
    """`n` words of kernel memory, read as a debugger would (kernel addresses are the same in every space)."""
    pa = sim.machine.debugger.translate(sim.kernel.kernel_cr3, kva)
    assert pa is not None
    return struct.unpack(f"<{n}I", sim.machine.memory.read(pa, 4 * n))


def _list_in_memory(sim: System, head_kva: int, kind: int) -> list[int]:
    ak = sim.appkernel.ak
    head, tail, length = _words(sim, head_kva, 3)
    ids, prev, cur = [], 0, head
    while cur:
        nxt, back = _words(sim, ak.tcbs.kva(cur) + SLOT_LINKS + 8 * kind, 2)
        assert back == prev, "a broken back link"
        ids.append(cur)
        prev, cur = cur, nxt
    assert tail == prev and length == len(ids)
    return ids


def _assert_memory_is_the_truth(sim: System) -> bool:
    """Compare while the lock is free (a holder may be between its stores); whether it compared."""
    ak = sim.appkernel.ak
    if _words(sim, ak.lock.kva, 1)[0]:
        return False
    assert _list_in_memory(sim, ak.ready.head_kva, READY_LINKS) == [t.id for t in ak.ready]
    for tcb in ak.tcbs.live.values():
        slot = _words(sim, tcb.slot_kva, 8)
        assert slot[SLOT_ID // 4] == tcb.id and slot[SLOT_PID // 4] == tcb.pid
        assert slot[SLOT_STATE // 4] == STATE_CODES[tcb.state]
        assert slot[SLOT_ON_CPU // 4] == (0 if tcb.cpu is None else tcb.cpu + 1)
        assert slot[SLOT_FLAGS // 4] == tcb._flags
    for pid, proc in ak.procs.items():
        assert _words(sim, proc.kva + PROC_PID, 1)[0] == pid
        assert _words(sim, proc.kva + PROC_FAULTS, 1)[0] == proc.faults == sum(t.fault for t in proc.threads)
        assert _list_in_memory(sim, proc.kva + PROC_THREADS, SIBLING_LINKS) == [t.id for t in proc.threads]
    return True


def test_kernel_memory_agrees_with_the_mirrors_throughout_a_run() -> None:
    sim = ak_system(3)
    sim.spawn(*THREADS)
    looks, seen_threads = 0, 0
    while sim.kernel.live:
        sim.run(until=sim.now + 211)  # a prime: the looks fall at unrelated points of the paths
        if _assert_memory_is_the_truth(sim):
            looks += 1
            seen_threads = max(seen_threads, len(sim.appkernel.ak.tcbs.live))
        assert sim.now < LIMIT
    assert looks > 200 and seen_threads == 6  # it looked often, at all the team's threads too
    assert_clean(sim)
    assert sim.machine.locks is not None and sim.machine.locks.checked > 1000


def test_scheduling_state_changes_only_through_the_setters() -> None:
    sim = ak_system(2)
    sim.spawn(*THREADS)
    sim.run(until=20_000)
    tcb = next(iter(sim.appkernel.ak.tcbs.live.values()))
    for name in ("state", "cpu", "waiting", "fault", "stop_requested"):
        with pytest.raises(AttributeError):
            setattr(tcb, name, None)


def test_the_checker_changes_no_number() -> None:
    def run(check: bool) -> dict[str, Any]:
        sim = System(kernel="apkern", cpus=3, strict=True, check_locks=check)
        sim.spawn(*THREADS)
        sim.run(limit=LIMIT)
        return sim.stats

    assert run(True) == run(False)


# --- planted bugs -----------------------------------------------------------------------------------


def _finish_switch_queueing_first(self: AppKernel, cid: int) -> Any:
    """`finish_switch` with a preempted thread queued again before the lock is taken."""
    prev, self.prev[cid] = self.prev[cid], None
    if prev is None:
        return
    if prev.state == READY:
        yield from self.ready.push(prev)
    yield from self.lock.acquire(cid)
    if prev.state == DEAD and self.tcbs.live.get(prev.id) is prev:
        yield from self.free(prev)
    else:
        yield from self.set_cpu(prev, None)
    yield from self.lock.release()


_real_block = AppKernel.block


def _block_marking_before_the_lock(self: AppKernel, cid: int, tcb: Any) -> Any:
    """`block` with the state change made before the lock is taken."""
    yield from self.set_state(tcb, BLOCKED)
    return (yield from _real_block(self, cid, tcb))


def _destroy_current_posting_late(self: AppKernel, cid: int, tcb: Any) -> Any:
    """`destroy_current` with the stop bookkeeping (`post_waiting`) done after the lock is dropped."""
    yield from self.lock.acquire(cid)
    yield from self.kill(tcb)
    yield from self.lock.release()
    yield from self.post_waiting()


PLANTS = {  # what it changes without the lock, and how the checker names it
    "ready queue push": (
        "finish_switch",
        _finish_switch_queueing_first,
        r"cpu[1-9] wrote the ready queue .* without holding",
    ),
    "TCB state": ("block", _block_marking_before_the_lock, r"cpu[1-9] wrote the TCB table .* without holding"),
    "stop bookkeeping": (
        "destroy_current",
        _destroy_current_posting_late,
        r"cpu[1-9] changed the stop bookkeeping without holding",
    ),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_change_without_the_lock_is_caught(monkeypatch: pytest.MonkeyPatch, plant: str) -> None:
    name, buggy, message = PLANTS[plant]
    monkeypatch.setattr(AppKernel, name, buggy)
    sim = ak_system(3)
    sim.spawn(*THREADS)
    with pytest.raises(LockViolation, match=message + r" the application kernel's spinlock \((free|held by cpu\d)\)"):
        sim.run(limit=LIMIT)


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_only_the_checker_sees_the_planted_bugs(monkeypatch: pytest.MonkeyPatch, plant: str) -> None:
    """Without the checker the run ends as the correct one does: the interleavings are too regular."""

    def run() -> tuple[str, int | None]:
        sim = System(kernel="apkern", cpus=3, strict=True)
        proc = sim.spawn(*THREADS)
        sim.run(limit=LIMIT)
        assert_clean(sim)
        return sim.console(), proc.exit_status

    good = run()
    name, buggy, _ = PLANTS[plant]
    monkeypatch.setattr(AppKernel, name, buggy)
    assert run() == good
