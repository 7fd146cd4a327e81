"""Interleaving exploration: a seeded perturbation of path costs, IPI delivery and timer ticks.

The machine's fixed costs make every run take the same interleaving, so a race
whose window is narrower than the path that would hit it is never seen. Like a
schedule fuzzer or KCSAN's random delays, a `Perturbation` changes the timing
(never the semantics) of a run, within stated bounds, from one seed:

- kernel path costs: every kernel-mode `Compute(n)` (n > 0) costs n times a factor
  drawn log-uniformly from [1/cost_scale, cost_scale] (at least 1), and may also
  stall for 1..`stall_max` instructions (what a burst of cache misses, an SMI or a
  preempted virtual CPU do to real kernel code). Each CPU stalls with its own
  probability, drawn once per run from [0, stall]: in some runs one CPU is much
  noisier than another, which is what opens a window on one side of a race while
  the other side runs at full speed. User code's `Compute` is the program's own
  work and keeps its length.
- fixed IPIs reach their target 0..`ipi_delay` instructions after they are sent
  (INIT and SIPI stay immediate: start-up depends on their order);
- each local timer interval, the first one included, is the programmed period
  times a factor drawn uniformly from [1 - timer_jitter, 1 + timer_jitter] (at least 1).

Each CPU's costs, the IPIs and the timers have their own random streams, drawn in
the machine's event order, so the same seed gives the same run, bit for bit. Off by
default (`Machine(perturb=None)`): experiments and the reproduction keep fixed costs.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

COST_SCALE = 2.0  # a kernel path may take from half to twice its stated cost
STALL = 0.05  # a CPU's stall probability per kernel Compute is drawn from [0, STALL]
STALL_MAX = 5000  # 50 us at 100 MIPS: longer than any application-kernel path plus a bootstrap-side call
IPI_DELAY = 1000  # 10 us: far above a real APIC's microsecond, to reach late deliveries
TIMER_JITTER = 0.5  # a tick comes after half to one and a half periods


@dataclass
class Perturbation:
    """A seeded timing perturbation for `Machine(perturb=...)`; the bounds are stated in the module docstring.

    Counters (`computes`, `stalls`, `stall_instructions`, `ipis_delayed`, `ticks_jittered`)
    tell how much a run was perturbed.
    """

    seed: int
    cost_scale: float = COST_SCALE
    stall: float = STALL
    stall_max: int = STALL_MAX
    ipi_delay: int = IPI_DELAY
    timer_jitter: float = TIMER_JITTER
    computes: int = field(default=0, init=False)
    stalls: int = field(default=0, init=False)
    stall_instructions: int = field(default=0, init=False)
    ipis_delayed: int = field(default=0, init=False)
    ticks_jittered: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.cost_scale < 1:
            raise ValueError("cost_scale must be >= 1")
        if not 0 <= self.stall <= 1:
            raise ValueError("stall is a probability")
        if self.stall_max < 0 or self.ipi_delay < 0:
            raise ValueError("stall_max and ipi_delay must be >= 0")
        if not 0 <= self.timer_jitter < 1:
            raise ValueError("timer_jitter must be in [0, 1)")
        self._ipis = random.Random(f"{self.seed}/ipis")
        self._timers = random.Random(f"{self.seed}/timers")

    def for_cpu(self, cid: int) -> CostPerturbation:
        """The kernel-cost perturbation of CPU `cid` (its own stream and stall probability)."""
        return CostPerturbation(self, cid)

    def ipi_latency(self) -> int:
        """Instructions between sending a fixed IPI and its arrival at the target."""
        if not self.ipi_delay:
            return 0
        d = self._ipis.randint(0, self.ipi_delay)
        if d:
            self.ipis_delayed += 1
        return d

    def timer_interval(self, period: int) -> int:
        """The next interval of a local timer programmed with `period`."""
        if not self.timer_jitter:
            return period
        self.ticks_jittered += 1
        f = 1 + self.timer_jitter * (2 * self._timers.random() - 1)
        return max(1, int(period * f + 0.5))

    def stats(self) -> dict[str, int]:
        return {
            "seed": self.seed,
            "computes": self.computes,
            "stalls": self.stalls,
            "stall_instructions": self.stall_instructions,
            "ipis_delayed": self.ipis_delayed,
            "ticks_jittered": self.ticks_jittered,
        }


class CostPerturbation:
    """One CPU's share of a `Perturbation`: what its kernel `Compute`s cost."""

    __slots__ = ("parent", "stall", "_rng", "_log_scale")

    def __init__(self, parent: Perturbation, cid: int) -> None:
        self.parent = parent
        self._rng = random.Random(f"{parent.seed}/cpu{cid}")
        self._log_scale = math.log(parent.cost_scale)
        self.stall = parent.stall * self._rng.random()  # this CPU's stall probability for the run

    def cost(self, n: int) -> int:
        """What a kernel `Compute(n)` (n > 0) costs this time."""
        r = self._rng
        p = self.parent
        p.computes += 1
        if self._log_scale:
            n = max(1, int(n * math.exp(self._log_scale * (2 * r.random() - 1)) + 0.5))
        if self.stall and r.random() < self.stall and p.stall_max:
            extra = r.randint(1, p.stall_max)
            p.stalls += 1
            p.stall_instructions += extra
            n += extra
        return n
