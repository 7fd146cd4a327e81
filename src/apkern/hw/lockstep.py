"""CPUs in lockstep share one SimPy event: the machine's environment.

When CPUs wait for the same instant one after another, with nothing scheduled in between,
SimPy would give their events consecutive ids: they come one right after the other, whatever
else happens. The fast engine lets them wait on one event instead. A `Tick` is a CPU's wait
for the end of an instruction it cannot be interrupted in: a CPU that would schedule one for
the same instant as the last event scheduled, itself a `Tick`, joins it. A `Wake` is the event
that ends a `SpinWhile` when the word is written: a CPU that starts watching a word whose last
watcher is an untriggered `Wake` joins it. `MachineEnv.step` resumes the CPUs waiting on one
such event in the order they joined, as SimPy would have processed their own events, and stops
to let an urgent event (an interrupt of a process, a process starting) go first, as it would
have gone before the events still to come. So the order of everything is unchanged.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any

import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import NORMAL, EventPriority


class Tick(simpy.Timeout):
    """A CPU's uninterruptible wait until `at`; other CPUs may join it (`tick`)."""

    at: int


class Wake(simpy.Event):
    """The end of a `SpinWhile`: triggered by the next write of the watched word; other spinners may join it."""


def tick(env: MachineEnv, n: int) -> Tick:
    """The event a CPU waits on for `n` uninterruptible instructions: the last one scheduled if it is a
    `Tick` for the same instant (nothing can come between the two), else a new one."""
    last = env.last
    at = env._now + n
    if last.__class__ is Tick and last.at == at:
        return last
    t = Tick(env, n)
    t.at = at
    return t


class MachineEnv(simpy.Environment):
    """SimPy's environment, which remembers the last event it scheduled and steps lockstep events member by member."""

    def __init__(self) -> None:
        super().__init__()
        self.last: Any = None  # the event scheduled last

    def schedule(self, event: simpy.Event, priority: Any = NORMAL, delay: Any = 0) -> None:
        self.last = event
        heappush(self._queue, (self._now + delay, priority, next(self._eid), event))

    def step(self) -> None:
        queue = self._queue
        try:
            now, priority, eid, event = heappop(queue)
        except IndexError:
            raise EmptySchedule from None
        self._now = now
        cls = event.__class__
        if (cls is Tick or cls is Wake) and len(event.callbacks) > 1:
            # The event stays queued while members are still to come: they hold their place (no CPU runs
            # ahead of them) and anything urgent scheduled meanwhile goes first, as it would have.
            cbs = event.callbacks  # kept on the event: an interrupt may still take a member off it
            entry = (now, priority, eid, event)
            heappush(queue, entry)
            while len(cbs) > 1:
                self._now = now  # each member resumes at the event's time (decoupled, the last ran ahead)
                cbs.pop(0)(event)
                if queue[0] is not entry:  # an urgent event: it goes first; the rest follow it from the queue
                    return
            heappop(queue)  # the last member, on its own as SimPy would process it
            self._now = now
        callbacks, event.callbacks = event.callbacks, None  # SimPy's own step from here on
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            event.callbacks = callbacks[callbacks.index(callback) + 1 :]
            self.schedule(event, EventPriority(-1))
            raise
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc
