"""Speedups of find, grep, find | grep, gzip, gcc and the multiprogramming mix over the uniprocessor kernel.

For each workload and machine (up on 1 CPU; apkern on 2, 4 and 8) a fresh system
first makes the input with mktree or mktext (not timed), then runs the workload; its time is
the simulated instructions from its start until every process has exited. The
speedup is the up time over the apkern time. Also printed: the system calls the
workload made, and the bootstrap load during it (as in the paper's figures: the
share of the bootstrap threads' loop passes that found a message to handle).

The journal's figures (Kågström, Grahn, Lundberg, "The application kernel approach
- a novel approach for adding SMP support to uniprocessor operating systems",
Software: Practice and Experience 36(14), 2006), for comparison of shape only:
find 0.78-0.88 of uniprocessor speed (SMP Linux 0.98); compute-bound programs
(gzip, gcc) 5-10% below SMP Linux; the mix about 1.2 on 8 CPUs (SMP Linux 1.68).

Run: PYTHONPATH=src .venv/bin/python benchmarks/filetools_speedup.py [--entries N] [--scales 1,2]
     [--gzip-bytes N] [--gcc-bytes N] [--only LABEL-PREFIX,...] [--jobs J]
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor

from apkern.system import System
from apkern.workloads import tree
from apkern.workloads.grep import PATTERN_DEFAULT

MACHINES = [("up", 1), ("apkern", 2), ("apkern", 4), ("apkern", 8)]


def workloads(
    entries: int, scales: list[int], gzip_bytes: int, gcc_bytes: int
) -> list[tuple[str, list[str], list[str]]]:
    """(label, set-up argv, workload argv)."""
    mk = ["mktree", "/t", str(entries), "1"]
    m = tree.manifest_path("/t")
    out = [
        (f"find ({entries} entries)", mk, ["find", "-verify", m, "/t"]),
        (f"grep -r ({entries} entries)", mk, ["grep", "-r", "-verify", m, PATTERN_DEFAULT, "/t"]),
        (f"find | grep ({entries} entries)", mk, ["findgrep", "-verify", "/t"]),
    ]
    out.append((f"gzip ({gzip_bytes} bytes)", ["mktext", "/z", str(gzip_bytes)], ["gzip", "-verify", "/z"]))
    out.append((f"gcc ({gcc_bytes} bytes)", ["mktext", "/c.i", str(gcc_bytes)], ["gcc", "-verify", "/c.i"]))
    for s in scales:
        out.append((f"mix scale {s} (8 threads)", ["mktree", "/mix", str(250 * s), "1"], ["mix", str(s), "8"]))
    return out


def measure(job: tuple[str, list[str], list[str], str, int]) -> dict:
    label, setup, argv, kernel, cpus = job
    sim = System(kernel=kernel, cpus=cpus)
    p = sim.spawn(setup[0], setup)
    sim.run()
    assert p.exit_status == 0, sim.console()
    t0, load0, calls0 = sim.now, _loop(sim), sim.stats["syscalls"]
    p = sim.spawn(argv[0], argv)
    sim.run()
    assert p.exit_status == 0, sim.console()
    t = sim.now - t0
    return {
        "label": label,
        "kernel": kernel,
        "cpus": cpus,
        "time": t,
        "load": _load(load0, _loop(sim)),
        "syscalls": sim.stats["syscalls"] - calls0,
    }


def _loop(sim: System) -> tuple[int, int]:
    return sim.stats.get("bootstrap_loop_busy_passes", 0), sim.stats.get("bootstrap_loop_passes", 0)


def _load(before: tuple[int, int], after: tuple[int, int]) -> float:
    passes = after[1] - before[1]
    return (after[0] - before[0]) / passes if passes else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1000)
    ap.add_argument("--scales", default="1,2")
    ap.add_argument("--gzip-bytes", type=int, default=262144)
    ap.add_argument("--gcc-bytes", type=int, default=4096)
    ap.add_argument("--only", default="", help="labels starting with any of these, comma-separated")
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    wl = workloads(a.entries, [int(s) for s in a.scales.split(",") if s], a.gzip_bytes, a.gcc_bytes)
    if a.only:
        wl = [w for w in wl if w[0].startswith(tuple(a.only.split(",")))]
    jobs = [(label, setup, argv, k, c) for label, setup, argv in wl for k, c in MACHINES]
    with ProcessPoolExecutor(a.jobs) as ex:
        results = list(ex.map(measure, jobs))
    by = {(r["label"], r["cpus"]): r for r in results}
    print(
        f"{'workload':<30} {'calls':>7} {'up time':>11}  " + "  ".join(f"{c} CPUs (BSP load)" for _, c in MACHINES[1:])
    )
    for label, _setup, _argv in wl:
        up = by[(label, 1)]
        cells = [f"{up['time'] / by[(label, c)]['time']:6.3f} ({by[(label, c)]['load']:4.0%})" for _, c in MACHINES[1:]]
        print(f"{label:<30} {up['syscalls']:>7} {up['time']:>11}  " + "  ".join(f"{x:>17}" for x in cells))


if __name__ == "__main__":
    main()
