"""`apkern reproduce --quantum Q`: the throughput points run decoupled, a sample also exact, and the
report says which engine made the figures and how far the quantum moved them."""

from __future__ import annotations

import pytest
from test_exp_analysis import grid

from apkern import ConfigError
from apkern.experiments import reproduce
from apkern.experiments.report import write_report


def test_without_a_quantum_every_point_runs_exact_once() -> None:
    tasks = reproduce.plan(reproduce.QUICK)
    points = [t for t in tasks if t[0] in reproduce.GRID_KINDS]
    assert points and all(args[-1] == 0 for _, args, _ in points)
    assert len({(kind, args) for kind, args, _ in points}) == len(points)


def test_a_quantum_decouples_every_multi_cpu_point_and_twins_a_sample_with_exact_runs() -> None:
    exact = reproduce.plan(reproduce.QUICK, wide=True)
    tasks = reproduce.plan(reproduce.QUICK, wide=True, quantum=100)
    points = [(k, a) for k, a, _ in tasks if k in reproduce.GRID_KINDS]
    twins = [(k, a[:-1]) for k, a in points if reproduce.is_twin(k, a, 100)]
    planned = [(k, a) for k, a in points if not reproduce.is_twin(k, a, 100)]
    # the same points, the multi-CPU ones decoupled, the one-CPU baselines exact
    assert {(k, a[:-1]) for k, a in planned} == {(k, a[:-1]) for k, a, _ in exact if k in reproduce.GRID_KINDS}
    assert all(a[-1] == (100 if a[2] > 1 else 0) for _, a in planned)
    multi = [(k, a[:-1]) for k, a in planned if a[2] > 1 and a[5] == 0]
    assert set(twins) <= set(multi)
    for kind in reproduce.GRID_KINDS:  # each kind's own every 8th point: each CPU count of each kernel
        of_kind = [a for k, a in multi if k == kind]
        mine = [a for k, a in twins if k == kind]
        assert len(mine) == -(-len(of_kind) // reproduce.CHECK_EVERY)
        assert {a[2] for a in mine} == {a[2] for a in of_kind} or kind == "wide_point"
    assert ("ms_point", (151, 80.0, 2)) in {(k, a[:3]) for k, a in twins}
    others = [t for t in tasks if t[0] not in reproduce.GRID_KINDS]
    assert others == [t for t in exact if t[0] not in reproduce.GRID_KINDS]  # latency etc. as before
    assert not any(reproduce.is_twin(k, a, 0) for k, a, _ in exact)


def _twinned(results: list, quantum: int, moved: float) -> list:
    """`results` as a decoupled run plans them, and the first three multi-CPU points also as exact twins whose
    loops differ by `moved`, 2 `moved` and 3 `moved`."""
    out = [(kind, (*args, quantum if args[2] > 1 else 0), r) for kind, args, r in results]
    multi = [(kind, args, r) for kind, args, r in results if args[2] > 1][:3]
    for i, (kind, args, r) in enumerate(multi):
        out.append((kind, (*args, 0), {**r, "loops": round(r["loops"] * (1 + moved * (i + 1)))}))
    return out


def test_the_check_finds_the_largest_difference_and_where() -> None:
    results = _twinned(grid(), 100, 0.01)
    check = reproduce.engine_check(results, 100)
    assert check["quantum"] == 100 and check["points"] == 3 and set(check["kinds"]) == {"point"}
    loops = check["kinds"]["point"]["largest"]["loops"]
    third = [(k, a, r) for k, a, r in grid() if a[2] > 1][2]
    assert loops["args"] == list(third[1])
    a = third[2]["loops"]
    assert loops["difference"] == pytest.approx((round(a * 1.03) - a) / round(a * 1.03))  # the twin is exact
    assert check["kinds"]["point"]["largest"]["forwarded_calls"]["difference"] == 0.0  # only the loops moved
    assert reproduce.engine_check(results, 0) is None
    assert reproduce.engine_check(_twinned(grid(), 100, 0.0)[: len(grid())], 100) is None  # no twins


def test_the_analysis_leaves_the_twins_out() -> None:
    plain = reproduce.analyse(grid())
    results = _twinned(grid(), 100, 0.5)  # twins far off: the figures would show them
    kept = [t for t in results if not reproduce.is_twin(*t[:2], 100)]
    assert len(kept) == len(grid())
    assert reproduce.analyse(kept)["throughput"] == plain["throughput"]


def test_the_report_names_the_engine_and_what_the_quantum_moved(tmp_path) -> None:
    points = grid()
    s = reproduce.analyse(points)
    s["config"] = {"precision": "synthetic", "seed": 0, "procs": 20, "jobs": 1, "agreement": reproduce.AGREEMENT}
    s["wall_seconds"] = 0.0
    s["engine"] = {"quantum": 0, "check": None}
    write_report(s, tmp_path / "report.md")
    assert "Engine: exact." in (tmp_path / "report.md").read_text()
    check = reproduce.engine_check(_twinned(points, 100, 0.02), 100)
    s["engine"] = {"quantum": 100, "check": check}
    write_report(s, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "temporal decoupling, quantum 100 instructions" in text
    assert "3 of those points also ran exact" in text
    row = next(x for x in text.splitlines() if x.startswith("| the application kernel | 3 |"))
    assert f"| {100 * check['kinds']['point']['largest']['loops']['difference']:.2f}% (K=" in row
    assert "noise of one run of the grid" in text


@pytest.mark.parametrize("bad", [-1, reproduce.MAX_QUANTUM + 1, True])
def test_reproduce_refuses_a_bad_quantum_before_running(tmp_path, bad: object) -> None:
    with pytest.raises(ConfigError, match="quantum"):
        reproduce.reproduce(tmp_path / "out", quick=True, quantum=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_reproduce_leaves_the_twins_out_of_the_figures_and_reports_them(tmp_path, monkeypatch) -> None:
    """`reproduce()` itself, its simulation faked: the analysis sees each point once, decoupled (the one-CPU
    baselines exact), and the summary carries the check of the twins."""
    from types import SimpleNamespace

    seen: dict = {}

    def fake_run_tasks(tasks, jobs, progress, costs, store):
        out = []
        for kind, args, _ in tasks:
            r = {"loops": 1000 + (7 if kind in reproduce.GRID_KINDS and args[-1] else 0), "forwarded_calls": 50}
            out.append((kind, args, r))
        return out

    def fake_analyse(results):
        seen["analysed"] = results
        return {"throughput": [], "derived_overhead": None, "attributed_overhead": None}

    monkeypatch.setattr(reproduce.sensitivity, "_tracked_task", lambda *a: {"reads": []})
    monkeypatch.setattr(reproduce.sensitivity, "plan", lambda *a: [])
    monkeypatch.setattr(reproduce.sensitivity, "analyse", lambda *a: SimpleNamespace(to_dict=dict))
    monkeypatch.setattr(reproduce, "run_tasks", fake_run_tasks)
    monkeypatch.setattr(reproduce, "analyse", fake_analyse)
    monkeypatch.setattr(reproduce, "write_outputs", lambda *a: None)
    summary = reproduce.reproduce(tmp_path, quick=True, jobs=1, quantum=30, cache=False)
    points = [(k, a) for k, a, _ in seen["analysed"] if k in reproduce.GRID_KINDS]
    assert all(a[-1] == (30 if a[2] > 1 else 0) for _, a in points)
    assert len(points) == len({(k, a[:-1]) for k, a in points})
    check = summary["engine"]["check"]
    assert summary["engine"]["quantum"] == summary["config"]["quantum"] == 30
    assert set(check["kinds"]) == {"point", "smp_point", "ms_point"}
    assert check["kinds"]["point"]["largest"]["loops"]["difference"] == pytest.approx(7 / 1000)
    assert check["points"] == sum(c["points"] for c in check["kinds"].values()) > 0
