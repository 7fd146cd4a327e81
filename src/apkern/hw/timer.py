"""The local APIC timer: one per CPU (requirement 2 of section 3.2); a `Perturbation` jitters its intervals."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import simpy

from .traps import TIMER

if TYPE_CHECKING:
    from .cpu import CPU
    from .perturb import Perturbation


class LocalTimer:
    """Periodic timer raising `TIMER` on its own CPU every `period` instructions of machine time."""

    def __init__(self, cpu: CPU) -> None:
        self.cpu = cpu
        self.period = 0
        self.fired = 0
        self._generation = 0

    def program(self, period: int) -> None:
        if period < 0:
            raise ValueError("timer period must be >= 0")
        self._generation += 1
        self.period = period
        if period:
            perturb = self.cpu.machine.perturb
            if perturb is None:
                self.cpu.env.process(self._tick(self._generation, period))
            else:
                self.cpu.env.process(self._jittered(self._generation, period, perturb))

    def _tick(self, generation: int, period: int) -> Generator[simpy.Event, Any, None]:
        env = self.cpu.env
        while True:
            yield env.timeout(period)
            if generation != self._generation:
                return
            self.fired += 1
            self.cpu.raise_irq(TIMER)

    def _jittered(self, generation: int, period: int, perturb: Perturbation) -> Generator[simpy.Event, Any, None]:
        env = self.cpu.env
        while True:
            yield env.timeout(perturb.timer_interval(period))
            if generation != self._generation:
                return
            self.fired += 1
            self.cpu.raise_irq(TIMER)
