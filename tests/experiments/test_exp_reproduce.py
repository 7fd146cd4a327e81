"""`apkern reproduce --quick`: every file, 144 rows, and the shape the paper's section 5 predicts.

One run of the quick grid serves every test here (one to two minutes on two cores).
The checks here fail when the data do: the overhead derived from the speedups must
agree with the one attributed path by path, and every saturated curve must be
predicted from the other call lengths within the stated tolerance.
"""

from __future__ import annotations

import csv
import json

import pytest
from browserkit import ink, visit

from apkern.experiments.attribution import CALL, PARTS
from apkern.experiments.reproduce import AGREEMENT, KS, NOISE_SEEDS, NS, PS, reproduce, throughput

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
    files = ("latency.csv", "throughput.csv", "fig6.png", "fig7.png", "fig8.png", "fig_extensions.png")
    files += ("fig_sensitivity.png",)
    pages = ("summary.json", "report.md", "report.html", "trace_gettid_apkern.json", "trace_gettid_up.json")
    for name in (*files, *pages):
        assert (out / name).stat().st_size > 0, name
    assert len(rows(out)) == len(KS) * len(PS) * len(NS) == 144
    summary = json.loads((out / "summary.json").read_text())
    assert {"derived_overhead", "attributed_overhead", "model_check", "latency", "throughput"} <= set(summary)
    ext = summary["extensions"]  # section 4.3 beyond the prototype, measured beside the grid
    assert {r["extension"] for r in ext["rows"]} == {
        "local_calls",
        "balance",
        "placement",
        "migration",
        "TLB shoot-down (swapper)",
    }
    assert "Migration (`migration`" in (out / "report.md").read_text()
    assert "Section 4.3 beyond the prototype" in (out / "report.md").read_text()
    assert "Load balancing (`balance`)" in (out / "report.md").read_text()
    for k, v in summary["overhead_attribution"].items():
        assert int(k) in KS and set(v["parts"]) == set(PARTS) and v["points"]
        assert v["total"] == pytest.approx(sum(v["parts"].values()))
        assert v["overhead"] == pytest.approx(v["total"] - v["parts"][CALL])
    assert (out / "fig6.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speedups_rise_until_the_bootstrap_processor_saturates(grid) -> None:
    _, s = grid
    tol = s["saturation"]["tolerance"]
    for k in KS:
        for p in PS:
            curve = sorted(
                (r for r in s["throughput"] if r["syscall_instr"] == k and r["user_pct"] == p), key=lambda r: r["cpus"]
            )
            for a, b in zip(curve, curve[1:], strict=False):
                if a["saturated"]:
                    # flat once saturated: adding processors gives nothing beyond the noise
                    assert b["saturated"] and b["speedup"] <= a["speedup"] * (1 + tol), (k, p, b["cpus"])
                elif a["cpus"] >= 2:
                    assert b["speedup"] > a["speedup"] * (1 + tol), (k, p, b["cpus"])


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
    # saturation comes from the data: the plateau the flat curves show is Figure 4's ceiling
    assert s["saturation"]["plateau_load"] == pytest.approx(0.5, abs=0.005)
    plateau, tol = s["saturation"]["plateau_load"], s["saturation"]["tolerance"]
    assert all(r["bsp_load"] >= plateau * (1 - tol) for r in s["throughput"] if r["saturated"])


def test_the_attributed_parts_sum_to_the_bootstrap_processors_instructions(grid) -> None:
    _, s = grid
    for r in s["throughput"]:
        assert sum(r["bsp_parts"].values()) == r["bsp_instructions"], (r["syscall_instr"], r["user_pct"], r["cpus"])
        if r["cpus"] > 1:
            # the window's bootstrap processor runs only bootstrap threads' paths
            assert r["bsp_parts"]["user"] == r["bsp_parts"]["other"] == 0


def test_the_reissued_call_costs_what_the_call_costs_on_the_uniprocessor(grid) -> None:
    _, s = grid
    for r in s["throughput"]:
        if r["cpus"] > 1 and r["busy_passes"]:
            # the bootstrap processor serves one call at a time: a window edge cuts at most one call at each end
            assert abs(r["bsp_parts"][CALL] - r["ipsc"] * r["busy_passes"]) <= 2 * r["ipsc"], (
                r["syscall_instr"],
                r["user_pct"],
                r["cpus"],
            )


def test_derived_and_attributed_overheads_agree(grid) -> None:
    _, s = grid
    assert s["overhead_attribution"]
    for k, v in s["overhead_attribution"].items():
        assert v["overhead"] > 0
        assert abs(v["derived_overhead"] - v["overhead"]) <= AGREEMENT * v["overhead"], k


def test_every_saturated_curve_is_predicted_within_the_tolerance(grid) -> None:
    out, s = grid
    checks = s["model_check"]
    curves = {(r["syscall_instr"], r["user_pct"]) for r in s["throughput"] if r["saturated"]}
    assert checks and len(checks) == len(curves)  # one row per curve, not per CPU count
    assert len({c["syscall_instr"] for c in checks}) >= 2  # something held out to predict from
    rows = (out / "report.md").read_text().splitlines()
    for c in checks:
        assert abs(c["relative_error"]) <= AGREEMENT, (c["syscall_instr"], c["user_pct"], c["relative_error"])
        line = f"| {c['syscall_instr']} | {c['user_pct']:g} | {','.join(map(str, c['cpus']))} |"
        assert any(r.startswith(line) and r.endswith("| ok |") for r in rows), line


def test_two_cpu_gains_are_judged_against_the_measured_noise(grid) -> None:
    out, s = grid
    g = s["two_cpu_gain"]
    assert g["seeds"] == NOISE_SEEDS and 0 < g["noise"] < 0.05
    assert len(g["points"]) == len(KS) * len(PS)
    for pt in g["points"]:
        assert len(pt["speedups"]) == NOISE_SEEDS and pt["gain"] == (pt["mean"] - 1 > g["threshold"])
    report = (out / "report.md").read_text()
    fig6 = next(line for line in report.splitlines() if "(Figure 6)" in line)
    fig8 = next(line for line in report.splitlines() if "(Figure 8)" in line)
    gains = {(pt["syscall_instr"], pt["user_pct"]): pt["gain"] for pt in g["points"]}
    assert ("differs" in fig6) == any(gains[(151, p)] for p in PS)
    assert ("differs" in fig8) == (not all(gains[(4510, p)] for p in PS))
    assert f"{100 * g['noise']:.2f}%" in report


def test_latency_rows_and_their_breakdowns(grid) -> None:
    out, s = grid
    kernels = {(r["kernel"], r["cpus"]) for r in s["latency"]}
    assert kernels == {("up", 1), *((kernel, n) for kernel in ("apkern", "smp", "master-slave") for n in (2, 4, 8))}
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


# --- the giant-lock SMP port's grid beside the application kernel's ----------------------------------------


def test_the_smp_port_runs_the_same_grid(grid) -> None:
    out, s = grid
    smp = s["smp"]["throughput"]
    assert len(smp) == len(KS) * len(PS) * (len(NS) - 1)
    with open(out / "smp_throughput.csv") as f:
        assert len(list(csv.DictReader(f))) == len(smp)
    assert sum(s["smp"]["wins"].values()) == len(smp)
    report = (out / "report.md").read_text()
    assert "## The giant-lock SMP port beside the application kernel" in report
    for k, by_p in s["smp"]["saturated_speedups"].items():
        for p, by_n in by_p.items():
            assert set(by_n) == {2, 3, 4, 5, 6, 7, 8}
            r = next(r for r in smp if (r["syscall_instr"], r["user_pct"], r["cpus"]) == (int(k), float(p), 8))
            assert f"| {k} | {p} | 8 | {r['apkern_speedup']:.2f} | {r['speedup']:.2f} |" in report


def test_the_smp_port_stays_under_its_capacity_bound(grid) -> None:
    """Never above min(CPUs, t_up / k_up); and where the kernel share is large it gets close to the lock's bound."""
    _, s = grid
    for r in s["smp"]["throughput"]:
        assert r["speedup"] <= r["bound"] * (1 + BOUND_TOLERANCE), (r["syscall_instr"], r["user_pct"], r["cpus"])
        assert 0 <= r["lock_spin_share"] < 1
    heavy = next(r for r in s["smp"]["throughput"] if (r["syscall_instr"], r["user_pct"], r["cpus"]) == (151, 80.0, 8))
    assert heavy["lock_bound"] < 8 and heavy["speedup"] >= 0.85 * heavy["lock_bound"]
    assert heavy["lock_spin_share"] > 0.3  # most of the extra CPUs' time goes into spinning


def test_at_two_cpus_the_port_wins_every_curve(grid) -> None:
    """With one application processor the application kernel gains little; the port runs user code on both."""
    _, s = grid
    for r in s["smp"]["throughput"]:
        if r["cpus"] == 2:
            assert r["winner"] == "smp", (r["syscall_instr"], r["user_pct"], r["speedup"], r["apkern_speedup"])


def test_report_html_opens_in_chromium(grid, tmp_path) -> None:
    out, _ = grid
    v = visit(out / "report.html", tmp_path / "report.png")
    assert v.errors == [] and [u for u in v.requests if not u.startswith(("file:", "data:"))] == []
    assert v.plots == 6  # Figures 6-8, the latency breakdown, the extensions and the sensitivity tornado
    dark, spread = ink(v.screenshot)
    assert dark > 0.02 and spread > 15, (dark, spread)


# --- the master-slave port's grid beside the other two ---------------------------------------------------


def test_the_master_slave_port_runs_the_same_grid(grid) -> None:
    out, s = grid
    ms = s["master_slave"]["throughput"]
    assert len(ms) == len(KS) * len(PS) * (len(NS) - 1)
    with open(out / "ms_throughput.csv") as f:
        assert len(list(csv.DictReader(f))) == len(ms)
    assert sum(s["master_slave"]["wins"].values()) == len(ms)
    report = (out / "report.md").read_text()
    assert "## The master-slave port beside the application kernel and the giant-lock port" in report
    assert "## Implementation effort of the three approaches" in report
    assert "| master-slave port (`masterslave/` + `portkit/`) |" in report and "| application kernel (" in report
    for k, by_p in s["master_slave"]["saturated_speedups"].items():
        for p, by_n in by_p.items():
            r = by_n["8"] if "8" in by_n else by_n[8]
            assert f"| {k} | {p} | 8 | {r['apkern']:.2f} | {r['smp']:.2f} | {r['master-slave']:.2f} |" in report


def test_the_master_slave_port_stays_under_the_masters_capacity(grid) -> None:
    """Never above min(CPUs, t_up / (ipsc + opsc)), opsc attributed on the master apart from any speedup;
    the saturated points reach it, and the paper's derivation from the plateaus agrees with the attribution."""
    _, s = grid
    ms = s["master_slave"]
    assert ms["saturated_points"] > 0 and 50 < ms["attributed_overhead"] < 400
    assert ms["overhead_agreement"] <= AGREEMENT
    for r in ms["throughput"]:
        assert r["speedup"] <= r["bound"] * (1 + BOUND_TOLERANCE), (r["syscall_instr"], r["user_pct"], r["cpus"])
        # the counters take an operation whole at the window's end: a K=4510 call is 0.5% of a quick window
        assert 0 <= r["master_load"] <= 1.01
        if r["saturated"] and r["capacity_bound"] < r["cpus"]:
            assert r["speedup"] >= r["capacity_bound"] * (1 - BOUND_TOLERANCE)
    assert ms["model_check"] and all(c["within"] for c in ms["model_check"])


def test_the_sensitivity_baseline_agrees_with_the_grid_at_its_point(grid) -> None:
    """Two measurements of the overhead at K=151, P=95%, 8 CPUs: the grid's (its own window, attributed) and
    the sensitivity run's (another window length): they must agree within the grid's tolerance."""
    _, summary = grid
    sens = summary["sensitivity"]
    (row,) = [r for r in summary["throughput"] if (r["syscall_instr"], r["user_pct"], r["cpus"]) == (151, 95.0, 8)]
    assert sens["base"]["overhead"] == pytest.approx(row["attributed_overhead"], rel=AGREEMENT)
    assert sens["base"]["speedup"] == pytest.approx(row["speedup"], rel=AGREEMENT)
    up, ak2 = (
        next(r for r in summary["latency"] if r["kernel"] == k and r["cpus"] == n)
        for k, n in (("up", 1), ("apkern", 2))
    )
    assert sens["base"]["up_gettid"] == pytest.approx(up["mean_instructions"], abs=1)
    assert sens["base"]["forwarded_gettid"] == pytest.approx(ak2["mean_instructions"], rel=0.02)
    assert summary["config"]["costs"] == {"name": "xv6", "file": None, "overrides": {}}


def test_the_report_ranks_the_costs_and_checks_the_linux_profile(grid) -> None:
    out, summary = grid
    text = (out / "report.md").read_text()
    sens, oos = summary["sensitivity"], summary["out_of_sample"]
    first = sens["effects"][0]["key"]
    assert "## Which path costs the overhead depends on" in text and f"| 1 | `{first}` |" in text
    assert "## Out of sample: the linux-2.4 profile beside the Linux version" in text
    assert f"| {oos['predicted']['up_getpid']:.1f} |" in text and f"| {oos['predicted']['overhead']:.0f} |" in text
    assert oos["profile"]["name"] == "linux-2.4" and oos["profile"]["overrides"]["bootkernel"]["SYSCALL_ENTRY"] == 16
    html = (out / "report.html").read_text()
    assert 'id="fig-sensitivity"' in html


def test_a_run_again_takes_every_task_from_the_cache_and_writes_the_same_summary(grid, monkeypatch) -> None:
    """Each task's result went into OUT/cache as it finished: nothing is simulated again (a task that ran
    would raise here), and what is read back is what the tasks returned: the same summary.json."""
    from apkern.experiments import reproduce as rp

    out, _ = grid
    first = json.loads((out / "summary.json").read_text())

    def no_run(*args, **kw):
        raise AssertionError("a task ran although its result was in the cache")

    monkeypatch.setattr(rp, "FUNCS", {kind: no_run for kind in rp.FUNCS})
    reproduce(out, quick=True, jobs=1)
    again = json.loads((out / "summary.json").read_text())
    assert first["tasks"]["not_kept"] == 0 and first["tasks"]["cached"] == 0
    assert again["tasks"]["cached"] == again["tasks"]["total"] == first["tasks"]["total"]
    strip = ("wall_seconds", "tasks", "config")
    assert {k: v for k, v in again.items() if k not in strip} == {k: v for k, v in first.items() if k not in strip}
    assert {**again["config"], "jobs": 0} == {**first["config"], "jobs": 0}
