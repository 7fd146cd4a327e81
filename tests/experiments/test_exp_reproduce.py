"""`apkern reproduce --quick`: every file, 144 rows, and the shape the paper's section 5 predicts.

One run of the quick grid serves every test here (one to two minutes on two cores).
"""

from __future__ import annotations

import csv
import json

import pytest

from apkern.experiments.reproduce import KS, NS, PS, SATURATION, reproduce, throughput

BOUND_TOLERANCE = 0.10  # quick windows hold tens of loops: window-edge effects of a few percent


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    summary = reproduce(out, quick=True, jobs=2)
    return out, summary


def rows(out):
    with open(out / "throughput.csv") as f:
        return list(csv.DictReader(f))


def test_every_file_is_written(grid) -> None:
    out, _ = grid
    for name in ("latency.csv", "throughput.csv", "fig6.png", "fig7.png", "fig8.png", "summary.json", "report.md"):
        assert (out / name).stat().st_size > 0, name
    assert len(rows(out)) == len(KS) * len(PS) * len(NS) == 144
    summary = json.loads((out / "summary.json").read_text())
    assert {"derived_overhead", "measured_overhead", "model_check", "latency", "throughput"} <= set(summary)
    assert (out / "fig6.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speedups_rise_until_the_bootstrap_processor_saturates(grid) -> None:
    _, s = grid
    for k in KS:
        for p in PS:
            curve = sorted(
                (r for r in s["throughput"] if r["syscall_instr"] == k and r["user_pct"] == p), key=lambda r: r["cpus"]
            )
            for a, b in zip(curve, curve[1:], strict=False):
                if a["saturated"]:
                    # flat once saturated: adding processors gives (almost) nothing
                    assert b["speedup"] <= a["speedup"] * 1.05, (k, p, b["cpus"])
                elif a["cpus"] >= 2:
                    assert b["speedup"] > a["speedup"], (k, p, b["cpus"])


def test_speedups_never_exceed_what_the_application_processors_could_give(grid) -> None:
    _, s = grid
    worst = 0.0
    for r in s["throughput"]:
        if r["cpus"] == 1:
            continue
        bound = (r["cpus"] - 1) * r["t_up"] / r["user_instr"]
        worst = max(worst, r["speedup"] / bound - 1)
        assert r["speedup"] <= bound * (1 + BOUND_TOLERANCE), (r["syscall_instr"], r["user_pct"], r["cpus"])
    print(f"largest excess over the bound: {100 * worst:.1f}%")


def test_the_bootstrap_processor_is_the_limit(grid) -> None:
    _, s = grid
    assert s["saturated_points"] > 0
    for r in s["throughput"]:
        if r["cpus"] > 1:
            # Figure 4: a busy pass is followed by an empty one (window edges can split a pair)
            assert 0 <= r["bsp_load"] <= 0.5 + 0.005
    assert all(r["bsp_load"] >= SATURATION for r in s["throughput"] if r["saturated"])


def test_derived_and_measured_overheads_agree(grid) -> None:
    _, s = grid
    assert s["derived_overhead"] > 0 and s["measured_overhead"] > 0
    assert abs(s["derived_overhead"] - s["measured_overhead"]) <= 0.10 * s["measured_overhead"]


def test_model_check_holds_or_the_report_says_why(grid) -> None:
    out, s = grid
    report = (out / "report.md").read_text()
    assert s["model_check"]
    assert all(c["held_out"] for c in s["model_check"])  # predicted with the other K values' overhead
    for c in s["model_check"]:
        if not c["within"]:
            line = f"| {c['syscall_instr']} | {c['user_pct']:g} | {c['cpus']} |"
            assert line in report and "empty loop passes per call" in report


def test_latency_rows_and_their_breakdowns(grid) -> None:
    out, s = grid
    kernels = {(r["kernel"], r["cpus"]) for r in s["latency"]}
    assert kernels == {("up", 1), ("apkern", 2), ("apkern", 4), ("apkern", 8)}
    for r in s["latency"]:
        assert sum(r["breakdown"].values()) == pytest.approx(r["mean_instructions"], abs=1e-6)


def test_a_point_is_deterministic(grid) -> None:
    _, s = grid
    r = next(r for r in s["throughput"] if r["syscall_instr"] == 451 and r["user_pct"] == 95.0 and r["cpus"] == 4)
    again = throughput.measure(451, 95.0, 4, warmup=r["warmup_instructions"], window=r["window_instructions"])
    assert (again.loops, again.forwarded_calls, again.bsp_instructions, again.passes) == (
        r["loops"],
        r["forwarded_calls"],
        r["bsp_instructions"],
        r["passes"],
    )
