"""The SMP machine: CPUs, physical memory, interrupt controller, code store, one clock.

Time is counted in instructions (DESIGN.md section 2): every running CPU executes
one instruction per tick; a halted CPU lets time pass. The event core is SimPy
(a hand-written loop with run-ahead measured only 1.14x faster on the throughput
experiment, short of the 2x that would justify it); events at one instant run in
the order they were scheduled, so a run is deterministic. The fast engine (the
default) spares events without changing that order: a CPU runs ahead while its next
event would be the next one anyway (`CPU._run`), and CPUs waiting for one spinlock
word share one event per hand-over (`herd.py`). `engine="reference"` keeps one event
per instruction-costing op; tests/test_engine.py checks that both give the same runs.
"""

from __future__ import annotations

from typing import Any

import simpy

from .code import CodeStore
from .cpu import CPU, Context, MachineError
from .debugger import Debugger
from .herd import Herd
from .intc import InterruptController
from .lockcheck import LockChecker
from .lockstep import MachineEnv
from .memory import PhysicalMemory
from .perturb import Perturbation
from .profiler import Profiler
from .trace import Tracer

MAX_CPUS = 64
DEFAULT_MEMORY = 32 << 20
NOMINAL_IPS = 100_000_000  # the paper's own example uses 100 MIPS
# "fast": CPUs run ahead of SimPy while no other event can come first (`CPU._run`);
# "reference": one SimPy event per instruction-costing op, as before run-ahead. Both give the same run.
ENGINES = ("fast", "reference")


class Machine:
    """A machine of `cpus` processors (CPU 0 boots; the others are held in reset) and `memory` bytes.

    `strict`: a user program's Python exception propagates instead of becoming #UD.
    `check_tlb`: every TLB hit is compared with a walk of the current page tables; a
    stale translation raises `StaleTLB` (for tests: it costs host time, not simulated time).
    `check_locks` turns on the lock-discipline checker (`LockChecker`, for tests); it costs no
    simulated time. `debugger` reads memory from outside, for observers.
    `perturb`: a `Perturbation` that varies kernel path costs, IPI delivery and timer
    intervals within its bounds, to explore other interleavings (off by default).
    `engine`: "fast" (the default) or "reference" (`ENGINES`); the same run either way, bit for bit.
    `quantum`: temporal decoupling, fast engine only (`CPU._run`): a CPU may run up to that many
    instructions ahead of the next event of the others. 0, the default, is the exact machine;
    any other value changes timing, and so the figures (`System` bounds it: `MAX_QUANTUM`).
    """

    def __init__(
        self,
        cpus: int = 1,
        memory: int = DEFAULT_MEMORY,
        strict: bool = False,
        trace: bool = False,
        check_tlb: bool = False,
        check_locks: bool = False,
        perturb: Perturbation | None = None,
        engine: str = "fast",
        quantum: int = 0,
    ) -> None:
        if not isinstance(cpus, int) or not 1 <= cpus <= MAX_CPUS:
            raise ValueError(f"a machine has 1 to {MAX_CPUS} CPUs, not {cpus!r}")
        if engine not in ENGINES:
            raise ValueError(f"engine is one of {', '.join(ENGINES)}, not {engine!r}")
        if quantum.__class__ is not int or quantum < 0:
            raise ValueError(f"the decoupling quantum is a number of instructions >= 0, not {quantum!r}")
        if quantum and engine != "fast":
            raise ValueError("temporal decoupling (a quantum > 0) needs the fast engine")
        self.engine = engine
        self.quantum = quantum
        self.env = MachineEnv()
        self.memory = PhysicalMemory(memory)
        self.code = CodeStore()
        self.strict = strict
        self.check_tlb = check_tlb  # every TLB hit is checked against the tables (`mmu.CheckingMMU`)
        self.tracer: Tracer | None = Tracer() if trace else None
        self.perturb = perturb  # read by the CPUs, the interrupt controller and the timers
        self.profiler: Profiler | None = None
        self.messages: list[str] = []
        # user code that did what no instruction does (it raised, or yielded garbage): one record each,
        # {"time", "cpu", "owner" (the context's owner: a kernel's thread), "why", "where" (file:line)}
        self.crashes: list[dict[str, Any]] = []
        self.debugger = Debugger(self.memory)
        self.locks: LockChecker | None = LockChecker(self.memory) if check_locks else None
        self.herds: set[Herd] = set()  # CPUs waiting for a spinlock together (hw.herd)
        self.cpus = [CPU(self, i) for i in range(cpus)]
        self.intc = InterruptController(self)

    @property
    def bsp(self) -> CPU:
        return self.cpus[0]

    @property
    def now(self) -> int:
        return int(self.env.now)

    def power_on(self, boot: Context) -> None:
        """Start the bootstrap processor in `boot`; the APs stay in reset."""
        self.bsp.power_on(boot)

    def profile(self, profiler: Profiler) -> None:
        """Attach `profiler` (see `hw.profiler`): from the first instruction on, it hears of every charge.

        Only before the machine first runs: a profiler sees the whole run or none of it.
        """
        if self.env.now > 0 or any(c.ops for c in self.cpus):
            raise MachineError("attach a profiler before the machine runs")
        self.profiler = profiler

    def run(self, until: int | None = None) -> None:
        """Run until time `until` (or until nothing is left to do), or until `stop()`."""
        if until is not None and until <= self.env.now:
            return
        self.env.run(until=until)
        self.settle()

    def settle(self) -> None:
        """Bring the counters of CPUs waiting in a herd up to date (they are kept as its running totals)."""
        for herd in self.herds:
            herd.settle()

    def stop(self) -> None:
        """End the current `run` once the event being processed is done."""
        ev = self.env.event()
        ev.callbacks.append(simpy.core.StopSimulation.callback)
        ev.succeed()

    def frame_released(self, pfn: int) -> None:
        """Invariant check a kernel calls when it frees a frame: no running CPU may still use it as CR3.

        A CPU executing in a destroyed address space is the failure the paper's
        section 4.1 warns of; this turns it from silent corruption into a `MachineError`.
        """
        for c in self.cpus:
            if c.state == "running" and c.mmu.paging and c.mmu.cr3 >> 12 == pfn:
                raise MachineError(f"cpu{c.id} still runs in the address space whose page directory {pfn:#x} is freed")

    def log(self, text: str) -> None:
        self.messages.append(f"[{self.now}] {text}")

    def stats(self) -> dict[str, Any]:
        self.settle()
        out = {
            "time": self.now,
            "cpus": [
                {
                    "id": c.id,
                    "state": c.state,
                    "instructions": sum(c.acct.values()),
                    **{f"{k}_instructions": v for k, v in c.acct.items()},
                    "halted": c.halted,
                    "interrupts": c.interrupts,
                    "timer_interrupts": c.timer.fired,
                    "tlb_hits": c.mmu.tlb.hits,
                    "tlb_misses": c.mmu.tlb.misses,
                }
                for c in self.cpus
            ],
            "ipis": self.intc.ipis_sent,
        }
        if self.perturb is not None:
            out["perturb"] = self.perturb.stats()
        return out
