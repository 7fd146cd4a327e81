"""The reproduction's analysis on data made by the capacity model itself, then with the model broken.

A grid made by C = scps * (ipsc + opsc) with one opsc must pass every check; the
same grid with another opsc at one call length, a bootstrap processor that runs
the call dearer than the uniprocessor, or a two-CPU speedup inside the noise must
make the matching check fail or say so.
"""

from __future__ import annotations

import statistics

import pytest

from apkern.experiments import reproduce
from apkern.experiments.attribution import PARTS
from apkern.experiments.report import write_report
from apkern.experiments.throughput import speedup, user_instructions

KS = (151, 451, 4510)
PS = (80.0, 90.0, 95.0)
NS = range(1, 9)
PATH = 89  # the call's trap path besides its K instructions
UP_EXTRA = 10  # the uniprocessor's own work per loop besides the call (ticks, switches)
AP_COST = 250  # what an application processor adds per call
BUSY, ACTIVATION = 23, 194  # instructions per forwarded call of those paths
WINDOW = 10_000_000


def jitter(k: int, p: float, seed: int) -> float:
    """A seed's relative deviation of a two-CPU point: -1%, 0 or +1%."""
    return 0.01 * ((seed + k + int(p)) % 3 - 1)


def point(k: int, p: float, n: int, seed: int, opsc: float, bsp_call_extra: int = 0) -> dict:
    u = user_instructions(k, p)
    ipsc = k + PATH
    parts = dict.fromkeys(PARTS, 0)
    d = {"syscall_instr": k, "user_pct": p, "cpus": n, "procs": 20, "user_instr": u, "warmup_instructions": 0}
    if n == 1:
        loops = round(WINDOW / (u + ipsc + UP_EXTRA))
        parts.update(call=ipsc * loops, user=u * loops)
        parts["interrupts"] = WINDOW - sum(parts.values())
        return d | {
            "window_instructions": WINDOW,
            "loops": loops,
            "forwarded_calls": 0,
            "bsp_instructions": WINDOW,
            "bsp_parts": parts,
            "bsp_load": None,
            "passes": 0,
            "busy_passes": 0,
            "kernel_instructions_per_call": ipsc + UP_EXTRA,
            "bsp_instructions_per_call": WINDOW / loops,
            "bsp_spin_per_call": 0.0,
        }
    capacity = 1 / (ipsc + bsp_call_extra + opsc)
    rate = min((n - 1) / (u + AP_COST), capacity) * (1 + (jitter(k, p, seed) if n == 2 else 0))
    loops = round(rate * WINDOW)
    parts.update(call=(ipsc + bsp_call_extra) * loops, busy_pass=BUSY * loops, activation=ACTIVATION * loops)
    parts["empty_pass"] = WINDOW - sum(parts.values())  # the bootstrap processor never idles
    empty_pass = opsc - BUSY - ACTIVATION  # one empty pass per call at saturation: the load tops out at 1/2
    passes = loops + round(parts["empty_pass"] / empty_pass)
    return d | {
        "window_instructions": WINDOW,
        "loops": loops,
        "forwarded_calls": loops,
        "bsp_instructions": WINDOW,
        "bsp_parts": parts,
        "bsp_load": loops / passes,
        "passes": passes,
        "busy_passes": loops,
        "kernel_instructions_per_call": None,
        "bsp_instructions_per_call": WINDOW / loops,
        "bsp_spin_per_call": 0.0,
    }


def grid(opsc: dict[int, float] | None = None, bsp_call_extra: int = 0, seeds: int = 2) -> list:
    opsc = opsc or {}
    out = []
    for k in KS:
        for p in PS:
            for n in NS:
                for s in range(seeds if n <= 2 else 1):
                    r = point(k, p, n, s, opsc.get(k, 400.0), bsp_call_extra)
                    if s:  # as the reproduction runs them: the noise's runs are not attributed
                        r["bsp_parts"] = {}
                    out.append(("point", (k, p, n, 0, WINDOW, s, s == 0), r))
    return out


def test_a_grid_the_model_made_passes_every_check() -> None:
    s = reproduce.analyse(grid())
    assert s["model_check"] and all(c["within"] for c in s["model_check"])
    for k, v in s["overhead_attribution"].items():
        assert v["agreement"] < 0.01, k
        assert v["total"] == pytest.approx(v["parts"]["call"] + v["overhead"])
        assert v["overhead"] == pytest.approx(400.0, rel=0.01)


def test_a_saturated_curve_is_one_piece_of_evidence_however_many_cpu_counts_reach_it() -> None:
    s = reproduce.analyse(grid())
    curves = {(r["syscall_instr"], r["user_pct"]) for r in s["throughput"] if r["saturated"]}
    assert len(s["model_check"]) == len(curves) < s["saturated_points"]
    assert all(len(c["cpus"]) >= 1 for c in s["model_check"])
    assert sum(len(c["cpus"]) for c in s["model_check"]) == s["saturated_points"]


def test_a_curve_is_predicted_from_the_other_call_lengths_only() -> None:
    s = reproduce.analyse(grid(opsc={151: 520.0}))
    per_k = s["overhead_attribution"]
    for c in s["model_check"]:
        others = [v["derived_overhead"] for k, v in per_k.items() if int(k) != c["syscall_instr"]]
        assert c["overhead_used"] == pytest.approx(statistics.fmean(others))


def test_an_overhead_that_differs_at_one_call_length_is_a_miss(tmp_path) -> None:
    s = reproduce.analyse(grid(opsc={151: 520.0}))
    misses = {c["syscall_instr"] for c in s["model_check"] if not c["within"]}
    assert misses == {151}
    s["config"] = {"precision": "synthetic", "seed": 0, "procs": 20, "jobs": 1, "agreement": reproduce.AGREEMENT}
    s["wall_seconds"] = 0.0
    write_report(s, tmp_path / "report.md")
    report = (tmp_path / "report.md").read_text()
    for c in s["model_check"]:
        line = next(x for x in report.splitlines() if x.startswith(f"| {c['syscall_instr']} | {c['user_pct']:g} |"))
        assert ("MISS" in line) == (not c["within"])


def test_a_call_dearer_on_the_bootstrap_processor_breaks_the_overhead_agreement() -> None:
    # the derived overhead counts the extra in the overhead; the attribution counts it in the call
    s = reproduce.analyse(grid(bsp_call_extra=100))
    assert all(v["agreement"] > reproduce.AGREEMENT for v in s["overhead_attribution"].values())


def test_the_noise_is_the_pooled_spread_of_the_two_cpu_speedup_over_seeds() -> None:
    s = reproduce.analyse(grid(seeds=3))
    rel_vars = []
    for k in KS:
        for p in PS:
            sp = []
            for x in range(3):
                two, one = point(k, p, 2, x, 400.0), point(k, p, 1, x, 400.0)
                sp.append(speedup(two["loops"], WINDOW, one["loops"], WINDOW))
            rel_vars.append(statistics.variance([v / statistics.fmean(sp) for v in sp]))
    assert s["noise"]["sd"] == pytest.approx(statistics.fmean(rel_vars) ** 0.5)
    assert s["noise"]["seeds"] == 3 and s["noise"]["sd"] > 0


def test_one_yardstick_for_a_gain_at_two_cpus() -> None:
    s = reproduce.analyse(grid())
    g = s["two_cpu_gain"]
    assert g["threshold"] == pytest.approx(reproduce.NOISE_SIGMAS * s["noise"]["sd"]) and g["threshold"] > 0
    assert len(g["points"]) == len(KS) * len(PS)
    for pt in g["points"]:
        assert pt["gain"] == (pt["mean"] - 1 > g["threshold"])
    # the model's two-CPU points: K=151 at 80% cannot gain (the AP's cost per call exceeds the call), K=4510 at 80% can
    by = {(pt["syscall_instr"], pt["user_pct"]): pt for pt in g["points"]}
    assert not by[(151, 80.0)]["gain"] and by[(4510, 80.0)]["gain"]


def test_without_other_seeds_the_noise_is_zero_and_said_to_be_unmeasured() -> None:
    s = reproduce.analyse(grid(seeds=1))
    assert s["noise"] == {"sd": 0.0, "seeds": 1, "curves": 0}


def wide(opsc: dict[int, float] | None = None) -> list:
    """The saturated curves' points on wide machines, as `reproduce --wide` adds them."""
    opsc = opsc or {}
    return [
        ("wide_point", (k, 80.0, n, 0, WINDOW, 0), point(k, 80.0, n, 0, opsc.get(k, 400.0)))
        for k in KS
        for n in reproduce.WIDE_NS
    ]


def test_wide_machines_are_predicted_by_the_capacity_model_too(tmp_path) -> None:
    from apkern.experiments.plots import plot_figures

    s = reproduce.analyse(grid() + wide())
    assert [(r["syscall_instr"], r["cpus"]) for r in s["wide"]] == [(k, n) for k in KS for n in reproduce.WIDE_NS]
    assert all(r["within"] and r["saturated"] for r in s["wide"])
    assert all(r["speedup"] == pytest.approx(r["predicted_speedup"], rel=0.01) for r in s["wide"])
    missed = reproduce.analyse(grid() + wide(opsc={451: 600.0}))
    assert {r["syscall_instr"] for r in missed["wide"] if not r["within"]} == {451}
    missed["config"] = {"precision": "synthetic", "seed": 0, "procs": 20, "jobs": 1, "agreement": reproduce.AGREEMENT}
    missed["wall_seconds"] = 0.0
    write_report(missed, tmp_path / "report.md")
    lines = [x for x in (tmp_path / "report.md").read_text().splitlines() if x.startswith("| 451 | 80 | 64 |")]
    assert len(lines) == 1 and lines[0].endswith("miss |")
    assert len(plot_figures(missed, tmp_path)) >= 3
    assert "wide" not in reproduce.analyse(grid())  # without --wide, nothing changes


def test_a_wide_point_below_the_plateau_is_held_to_the_bound_only() -> None:
    # K=4510 at 95% on 16 CPUs: the application processors, not the bootstrap processor, are the limit
    r = point(4510, 95.0, 16, 0, 400.0)
    s = reproduce.analyse(grid() + [("wide_point", (4510, 95.0, 16, 0, WINDOW, 0), r)])
    (row,) = s["wide"]
    assert not row["saturated"] and row["speedup"] < row["predicted_speedup"] * (1 - reproduce.AGREEMENT)
    assert row["within"]
