"""Throughput (paper section 5.2): 20 loop processes, compute(U) then spin(K), on 1 to N CPUs.

One CPU is the bootstrap kernel alone; two or more run the application kernel, or
with `kernel="smp"` the giant-lock port of the bootstrap kernel (there every CPU
serves calls; the bootstrap-loop figures are absent and `lock_spin_share` says what
share of all CPUs' time went into spinning on the kernel lock), or with
`kernel="master-slave"` its master-slave port (the master serves every call:
`master_load` is its share of time in kernel code and spinning, `master_parts` its
instructions by whose code ran).
Each point runs a warm-up, then counts in a fixed window: loops completed (spin
calls served), the bootstrap processor's instructions, forwarded calls, and the
bootstrap-loop passes with and without a message. Every figure is a difference
of counters the code paths keep. An observer (`attribution.Attribution`) tags
the bootstrap processor's instructions in the window by path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..profiles import Profile
from ..system import System
from .attribution import Attribution, MasterAttribution

DEFAULT_PROCS = 20
DEFAULT_WARMUP = 2_000_000
DEFAULT_WINDOW = 10_000_000
# After the window, run on (uncounted) until every bootstrap thread's pass cut by the window's end
# shows whether it found a message: a pass takes a few hundred instructions, a round of 20 threads
# a few thousand.
SETTLE_STEP = 1_000
SETTLE_LIMIT = 200_000


def user_instructions(k: int, p: float) -> int:
    """U such that U / (U + K) = p percent (U = K * p / (100 - p))."""
    if not 0 < p < 100:
        raise ValueError("user share must be strictly between 0 and 100 percent")
    return round(k * p / (100 - p))


@dataclass
class ThroughputPoint:
    cpus: int
    procs: int
    syscall_instr: int
    user_pct: float
    user_instr: int
    warmup_instructions: int
    window_instructions: int
    loops: int
    forwarded_calls: int
    bsp_instructions: int
    bsp_busy_instructions: int
    bsp_load: float | None
    bsp_instructions_per_call: float | None
    kernel_instructions_per_call: float | None
    bsp_spin_per_call: float | None
    passes: int
    busy_passes: int
    bsp_parts: dict[str, int]
    speedup: float | None = None
    kernel: str = "apkern"  # the kernel of the points with more than one CPU
    lock_spin_share: float | None = None  # smp: spin instructions of all CPUs in the window / (CPUs x window)
    # master-slave: the master's instructions in the window but user code's and idle's / window; its parts by code
    master_load: float | None = None
    master_parts: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counters(sim: System) -> dict[str, int]:
    st = sim.stats
    bsp = st["per_cpu"][0]
    return {
        "loops": st["syscalls_by_name"].get("spin", 0),
        "forwarded": st.get("forwarded_calls", 0),
        "bsp": bsp["instructions"],
        "bsp_busy": bsp["instructions"] - bsp["idle_instructions"],
        "bsp_kernel": bsp["kernel_instructions"],
        "bsp_spin": bsp["spin_instructions"],
        "bsp_user": bsp["user_instructions"],
        "passes": st.get("bootstrap_loop_passes", 0),
        "busy": st.get("bootstrap_loop_busy_passes", 0),
        "spin": sum(c["spin_instructions"] for c in st["per_cpu"]),
        "kernel": sum(c["kernel_instructions"] for c in st["per_cpu"]),
    }


def spawn_loops(sim: System, k: int, p: float, procs: int = DEFAULT_PROCS, getpids: int = 0) -> None:
    """The benchmark's processes: `procs` endless loops of compute(U) then spin(K), each started at a random phase.

    With the migration extension they are spawned with placement "auto": the policy decides where each runs.
    """
    u = user_instructions(k, p)
    placement = "auto" if "migration" in sim.extensions else None
    for _ in range(procs):
        args = ["loop", str(u), str(k), "0", str(sim.random.randrange(u + k + 1))]
        sim.spawn("loop", args + [str(getpids)] if getpids else args, placement=placement)


def measure(
    k: int,
    p: float,
    cpus: int,
    procs: int = DEFAULT_PROCS,
    warmup: int = DEFAULT_WARMUP,
    window: int = DEFAULT_WINDOW,
    seed: int = 0,
    attribute: bool = True,
    extensions: tuple[str, ...] = (),
    getpids: int = 0,
    kernel: str = "apkern",
    costs: Profile | None = None,
    engine: str = "fast",
    quantum: int = 0,
) -> ThroughputPoint:
    """One point of Figures 6-8 (speedup left unset: it needs the one-CPU point).

    With `attribute` the bootstrap processor's instructions in the window are tagged by
    path (`bsp_parts`); without, `bsp_parts` is empty and the run is quicker on the host.
    `extensions` (section 4.3) apply from two CPUs on; `getpids` adds that many getpid
    calls to each loop, after its compute. `engine` is the simulator's (the same figures either way);
    `quantum` its temporal decoupling (`System`'s: 0 is exact; more moves the figures, the spinlock ports' most).
    """
    if k < 0 or procs < 1 or warmup < 0 or window < 1:
        raise ValueError("need K >= 0, procs >= 1, warmup >= 0 and window >= 1")
    if kernel not in ("apkern", "smp", "master-slave"):
        raise ValueError(f"throughput compares the uniprocessor with 'apkern', 'smp' or 'master-slave', not {kernel!r}")
    u = user_instructions(k, p)
    sim = System(
        kernel="up" if cpus == 1 else kernel,
        cpus=cpus,
        seed=seed,
        extensions=extensions if cpus > 1 and kernel == "apkern" else (),
        costs=costs,
        engine=engine,
        quantum=quantum,
    )
    ms = kernel == "master-slave" and cpus > 1
    parts = Attribution(cpu=0, start=warmup, end=warmup + window)
    master = MasterAttribution(cpu=0, start=warmup, end=warmup + window)
    attribute = attribute and not (kernel == "smp" and cpus > 1)  # the bootstrap processor's paths: apkern's only
    if attribute:
        sim.machine.profile(master if ms else parts)
    spawn_loops(sim, k, p, procs, getpids)
    sim.run(until=warmup)
    a = _counters(sim)
    sim.run(until=warmup + window)
    b = _counters(sim)
    while parts.held and sim.now < warmup + window + SETTLE_LIMIT:
        sim.run(until=sim.now + SETTLE_STEP)
    parts.settle()
    d = {key: b[key] - a[key] for key in a}
    smp = kernel == "smp" and cpus > 1
    calls = d["forwarded"] if cpus > 1 and not (smp or ms) else d["loops"]
    return ThroughputPoint(
        cpus=cpus,
        procs=procs,
        syscall_instr=k,
        user_pct=p,
        user_instr=u,
        warmup_instructions=warmup,
        window_instructions=window,
        loops=d["loops"],
        forwarded_calls=d["forwarded"],
        bsp_instructions=d["bsp"],
        bsp_busy_instructions=d["bsp_busy"],
        bsp_load=d["busy"] / d["passes"] if d["passes"] else None,
        bsp_instructions_per_call=d["bsp"] / calls if calls else None,
        kernel_instructions_per_call=(d["kernel"] if smp else d["bsp_kernel"]) / d["loops"]
        if (cpus == 1 or smp or ms) and d["loops"]
        else None,
        bsp_spin_per_call=d["bsp_spin"] / calls if calls else None,
        passes=d["passes"],
        busy_passes=d["busy"],
        bsp_parts=dict(parts.parts) if attribute and not ms else {},
        kernel=kernel,
        lock_spin_share=d["spin"] / (cpus * window) if smp else None,
        master_load=(d["bsp_busy"] - d["bsp_user"]) / window if ms else None,
        master_parts=dict(master.parts) if ms and attribute else None,
    )


def speedup(loops: int, window: int, up_loops: int, up_window: int) -> float:
    """Loop rate over the one-CPU loop rate (the two windows may differ in length)."""
    return (loops / window) / (up_loops / up_window)


def with_speedup(point: ThroughputPoint, baseline: ThroughputPoint) -> ThroughputPoint:
    if baseline.loops and point.window_instructions:
        point.speedup = speedup(point.loops, point.window_instructions, baseline.loops, baseline.window_instructions)
    return point
