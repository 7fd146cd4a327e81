"""Section 4.3's load balancing (the `balance` extension): a ready queue per application processor.

The paper's prototype keeps one ready queue behind one spinlock. Every idle AP
spins on that queue's length word, so each thread made ready wakes all of them:
they all race for the lock, one finds the thread, the others find the queue
empty again. Measured on the throughput benchmark (K=151, P=95%, 20 processes),
that is 6 lock acquisitions per forwarded call on 8 CPUs, 14 on 16 and 30 on 32,
almost all of the extra ones contended: the lock's spinning grows with the idle
APs, not with the work.

The scheme:
- each AP has its own FIFO of READY TCBs (a `TCBList`, head, tail and length in
  kernel memory) and an idle flag; a mask of *available* APs (idle, with an empty
  queue) and the count of queued threads sit beside them;
- an idle AP spins on its own queue's length word only: a thread handed to it
  wakes it, and no other AP;
- where a thread made ready goes (activation by the driver, a preempted thread
  requeued by `finish_switch`, a sleeper woken, a held thread released, a new
  thread): its home AP (the one it last ran on, a word of its TCB slot) if that AP
  is available; else the lowest available AP (a find-first-set on the mask);
  else its home AP's queue (a new thread, with no home: the shortest queue).
  A thread waits in the queue of a busy AP only when no AP is available;
- what an AP runs next (`take`): the head of its own queue; if that is empty, it
  steals the first stealable thread of the queue with the most of them (a scan of
  every AP's record, charged per AP); if there is none it marks itself idle and
  available;
- a queue's stealable threads: all of them on a busy AP; on an idle AP all but the
  head, which was handed to it and which it is waking up to run;
- on a quantum's expiry a running thread is preempted if its AP's own queue is not
  empty, or if another queue has two or more stealable threads (it then steals one:
  Linux's periodic pull from the busiest queue, with the same threshold as its
  imbalance check: pulling a lone thread would only move the imbalance). The AP
  looks at the length words before it takes the lock, and takes it only to act
  (`worth_locking`), where the prototype takes it at every quantum's end.

Invariant (every change under the lock, so checked whole): an AP is available only
while no queue holds a stealable thread. `take` marks an AP available only after its
scan found none; `push` adds a stealable thread only when no AP is available (a
hand-off to an available AP is its unstealable head); an idle AP taking its own head
leaves the number of stealable threads as it was; and when a thread leaves the queue
of an idle AP without running (killed, held for a sibling's page fault) and that AP
becomes available again, it is handed the head of the queue with the most stealable
threads (`_refill`). So no thread waits while an AP idles.

The lock: the queues, the idle flags, the mask, the count and the TCBs' home words
stay under the application kernel's one spinlock, as the single queue was. A lock
per queue does not pay here: every queue operation goes with a change of the TCB's
scheduling state (READY, RUNNING, ON_CPU), which the driver on the bootstrap
processor and the section 4.3 stop bookkeeping (a page fault holds every sibling,
READY ones taken off whatever queue they are on) must see and change atomically
with the thread's flags and its process's record. A queue lock would nest inside
the global one on every path and be contended only when the global one is, so it
would add an acquisition per queue operation and take nothing off. (Nor could the
lock checker state it: a TCB's queue links sit in its slot, and which queue lock
would guard them changes as the thread moves.) What the measurement shows the
single queue losing is the wake-up storm, and per-AP queues with a direct hand-off
remove it under the same lock: 5 acquisitions per forwarded call on 8, 16 and 32
CPUs at the point above, 0.01 of them contended, 0.1 instructions of spinning per
call where the single queue spins 36, 542 and 3273 (`apkern bench balance`).

What it costs: the activation on the bootstrap processor now places the thread
(about 10 instructions: the bits of the mask, a second count), and where the
bootstrap processor bounds the throughput (short calls) that is what the
throughput moves by, about 1.5% down. The single queue's spinning is done by APs
that had nothing else to do, and the bootstrap processor meets it only from 64
CPUs on (5 instructions per call there), so on this machine, which charges a spin
to the spinning CPU alone, the balancing buys no throughput on this benchmark.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from ..hw import Compute, Op, Store
from .tcb import READY_LINKS, SLOT_HOME
from .tcb_list import TCBList

if TYPE_CHECKING:
    from .costs import Costs
    from .tcb import TCB

Gen = Generator[Op, Any, Any]
RECORD = 16  # per AP: the queue's head, tail and length, then its idle flag
RECORD_IDLE = 12
MASK_BITS = 32


def _block_size(cpus: int) -> int:
    """Bytes of kernel memory the queues take: a record per CPU, the mask's words, the count."""
    return RECORD * cpus + 4 * _mask_words(cpus) + 4


def _mask_words(cpus: int) -> int:
    return (cpus + MASK_BITS - 1) // MASK_BITS


class Runqueues:
    """The per-AP ready queues at kernel address `kva` (APs 1..cpus-1; the bootstrap processor has none).

    Lock held for everything. `len` is the number of queued threads, as for the single queue.
    """

    def __init__(self, kva: int, cpus: int, costs: Costs) -> None:
        self.costs = costs
        self.kva = kva
        self.cpus = cpus
        self.queues: dict[int, TCBList] = {a: TCBList(kva + RECORD * a, READY_LINKS, costs) for a in range(1, cpus)}
        self._owner = {id(q): a for a, q in self.queues.items()}
        self.idle = [False] + [True] * (cpus - 1)  # until an AP has run something, it is idle
        self.mask_kva = kva + RECORD * cpus
        self.mask = 0  # available APs: idle, with an empty queue (bit a: AP a)
        self.count_kva = self.mask_kva + 4 * _mask_words(cpus)
        self.n = 0
        self.steals = 0
        self.handoffs = 0  # threads queued on an available AP (it was woken)
        self.home_hits = 0  # ... of them, on the thread's home AP
        self.queued_busy = 0  # threads queued on a busy AP (none was available)
        self.refills = 0

    @staticmethod
    def block_size(cpus: int) -> int:
        return _block_size(cpus)

    def size(self) -> int:
        return _block_size(self.cpus)

    def init(self) -> Gen:
        """Every AP starts idle and available (at `apkern_init`, before any AP runs)."""
        for a in self.queues:
            yield Store(self.kva + RECORD * a + RECORD_IDLE, 1)
            yield from self._set_avail(a, True)

    # --- what the kernel asks of a ready queue ---------------------------------------------------

    def __len__(self) -> int:
        return self.n

    def __contains__(self, tcb: TCB) -> bool:
        return tcb.lists[READY_LINKS] is not None

    def __iter__(self) -> Iterator[TCB]:
        for q in self.queues.values():
            yield from q

    def wait_kva(self, cid: int) -> int:
        """The word an idle AP spins on: its own queue's length."""
        return self.queues[cid].count_kva

    def queue_of(self, tcb: TCB) -> int | None:
        q = tcb.lists[READY_LINKS]
        return None if q is None else self._owner[id(q)]

    def push(self, tcb: TCB) -> Gen:
        """Queue `tcb` where it will run soonest (see the module's docstring)."""
        yield Compute(self.costs.BALANCE_PLACE)
        home = tcb.home
        if home and self.mask >> home & 1:
            target = home
            self.home_hits += 1
        elif self.mask:
            target = yield from self._first_available()
        elif home:
            target = home
        else:
            target = yield from self._shortest()
        if self.mask >> target & 1:
            self.handoffs += 1
            yield from self._set_avail(target, False)
        else:
            self.queued_busy += 1
        yield from self._push_on(target, tcb)

    def take(self, cid: int) -> Generator[Op, Any, TCB | None]:
        """The next TCB for AP `cid`: its own queue's head, else one stolen from the queue with the most to steal."""
        yield Compute(self.costs.BALANCE_PLACE)
        own = self.queues[cid]
        victim = cid if len(own) else None
        if victim is None and self.n:
            victim = yield from self._busiest(cid, 1)
            self.steals += victim is not None
        if victim is None:
            if not self.idle[cid]:
                yield from self._set_idle(cid, True)
                yield from self._set_avail(cid, True)
            return None
        tcb = yield from self._pop_from(victim, victim != cid)
        if self.idle[cid]:
            yield from self._set_idle(cid, False)
            if self.mask >> cid & 1:
                yield from self._set_avail(cid, False)
        if tcb.home != cid:
            tcb.home = cid
            yield Store(tcb.slot_kva + SLOT_HOME, cid)
        return tcb

    def worth_locking(self, cid: int) -> Generator[Op, Any, bool]:
        """Before a quantum's end takes the lock: the same question, from the length words without the lock.

        Unlocked reads may be stale: a wrong yes costs one acquisition (the question is asked
        again under the lock), a wrong no one quantum's delay, as with Linux's unlocked look at
        a queue's nr_running before it balances. Without it every AP would take the lock at
        every quantum's end, and the APs' timers tick together.
        """
        yield Compute(self.costs.QUEUE_SCAN)  # its own queue's length and the count
        if len(self.queues[cid]):
            return True
        if not self.n:
            return False
        return (yield from self._busiest(cid, 2)) is not None

    def worth_preempting(self, cid: int) -> Generator[Op, Any, bool]:
        """A quantum ended on AP `cid`: does a thread wait for it (its own queue, or one it should pull)?"""
        if len(self.queues[cid]):
            return True
        if not self.n:
            return False
        return (yield from self._busiest(cid, 2)) is not None

    def remove(self, tcb: TCB) -> Gen:
        """Unlink `tcb` from whatever queue it is on (it dies, or is held)."""
        a = self.queue_of(tcb)
        assert a is not None, f"{tcb!r} is not queued"
        q = self.queues[a]
        yield from q.remove(tcb)
        yield from self._count(-1)
        if self.idle[a] and not len(q):  # it was handed to an idle AP: that AP is available again
            yield from self._set_avail(a, True)
            yield from self._refill(a)

    def stats(self) -> dict[str, int]:
        return {
            "balance_steals": self.steals,
            "balance_handoffs": self.handoffs,
            "balance_home_handoffs": self.home_hits,
            "balance_queued_on_busy": self.queued_busy,
            "balance_refills": self.refills,
        }

    # --- the parts -------------------------------------------------------------------------------

    def _push_on(self, a: int, tcb: TCB) -> Gen:
        yield from self.queues[a].push(tcb)
        yield from self._count(1)

    def _pop_from(self, a: int, steal: bool) -> Generator[Op, Any, TCB]:
        """The first thread of AP `a`'s queue the taker may have: from an idle AP's, the one after its head."""
        q = self.queues[a]
        tcb = q.head.next[READY_LINKS] if steal and self.idle[a] else q.head
        assert tcb is not None
        yield from q.remove(tcb)
        assert tcb is not None
        yield from self._count(-1)
        return tcb

    def _count(self, d: int) -> Gen:
        self.n += d
        yield Store(self.count_kva, self.n)

    def _set_idle(self, a: int, idle: bool) -> Gen:
        self.idle[a] = idle
        yield Store(self.kva + RECORD * a + RECORD_IDLE, int(idle))

    def _set_avail(self, a: int, on: bool) -> Gen:
        yield Compute(self.costs.MASK_UPDATE)
        self.mask = self.mask | 1 << a if on else self.mask & ~(1 << a)
        w = a // MASK_BITS
        yield Store(self.mask_kva + 4 * w, self.mask >> (MASK_BITS * w) & 0xFFFFFFFF)

    def _first_available(self) -> Generator[Op, Any, int]:
        """The lowest available AP: find-first-set over the mask's words (the mask is not empty)."""
        a = (self.mask & -self.mask).bit_length() - 1
        yield Compute(self.costs.MASK_WORD * (a // MASK_BITS + 1))
        return a

    def stealable(self, a: int) -> int:
        """Threads of AP `a`'s queue another AP may take: all, but an idle AP's head (handed to it)."""
        return max(0, len(self.queues[a]) - self.idle[a])

    def _busiest(self, cid: int, least: int) -> Generator[Op, Any, int | None]:
        """The AP (not `cid`) with the most stealable threads, if at least `least`; a scan of every record."""
        yield Compute(self.costs.QUEUE_SCAN * (self.cpus - 2))
        best, most = None, least - 1
        for a in self.queues:
            if a != cid and (n := self.stealable(a)) > most:
                best, most = a, n
        return best

    def _shortest(self) -> Generator[Op, Any, int]:
        """The AP with the shortest queue (the first such): a scan of every record."""
        yield Compute(self.costs.QUEUE_SCAN * (self.cpus - 1))
        return min(self.queues, key=lambda a: len(self.queues[a]))

    def _refill(self, a: int) -> Gen:
        """AP `a` is available again: hand it a stealable thread, if there is one (keeps the invariant)."""
        if not self.n:
            return
        victim = yield from self._busiest(a, 1)
        if victim is None:
            return
        self.refills += 1
        tcb = yield from self._pop_from(victim, True)
        yield from self._set_avail(a, False)
        yield from self._push_on(a, tcb)
