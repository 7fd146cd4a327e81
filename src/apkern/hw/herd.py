"""The waiters on one spinlock word, run together: contention costs host time per hand-over, not per waiter.

CPUs in `SpinAcquire`'s loop (`ops.ttas`) with interrupts disabled, watching the same lock
word, all do the same thing at the same instants. A write of the word wakes every one of them:
their wake-up events are consecutive (the write schedules them one after another), so nothing
comes between them; each reads the same value. If it is still the holder they watch again, in
the same order. If not, each spins one more instruction and, at the next instant, they
compare-exchange one after another (again consecutive events, in the order they watched): the
first takes the lock if it is free and the others fail, seeing the same value; one instruction
later they charge the failure and look at the word again, and watch it or go round once more.

A `Herd` is such a run of consecutive watchers, in order. One SimPy event stands for its
members' consecutive events, at the place the first of them would have had; the counters a
member would have advanced (its instructions by account, operations, TLB hits) are running
totals of the herd, added to the member's CPU when it leaves it (it took the lock) and when
the machine stops (`Machine.run`). The lock's own count of failures (`lock.spins`) grows at the
instant each member's failure would have. So a run is the same, bit for bit, as each member
running the loop itself (tests/test_engine.py), at a host cost per hand-over of the lock.

Only CPUs nobody observes join a herd: no tracer, no profiler watching that CPU, no TLB check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import simpy

    from .cpu import CPU, Frame
    from .machine import Machine


class Member:
    """One CPU in a herd: what it waits on, and the herd's totals when it was last settled."""

    __slots__ = ("cpu", "frame", "event", "vaddr", "value", "tlb", "base", "adjust", "adjust_after")

    def __init__(self, cpu: CPU, frame: Frame, event: simpy.Event, vaddr: int, value: int) -> None:
        self.cpu = cpu
        self.frame = frame  # the frame running the loop: its account takes the compare-exchanges
        self.event = event  # its process waits on it; it fires once the member holds the lock
        self.vaddr = vaddr
        self.value = value  # what its compare-exchange writes: its id + 1
        self.tlb = cpu.mmu.paging  # with paging off no access counts as a TLB hit
        self.base = (0, 0, 0)
        self.adjust = 0  # spin instructions its first wake-up counts less (it started watching late)
        self.adjust_after = 0  # ... applied once the herd has been woken more times than this


class Herd:
    """Consecutive watchers of the lock word at physical address `pa`, all spinning while it equals `holder`."""

    __slots__ = ("machine", "pa", "holder", "lock", "acct", "members", "watching", "start", "totals", "wakes")

    def __init__(self, machine: Machine, pa: int, holder: int, lock: Any, acct: str) -> None:
        self.machine = machine
        self.pa = pa
        self.holder = holder
        self.lock = lock  # its `spins` counts failed compare-exchanges
        self.acct = acct  # the account of the spinning instructions
        self.members: list[Member] = []
        self.watching = False  # registered as the word's watcher (only then may a CPU join)
        self.start = 0  # when the members started watching (the late joiners: see Member.adjust)
        # running totals per member since the herd formed: spin instructions, compare-exchanges
        # charged (to each member's frame account), operations (each also a TLB hit)
        self.totals = [0, 0, 0]
        self.wakes = 0

    @staticmethod
    def joinable(machine: Machine, pa: int, holder: int, lock: Any, acct: str) -> Herd:
        """The herd a CPU that starts watching `pa` joins: the word's last watcher if a herd, or a new one."""
        cbs = machine.memory.watchers.get(pa & ~3)
        last = cbs[-1] if cbs else None
        if last.__class__ is Herd and last.watching and last.lock is lock and last.acct == acct:
            assert last.holder == holder  # any change of the word would have woken it
            return last
        herd = Herd(machine, pa, holder, lock, acct)
        herd._watch(machine.env.now)
        machine.herds.add(herd)
        return herd

    def join(self, cpu: CPU, frame: Frame, event: simpy.Event, vaddr: int, value: int) -> None:
        m = Member(cpu, frame, event, vaddr, value)
        m.base = tuple(self.totals)
        m.adjust = self.start - cpu.env.now
        m.adjust_after = self.wakes
        self.members.append(m)

    def _watch(self, now: int) -> None:
        self.start = now
        self.watching = True
        self.machine.memory.watch(self.pa, self)

    def __call__(self) -> None:
        """The word was written: one event now, for the members' wake-ups."""
        self.watching = False
        ev = self.machine.env.event()
        ev.callbacks.append(self._woken)
        ev.succeed()

    def _woken(self, _ev: Any) -> None:
        now = self.machine.env.now
        t = self.totals
        t[0] += now - self.start
        self.wakes += 1
        if self.machine.memory.read_u32(self.pa) == self.holder:  # the same value: each looks again, and watches
            t[2] += 1
            self._watch(now)
        else:  # each spins one more instruction, then compare-exchanges
            self.machine.env.timeout(1).callbacks.append(self._cmpxchg)

    def _cmpxchg(self, _ev: Any) -> None:
        machine = self.machine
        memory = machine.memory
        t = self.totals
        t[0] += 1  # the last spinning instruction ends now
        t[2] += 1  # every member's compare-exchange
        seen = memory.read_u32(self.pa)
        if seen == 0:  # the first member takes the lock; the others see it held by that member
            m = self.members.pop(0)
            if machine.locks is not None:
                machine.locks.check(m.cpu, m.vaddr, 4)
            memory.write_u32(self.pa, m.value)
            self._settle(m)
            m.event._ok = True
            m.event._value = None
            machine.env.schedule(m.event, delay=1)  # its instruction ends then: the CPU goes on from there
            seen = m.value
        if not self.members:
            machine.herds.discard(self)
            return
        self.holder = seen
        machine.env.timeout(1).callbacks.append(self._failed)

    def _failed(self, _ev: Any) -> None:
        """The failed compare-exchanges end: each is charged, counted, and each member looks at the word."""
        t = self.totals
        t[1] += 1
        t[2] += 1
        self.lock.spins += len(self.members)
        if self.machine.memory.read_u32(self.pa) == self.holder:
            self._watch(self.machine.env.now)
        else:  # it changed already: one more instruction, and again
            self.machine.env.timeout(1).callbacks.append(self._cmpxchg)

    def _settle(self, m: Member) -> None:
        """Add to the member's CPU what it did since it was last settled."""
        t = self.totals
        b = m.base
        spin = t[0] - b[0]
        if m.adjust and self.wakes > m.adjust_after:
            spin += m.adjust
            m.adjust = 0
        cpu = m.cpu
        acct = cpu.acct
        if spin:
            acct[self.acct] = acct.get(self.acct, 0) + spin
        if t[1] != b[1]:
            acct[m.frame.acct] += t[1] - b[1]
        ops = t[2] - b[2]
        cpu.ops += ops
        if m.tlb:
            cpu.mmu.tlb.hits += ops
        m.base = tuple(t)

    def settle(self) -> None:
        """Bring every member's CPU up to date (the machine stops: its counters are read)."""
        for m in self.members:
            self._settle(m)
