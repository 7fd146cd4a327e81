"""The `balance` extension: a ready queue per application processor, hand-off to idle APs, stealing.

Two levels. The placement and stealing rules (`Runqueues`) are driven alone, their
operations executed against a dictionary of memory words, so each rule can be
looked at directly: where a thread made ready goes, what an AP takes, when a
quantum's end preempts, and the invariant that no thread waits while an AP is
available (`_assert_no_thread_waits_for_an_idle_ap`), after every step of long
random sequences. Then whole runs: kernel memory agrees with the mirrors, the
invariant holds whenever the lock is free, a queue or home change made without the
lock is caught by the lock checker, and a run is deterministic.

Seen failing with each guard removed: without `_refill` in `remove`, the refill test
and the random sequences (an AP available beside a waiting thread); without clearing
an AP's availability when a thread is handed to it, the hand-off tests, the random
sequences and a whole run; stealing an idle AP's head (the thread handed to it), the
no-steal test and the random sequences; without the `GuardedBy` of the per-AP queues,
the planted queue bug runs to its end.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Generator
from types import SimpleNamespace
from typing import Any

import pytest
from akkit import LIMIT, assert_clean

from apkern import System, libc
from apkern.appkernel.balance import RECORD, RECORD_IDLE, Runqueues
from apkern.appkernel.costs import Costs
from apkern.appkernel.kernel import AppKernel
from apkern.appkernel.tcb import READY_LINKS, SLOT_HOME, SLOT_LINKS, TCB
from apkern.hw import Compute, Context, LockViolation, Store

BAL = ("balance",)

# --- the rules alone --------------------------------------------------------------------------------

costs = Costs()  # the default profile's


class Harness:
    """Runs `Runqueues` operations: stores land in a word dictionary, computes are summed."""

    def __init__(self, cpus: int) -> None:
        self.mem: dict[int, int] = {}
        self.charged = 0
        self.rq = Runqueues(0x1000, cpus, costs)
        self.run(self.rq.init())
        self.tcbs: list[TCB] = []

    def run(self, gen: Generator[Any, Any, Any]) -> Any:
        try:
            op = next(gen)
            while True:
                if isinstance(op, Store):
                    self.mem[op.vaddr] = op.value
                elif isinstance(op, Compute):
                    self.charged += op.n
                else:
                    raise AssertionError(f"unexpected op {op!r}")
                op = gen.send(None)
        except StopIteration as stop:
            return stop.value

    def tcb(self, home: int = 0) -> TCB:
        n = len(self.tcbs) + 1
        proc = SimpleNamespace(pid=100)
        t = TCB(n, proc, 1, 0, 0, 0, Context([]), 0x100000 + 64 * n, None)  # type: ignore[arg-type]
        t.home = home  # where it last ran (a take on that AP stores it)
        self.mem[t.slot_kva + SLOT_HOME] = home
        self.tcbs.append(t)
        return t

    def push(self, t: TCB) -> int:
        self.run(self.rq.push(t))
        where = self.rq.queue_of(t)
        assert where is not None
        return where

    def take(self, cid: int) -> TCB | None:
        return self.run(self.rq.take(cid))

    def word(self, kva: int) -> int:
        return self.mem.get(kva, 0)


def _assert_no_thread_waits_for_an_idle_ap(rq: Runqueues) -> None:
    """An available AP (idle, empty queue) only while no queue holds a stealable thread; the mask says who is."""
    for a, q in rq.queues.items():
        assert bool(rq.mask >> a & 1) == (rq.idle[a] and not len(q)), f"AP {a}: mask and idle/queue disagree"
    if rq.mask:
        waiting = {a: rq.stealable(a) for a in rq.queues if rq.stealable(a)}
        assert not waiting, f"APs {bin(rq.mask)} available while queues hold stealable threads {waiting}"
    assert rq.n == sum(len(q) for q in rq.queues.values())


def _assert_memory_mirrors(h: Harness) -> None:
    rq = h.rq
    for a, q in rq.queues.items():
        base = rq.kva + RECORD * a
        assert h.word(base + 8) == len(q)
        assert h.word(base) == (q.head.id if q.head else 0)
        assert h.word(base + RECORD_IDLE) == int(rq.idle[a])
    for w in range((rq.cpus + 31) // 32):
        assert h.word(rq.mask_kva + 4 * w) == rq.mask >> (32 * w) & 0xFFFFFFFF
    assert h.word(rq.count_kva) == rq.n
    for t in h.tcbs:
        if t.home:
            assert h.word(t.slot_kva + SLOT_HOME) == t.home


def test_every_ap_starts_idle_and_available() -> None:
    h = Harness(5)
    assert h.rq.mask == 0b11110 and all(h.rq.idle[1:])
    assert h.word(h.rq.mask_kva) == 0b11110
    _assert_no_thread_waits_for_an_idle_ap(h.rq)


def test_new_threads_go_to_the_lowest_available_ap_one_each() -> None:
    h = Harness(4)
    assert [h.push(h.tcb()) for _ in range(3)] == [1, 2, 3]  # each hand-off takes the AP out of the mask
    assert h.rq.mask == 0 and h.rq.handoffs == 3
    assert h.push(h.tcb()) == 1  # none available: the shortest queue (the first of equals)
    _assert_no_thread_waits_for_an_idle_ap(h.rq)


def test_two_hand_offs_never_go_to_the_same_idle_ap() -> None:
    h = Harness(3)
    a, b = h.tcb(home=1), h.tcb(home=1)
    assert (h.push(a), h.push(b)) == (1, 2)


def test_an_activated_thread_goes_home_if_its_ap_is_available_else_to_another_else_home() -> None:
    h = Harness(4)
    ts = [h.tcb() for _ in range(3)]
    for t in ts:
        h.push(t)
    for ap in (1, 2, 3):
        assert h.take(ap) is ts[ap - 1] and ts[ap - 1].home == ap
    assert h.take(2) is None  # AP 2's thread blocked, nothing else is ready: idle and available
    assert h.push(ts[1]) == 2 and h.rq.home_hits == 1  # its home
    assert h.take(2) is ts[1]
    assert h.take(3) is None  # AP 3 free, AP 2 busy again: a thread of AP 2 goes to AP 3
    t = h.tcb(home=2)
    assert h.push(t) == 3
    h.take(3)
    late = h.tcb(home=2)  # nobody available: it waits on its home AP's queue
    assert h.push(late) == 2 and h.rq.queued_busy == 1
    _assert_no_thread_waits_for_an_idle_ap(h.rq)


def test_an_ap_takes_its_own_queue_first_then_steals_from_the_longest_busy_queue() -> None:
    h = Harness(5)
    ts = [h.tcb() for _ in range(4)]
    for t in ts:
        h.push(t)
    for ap in (1, 2, 3, 4):
        h.take(ap)
    waiting = [h.tcb(home=2), h.tcb(home=2), h.tcb(home=3), h.tcb(home=1)]
    for t in waiting:
        h.push(t)
    assert [len(h.rq.queues[a]) for a in (1, 2, 3, 4)] == [1, 2, 1, 0]
    assert h.take(1) is waiting[3]  # its own
    before = h.charged
    assert h.take(4) is waiting[0] and h.rq.steals == 1  # AP 4 has none: AP 2's head
    assert h.charged - before == costs.BALANCE_PLACE + costs.QUEUE_SCAN * 3 + costs.LIST_OP  # scan the others, unlink
    assert waiting[0].home == 4
    _assert_no_thread_waits_for_an_idle_ap(h.rq)
    _assert_memory_mirrors(h)


def test_nobody_steals_the_thread_handed_to_an_idle_ap() -> None:
    h = Harness(3)
    busy, handed = h.tcb(), h.tcb()
    h.push(busy)
    h.take(1)
    assert h.push(handed) == 2  # AP 2 is idle: handed to it (it is woken)
    assert h.take(1) is None  # AP 1's thread blocked: AP 2's queue is not for stealing
    assert h.take(2) is handed


def test_a_quantum_ends_in_preemption_only_if_a_thread_waits_for_this_ap() -> None:
    h = Harness(4)
    for _ in range(3):
        h.push(h.tcb())
    for ap in (1, 2, 3):
        h.take(ap)
    assert not h.run(h.rq.worth_preempting(1))  # nothing waits anywhere
    before = h.charged
    assert not h.run(h.rq.worth_locking(1))  # and a look at two words says so, before any lock
    assert h.charged - before == costs.QUEUE_SCAN
    h.push(h.tcb(home=2))
    assert not h.run(h.rq.worth_preempting(1))  # one waits on AP 2: AP 2's own quantum will run it
    assert h.run(h.rq.worth_preempting(2))
    h.push(h.tcb(home=2))
    assert h.run(h.rq.worth_preempting(1))  # two wait on AP 2: AP 1 pulls one
    assert h.take(1).home == 1 and len(h.rq.queues[2]) == 1


def test_a_thread_removed_from_an_idle_aps_queue_makes_room_for_a_waiting_one() -> None:
    """The idle AP becomes available again: it is handed the head of the longest busy queue."""
    h = Harness(3)
    a, b = h.tcb(), h.tcb()
    h.push(a)
    h.take(1)
    h.push(b)  # handed to idle AP 2, not yet taken
    waiting = h.tcb(home=1)
    assert h.push(waiting) == 1  # nobody available: AP 1's queue
    h.run(h.rq.remove(b))  # b dies (or is held for a sibling's page fault) before AP 2 runs it
    assert h.rq.queue_of(waiting) == 2 and h.rq.refills == 1
    _assert_no_thread_waits_for_an_idle_ap(h.rq)
    assert h.take(2) is waiting


@pytest.mark.parametrize("seed", range(6))
def test_random_sequences_keep_the_invariant_and_the_memory(seed: int) -> None:
    rng = random.Random(seed)
    cpus = rng.choice([2, 3, 5, 8, 33])
    h = Harness(cpus)
    running: dict[int, TCB] = {}
    blocked: list[TCB] = [h.tcb() for _ in range(rng.randint(1, 2 * cpus))]
    for _ in range(400):
        ap = rng.randrange(1, cpus)
        what = rng.random()
        if what < 0.35 and blocked:  # activated
            h.push(blocked.pop(rng.randrange(len(blocked))))
        elif what < 0.7:  # the AP's thread blocks (or it is idle) and it takes the next
            if ap in running:
                blocked.append(running.pop(ap))
            t = h.take(ap)
            if t is not None:
                running[ap] = t
        elif what < 0.8 and ap in running:  # a quantum ends: the unlocked look agrees when nothing moves meanwhile
            if h.run(h.rq.worth_locking(ap)) != h.run(h.rq.worth_preempting(ap)):
                raise AssertionError("the look before the lock and the one under it disagree")
            if h.run(h.rq.worth_preempting(ap)):
                prev = running.pop(ap)
                running[ap] = h.take(ap)
                h.push(prev)
        elif what < 0.9:  # a queued thread dies or is held
            queued = [t for t in h.tcbs if h.rq.queue_of(t) is not None]
            if queued:
                t = rng.choice(queued)
                h.run(h.rq.remove(t))
                blocked.append(t)
        _assert_no_thread_waits_for_an_idle_ap(h.rq)
        for ap2, t in running.items():
            assert not h.rq.idle[ap2] and t.home == ap2
    _assert_memory_mirrors(h)


# --- whole runs ------------------------------------------------------------------------------------------


def _worker(arg: int) -> Any:
    yield from libc.compute(150_000 + 30_000 * arg)  # quanta: more threads than APs, so they are preempted
    page = yield from libc.mmap(4096)  # a page fault and an unmap: ready siblings leave their queues, held
    for i in range(8):
        yield from libc.store(page + 4 * i, arg)
        yield from libc.getpid()
    yield from libc.munmap(page, 4096)
    return arg


def _team(argv: list[str]) -> Any:
    tids = []
    for i in range(int(argv[1])):
        tids.append((yield from libc.thread_create(_worker, i)))
    total = 0
    for tid in tids:
        total += yield from libc.thread_join(tid)
    yield from libc.print(f"team: {total}\n")
    return 0


def _balanced(cpus: int, **kw: Any) -> System:
    return System(kernel="apkern", cpus=cpus, strict=True, check_tlb=True, check_locks=True, extensions=BAL, **kw)


def _words(sim: System, kva: int, n: int) -> tuple[int, ...]:
    pa = sim.machine.debugger.translate(sim.kernel.kernel_cr3, kva)
    assert pa is not None
    return struct.unpack(f"<{n}I", sim.machine.memory.read(pa, 4 * n))


def _queue_in_memory(sim: System, head_kva: int) -> list[int]:
    ak = sim.appkernel.ak
    head, tail, length = _words(sim, head_kva, 3)
    ids, prev, cur = [], 0, head
    while cur:
        nxt, back = _words(sim, ak.tcbs.kva(cur) + SLOT_LINKS + 8 * READY_LINKS, 2)
        assert back == prev
        ids.append(cur)
        prev, cur = cur, nxt
    assert tail == prev and length == len(ids)
    return ids


def _look(sim: System) -> bool:
    """With the lock free: memory is the truth, and no thread waits while an AP is available."""
    ak = sim.appkernel.ak
    if _words(sim, ak.lock.kva, 1)[0]:
        return False
    rq = ak.ready
    assert isinstance(rq, Runqueues)
    for a, q in rq.queues.items():
        assert _queue_in_memory(sim, q.head_kva) == [t.id for t in q]
        assert _words(sim, rq.kva + RECORD * a + RECORD_IDLE, 1)[0] == int(rq.idle[a])
    assert _words(sim, rq.mask_kva, 1)[0] == rq.mask and _words(sim, rq.count_kva, 1)[0] == rq.n
    for t in ak.tcbs.live.values():
        assert _words(sim, t.slot_kva + SLOT_HOME, 1)[0] == t.home
    _assert_no_thread_waits_for_an_idle_ap(rq)
    return True


@pytest.mark.parametrize("cpus", [3, 5])
def test_a_run_keeps_memory_and_the_invariant_whenever_the_lock_is_free(cpus: int) -> None:
    sim = _balanced(cpus)
    sim.spawn(_team, ["team", "7"])
    sim.spawn("pipeline", ["pipeline", "40"])
    looks = 0
    while sim.kernel.live:
        sim.run(until=sim.now + 307)
        looks += _look(sim)
        assert sim.now < LIMIT
    assert looks > 100
    assert_clean(sim)
    st = sim.stats
    assert st["balance_handoffs"] > 0 and st["balance_steals"] > 0  # it handed threads to idle APs and stole


def test_a_balanced_run_is_deterministic_and_differs_from_the_global_queue() -> None:
    def run(ext: tuple[str, ...]) -> dict[str, Any]:
        sim = System(kernel="apkern", cpus=4, extensions=ext)
        sim.spawn(_team, ["team", "6"])
        sim.run(limit=LIMIT)
        return sim.stats

    a, b = run(BAL), run(BAL)
    assert a == b
    plain = run(())
    assert "balance_steals" not in plain and plain["time"] != a["time"]


def test_the_paper_default_keeps_the_single_queue() -> None:
    sim = System(kernel="apkern", cpus=3)
    sim.spawn("hello")
    sim.run(limit=LIMIT)
    assert not isinstance(sim.appkernel.ak.ready, Runqueues)
    assert not any(k.startswith("balance") for k in sim.stats)


# --- planted bugs: a queue or a home changed without the lock ---------------------------------------------


def _finish_switch_requeueing_first(self: AppKernel, cid: int) -> Any:
    """`finish_switch` with a preempted thread queued (placed on a per-AP queue) before the lock is taken."""
    prev, self.prev[cid] = self.prev[cid], None
    if prev is None:
        return
    if prev.state == "ready":
        yield from self.ready.push(prev)
    yield from self.lock.acquire(cid)
    yield from self.set_cpu(prev, None)
    yield from self.lock.release()


def _pick_outside(self: AppKernel, cid: int) -> Any:
    """`_pick` that notes the thread's new home after dropping the lock (a home word written unguarded)."""
    tcb = yield from self.ready.take(cid)
    if tcb is not None:
        yield from self.set_state(tcb, "running")
        yield from self.set_cpu(tcb, cid)
        yield from self.lock.release()
        yield Store(tcb.slot_kva + SLOT_HOME, cid)
        yield from self.lock.acquire(cid)
    return tcb


PLANTS = {
    "per-AP queue push": ("finish_switch", _finish_switch_requeueing_first, r"wrote the per-AP ready queues"),
    "home word": ("_pick", _pick_outside, r"wrote the TCB table \(\+0x[0-9a-f]*(3c|7c|bc|fc)\)"),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_balance_change_without_the_lock_is_caught(monkeypatch: pytest.MonkeyPatch, plant: str) -> None:
    name, buggy, message = PLANTS[plant]
    monkeypatch.setattr(AppKernel, name, buggy)
    sim = _balanced(3)
    sim.spawn(_team, ["team", "5"])
    with pytest.raises(LockViolation, match=r"cpu[1-9] " + message + r".* without holding the application kernel"):
        sim.run(limit=LIMIT)
