"""A discrete-event core with SimPy's semantics for the subset the machine uses, and run-ahead.

The machine runs on SimPy (`Machine(engine="simpy")`) or on this engine (the
default), which `benchmarks/engine_speed.py` shows to be several times faster on
the throughput experiment, with bit-identical results. Same interface: `now`,
`timeout(n)`, `event()`, `process(gen)`, `Process.interrupt()` (throws
`simpy.Interrupt`), `run(until=...)`; same order: (time, priority, insertion),
interrupts and process starts before ordinary events of the same instant.

Run-ahead: when a process waits `d` and nothing else is scheduled before
now + d, no other process can act in between, so the engine advances the clock
and resumes it at once instead of going through the heap. Ties go through the
heap, so the order is exactly the heap order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Generator
from typing import Any

from simpy import Interrupt

URGENT = 0
NORMAL = 1
INFINITY = float("inf")


class Event:
    """Something a process can wait for; `succeed()` resumes its waiters at the current instant."""

    __slots__ = ("engine", "waiters", "triggered", "value")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waiters: list[tuple[Process, int]] = []
        self.triggered = False
        self.value: Any = None

    def succeed(self, value: Any = None) -> Event:
        if self.triggered:
            raise RuntimeError("event already triggered")
        self.triggered = True
        self.value = value
        for proc, token in self.waiters:
            self.engine._push(self.engine.now, NORMAL, proc._wake, (token, value, None))
        self.waiters.clear()
        return self


class Process:
    """A generator driven by the engine: it yields delays (from `timeout`) or events."""

    __slots__ = ("engine", "gen", "token", "alive")

    def __init__(self, engine: Engine, gen: Generator[Any, Any, Any]) -> None:
        self.engine = engine
        self.gen = gen
        self.token = 0
        self.alive = True
        engine._push(engine.now, URGENT, self._wake, (0, None, None))

    def interrupt(self, cause: Any = None) -> None:
        """Throw `simpy.Interrupt(cause)` into the process at the current instant."""
        if not self.alive:
            return
        self.token += 1
        self.engine._push(self.engine.now, URGENT, self._wake, (self.token, None, Interrupt(cause)))

    def _wake(self, arg: tuple[int, Any, BaseException | None]) -> None:
        token, value, exc = arg
        if token != self.token:
            return  # a wait that an interrupt cancelled
        engine = self.engine
        gen = self.gen
        heap = engine._heap
        while True:
            try:
                target = gen.send(value) if exc is None else gen.throw(exc)
            except StopIteration:
                self.alive = False
                return
            exc = value = None
            self.token += 1
            if target.__class__ is int:
                t = engine.now + target
                if t < engine._until and (not heap or t < heap[0][0]):
                    engine.now = t  # run-ahead: nothing can happen before t
                    continue
                engine._push(t, NORMAL, self._wake, (self.token, None, None))
                return
            if target.triggered:
                value = target.value
                continue
            target.waiters.append((self, self.token))
            return


class Engine:
    """The clock and the event heap."""

    def __init__(self) -> None:
        self.now = 0
        self._heap: list[tuple[int, int, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self._until: float = INFINITY
        self._stop = False

    def _push(self, t: int, prio: int, fn: Callable[[Any], None], arg: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, prio, self._seq, fn, arg))

    def timeout(self, delay: int) -> int:
        if delay < 0:
            raise ValueError("negative delay")
        return int(delay)

    def event(self) -> Event:
        return Event(self)

    def process(self, gen: Generator[Any, Any, Any]) -> Process:
        return Process(self, gen)

    def stop(self) -> None:
        """End the current `run` after the event being processed."""
        self._stop = True

    def run(self, until: int | None = None) -> None:
        """Process events before time `until` (all of them if None), or until `stop()`."""
        self._until = INFINITY if until is None else until
        self._stop = False
        heap = self._heap
        pop = heapq.heappop
        try:
            while heap and not self._stop:
                if heap[0][0] >= self._until:
                    break
                t, _, _, fn, arg = pop(heap)
                self.now = t
                fn(arg)
        finally:
            self._until = INFINITY
        if until is not None and not self._stop and self.now < until:
            self.now = until
