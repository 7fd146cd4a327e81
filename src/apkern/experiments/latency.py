"""System-call latency (paper section 5.1): inspection points around `gettid`, averaged.

The `gettid` program reads the time-stamp counter before and after each call and
subtracts the cost of the inspection point itself. With tracing on, every
inspection point and every stage mark of the kernels is recorded, so each
measured interval splits into stages whose lengths sum to it exactly: the
breakdown is measured, not modelled.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..hw.trace import Mark
from ..profiles import Profile
from ..system import System

# The stage a mark opens, by mark name (or name and system call); the interval before the
# first mark is the trap instruction itself. Marks not listed do not start a stage.
UP_STAGES: dict[Any, str] = {
    "sys_enter": "kernel entry",
    "sys_dispatch": "dispatch",
    "sys_body": "call body",
    "sys_exit": "kernel exit",
    "sys_return": "interrupts taken on return",
}
# The application kernel's path (Figure 2): only the bootstrap thread's re-issued gettid counts as
# re-issue; its polling `yield` calls are part of the wait.
AK_STAGES: dict[Any, str] = {
    "ak_trap": "AP trap and message",
    "ak_posted": "wait for the BSP",
    ("sys_enter", "gettid"): "bootstrap thread re-issue",
    ("sys_return", "gettid"): "activation",
    "ak_activated": "AP resume",
}
# The giant-lock SMP port: the uniprocessor's path between taking and releasing the kernel lock.
SMP_STAGES: dict[Any, str] = {
    "smp_lock": "lock acquire",
    **{k: v for k, v in UP_STAGES.items() if k != "sys_return"},
    "sys_return": "kernel exit",
    "smp_unlock": "lock release",
    "smp_exit": "interrupts taken on return",
}
# The master-slave port: the slave's stub queues the thread for the master, which runs the uniprocessor's
# path and queues it for user mode again; an idle slave takes it.
MS_STAGES: dict[Any, str] = {
    "ms_trap": "slave trap stub and queueing",
    "ms_queued": "wait for the master",
    "ms_master_woken": "master switches to it",
    **{k: v for k, v in UP_STAGES.items() if k != "sys_return"},
    "sys_return": "kernel exit",
    "ms_requeue": "queue for user mode",
    "ms_user_queued": "wait for a slave",
    "ms_slave_woken": "slave switches to it",
    "ms_resumed": "return to user mode",
}
# A call served on the application processor (the local_calls extension of section 4.3).
LOCAL_STAGES: dict[Any, str] = {
    "ak_trap": "AP trap entry",
    "ak_local": "dispatch and call body on the AP",
    "ak_local_exit": "kernel exit",
    "ak_resumed": "interrupts taken on return",
}
FIRST_STAGE = "trap instruction"


@dataclass
class LatencyResult:
    kernel: str
    cpus: int
    iterations: int
    mean_instructions: float
    program_mean: float
    inspection_cost: int
    min_instructions: int
    max_instructions: int
    breakdown: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_stages(marks: list[Mark], inspection_cost: int, stages: dict[Any, str]) -> list[tuple[int, dict[str, int]]]:
    """Per measured call: (latency, {stage: instructions}) from the marks between two inspection points."""
    points = [i for i, m in enumerate(marks) if m.name == "inspect"]
    out = []
    # points[0:2] calibrate the inspection point; then one pair per call
    for a, b in zip(points[2::2], points[3::2], strict=False):
        start = marks[a].time + inspection_cost
        end = marks[b].time
        per: dict[str, int] = {}
        label, t = FIRST_STAGE, start
        for m in marks[a + 1 : b]:
            stage = stages.get((m.name, m.args.get("call"))) or stages.get(m.name)
            if stage is None:
                continue
            per[label] = per.get(label, 0) + (m.time - t)
            label, t = stage, m.time
        per[label] = per.get(label, 0) + (end - t)
        out.append((end - start, per))
    return out


def measure(
    kernel: str = "up",
    cpus: int = 1,
    iterations: int = 1000,
    seed: int = 0,
    extensions: tuple[str, ...] = (),
    costs: Profile | None = None,
) -> LatencyResult:
    """Run the `gettid` program alone on a fresh system and break its calls down by stage
    (`costs`: the cost profile, `apkern.profiles`; the default's when None)."""
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    sim = System(kernel=kernel, cpus=cpus, seed=seed, trace=True, extensions=extensions, costs=costs)
    proc = sim.spawn("gettid", ["gettid", str(iterations)])
    sim.run()
    if proc.exit_status != 0:
        raise RuntimeError(f"gettid program failed with status {proc.exit_status}: {sim.console()!r}")
    m = re.search(r"mean ([0-9.]+) instructions", sim.console(proc.pid))
    program_mean = float(m.group(1)) if m else float("nan")
    marks = [mk for mk in sim.machine.tracer.marks]
    inspects = [mk for mk in marks if mk.name == "inspect"]
    inspection_cost = inspects[1].time - inspects[0].time
    if kernel in ("up", "smp", "master-slave"):
        stages = {"up": UP_STAGES, "smp": SMP_STAGES, "master-slave": MS_STAGES}[kernel]
    else:
        stages = LOCAL_STAGES if "local_calls" in extensions else AK_STAGES
    calls = split_stages(marks, inspection_cost, stages)
    if len(calls) != iterations:
        raise RuntimeError(f"expected {iterations} measured calls, found {len(calls)}")
    total = sum(lat for lat, _ in calls)
    names: list[str] = []
    for _, per in calls:
        names += [n for n in per if n not in names]
    breakdown = {n: sum(per.get(n, 0) for _, per in calls) / iterations for n in names}
    return LatencyResult(
        kernel=kernel,
        cpus=cpus,
        iterations=iterations,
        mean_instructions=total / iterations,
        program_mean=program_mean,
        inspection_cost=inspection_cost,
        min_instructions=min(lat for lat, _ in calls),
        max_instructions=max(lat for lat, _ in calls),
        breakdown=breakdown,
    )
