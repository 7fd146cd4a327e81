"""Simulator speed on the throughput experiment's 8-CPU, K=151, P=95 point.

Prints, for our engine and for SimPy running the very same machine (their results
must be bit-identical): simulated forwarded calls per host second, engine events
per host second, and simulated instructions per host second; then the rate of a
bare SimPy loop (one process doing timeouts) measured in the same run, and the
ratios. Run: .venv/bin/python benchmarks/engine_speed.py [--window N]
"""

from __future__ import annotations

import argparse
import time

import simpy

from apkern.experiments.throughput import user_instructions
from apkern.system import System

K, P, CPUS, PROCS = 151, 95.0, 8, 20


def run(engine: str, warmup: int, window: int) -> dict[str, float]:
    sim = System(kernel="apkern", cpus=CPUS, seed=0, engine=engine)
    u = user_instructions(K, P)
    for _ in range(PROCS):
        sim.spawn("loop", ["loop", str(u), str(K), "0", str(sim.random.randrange(u + K + 1))])
    sim.run(until=warmup)
    a = sim.stats
    env = sim.machine.env
    seq0 = env._seq if engine == "fast" else env._eid
    t = time.perf_counter()
    sim.run(until=warmup + window)
    dt = time.perf_counter() - t
    b = sim.stats
    events = (env._seq if engine == "fast" else env._eid) - seq0
    calls = b["forwarded_calls"] - a["forwarded_calls"]
    return {
        "seconds": dt,
        "calls": calls,
        "calls_per_s": calls / dt,
        "events_per_s": events / dt,
        "instructions_per_s": (b["instructions"] - a["instructions"]) / dt,
        "fingerprint": hash((b["instructions"], b["syscalls"], b["forwarded_calls"], b["spinlock_spins"])),
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
    args = ap.parse_args()
    fast = run("fast", args.warmup, args.window)
    slow = run("simpy", args.warmup, args.window)
    bare = bare_simpy()
    same = fast["fingerprint"] == slow["fingerprint"] and fast["calls"] == slow["calls"]
    print(f"point: {CPUS} CPUs, K={K}, P={P:g}%, {PROCS} processes, window {args.window} instructions")
    for name, r in (("own engine", fast), ("SimPy", slow)):
        print(f"{name:>11}: {r['seconds']:.2f} s, {r['calls']} forwarded calls, {r['calls_per_s']:,.0f} calls/s, "
              f"{r['events_per_s']:,.0f} events/s, {r['instructions_per_s'] / 1e6:.2f} M simulated instructions/s")
    print(f"bare SimPy : {bare:,.0f} timeouts/s")
    print(f"own engine / SimPy on the same machine: {slow['seconds'] / fast['seconds']:.2f}x faster; "
          f"results identical: {same}")
    print(f"own engine events/s / bare SimPy timeouts/s: {fast['events_per_s'] / bare:.2f}")


if __name__ == "__main__":
    main()
