"""`apkern replay` and `apkern predict`: a real program's strace log run on our kernels, and its scaling.

`load(TRACE, ips)` reads a trace file (or names a shipped one: find, grep, gzip,
findgrep, python) and compiles it (`workloads.replay`); `run` replays it on one
kernel and CPU count; `report` says what was mapped how; `predict` replays it on
1 to 8 CPUs under every kernel of the project (`system.KERNELS`) and puts each
speedup over the uniprocessor kernel beside the capacity model's (`model.py`),
with a plot.

The model's inputs, from the trace (at the replay's instruction rate):

- ipsc: the kernel time charged per traced call (measured, or the trace's
  shortest call for calls that may wait);
- interval: the instructions per call on one CPU, user and kernel time together
  (the uniprocessor's call rate is ips / interval);
- parallelism: the work (user and kernel time of every thread) over the longest
  thread's timeline: more CPUs than that cannot help, whatever the kernel;
- opsc, the application kernel's overhead per forwarded call, is no property of
  the trace: by default it is derived as the reproduction derives it (the
  paper's way, C = scps * (ipsc + opsc) at a plateau) from one saturated point of
  the throughput experiment, OPSC_POINT, measured once per process (about a
  second); `--opsc` gives it instead.

Each kernel's prediction on N CPUs (None where the model has nothing to say):

- up: 1 on one CPU (the reference);
- apkern: min((N - 1) * interval / (interval - ipsc), parallelism,
  interval / (ipsc + opsc)): the N - 1 application processors do all the user
  work (while the bootstrap processor does the kernel's), and the paper's bound
  (section 5.2): the bootstrap processor serves every call;
- smp: min(N, parallelism, interval / ipsc), the giant lock's bound (the
  uniprocessor's kernel work serialised: the inverse of its kernel share), as
  the reproduction states it for the port.

The model is a bound on throughput: it does not see the latency a forwarded
call adds to a program that waits for each of its calls, which is what a single
thread's replay on the application kernel shows.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..profiles import Profile
from ..system import KERNELS, ConfigError, SimulationLimit, System
from ..workloads import replay as rp
from ..workloads import strace
from .model import capacity

CPU_COUNTS = tuple(range(1, 9))
OPSC_POINT = (151, 80.0, 4)  # K, user %, CPUs: the grid's shortest call at its lowest user share is flat from 3 CPUs
PER_CALL_ALLOWANCE = 20_000  # instructions a call may cost on top of its charge: several times a forwarded call's
BASE_ALLOWANCE = 50_000_000  # plus start-up and the last thread's exit, with room to spare


RUN_LIMIT = 10_000_000_000  # at most, unless told: 100 s of machine time at the nominal rate (as `apkern run`)


def default_limit(plan: rp.Plan) -> int:
    """How long a replay may run: twice what its timelines charge, PER_CALL_ALLOWANCE per call, and a base.

    A replay that needs more is stuck (a corrupt trace can make its processes wait for each other
    forever). Never more than RUN_LIMIT.
    """
    calls = len([s for t in plan.tasks for s in t.steps]) + sum(plan.setup.values())
    return min(RUN_LIMIT, 2 * plan.instructions + PER_CALL_ALLOWANCE * calls + BASE_ALLOWANCE)


class ReplayError(ValueError):
    """A trace that cannot be read or replayed (the message says why)."""


def load(trace: str, ips: float = rp.DEFAULT_IPS) -> tuple[str, rp.Plan]:
    """(label, plan) for the trace in file `trace`, or the shipped trace of that name; ReplayError otherwise."""
    if not (isinstance(ips, int | float) and math.isfinite(ips) and ips > 0):
        raise ReplayError(f"--ips must be a positive number of instructions per second, not {ips!r}")
    path = Path(trace)
    shipped = rp.shipped()
    if not path.exists() and trace in shipped:
        parsed, label = strace.parse(shipped[trace]), trace
    else:
        try:
            parsed = strace.read(path)
        except strace.TraceError as e:
            raise ReplayError(f"{trace}: {e}") from None
        except OSError as e:
            raise ReplayError(f"cannot read {trace}: {e.strerror or e}") from None
        label = path.name
    try:
        return label, rp.plan(parsed, ips)
    except ValueError as e:
        raise ReplayError(f"{trace}: {e}") from None


@dataclass
class ReplayRun:
    kernel: str
    cpus: int
    time: int  # instructions of machine time until every process exited
    exit_status: int | None
    processes: dict[int, tuple[str, int | None]]
    console: str
    user_instructions: int
    kernel_instructions: int
    spin_instructions: int
    idle_instructions: int
    syscalls_by_name: dict[str, int]
    forwarded_calls: int | None
    forwarded_page_faults: int | None
    host_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(
    plan: rp.Plan,
    kernel: str = "up",
    cpus: int = 1,
    seed: int = 0,
    limit: int | None = None,
    **system: Any,
) -> ReplayRun:
    """Replay `plan` alone on a fresh system; ConfigError for an impossible one, SimulationLimit past `limit`.

    `limit`: instructions of machine time, `default_limit(plan)` unless given.
    """
    limit = default_limit(plan) if limit is None else limit
    if plan.instructions > limit:
        raise SimulationLimit(
            f"the trace charges {plan.instructions:,} instructions at {plan.ips:g} per second, "
            f"above the limit of {limit:,}: lower --ips or raise --limit"
        )
    t0 = time.perf_counter()
    sim = System(kernel=kernel, cpus=cpus, seed=seed, **system)
    plan.install(sim.fs)
    proc = sim.spawn(plan.program(), [plan.name])
    try:
        sim.run(limit=limit)
    except SimulationLimit:
        raise SimulationLimit(
            f"the replay did not finish within {limit:,} instructions: its processes may be waiting for each "
            "other (as a trace cut short or edited can make them); --limit gives it more time"
        ) from None
    st = sim.stats
    per = st["per_cpu"]
    return ReplayRun(
        kernel=kernel,
        cpus=cpus,
        time=sim.now,
        exit_status=proc.exit_status,
        processes={pid: (p.name, p.exit_status) for pid, p in sorted(sim.kernel.procs.items())},
        console=sim.console(),
        user_instructions=sum(c["user_instructions"] for c in per),
        kernel_instructions=sum(c["kernel_instructions"] for c in per),
        spin_instructions=sum(c["spin_instructions"] for c in per),
        idle_instructions=sum(c["idle_instructions"] for c in per),
        syscalls_by_name=dict(st["syscalls_by_name"]),
        forwarded_calls=st.get("forwarded_calls"),
        forwarded_page_faults=st.get("forwarded_page_faults"),
        host_seconds=round(time.perf_counter() - t0, 3),
    )


# --- the report ---------------------------------------------------------------------------------------

CHARGES = {
    "measured": "its measured time",
    "floor": "the shortest call (it may wait)",
    "sleep": "asleep for its duration",
    "own": "our kernel's own work",
}


def _ms(instructions: float, ips: float) -> str:
    return f"{instructions / ips * 1e3:.3f} ms"


def describe(label: str, plan: rp.Plan) -> str:
    threads = len(plan.tasks) - plan.processes
    return (
        f"trace {label}: {plan.traced_calls} calls over {plan.span * 1e3:.3f} ms, "
        f"{plan.processes} process(es), {threads} further thread(s), {plan.signals} signal(s) listed"
    )


def report(label: str, plan: rp.Plan) -> str:
    """What was mapped how: a line per (traced call, replayed as, charge), then the replay's own calls and notes."""
    lines = [
        describe(label, plan),
        f"time: {plan.ips:,.0f} instructions per second (--ips; default the machine's nominal rate, "
        f"the paper's 100 MIPS); the shortest call, charged to calls that may wait: {plan.floor * 1e6:.1f} us",
        f"charged: user {plan.user_instructions:,} instructions, kernel {plan.kernel_instructions:,}, "
        f"asleep {plan.sleep_instructions:,}",
        "",
        f"{'traced call':<18} {'calls':>6}  {'replayed as':<12} {'charged':<32} {'kernel instructions':>20}",
    ]
    spins: dict[tuple[str, str, str], int] = {}
    for t in plan.tasks:
        for s in t.steps:
            if s.call:
                key = (s.call, s.op, s.charge)
                spins[key] = spins.get(key, 0) + (s.spin if s.op != "sleep" else 0)
    for (call, op, charge), n in sorted(plan.mapping.items(), key=lambda kv: (-kv[1], kv[0])):
        kernel = spins.get((call, op, charge), 0)
        lines.append(f"{call:<18} {n:>6}  {op:<12} {CHARGES.get(charge, charge):<32} {kernel:>20,}")
    if plan.setup:
        lines += ["", "the replay's own calls (not in the trace):"]
        lines += [f"  {what}: {n}" for what, n in sorted(plan.setup.items())]
    if plan.notes:
        lines += ["", "notes:"]
        lines += [f"  {n}" for n in plan.notes[:20]]
        if len(plan.notes) > 20:
            lines.append(f"  ... and {len(plan.notes) - 20} more")
    return "\n".join(lines)


def format_run(plan: rp.Plan, r: ReplayRun) -> str:
    busy = r.user_instructions + r.kernel_instructions + r.spin_instructions
    out = [
        f"replayed on {r.kernel}, {r.cpus} CPU(s): {r.time:,} instructions "
        f"({_ms(r.time, plan.ips)} at {plan.ips:,.0f} per second; the trace spans {plan.span * 1e3:.3f} ms), "
        f"exit status {r.exit_status}, {len(r.console)} bytes of output",
        f"  CPU time: user {r.user_instructions:,}, kernel {r.kernel_instructions:,}, "
        f"lock spin {r.spin_instructions:,} ({busy:,} busy), idle {r.idle_instructions:,}",
        "  processes: " + ", ".join(f"{pid} {name} ({status})" for pid, (name, status) in r.processes.items()),
    ]
    if r.forwarded_calls is not None:
        out.append(
            f"  forwarded to the bootstrap kernel: {r.forwarded_calls:,} calls, {r.forwarded_page_faults:,} page faults"
        )
    return "\n".join(out)


# --- predict ------------------------------------------------------------------------------------------------


@functools.cache
def measured_opsc(seed: int = 0, costs: Profile | None = None) -> float:
    """The application kernel's overhead per forwarded call, derived at OPSC_POINT as the reproduction does."""
    from .reproduce import QUICK
    from .throughput import measure

    k, p, n = OPSC_POINT
    up = measure(k, p, 1, warmup=QUICK.warmup(k, p, 1), window=QUICK.window(k, p, 1), seed=seed, costs=costs)
    point = measure(k, p, n, warmup=QUICK.warmup(k, p, n), window=QUICK.window(k, p, n), seed=seed, costs=costs)
    t_up = up.window_instructions / up.loops
    speedup = point.loops / point.window_instructions * t_up
    return t_up / speedup - up.bsp_parts["call"] / up.loops


@dataclass
class ModelInputs:
    ips: float
    calls: int
    ipsc: float
    interval: float
    calls_per_second: float
    parallelism: float
    opsc: float
    opsc_source: str


def model_inputs(plan: rp.Plan, opsc: float | None = None, seed: int = 0, costs: Profile | None = None) -> ModelInputs:
    work = plan.user_instructions + plan.kernel_instructions
    calls = max(1, plan.traced_calls)
    span = max(
        (sum(s.gap + s.spin for s in t.steps) for t in plan.tasks),
        default=0,
    )
    source = "given"
    if opsc is None:
        opsc = measured_opsc(seed, costs)
        k, p, n = OPSC_POINT
        source = f"derived at the saturated throughput point K={k}, P={p:g}%, {n} CPUs"
    interval = work / calls
    return ModelInputs(
        ips=plan.ips,
        calls=calls,
        ipsc=plan.kernel_instructions / calls,
        interval=interval,
        calls_per_second=plan.ips / interval if interval else math.inf,
        parallelism=work / span if span else 1.0,
        opsc=opsc,
        opsc_source=source,
    )


def model_speedup(kernel: str, cpus: int, m: ModelInputs) -> float | None:
    """The capacity model's speedup over up for `kernel` on `cpus` CPUs (None: the model has none)."""
    if kernel == "up":
        return 1.0 if cpus == 1 else None
    if kernel == "apkern":
        if cpus < 2 or m.ipsc + m.opsc <= 0 or m.interval <= 0:
            return None
        user = m.interval - m.ipsc  # the user work per call, which only the application processors do
        aps = (cpus - 1) * m.interval / user if user > 0 else math.inf
        return min(aps, m.parallelism, capacity(m.ipsc, m.interval, m.opsc, m.ips).max_speedup)
    if kernel == "smp":
        bound = m.interval / m.ipsc if m.ipsc > 0 else math.inf
        return min(cpus, m.parallelism, bound)
    return None


@dataclass
class Point:
    kernel: str
    cpus: int
    replayed: float | None
    model: float | None
    time: int | None
    exit_status: int | None


@dataclass
class Prediction:
    label: str
    inputs: ModelInputs
    points: list[Point] = field(default_factory=list)
    up_time: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace": self.label,
            "inputs": asdict(self.inputs),
            "up_time": self.up_time,
            "points": [asdict(p) for p in self.points],
        }


def predict(
    label: str,
    plan: rp.Plan,
    kernels: Iterable[str] = KERNELS,
    cpus: Iterable[int] = CPU_COUNTS,
    opsc: float | None = None,
    seed: int = 0,
    limit: int | None = None,
    progress: Callable[[str, int], None] | None = None,
    costs: Profile | None = None,
) -> Prediction:
    """Replay `plan` on every kernel and CPU count; each speedup over up (1 CPU) beside the model's
    (`costs`: the cost profile of every run and of the derived overhead)."""
    inputs = model_inputs(plan, opsc, seed, costs)
    base = run(plan, "up", 1, seed=seed, limit=limit, costs=costs)
    pred = Prediction(label, inputs, up_time=base.time)
    for kernel in kernels:
        for n in cpus:
            if kernel == "up" and n > 1:  # the uniprocessor kernel runs on one CPU whatever the machine has
                pred.points.append(Point(kernel, n, None, None, None, None))
                continue
            if progress is not None:
                progress(kernel, n)
            try:
                r = base if (kernel, n) == ("up", 1) else run(plan, kernel, n, seed=seed, limit=limit, costs=costs)
            except ConfigError:
                pred.points.append(Point(kernel, n, None, model_speedup(kernel, n, inputs), None, None))
                continue
            pred.points.append(
                Point(kernel, n, base.time / r.time, model_speedup(kernel, n, inputs), r.time, r.exit_status)
            )
    return pred


def format_prediction(plan: rp.Plan, pred: Prediction) -> str:
    m = pred.inputs
    cpus = sorted({p.cpus for p in pred.points})
    kernels = list(dict.fromkeys(p.kernel for p in pred.points))
    lines = [
        describe(pred.label, plan),
        f"model inputs from the trace at {m.ips:,.0f} instructions/s: ipsc {m.ipsc:,.0f} (kernel time per call), "
        f"interval {m.interval:,.0f} (instructions per call on one CPU: {m.calls_per_second:,.0f} calls/s), "
        f"parallelism {m.parallelism:.2f} (work / longest thread)",
        f"opsc {m.opsc:,.0f} instructions per forwarded call ({m.opsc_source})",
        f"speedup over up on 1 CPU ({pred.up_time:,} instructions): replayed / model",
        f"{'kernel':<14}" + "".join(f"{n:>14}" for n in cpus),
    ]
    by = {(p.kernel, p.cpus): p for p in pred.points}
    for k in kernels:
        cells = []
        for n in cpus:
            p = by.get((k, n))
            if p is None or (p.replayed is None and p.model is None):
                cells.append(f"{'-':>14}")
                continue
            rep = "-" if p.replayed is None else f"{p.replayed:.2f}"
            mod = "-" if p.model is None else f"{p.model:.2f}"
            cells.append(f"{rep + ' / ' + mod:>14}")
        lines.append(f"{k:<14}" + "".join(cells))
    return "\n".join(lines)


def plot_prediction(pred: Prediction, path: str | Path) -> Path:
    """Speedup against CPUs: a solid line per kernel replayed, dashed in the same colour its model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for kernel in dict.fromkeys(p.kernel for p in pred.points):
        pts = [p for p in pred.points if p.kernel == kernel]
        rep = [(p.cpus, p.replayed) for p in pts if p.replayed is not None]
        mod = [(p.cpus, p.model) for p in pts if p.model is not None]
        color = None
        if rep:
            (line,) = ax.plot(*zip(*rep, strict=True), marker="o", label=f"{kernel} replayed")
            color = line.get_color()
        if mod:
            ax.plot(*zip(*mod, strict=True), linestyle="--", marker="x", color=color, label=f"{kernel} model")
    ax.set_xlabel("CPUs")
    ax.set_ylabel("speedup over the uniprocessor kernel")
    ax.set_title(f"{pred.label}: replayed speedup and the capacity model's")
    ax.set_xticks(sorted({p.cpus for p in pred.points}))
    values = [v for p in pred.points for v in (p.replayed, p.model) if v is not None]
    ax.set_ylim(0, max([1.0, *values]) * 1.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
