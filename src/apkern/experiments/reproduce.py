"""`apkern reproduce`: the paper's section 5, end to end, in parallel worker processes.

Runs the latency experiment (uniprocessor, and the application kernel on 2-8
CPUs) and the throughput grid K x P x N (its one- and two-CPU points under more
than one seed, to measure the grid's noise). It finds the saturated points from
the data (saturation.py), takes each saturated curve (K, P) as one piece of
evidence, derives the per-call overhead the way the paper does (C = scps *
(ipsc + opsc)) and checks it against an independent attribution of the
bootstrap processor's instructions by path (attribution.py), predicts each
curve's plateau from the overhead of the other call lengths, judges the gain at
two CPUs with one yardstick, and writes CSVs, Figures 6-8, summary.json and
report.md. The giant-lock SMP port of the same kernel runs the same grid and the
same latency points beside the application kernel (`_smp`): its speedups, its
lock-spin share, its capacity bound and where each approach wins; so does its
master-slave port (`_master_slave`): its speedups, the master's load, the master's
capacity bound and which of the three wins where.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import profiles
from ..bootkernel import costs as boot_costs
from ..profiles import Profile
from ..system import MAX_QUANTUM, ConfigError
from . import latency, saturation, sensitivity, throughput
from . import tasks as tasks_mod
from .attribution import CALL
from .model import predicted_speedup
from .tasks import Interrupted

KS = (151, 451, 4510)
PS = (80.0, 90.0, 92.5, 95.0, 97.0, 99.0)
NS = tuple(range(1, 9))
LATENCY_CPUS = (2, 4, 8)
# the curves the paper derived its overhead from (section 5.2: 99% in Figure 6, 97% in 7, 90% in 8)
PAPER_SATURATED = {151: 99.0, 451: 97.0, 4510: 90.0}
# With `wide`, each of those curves also runs on wide machines, the same 20 processes: the bootstrap
# processor's capacity bounds the speedup however many CPUs there are, and the model says by how much.
WIDE_NS = (16, 32, 64)
# The one-CPU and two-CPU points run under this many seeds (the grid's and the next ones): their
# spread is the grid's noise, which decides what counts as a gain and as growth.
NOISE_SEEDS = 2
NOISE_SIGMAS = 2  # a change is told from noise when it exceeds twice the noise of one run
# The model check's tolerance, and the agreement asked of the derived and the attributed overheads.
AGREEMENT = 0.10
# The throughput points, whose last argument is the engine's decoupling quantum (`System(quantum=...)`);
# the one-CPU points, every speedup's baseline, run exact (with one CPU there is nothing to decouple).
GRID_KINDS = ("point", "smp_point", "ms_point", "wide_point")
# With a quantum, every this-many-th multi-CPU point of the grid also runs exact: the report gives the
# largest difference the quantum makes to the figures on them (`engine_check`).
CHECK_EVERY = 8
# The figures of a throughput point that decoupling may move, compared on those twins.
CHECKED = ("loops", "forwarded_calls", "bsp_instructions_per_call", "bsp_load")


@dataclass(frozen=True)
class Precision:
    """How long each point runs.

    A "round" is one loop of every process on one CPU (procs x (U + K + 100), a
    nominal size used only to size the run). The warm-up lasts 1.5 rounds and the
    window `rounds` rounds, both divided by the number of application processors
    (which share the work), and never shorter than the minimums. Speedup compares
    loop rates, so windows of different lengths compare fairly.

    The one-CPU warm-up also lets every process start: the uniprocessor runs each for
    a whole quantum before the next one first runs.
    """

    name: str
    min_warmup: int
    min_window: int
    rounds: float
    latency_iterations: int
    up_rounds_factor: int = 4  # the one-CPU baseline is cheap to simulate: give it more loops

    @staticmethod
    def _round(k: int, p: float) -> int:
        return throughput.DEFAULT_PROCS * (throughput.user_instructions(k, p) + k + 100)

    def warmup(self, k: int, p: float, n: int) -> int:
        w = max(self.min_warmup, int(1.5 * self._round(k, p) / max(1, n - 1)))
        if n == 1:  # the uniprocessor starts each process only when the one before has used its quantum
            w = max(w, throughput.DEFAULT_PROCS * boot_costs.QUANTUM_TICKS * boot_costs.TICK)
        return w

    def window(self, k: int, p: float, n: int) -> int:
        rounds = self.rounds * (self.up_rounds_factor if n == 1 else 1)
        return max(self.min_window, int(rounds * self._round(k, p) / max(1, n - 1)))


QUICK = Precision("quick", min_warmup=200_000, min_window=1_000_000, rounds=3, latency_iterations=300)
DEFAULT = Precision("default", min_warmup=1_000_000, min_window=4_000_000, rounds=8, latency_iterations=1000)


# --- tasks (run in worker processes) ------------------------------------------------------------


# Each takes the run's cost profile as `costs` (bound by `run_tasks`); a throughput point takes the engine's
# decoupling quantum as its last argument.


def _latency_task(kernel: str, cpus: int, iterations: int, seed: int, costs: Profile) -> dict[str, Any]:
    return latency.measure(kernel=kernel, cpus=cpus, iterations=iterations, seed=seed, costs=costs).to_dict()


def _point_task(
    k: int, p: float, n: int, warmup: int, window: int, seed: int, attribute: bool, quantum: int, costs: Profile
) -> dict[str, Any]:
    pt = throughput.measure(
        k, p, n, warmup=warmup, window=window, seed=seed, attribute=attribute, costs=costs, quantum=quantum
    )
    return pt.to_dict()


def _smp_point_task(
    k: int, p: float, n: int, warmup: int, window: int, seed: int, quantum: int, costs: Profile
) -> dict[str, Any]:
    pt = throughput.measure(
        k, p, n, warmup=warmup, window=window, seed=seed, attribute=False, kernel="smp", costs=costs, quantum=quantum
    )
    return pt.to_dict()


def _ms_point_task(
    k: int, p: float, n: int, warmup: int, window: int, seed: int, quantum: int, costs: Profile
) -> dict[str, Any]:
    """A master-slave point, the master's instructions attributed by whose code ran."""
    pt = throughput.measure(
        k, p, n, warmup=warmup, window=window, seed=seed, kernel="master-slave", costs=costs, quantum=quantum
    )
    return pt.to_dict()


def _wide_point_task(
    k: int, p: float, n: int, warmup: int, window: int, seed: int, quantum: int, costs: Profile
) -> dict[str, Any]:
    return throughput.measure(k, p, n, warmup=warmup, window=window, seed=seed, costs=costs, quantum=quantum).to_dict()


def _sensitivity_task(key: str, factor: float, quick: bool, costs: Profile) -> dict[str, Any]:
    return sensitivity._scaled_task(key, factor, costs, sensitivity.QUICK if quick else sensitivity.DEFAULT, 0)


def _out_of_sample_task(quick: bool, costs: Profile) -> dict[str, Any]:
    """The linux-2.4 profile's predictions (whatever the run's own profile)."""
    return sensitivity.out_of_sample(sensitivity.QUICK if quick else sensitivity.DEFAULT)


def _extensions_task(costs: Profile) -> dict[str, Any]:
    from . import extensions

    return extensions.measure(costs=costs).to_dict()


def plan(
    precision: Precision, seed: int = 0, wide: bool = False, quantum: int = 0
) -> list[tuple[str, tuple[Any, ...], float]]:
    """Every task with its arguments and a cost estimate (for scheduling the big ones first); `wide` adds
    the saturated curves at `WIDE_NS` CPUs. The multi-CPU throughput points run decoupled by `quantum` (their
    last argument); with one, every `CHECK_EVERY`-th of them also runs exact (quantum 0: `is_twin`)."""
    tasks: list[tuple[str, tuple[Any, ...], float]] = [("latency", ("up", 1, precision.latency_iterations, seed), 1.0)]
    tasks.append(("extensions", (), 12.0))  # section 4.3 beyond the prototype: the grid above does not use it
    for n in LATENCY_CPUS:
        tasks.append(("latency", ("apkern", n, precision.latency_iterations, seed), 5.0))
        tasks.append(("latency", ("smp", n, precision.latency_iterations, seed), 2.0))
        tasks.append(("latency", ("master-slave", n, precision.latency_iterations, seed), 2.0))
    for k in KS:
        for p in PS:
            for n in NS:
                w, win = precision.warmup(k, p, n), precision.window(k, p, n)
                cost = (w + win) / 1e6 * (0.1 if n == 1 else 1.0 + 1000 / (k + 100))
                seeds = range(seed, seed + (NOISE_SEEDS if n <= 2 else 1))
                # the other seeds' points serve only the noise: their loop counts, no attribution
                q = quantum if n > 1 else 0
                tasks += [("point", (k, p, n, w, win, s, s == seed, q), cost) for s in seeds]
                if n > 1:  # the giant-lock and master-slave ports beside it, against the same uniprocessor point
                    tasks.append(("smp_point", (k, p, n, w, win, seed, q), 0.4 * cost))
                    tasks.append(("ms_point", (k, p, n, w, win, seed, q), 0.4 * cost))
    if wide:
        for k, p in PAPER_SATURATED.items():
            for n in WIDE_NS:
                w, win = precision.warmup(k, p, n), precision.window(k, p, n)
                tasks.append(("wide_point", (k, p, n, w, win, seed, quantum), (w + win) / 1e6 * n / 8))
    if quantum:  # each kind's every CHECK_EVERY-th point in (K, P, CPUs) order: 8 and 7 CPU counts share no factor
        for kind in GRID_KINDS:
            grid = [t for t in tasks if t[0] == kind and t[1][2] > 1 and t[1][5] == seed]
            tasks += [(kind, (*args[:-1], 0), cost) for _, args, cost in grid[::CHECK_EVERY]]
    tasks.sort(key=lambda t: -t[2])
    return tasks


FUNCS: dict[str, Callable[..., dict[str, Any]]] = {
    "latency": _latency_task,
    "point": _point_task,
    "smp_point": _smp_point_task,
    "ms_point": _ms_point_task,
    "extensions": _extensions_task,
    "sensitivity": _sensitivity_task,
    "out_of_sample": _out_of_sample_task,
    "wide_point": _wide_point_task,
}


def run_tasks(
    tasks: list[tuple[str, tuple[Any, ...], float]],
    jobs: int,
    progress: Callable[[int, int], None] | None = None,
    costs: Profile = profiles.DEFAULT,
    cache: tasks_mod.TaskCache | None = None,
) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """Run the tasks (in `jobs` worker processes) under the cost profile `costs`, but those `cache` holds;
    on Ctrl-C, cancel the rest at once and raise `Interrupted` with the results finished so far."""
    funcs = {kind: functools.partial(f, costs=costs) for kind, f in FUNCS.items()}
    return tasks_mod.run_tasks(tasks, funcs, jobs, progress, cache)


def is_twin(kind: str, args: tuple[Any, ...], quantum: int) -> bool:
    """Whether a task of a run decoupled by `quantum` is the exact twin of a point, run only for `engine_check`."""
    return bool(quantum) and kind in GRID_KINDS and args[-1] == 0 and args[2] > 1


def engine_check(results: list[tuple[str, tuple[Any, ...], dict[str, Any]]], quantum: int) -> dict[str, Any] | None:
    """What decoupling by `quantum` did to the figures: by kind of point, for each of `CHECKED`, the largest
    difference between a point and its exact twin, relative to the exact one ({"difference", "args"}; a
    figure that is 0 or None in both is left out), over the twins `plan` made ("points": how many of that
    kind); None without a quantum or twins."""
    exact = {(kind, args[:-1]): r for kind, args, r in results if is_twin(kind, args, quantum)}
    pairs = [
        (kind, args[:-1], r, exact[(kind, args[:-1])])
        for kind, args, r in results
        if quantum and kind in GRID_KINDS and args[-1] == quantum and (kind, args[:-1]) in exact
    ]
    if not pairs:
        return None
    kinds: dict[str, dict[str, Any]] = {}
    for kind, args, dec, ex in pairs:
        into = kinds.setdefault(kind, {"points": 0, "largest": {}})
        into["points"] += 1
        for key in CHECKED:
            a, b = ex.get(key), dec.get(key)
            if a is None or b is None or a == b == 0:
                continue
            d = abs(b - a) / abs(a) if a else 1.0  # from none to some: counted as 100%
            if key not in into["largest"] or d > into["largest"][key]["difference"]:
                into["largest"][key] = {"difference": d, "args": list(args)}
    return {"quantum": quantum, "points": len(pairs), "kinds": kinds}


# --- analysis ---------------------------------------------------------------------------------------


def _speedup(r: dict[str, Any], up: dict[str, Any]) -> float:
    return throughput.speedup(r["loops"], r["window_instructions"], up["loops"], up["window_instructions"])


def _row(r: dict[str, Any], up: dict[str, Any]) -> dict[str, Any]:
    """A grid point with what the analysis adds: speedup, the uniprocessor's figures, the parts per call."""
    n = r["cpus"]
    row = dict(r)
    row["speedup"] = _speedup(r, up)
    row["t_up"] = up["window_instructions"] / up["loops"]  # instructions per loop on the uniprocessor
    # ipsc: the instructions of the call itself on the uniprocessor (its trap path and body), tagged
    # the same way as the bootstrap processor's re-issued call; ticks and switches are not the call's
    row["ipsc"] = up["bsp_parts"][CALL] / up["loops"]
    row["up_kernel_per_call"] = up["kernel_instructions_per_call"]  # all kernel work per loop, ticks included
    row["ideal_bound"] = (n - 1) * row["t_up"] / r["user_instr"] if n > 1 else 1.0
    # per forwarded call the bootstrap processor handled in the window (its busy passes; the
    # application processors' count of calls posted runs ahead of it while a queue builds up)
    calls = r["busy_passes"] if n > 1 else r["loops"]
    row["parts_per_call"] = {part: v / calls for part, v in r["bsp_parts"].items()} if calls else None
    row["attributed_overhead"] = (
        sum(v for part, v in row["parts_per_call"].items() if part != CALL) if calls and n > 1 else None
    )
    row["idle_passes_per_call"] = (r["passes"] - r["busy_passes"]) / calls if n > 1 and calls else None
    return row


def _noise(raw: dict[tuple[int, float, int, int], dict[str, Any]]) -> dict[str, Any]:
    """The spread of the two-CPU speedup over seeds: the pooled standard deviation of one run, relative."""
    runs: dict[tuple[int, float], list[float]] = {}
    for (k, p, n, s), r in raw.items():
        up = raw.get((k, p, 1, s))
        if n == 2 and up is not None:
            runs.setdefault((k, p), []).append(_speedup(r, up))
    groups = [v for v in runs.values() if len(v) > 1]
    if not groups:
        return {"sd": 0.0, "seeds": 1, "curves": 0}
    var = statistics.fmean(statistics.variance([x / statistics.fmean(v) for x in v]) for v in groups)
    return {"sd": var**0.5, "seeds": max(len(v) for v in groups), "curves": len(groups)}


def _evidence(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One piece of evidence per saturated curve (K, P): its plateau, however many CPU counts reached it."""
    out = []
    for k in sorted({r["syscall_instr"] for r in rows}):
        for p in sorted({r["user_pct"] for r in rows if r["syscall_instr"] == k}):
            pts = [r for r in rows if r["syscall_instr"] == k and r["user_pct"] == p and r["saturated"]]
            if not pts:
                continue
            plateau = statistics.fmean(r["speedup"] for r in pts)
            calls = sum(r["busy_passes"] for r in pts)
            parts = {part: sum(r["bsp_parts"][part] for r in pts) / calls for part in pts[0]["bsp_parts"]}
            out.append(
                {
                    "syscall_instr": k,
                    "user_pct": p,
                    "cpus": [r["cpus"] for r in pts],
                    "speedup": plateau,
                    "t_up": pts[0]["t_up"],
                    "ipsc": pts[0]["ipsc"],
                    "up_kernel_per_call": pts[0]["up_kernel_per_call"],
                    "bsp_load": statistics.fmean(r["bsp_load"] for r in pts),
                    # the paper's way: the capacity ips = scps * (ipsc + opsc) at the plateau
                    "derived_overhead": pts[0]["t_up"] / plateau - pts[0]["ipsc"],
                    "parts": parts,
                    "attributed_overhead": sum(v for part, v in parts.items() if part != CALL),
                    # one call more or less at a window's edge moves the per-call figures by this much
                    "edge": sum(parts.values()) * len(pts) / calls,
                }
            )
    return out


def _by_call_length(evidence: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The overhead attribution of each K, over its saturated curves (each curve weighs the same)."""
    out: dict[str, dict[str, Any]] = {}
    for k in sorted({e["syscall_instr"] for e in evidence}):
        ev = [e for e in evidence if e["syscall_instr"] == k]
        parts = {part: statistics.fmean(e["parts"][part] for e in ev) for part in ev[0]["parts"]}
        overhead = sum(v for part, v in parts.items() if part != CALL)
        derived = statistics.fmean(e["derived_overhead"] for e in ev)
        out[str(k)] = {
            "points": [[e["user_pct"], e["cpus"]] for e in ev],
            "parts": parts,
            "total": sum(parts.values()),
            "overhead": overhead,
            "derived_overhead": derived,
            "agreement": abs(derived - overhead) / overhead,
            "edge": statistics.fmean(e["edge"] for e in ev),
        }
    return out


def _model_check(evidence: list[dict[str, Any]], per_k: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each saturated curve predicted from the overhead derived at the *other* call lengths."""
    # the same check with ipsc taken as all the uniprocessor's kernel work per loop (ticks and switches too)
    up_derived: dict[int, list[float]] = {}
    for e in evidence:
        up_derived.setdefault(e["syscall_instr"], []).append(e["t_up"] / e["speedup"] - e["up_kernel_per_call"])
    checks = []
    for e in evidence:
        k = e["syscall_instr"]
        others = [v["derived_overhead"] for kk, v in per_k.items() if int(kk) != k]
        if not others:
            continue
        opsc = statistics.fmean(others)
        pred = predicted_speedup(e["t_up"], e["ipsc"], opsc)
        err = (e["speedup"] - pred) / pred
        up_opsc = statistics.fmean(statistics.fmean(v) for kk, v in up_derived.items() if kk != k)
        up_pred = predicted_speedup(e["t_up"], e["up_kernel_per_call"], up_opsc)
        checks.append(
            {
                "syscall_instr": k,
                "user_pct": e["user_pct"],
                "cpus": e["cpus"],
                "simulated_speedup": e["speedup"],
                "predicted_speedup": pred,
                "relative_error": err,
                "within": abs(err) <= AGREEMENT,
                "overhead_used": opsc,
                "point_overhead": e["derived_overhead"],
                "attributed_overhead": e["attributed_overhead"],
                "parts": e["parts"],
                "bsp_load": e["bsp_load"],
                "ipsc": e["ipsc"],
                "up_kernel_per_call": e["up_kernel_per_call"],
                "relative_error_up_kernel_ipsc": (e["speedup"] - up_pred) / up_pred,
            }
        )
    return checks


def _wide(
    results: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
    raw: dict[tuple[int, float, int, int], dict[str, Any]],
    per_k: dict[str, dict[str, Any]],
    seed: int,
    sat: saturation.Saturation,
) -> list[dict[str, Any]]:
    """The wide-machine points: speedup over the same uniprocessor point, and the capacity model's bound
    from the overhead derived at the other call lengths (as `_model_check` does on up to 8 CPUs).

    A point whose load reached the plateau is saturated: the model predicts it (within `AGREEMENT`).
    Below the plateau something else limits it (20 processes on more CPUs than that): the model is
    then only a bound, which it must not exceed by more than `AGREEMENT`.
    """
    rows = []
    for kind, _args, r in results:
        up = raw.get((r["syscall_instr"], r["user_pct"], 1, seed)) if kind == "wide_point" else None
        if up is None:
            continue
        row = _row(r, up)
        k = row["syscall_instr"]
        others = [v["derived_overhead"] for kk, v in per_k.items() if int(kk) != k]
        if others:
            row["overhead_used"] = statistics.fmean(others)
            row["predicted_speedup"] = predicted_speedup(row["t_up"], row["ipsc"], row["overhead_used"])
            row["relative_error"] = (row["speedup"] - row["predicted_speedup"]) / row["predicted_speedup"]
        load, plateau = row["bsp_load"], sat.plateau_load
        row["saturated"] = load is not None and plateau is not None and load >= plateau * (1 - sat.tolerance)
        if others:
            err = row["relative_error"]
            row["within"] = abs(err) <= AGREEMENT if row["saturated"] else err <= AGREEMENT
        rows.append(row)
    return sorted(rows, key=lambda r: (r["syscall_instr"], r["cpus"]))


def _two_cpu_gains(raw: dict[tuple[int, float, int, int], dict[str, Any]], noise: dict[str, Any]) -> dict[str, Any]:
    """One yardstick for every curve: a gain at two CPUs is a mean speedup above 1 by more than the noise allows."""
    threshold = NOISE_SIGMAS * noise["sd"]
    points = []
    for k, p in sorted({(k, p) for (k, p, n, _) in raw if n == 2}):
        sp = []
        for (kk, pp, n, s), r in sorted(raw.items()):
            if (kk, pp, n) == (k, p, 2) and (k, p, 1, s) in raw:
                sp.append(_speedup(r, raw[(k, p, 1, s)]))
        mean = statistics.fmean(sp)
        points.append({"syscall_instr": k, "user_pct": p, "speedups": sp, "mean": mean, "gain": mean - 1 > threshold})
    return {"noise": noise["sd"], "seeds": noise["seeds"], "threshold": threshold, "points": points}


def _smp(
    results: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
    raw: dict[tuple[int, float, int, int], dict[str, Any]],
    rows: list[dict[str, Any]],
    seed: int,
    noise: dict[str, Any],
) -> dict[str, Any] | None:
    """The giant-lock port's grid beside the application kernel's: speedups, lock spin, its capacity bound, winners.

    The bound, derived like the paper's formula: the lock serializes the kernel work of every loop, so
    at most one loop's kernel path completes per k_up instructions (k_up: the uniprocessor's kernel
    instructions per loop, ticks and switches included), and the speedup never passes t_up / k_up,
    the inverse of the kernel share, nor the number of CPUs.
    """
    ak = {(r["syscall_instr"], r["user_pct"], r["cpus"]): r for r in rows}
    threshold = NOISE_SIGMAS * noise["sd"]
    out = []
    for kind, _, r in results:
        if kind != "smp_point":
            continue
        k, p, n = r["syscall_instr"], r["user_pct"], r["cpus"]
        up = raw[(k, p, 1, seed)]
        t_up = up["window_instructions"] / up["loops"]
        lock_bound = t_up / up["kernel_instructions_per_call"]
        speedup, ak_speedup = _speedup(r, up), ak[(k, p, n)]["speedup"]
        winner = "tie"
        if speedup > ak_speedup * (1 + threshold):
            winner = "smp"
        elif ak_speedup > speedup * (1 + threshold):
            winner = "apkern"
        out.append(
            {
                "syscall_instr": k,
                "user_pct": p,
                "cpus": n,
                "loops": r["loops"],
                "window_instructions": r["window_instructions"],
                "speedup": speedup,
                "apkern_speedup": ak_speedup,
                "apkern_bsp_load": ak[(k, p, n)]["bsp_load"],
                "winner": winner,
                "lock_spin_share": r["lock_spin_share"],
                "kernel_instructions_per_call": r["kernel_instructions_per_call"],
                "t_up": t_up,
                "up_kernel_per_call": up["kernel_instructions_per_call"],
                "lock_bound": lock_bound,
                "bound": min(n, lock_bound),
            }
        )
    if not out:
        return None
    out.sort(key=lambda r: (r["syscall_instr"], r["user_pct"], r["cpus"]))
    wins = {w: sum(r["winner"] == w for r in out) for w in ("smp", "apkern", "tie")}
    margin = {
        "smp": max(out, key=lambda r: r["speedup"] / r["apkern_speedup"]),
        "apkern": max(out, key=lambda r: r["apkern_speedup"] / r["speedup"]),
    }
    return {
        "throughput": out,
        "wins": wins,
        "threshold": threshold,
        "largest_margin": margin,
        "worst_bound_ratio": max(r["speedup"] / r["bound"] for r in out),
        "saturated_speedups": {
            str(k): {
                f"{p:g}": {r["cpus"]: r["speedup"] for r in out if (r["syscall_instr"], r["user_pct"]) == (k, p)}
                for p in (95.0, PAPER_SATURATED[k])
            }
            for k in KS
        },
    }


MS_OVERHEAD_PARTS = ("port", "interrupts", "spin", "other")  # the master's work per call beside the call itself
KERNEL_NAMES = ("apkern", "smp", "master-slave")


def _master_slave(
    results: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
    raw: dict[tuple[int, float, int, int], dict[str, Any]],
    rows: list[dict[str, Any]],
    smp: dict[str, Any] | None,
    seed: int,
    noise: dict[str, Any],
) -> dict[str, Any] | None:
    """The master-slave port's grid beside the other two: speedups, the master's load, its capacity bound, winners.

    The bound, derived like the paper's formula: every call's kernel path runs on the master, which
    spends ipsc (the call's own instructions, the uniprocessor's) plus opsc (the port's work per call
    there: taking the thread a slave queued, switching to it, queueing it for user mode, the interrupts
    and spinning that come with it) on each; so at most IPS / (ipsc + opsc) calls per second, and the
    speedup never passes t_up / (ipsc + opsc), the master's capacity, nor the number of CPUs. opsc is
    attributed on the master by whose code ran (`attribution.MasterAttribution`) at the saturated
    points, independently of the speedups; derived the paper's way (t_up / plateau - ipsc) it must
    agree, and each saturated curve is predicted from the overhead derived at the other call lengths.
    """
    ak = {(r["syscall_instr"], r["user_pct"], r["cpus"]): r for r in rows}
    sp = {(r["syscall_instr"], r["user_pct"], r["cpus"]): r for r in (smp or {}).get("throughput", [])}
    threshold = NOISE_SIGMAS * noise["sd"]
    out = []
    for kind, _, r in results:
        if kind != "ms_point":
            continue
        k, p, n = r["syscall_instr"], r["user_pct"], r["cpus"]
        up = raw[(k, p, 1, seed)]
        loops = r["loops"]
        parts = {part: v / loops for part, v in r["master_parts"].items()} if loops else {}
        speeds = {"apkern": ak[(k, p, n)]["speedup"], "master-slave": _speedup(r, up)}
        if (k, p, n) in sp:
            speeds["smp"] = sp[(k, p, n)]["speedup"]
        ranked = sorted(speeds, key=lambda name: -speeds[name])
        best, second = ranked[0], ranked[1]
        out.append(
            {
                "syscall_instr": k,
                "user_pct": p,
                "cpus": n,
                "loops": loops,
                "window_instructions": r["window_instructions"],
                "speedup": speeds["master-slave"],
                "apkern_speedup": speeds["apkern"],
                "smp_speedup": speeds.get("smp"),
                "smp_lock_spin_share": sp[(k, p, n)]["lock_spin_share"] if (k, p, n) in sp else None,
                "smp_lock_bound": sp[(k, p, n)]["lock_bound"] if (k, p, n) in sp else None,
                "winner": best if speeds[best] > speeds[second] * (1 + threshold) else "tie",
                "master_load": r["master_load"],
                "master_instructions_per_call": r["master_load"] * r["window_instructions"] / loops if loops else None,
                "parts_per_call": parts,
                "attributed_overhead": sum(parts.get(q, 0.0) for q in MS_OVERHEAD_PARTS) if loops else None,
                "t_up": up["window_instructions"] / up["loops"],
                "ipsc": up["bsp_parts"][CALL] / up["loops"],
            }
        )
    if not out:
        return None
    out.sort(key=lambda r: (r["syscall_instr"], r["user_pct"], r["cpus"]))
    for r in out:
        r["bsp_load"] = r["master_load"]  # what the saturation test reads
    sat = saturation.detect(out, threshold)
    for r in out:
        del r["bsp_load"]
        r["saturated"] = (r["syscall_instr"], r["user_pct"], r["cpus"]) in sat.points
    evidence = []
    for k, p in sorted({(r["syscall_instr"], r["user_pct"]) for r in out}):
        pts = [r for r in out if (r["syscall_instr"], r["user_pct"]) == (k, p) and r["saturated"]]
        if not pts:
            continue
        plateau = statistics.fmean(r["speedup"] for r in pts)
        loops = sum(r["loops"] for r in pts)
        evidence.append(
            {
                "syscall_instr": k,
                "user_pct": p,
                "cpus": [r["cpus"] for r in pts],
                "speedup": plateau,
                "master_load": statistics.fmean(r["master_load"] for r in pts),
                "t_up": pts[0]["t_up"],
                "ipsc": pts[0]["ipsc"],
                "derived_overhead": pts[0]["t_up"] / plateau - pts[0]["ipsc"],
                "attributed_overhead": sum(r["attributed_overhead"] * r["loops"] for r in pts) / loops,
                "parts": {
                    q: sum(r["parts_per_call"].get(q, 0.0) * r["loops"] for r in pts) / loops for q in MS_OVERHEAD_PARTS
                },
            }
        )
    per_k = {}
    for k in sorted({e["syscall_instr"] for e in evidence}):
        ev = [e for e in evidence if e["syscall_instr"] == k]
        per_k[str(k)] = {
            "derived_overhead": statistics.fmean(e["derived_overhead"] for e in ev),
            "attributed_overhead": statistics.fmean(e["attributed_overhead"] for e in ev),
            "parts": {q: statistics.fmean(e["parts"][q] for e in ev) for q in MS_OVERHEAD_PARTS},
        }
    opsc = statistics.fmean(v["attributed_overhead"] for v in per_k.values()) if per_k else None
    derived = statistics.fmean(v["derived_overhead"] for v in per_k.values()) if per_k else None
    for r in out:
        r["capacity_bound"] = r["t_up"] / (r["ipsc"] + opsc) if opsc is not None else None
        r["bound"] = min(r["cpus"], r["capacity_bound"]) if opsc is not None else r["cpus"]
    checks = []
    for e in evidence:
        others = [v["derived_overhead"] for kk, v in per_k.items() if int(kk) != e["syscall_instr"]]
        if not others:
            continue
        pred = predicted_speedup(e["t_up"], e["ipsc"], statistics.fmean(others))
        err = (e["speedup"] - pred) / pred
        checks.append(
            {
                "syscall_instr": e["syscall_instr"],
                "user_pct": e["user_pct"],
                "cpus": e["cpus"],
                "simulated_speedup": e["speedup"],
                "predicted_speedup": pred,
                "relative_error": err,
                "within": abs(err) <= AGREEMENT,
                "master_load": e["master_load"],
            }
        )
    wins = {w: sum(r["winner"] == w for r in out) for w in (*KERNEL_NAMES, "tie")}
    margin = {
        "master-slave": max(out, key=lambda r: r["speedup"] / max(r["apkern_speedup"], r["smp_speedup"] or 0)),
        "apkern": max(out, key=lambda r: r["apkern_speedup"] / max(r["speedup"], r["smp_speedup"] or 0)),
    }
    if sp:
        margin["smp"] = max(out, key=lambda r: r["smp_speedup"] / max(r["speedup"], r["apkern_speedup"]))
    return {
        "throughput": out,
        "threshold": threshold,
        "wins": wins,
        "largest_margin": margin,
        "saturated_points": len(sat.points),
        "evidence": evidence,
        "overhead_by_call_length": per_k,
        "attributed_overhead": opsc,
        "derived_overhead": derived,
        "overhead_agreement": abs(derived - opsc) / opsc if per_k else None,
        "model_check": checks,
        "worst_bound_ratio": max(r["speedup"] / r["bound"] for r in out),
        "saturated_speedups": {
            str(k): {
                f"{p:g}": {
                    r["cpus"]: {"master-slave": r["speedup"], "apkern": r["apkern_speedup"], "smp": r["smp_speedup"]}
                    for r in out
                    if (r["syscall_instr"], r["user_pct"]) == (k, p)
                }
                for p in (95.0, PAPER_SATURATED[k])
            }
            for k in KS
        },
    }


def analyse(results: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> dict[str, Any]:
    """Speedups, saturation, the derived and attributed overheads, the model check and the two-CPU gains."""
    lat = [r for kind, _, r in results if kind == "latency"]
    ext = next((r for kind, _, r in results if kind == "extensions"), None)
    raw = {(r["syscall_instr"], r["user_pct"], r["cpus"], args[5]): r for kind, args, r in results if kind == "point"}
    grid_seed = min(s for *_, s in raw)
    rows = [_row(r, raw[(k, p, 1, s)]) for (k, p, n, s), r in sorted(raw.items()) if s == grid_seed]
    noise = _noise(raw)
    sat = saturation.detect(rows, NOISE_SIGMAS * noise["sd"])
    for r in rows:
        r["saturated"] = (r["syscall_instr"], r["user_pct"], r["cpus"]) in sat.points
    evidence = _evidence(rows)
    per_k = _by_call_length(evidence)
    derived = statistics.fmean(v["derived_overhead"] for v in per_k.values()) if per_k else None
    attributed = statistics.fmean(v["overhead"] for v in per_k.values()) if per_k else None
    sat_rows = [r for r in rows if r["saturated"]]
    smp = _smp(results, raw, rows, grid_seed, noise)
    wide = _wide(results, raw, per_k, grid_seed, sat)
    return {
        "extensions": ext,
        "latency": lat,
        "throughput": rows,
        "noise": noise,
        "saturation": {
            "tolerance": sat.tolerance,
            "plateau_load": sat.plateau_load,
            "points": len(sat.points),
            "flat_points": len(sat.flat),
            "curves": len(evidence),
        },
        "derived_overhead": derived,
        "attributed_overhead": attributed,
        "overhead_agreement": abs(derived - attributed) / attributed if per_k else None,
        "overhead_attribution": per_k,
        "idle_passes_per_call_saturated": statistics.fmean(r["idle_passes_per_call"] for r in sat_rows)
        if sat_rows
        else None,
        "saturated_points": len(sat_rows),
        "saturated_speedups": {
            str(k): max((e["speedup"] for e in evidence if e["syscall_instr"] == k), default=None) for k in KS
        },
        "model_check": _model_check(evidence, per_k),
        "two_cpu_gain": _two_cpu_gains(raw, noise),
        "smp": smp,
        "master_slave": _master_slave(results, raw, rows, smp, grid_seed, noise),
        **({"wide": wide} if wide else {}),
    }


# --- output -----------------------------------------------------------------------------------------


LAT_FIELDS = ["kernel", "cpus", "iterations", "mean_instructions", "min_instructions", "max_instructions"]
TP_FIELDS = [
    "syscall_instr",
    "user_pct",
    "cpus",
    "procs",
    "user_instr",
    "warmup_instructions",
    "window_instructions",
    "loops",
    "speedup",
    "ideal_bound",
    "bsp_load",
    "saturated",
    "forwarded_calls",
    "bsp_instructions_per_call",
    "attributed_overhead",
    "bsp_spin_per_call",
    "t_up",
    "ipsc",
    "up_kernel_per_call",
]
SMP_FIELDS = [
    "syscall_instr",
    "user_pct",
    "cpus",
    "window_instructions",
    "loops",
    "speedup",
    "apkern_speedup",
    "winner",
    "lock_spin_share",
    "kernel_instructions_per_call",
    "t_up",
    "up_kernel_per_call",
    "lock_bound",
    "bound",
]
MS_FIELDS = [
    "syscall_instr",
    "user_pct",
    "cpus",
    "window_instructions",
    "loops",
    "speedup",
    "apkern_speedup",
    "smp_speedup",
    "winner",
    "master_load",
    "master_instructions_per_call",
    "attributed_overhead",
    "saturated",
    "t_up",
    "ipsc",
    "capacity_bound",
    "bound",
]


WIDE_FIELDS = [
    "syscall_instr",
    "user_pct",
    "cpus",
    "procs",
    "window_instructions",
    "loops",
    "speedup",
    "predicted_speedup",
    "relative_error",
    "within",
    "saturated",
    "bsp_load",
    "forwarded_calls",
    "bsp_instructions_per_call",
    "attributed_overhead",
    "overhead_used",
]


CACHE_DIR = "cache"  # in the output folder: the tasks' results (tasks.TaskCache)


class OutputError(ValueError):
    """The output folder cannot be made or written."""


def check_output_dir(out: str | os.PathLike[str]) -> Path:
    """Make `out` and prove it writable now, before any simulation: `OutputError` if not."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".apkern-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"cannot write into {str(out)!r}: {e.strerror or e}") from None
    return path


def save_partial(out: str | os.PathLike[str], e: Interrupted) -> Path:
    """Keep what an interrupted run finished: `out/partial.json`, [{kind, args, result}]."""
    path = Path(out) / "partial.json"
    rows = [{"kind": k, "args": list(a), "result": r} for k, a, r in e.finished]
    path.write_text(json.dumps({"finished": len(rows), "total": e.total, "tasks": rows}, indent=1, default=str))
    return path


def write_outputs(out: Path, summary: dict[str, Any], costs: Profile | None = None) -> None:
    """Every result file of a reproduction into `out` (the sample traces under `costs`)."""
    from .html_report import write_html, write_sample_traces
    from .plots import plot_figures
    from .report import write_report

    out.mkdir(parents=True, exist_ok=True)
    stages = sorted({s for r in summary["latency"] for s in r["breakdown"]})
    with open(out / "latency.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(LAT_FIELDS + stages)
        for r in summary["latency"]:
            w.writerow([r[c] for c in LAT_FIELDS] + [round(r["breakdown"].get(s, 0.0), 3) for s in stages])
    with open(out / "throughput.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TP_FIELDS)
        for r in summary["throughput"]:
            w.writerow([r.get(c) for c in TP_FIELDS])
    if summary.get("smp"):
        with open(out / "smp_throughput.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(SMP_FIELDS)
            for r in summary["smp"]["throughput"]:
                w.writerow([r.get(c) for c in SMP_FIELDS])
    if summary.get("master_slave"):
        with open(out / "ms_throughput.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(MS_FIELDS)
            for r in summary["master_slave"]["throughput"]:
                w.writerow([r.get(c) for c in MS_FIELDS])
    if summary.get("wide"):
        with open(out / "wide_throughput.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(WIDE_FIELDS)
            for r in summary["wide"]:
                w.writerow([r.get(c) for c in WIDE_FIELDS])
    plot_figures(summary, out)
    with open(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=1, default=str)
    write_report(summary, out / "report.md")
    write_sample_traces(out, costs)  # one gettid per kernel, for Perfetto; report.html links them
    write_html(summary, out / "report.html")


def reproduce(
    out: str | os.PathLike[str],
    quick: bool = False,
    jobs: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    costs: Profile | None = None,
    wide: bool = False,
    cache: bool = True,
    quantum: int = 0,
) -> dict[str, Any]:
    """Run everything and write the result files into `out`; returns the summary.

    `wide`: also the saturated curves at 16, 32 and 64 CPUs (`wide_throughput.csv`, a panel of Figures 6-8).
    `quantum`: the throughput points run on the engine decoupled by that many instructions (`System`'s
    `quantum`), faster, and off by what a sample also run exact shows: the report says by how much the
    figures moved (`engine_check`). Latency, the extensions and the sensitivity analysis stay exact.
    `cache`: keep each task's result in `out/cache` as it finishes, and run only the tasks not
    found there (`tasks.TaskCache`: by task, cost profile and code), so a run again, or after
    Ctrl-C, simulates only what it lacks; the summary's `tasks` says how many came from it.

    `out` is made and checked first (`OutputError` if it cannot be written). On Ctrl-C the
    tasks finished so far go to `out/partial.json` and `Interrupted` is raised.
    """
    if isinstance(quantum, bool) or not isinstance(quantum, int) or not 0 <= quantum <= MAX_QUANTUM:
        raise ConfigError(f"the decoupling quantum is 0 to {MAX_QUANTUM:,} instructions, not {quantum!r}")
    precision = QUICK if quick else DEFAULT
    costs = profiles.load(costs)
    jobs = jobs or os.cpu_count() or 1
    check_output_dir(out)
    t0 = time.perf_counter()
    # the sensitivity analysis: which costs the baseline reads (a few seconds here), then each scaled
    sens = sensitivity.QUICK if quick else sensitivity.DEFAULT
    tasks = plan(precision, seed, wide, quantum)
    try:
        sens_base = sensitivity._tracked_task(costs, sens, 0)
    except KeyboardInterrupt:  # Ctrl-C before any task: an empty partial.json, as after one
        e = Interrupted([], len(tasks))
        save_partial(out, e)
        raise e from None
    tasks += [("sensitivity", (*args, quick), 1.5) for _, args, _ in sensitivity.plan(costs, sens_base["reads"])]
    tasks.append(("out_of_sample", (quick,), 60.0))  # with its own sensitivity analysis: start it early
    tasks.sort(key=lambda t: -t[2])
    store = tasks_mod.TaskCache(Path(out) / CACHE_DIR, {"costs": costs.to_dict()}) if cache else None
    try:
        results = run_tasks(tasks, jobs, progress, costs, store)
    except Interrupted as e:
        save_partial(out, e)
        raise
    check = engine_check(results, quantum)
    summary = analyse([t for t in results if not is_twin(*t[:2], quantum)])
    scaled = [(kind, args[:2], r) for kind, args, r in results if kind == "sensitivity"]
    summary["sensitivity"] = sensitivity.analyse(costs, sens, sens_base, scaled).to_dict()
    summary["out_of_sample"] = next(r for kind, _, r in results if kind == "out_of_sample")
    summary["config"] = {
        "precision": precision.name,
        "jobs": jobs,
        "seed": seed,
        "ks": KS,
        "ps": PS,
        "cpus": NS,
        "wide_cpus": WIDE_NS if wide else (),
        "procs": throughput.DEFAULT_PROCS,
        "noise_seeds": NOISE_SEEDS,
        "agreement": AGREEMENT,
        "costs": costs.to_dict(),
        "quantum": quantum,
    }
    summary["engine"] = {"quantum": quantum, "check": check}
    summary["tasks"] = {
        "total": len(tasks),
        "cached": 0 if store is None else store.hits,
        "not_kept": 0 if store is None else store.not_kept,
        "cache_error": None if store is None else store.error,
    }
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_outputs(Path(out), summary, costs)
    return summary
