"""The uniprocessor scheduler: one run queue, round robin, sleep and wakeup.

Invariant: at most one thread is RUNNING and it is `current`; every RUNNABLE
thread is in `runq` exactly once; a SLEEPING thread is on exactly one channel list.
When nothing is runnable the CPU runs the idle context, which halts until an
interrupt. CR3 is loaded on every switch to a thread of another process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import Compute, Context, Frame, Halt, LoadCR3, Op, Switch
from .proc import DEAD, RUNNABLE, RUNNING, SLEEPING, Thread

if TYPE_CHECKING:
    from .kernel import BootKernel

Gen = Generator[Op, Any, Any]


class Scheduler:
    """Run queue, current thread, sleep channels and the idle context of the one CPU."""

    def __init__(self, kernel: BootKernel) -> None:
        self.k = kernel
        self.early_wakeups = 0  # interruptible sleeps a signal already waiting ended at once
        self.runq: deque[Thread] = deque()
        self.current: Thread | None = None
        self.sleepers: dict[Any, list[Thread]] = {}
        self.timed: list[Thread] = []  # sleeping with a wake time
        self.idle_ctx = Context([Frame(self._idle(), user=False, intr=True, acct="idle")], name="idle")
        self.switches = 0
        self.loaded_cr3 = 0

    # --- state changes (instantaneous) ------------------------------------------------

    def make_runnable(self, t: Thread) -> None:
        if t.state in (RUNNABLE, RUNNING, DEAD) or t.proc.state != "alive":
            return
        t.state = RUNNABLE
        t.chan = None
        self.runq.append(t)

    def wakeup(self, chan: Any, n: int | None = None) -> int:
        """Wake the threads sleeping on `chan` (the first `n` of them, oldest first); returns how many."""
        sleepers = self.sleepers.get(chan, [])
        woken, rest = (sleepers, []) if n is None else (sleepers[:n], sleepers[n:])
        if rest:
            self.sleepers[chan] = rest
        else:
            self.sleepers.pop(chan, None)
        for t in woken:
            if t.wake_time is not None:
                self.timed.remove(t)
                t.wake_time = None
            self.make_runnable(t)
        return len(woken)

    def wake(self, chan: Any, n: int | None = None) -> Gen:
        """Kernel code: `wakeup`, charging WAKEUP per thread woken; returns how many."""
        woken = self.wakeup(chan, n)
        if woken:
            yield Compute(self.k.costs.WAKEUP * woken)
        return woken

    def interrupt(self, t: Thread, force: bool = False) -> None:
        """Wake a sleeping thread early (a signal); `force` also wakes uninterruptible sleeps (SIGKILL)."""
        if t.state != SLEEPING or not (t.interruptible or force):
            return
        self._unsleep(t)
        t.interrupted = True
        self.make_runnable(t)

    def _unsleep(self, t: Thread) -> None:
        self.sleepers[t.chan].remove(t)
        if not self.sleepers[t.chan]:
            del self.sleepers[t.chan]
        if t.wake_time is not None:
            self.timed.remove(t)
            t.wake_time = None

    def remove(self, t: Thread) -> None:
        """Take a thread out of every queue (it is being destroyed)."""
        if t.state == RUNNABLE:
            self.runq.remove(t)
        elif t.state == SLEEPING:
            self._unsleep(t)
        t.state = DEAD

    def tick(self) -> None:
        now = self.k.machine.now
        for t in [t for t in self.timed if t.wake_time <= now]:
            self._unsleep(t)
            self.make_runnable(t)

    # --- code that runs on the CPU ----------------------------------------------------------

    def sleep(self, chan: Any, interruptible: bool = False, until: int | None = None) -> Gen:
        """Block the current thread on `chan`; returns True if a signal cut the sleep short.

        An interruptible sleep looks for a signal or a kill already waiting for the thread first,
        as Unix's sleep does: one sent while the thread was runnable between two sleeps of a call's
        loop (a reader woken with others, whose byte another took) found no sleep to end.
        """
        t = self.current
        if interruptible:
            yield Compute(self.k.costs.SIGNAL_CHECK)
            p = t.proc
            if p.killed or (p.pending and t is self.k.signals.target(p)):
                t.interrupted = True
                self.early_wakeups += 1
                return True
        yield Compute(self.k.costs.SLEEP)
        t.state = SLEEPING
        t.chan = chan
        t.interruptible = interruptible
        t.interrupted = False
        self.sleepers.setdefault(chan, []).append(t)
        if until is not None:
            t.wake_time = until
            self.timed.append(t)
        yield from self.schedule()
        return t.interrupted

    def yield_(self) -> Gen:
        t = self.current
        if self.runq:
            t.state = RUNNABLE
            self.runq.append(t)
            yield from self.schedule()

    def schedule(self) -> Gen:
        """Switch away from the current thread (already queued, asleep or dead) to the next one."""
        yield Compute(self.k.costs.CONTEXT_SWITCH)
        self.switches += 1
        nxt = self.runq.popleft() if self.runq else None
        if nxt is None:
            self.current = None
            if self.loaded_cr3 != self.k.kernel_cr3:
                self.loaded_cr3 = self.k.kernel_cr3
                yield LoadCR3(self.k.kernel_cr3)
            yield Switch(self.idle_ctx)
            return
        yield from self._run(nxt)

    def _run(self, nxt: Thread) -> Gen:
        nxt.state = RUNNING
        nxt.ticks = 0
        self.current = nxt
        cr3 = nxt.proc.aspace.cr3
        if cr3 != self.loaded_cr3:
            self.loaded_cr3 = cr3
            yield LoadCR3(cr3)
        yield Switch(nxt.ctx)

    def _idle(self) -> Gen:
        while True:
            if self.runq:
                yield Compute(self.k.costs.CONTEXT_SWITCH)
                self.switches += 1
                yield from self._run(self.runq.popleft())
            else:
                yield Halt()
