"""Simulator speed: the throughput experiment's 8-CPU, K=151, P=95 point, and the same loops on wide machines.

Prints, for the 8-CPU point (20 processes), simulated forwarded calls per host second,
machine operations and SimPy events per forwarded call, with the fast engine and the
reference engine (one SimPy event per instruction-costing op, as before run-ahead) in
the same run, and today's figures recorded before the change; then the rate of a bare
SimPy loop. Then the scale points (K=151, P=99, 1.25 processes per CPU, a 500k-instruction
window after a 500k warm-up) on 8 to 64 CPUs: host time, operations and events per
forwarded call, and the 64-vs-8 ratio of host time per call, per operation, and on per-AP
ready queues (the `balance` extension, where the simulated work per call does not grow
with the idle APs as the single queue's lock storm makes it grow); the peak memory of a
64-CPU, 128-process run (in a child process); and, with --grid, the largest difference
of any counter between the two engines over the points of `apkern reproduce --quick`.
Each of these also for the engine decoupled by --quantum Q (default: the largest allowed, 30; `System(quantum=Q)`:
a CPU runs up to Q instructions ahead of the others), and with --grid the largest change
decoupling makes to the figures, by kernel, beside the largest change another seed makes.
With --profile, the top of a cProfile of the 8-CPU point and its host time by part: the engine,
SimPy, the simulated software, and what a free engine would leave.
Each time is the fastest of --repeat runs (3), in CPU seconds of this process.
Run: .venv/bin/python benchmarks/engine_speed.py [--window N] [--scale 8,16,32,64] [--grid N] [--quantum Q] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import pstats
import subprocess
import sys
import time
from typing import Any

import simpy

from apkern.experiments.throughput import user_instructions
from apkern.system import MAX_QUANTUM, System

K, P, CPUS, PROCS = 151, 95.0, 8, 20
SCALE_P, SCALE_PROCS_PER_CPU, SCALE_WARMUP, SCALE_WINDOW = 99.0, 1.25, 500_000, 500_000

# Today's figures, recorded on the development machine (2 cores, otherwise idle) at commit 30e25c0,
# before run-ahead: the 8-CPU point with the default window (3M instructions after a 500k warm-up) ...
TODAY = {"calls_per_s": 3_098, "ops_per_call": 97.7, "events_per_call": 97.8}
# ... and the scale points: CPUs -> (host microseconds per forwarded call, ops per call, events per call).
TODAY_SCALE = {8: (481, 170, 162), 16: (355, 99, 97), 32: (662, 177, 210), 64: (6483, 1866, 2679)}
TODAY_MEMORY_MB = 54  # peak RSS of the 64-CPU, 128-process run (`memory_mb`)
# The decoupled engine's quantum unless --quantum says otherwise: the largest `System` allows.
QUANTUM = MAX_QUANTUM


def build(cpus: int, procs: int, p: float, engine: str, extensions: tuple[str, ...] = (), quantum: int = 0) -> System:
    sim = System(kernel="apkern", cpus=cpus, seed=0, engine=engine, extensions=extensions, quantum=quantum)
    u = user_instructions(K, p)
    for _ in range(procs):
        sim.spawn("loop", ["loop", str(u), str(K), "0", str(sim.random.randrange(u + K + 1))])
    return sim


def measure(
    cpus: int,
    procs: int,
    p: float,
    warmup: int,
    window: int,
    engine: str = "fast",
    repeat: int = 1,
    extensions: tuple[str, ...] = (),
    quantum: int = 0,
) -> dict[str, float]:
    """The figures of one window; with `repeat`, of the fastest of that many identical runs (the host is shared)."""
    runs = [_measure(cpus, procs, p, warmup, window, engine, extensions, quantum) for _ in range(repeat)]
    return min(runs, key=lambda r: r["seconds"])


def _measure(
    cpus: int, procs: int, p: float, warmup: int, window: int, engine: str, extensions: tuple[str, ...], quantum: int
) -> dict[str, float]:
    sim = build(cpus, procs, p, engine, extensions, quantum)
    sim.run(until=warmup)
    a = sim.stats
    env = sim.machine.env
    e0 = next(env._eid)
    o0 = sum(c.ops for c in sim.machine.cpus)
    t = time.process_time()
    sim.run(until=warmup + window)
    dt = time.process_time() - t
    b = sim.stats
    calls = max(1, b["forwarded_calls"] - a["forwarded_calls"])
    return {
        "seconds": dt,
        "calls": calls,
        "calls_per_s": calls / dt,
        "us_per_call": dt / calls * 1e6,
        "events_per_call": (next(env._eid) - e0) / calls,
        "ops_per_call": (sum(c.ops for c in sim.machine.cpus) - o0) / calls,
        "instructions_per_s": (b["instructions"] - a["instructions"]) / dt,
    }


def bare_simpy(n: int = 300_000) -> float:
    """Timeouts per second of a bare SimPy process: the floor any SimPy-based machine pays per event."""
    env = simpy.Environment()

    def proc():
        for _ in range(n):
            yield env.timeout(1)

    env.process(proc())
    t = time.process_time()
    env.run()
    return n / (time.process_time() - t)


MEMORY_RUN = """
import resource, sys
from apkern.experiments.throughput import user_instructions
from apkern.system import System
sim = System(kernel="apkern", cpus=64, seed=0, engine=sys.argv[1], quantum=int(sys.argv[2]))
u = user_instructions(151, 99.0)
for _ in range(128):
    sim.spawn("loop", ["loop", str(u), "151", "0", str(sim.random.randrange(u + 152))])
sim.run(until=1_000_000)
try:  # this interpreter's own peak (ru_maxrss would include the parent's, inherited at fork on Linux)
    print(next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory_mb(engine: str = "fast", quantum: int = 0) -> float:
    """Peak RSS (MiB) of a fresh interpreter that runs 64 CPUs and 128 loop processes for 1M instructions."""
    argv = [sys.executable, "-c", MEMORY_RUN, engine, str(quantum)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


# The figures Figures 6-8 and the overhead are made of (`ThroughputPoint`): the loop count gives the speedup.
FIGURES = ("loops", "forwarded_calls", "bsp_instructions_per_call")


GRID_KERNELS = {"point": "apkern", "smp_point": "smp", "ms_point": "master-slave"}
Found = list[tuple[str, str, float]]  # (kernel, where, relative difference)


def _grid_point(task: tuple[str, tuple[Any, ...], int]) -> tuple[Found, Found, Found]:
    """One throughput point of the quick grid on the reference engine, the fast one, the fast one decoupled by
    `quantum`, and the fast one under the next seed: the counters that differ between the reference and the
    fast engine, between exact and decoupled, and between the two seeds (the yardstick), by how much."""
    from apkern.experiments import throughput

    name, args, quantum = task
    k, p, n, w, win, seed = args[:6]
    kernel = GRID_KERNELS[name]
    ref, fast, dec, other = (
        throughput.measure(k, p, n, warmup=w, window=win, seed=s, kernel=kernel, engine=e, quantum=q).to_dict()
        for e, q, s in (("reference", 0, seed), ("fast", 0, seed), ("fast", quantum, seed), ("fast", 0, seed + 1))
    )
    where = f"{name}{args[:6]}: "
    return tuple(  # type: ignore[return-value]
        [(kernel, where + key, d) for key, d in _differences(a, b)]
        for a, b in ((ref, fast), (fast, dec), (fast, other))
    )


def grid_difference(sample: int, jobs: int, quantum: int) -> dict[str, Any]:
    """The relative differences of the counters over the throughput points of `apkern reproduce --quick` (every
    `sample`-th one), in `jobs` processes: "engines", the largest of any counter between the reference and the
    fast engine, (difference, where); "decoupled", the same between the exact fast engine and the one decoupled
    by `quantum`; "figures", for each of `FIGURES` and each kernel, the largest difference decoupling makes and
    the largest another seed makes."""
    from apkern.experiments import reproduce

    points = [(t[0], t[1]) for t in reproduce.plan(reproduce.QUICK) if t[0] in GRID_KERNELS]
    points = points[::sample]
    found: tuple[Found, Found, Found] = ([], [], [])
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for parts in pool.imap_unordered(_grid_point, [(name, args, quantum) for name, args in points]):
            for into, part in zip(found, parts, strict=True):
                into += part
    engines, decoupled, seeds = found

    def worst(rows: Found) -> tuple[float, str]:
        return max(((d, where) for _, where, d in rows), default=(0.0, ""))

    figures = {
        figure: {
            kernel: tuple(
                worst([r for r in rows if r[0] == kernel and r[1].endswith("." + figure)])
                for rows in (decoupled, seeds)
            )
            for kernel in GRID_KERNELS.values()
        }
        for figure in FIGURES
    }
    return {"points": len(points), "engines": worst(engines), "decoupled": worst(decoupled), "figures": figures}


def _differences(a: Any, b: Any, key: str = "") -> list[tuple[str, float]]:
    if isinstance(a, dict):
        return [d for k in a.keys() | b.keys() for d in _differences(a.get(k), b.get(k), f"{key}.{k}")]
    if a == b:
        return []
    if isinstance(a, int | float) and isinstance(b, int | float):
        return [(key, abs(a - b) / max(abs(a), abs(b)))]
    return [(key, 1.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=int, default=500_000)
    ap.add_argument("--window", type=int, default=3_000_000)
    ap.add_argument("--scale", default="8,16,32,64", help="CPU counts of the scale points ('' for none)")
    ap.add_argument("--grid", type=int, default=0, metavar="N", help="compare the engines on every N-th quick point")
    ap.add_argument("--jobs", type=int, default=2, help="processes for --grid")
    ap.add_argument("--repeat", type=int, default=3, help="time each measurement this many times, keep the fastest")
    ap.add_argument("--profile", action="store_true", help="also print the top of a cProfile of the run")
    ap.add_argument("--quantum", type=int, default=QUANTUM, help="the decoupled engine's quantum (instructions)")
    args = ap.parse_args()
    q = args.quantum
    print(f"point: {CPUS} CPUs, K={K}, P={P:g}%, {PROCS} processes, window {args.window:,} instructions")
    runs = {e: measure(CPUS, PROCS, P, args.warmup, args.window, e, args.repeat) for e in ("reference", "fast")}
    runs["decoupled"] = measure(CPUS, PROCS, P, args.warmup, args.window, "fast", args.repeat, quantum=q)
    print(
        f"today      : {TODAY['calls_per_s']:,} calls/s, {TODAY['ops_per_call']} ops/call, "
        f"{TODAY['events_per_call']} SimPy events/call (recorded at 30e25c0)"
    )
    for e, r in runs.items():
        print(
            f"{e:<11}: {r['seconds']:.2f} s, {r['calls']} forwarded calls: {r['calls_per_s']:,.0f} calls/s, "
            f"{r['ops_per_call']:.1f} ops/call, {r['events_per_call']:.1f} SimPy events/call, "
            f"{r['instructions_per_s'] / 1e6:.2f} M simulated instructions/s"
        )
    fast, ref, dec = runs["fast"], runs["reference"], runs["decoupled"]
    print(
        f"speed      : {fast['calls_per_s'] / ref['calls_per_s']:.2f}x the reference engine in this run, "
        f"{fast['calls_per_s'] / TODAY['calls_per_s']:.2f}x today's recorded figure (goal 4x)"
    )
    print(
        f"decoupled  : quantum {q:,} instructions: {dec['calls_per_s'] / ref['calls_per_s']:.2f}x the reference "
        f"engine in this run, {dec['calls_per_s'] / fast['calls_per_s']:.2f}x the exact fast engine, "
        f"{dec['calls_per_s'] / TODAY['calls_per_s']:.2f}x today's recorded figure (goal 4x)"
    )
    bare = bare_simpy()
    print(f"bare SimPy : {bare:,.0f} timeouts/s")
    scale = [int(n) for n in args.scale.split(",") if n]
    per_call: dict[str, dict[int, dict[str, float]]] = {"fast": {}, "reference": {}, "per-AP": {}, "decoupled": {}}
    for n in scale:
        procs = round(SCALE_PROCS_PER_CPU * n)
        t = TODAY_SCALE.get(n)
        for e in per_call:
            engine = "reference" if e == "reference" else "fast"
            ext = ("balance",) if e == "per-AP" else ()
            r = per_call[e][n] = measure(
                n, procs, SCALE_P, SCALE_WARMUP, SCALE_WINDOW, engine, args.repeat, ext, q if e == "decoupled" else 0
            )
            today = f" (today {t[0]:,} us, {t[1]} ops, {t[2]} events)" if t and e == "fast" else ""
            print(
                f"scale {n:>3}  : {e:<9}, {procs} processes, {r['calls']} calls, {r['us_per_call']:,.0f} us/call, "
                f"{r['ops_per_call']:.0f} ops/call, {r['events_per_call']:.0f} events/call{today}"
            )
    if 8 in scale and 64 in scale:
        fast, ref, bal = (per_call[e] for e in ("fast", "reference", "per-AP"))
        us = {e: per_call[e][64]["us_per_call"] / per_call[e][8]["us_per_call"] for e in per_call}
        ops = {e: per_call[e][64]["ops_per_call"] / per_call[e][8]["ops_per_call"] for e in per_call}
        print(
            f"64 vs 8    : host time per forwarded call {us['fast']:.2f}x (goal: within 2x; "
            f"reference engine {us['reference']:.2f}x, today {TODAY_SCALE[64][0] / TODAY_SCALE[8][0]:.1f}x); "
            f"at 64 CPUs the fast engine is {ref[64]['us_per_call'] / fast[64]['us_per_call']:.2f}x the reference"
        )
        # The single queue's idle APs all take its lock at every insertion (the lock storm of `bench balance`):
        # the simulated machine does more per call. Per operation, and where the work per call does not grow
        # (per-AP queues), the host time is what the engine adds.
        print(
            f"             the simulated work per call grows {ops['fast']:.1f}x (operations); host time per "
            f"operation {us['fast'] / ops['fast']:.2f}x; on per-AP queues (balance, {ops['per-AP']:.2f}x the "
            f"operations per call) host time per forwarded call {us['per-AP']:.2f}x"
        )
        # Decoupled, an idle AP woken by an insertion runs its whole look at the queue before the next one
        # resumes: the others find the queue empty again and go back to waiting without taking the lock.
        print(
            f"             decoupled (quantum {q:,}): host time per forwarded call {us['decoupled']:.2f}x "
            f"(goal: within 2x); the simulated work per call grows {ops['decoupled']:.2f}x; at 64 CPUs "
            f"{per_call['fast'][64]['us_per_call'] / per_call['decoupled'][64]['us_per_call']:.1f}x "
            "the exact fast engine"
        )
    if 64 in scale:
        print(
            f"memory     : 64 CPUs, 128 processes, 1M instructions: peak RSS {memory_mb():.0f} MiB "
            f"(reference engine {memory_mb('reference'):.0f} MiB, decoupled {memory_mb('fast', q):.0f} MiB, "
            f"today {TODAY_MEMORY_MB} MiB; bound 1 GiB)"
        )
    if args.grid:
        g = grid_difference(args.grid, args.jobs, q)
        print(
            f"same answers: largest counter difference, reference vs fast, over {g['points']} quick points: "
            f"{g['engines'][0]:.2%} {g['engines'][1]}"
        )
        print(
            f"decoupled  : quantum {q:,} against the exact engine, same points: largest difference of any "
            f"counter {g['decoupled'][0]:.2%} ({g['decoupled'][1]})"
        )
        for figure, by_kernel in g["figures"].items():
            print(
                f"             {figure}: "
                + "; ".join(
                    f"{kernel} {dec[0]:.2%} [{dec[1].split(':')[0]}] (another seed: up to {other[0]:.2%})"
                    for kernel, (dec, other) in by_kernel.items()
                )
            )
    if args.profile:
        prof = cProfile.Profile()
        sim = build(CPUS, PROCS, P, "fast")
        prof.runcall(sim.run, until=args.warmup + args.window // 3)
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(15)
        parts = host_time_by_part(stats)
        total = sum(parts.values())
        print("host time by part (cProfile's own time, which inflates small calls):")
        for part, t in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {part:<38} {t / total:6.1%}")
        software = parts.get("simulated software (kernels, programs)", 0.0) / total
        print(
            f"  a free engine would leave the simulated software: at most {1 / software:.1f}x the fast engine, "
            f"{fast['calls_per_s'] / software / TODAY['calls_per_s']:.1f}x today's figure"
        )


def host_time_by_part(stats: pstats.Stats) -> dict[str, float]:
    """A profile's own time, by part: the engine (hw and SimPy), the simulated software, the rest."""
    parts: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "/apkern/hw/" in filename:
            part = "engine: apkern.hw (CPU loop, MMU, memory)"
        elif "/simpy/" in filename:
            part = "engine: SimPy"
        elif "/apkern/" in filename:
            part = "simulated software (kernels, programs)"
        else:
            part = "Python built-ins (generators, dicts, heapq)"
        parts[part] = parts.get(part, 0.0) + tottime
    return parts


if __name__ == "__main__":
    main()
