"""Simulator speed on the throughput experiment's 8-CPU, K=151, P=95 point.

Prints simulated forwarded calls per host second, machine operations and SimPy
events per host second, and simulated instructions per host second; then the
rate of a bare SimPy loop (one process doing timeouts) measured in the same run,
and the ratio of the two event rates. With --profile, the top of a cProfile of
the same run. Run: .venv/bin/python benchmarks/engine_speed.py [--window N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import simpy

from apkern.experiments.throughput import user_instructions
from apkern.system import System

K, P, CPUS, PROCS = 151, 95.0, 8, 20


def build() -> System:
    sim = System(kernel="apkern", cpus=CPUS, seed=0)
    u = user_instructions(K, P)
    for _ in range(PROCS):
        sim.spawn("loop", ["loop", str(u), str(K), "0", str(sim.random.randrange(u + K + 1))])
    return sim


def measure(warmup: int, window: int) -> dict[str, float]:
    sim = build()
    sim.run(until=warmup)
    a = sim.stats
    env = sim.machine.env
    e0 = next(env._eid)
    o0 = sum(c.ops for c in sim.machine.cpus)
    t = time.perf_counter()
    sim.run(until=warmup + window)
    dt = time.perf_counter() - t
    b = sim.stats
    calls = b["forwarded_calls"] - a["forwarded_calls"]
    return {
        "seconds": dt,
        "calls": calls,
        "calls_per_s": calls / dt,
        "events_per_s": (next(env._eid) - e0) / dt,
        "ops_per_s": (sum(c.ops for c in sim.machine.cpus) - o0) / dt,
        "instructions_per_s": (b["instructions"] - a["instructions"]) / dt,
    }


def bare_simpy(n: int = 300_000) -> float:
    """Timeouts per second of a bare SimPy process: the floor any SimPy-based machine pays per event."""
    env = simpy.Environment()

    def proc():
        for _ in range(n):
            yield env.timeout(1)

    env.process(proc())
    t = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=int, default=500_000)
    ap.add_argument("--window", type=int, default=3_000_000)
    ap.add_argument("--profile", action="store_true", help="also print the top of a cProfile of the run")
    args = ap.parse_args()
    r = measure(args.warmup, args.window)
    bare = bare_simpy()
    print(f"point: {CPUS} CPUs, K={K}, P={P:g}%, {PROCS} processes, window {args.window:,} instructions")
    print(
        f"machine    : {r['seconds']:.2f} s, {r['calls']} forwarded calls: {r['calls_per_s']:,.0f} calls/s, "
        f"{r['ops_per_s']:,.0f} machine ops/s, {r['events_per_s']:,.0f} SimPy events/s, "
        f"{r['instructions_per_s'] / 1e6:.2f} M simulated instructions/s"
    )
    print(f"bare SimPy : {bare:,.0f} timeouts/s")
    print(
        f"ratio      : the machine runs {r['events_per_s'] / bare:.2f} of bare SimPy's event rate "
        f"({bare / r['events_per_s']:.1f}x slower per event: the rest is the machine and the kernels)"
    )
    if args.profile:
        prof = cProfile.Profile()
        sim = build()
        prof.runcall(sim.run, until=args.warmup + args.window // 3)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
