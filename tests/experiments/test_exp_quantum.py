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


def test_a_quantum_decouples_every_point_and_twins_a_sample_with_exact_runs() -> None:
    exact = reproduce.plan(reproduce.QUICK, wide=True)
    tasks = reproduce.plan(reproduce.QUICK, wide=True, quantum=100)
    grid_exact = {(k, a[:-1]) for k, a, _ in exact if k in reproduce.GRID_KINDS}
    decoupled = {(k, a[:-1]) for k, a, _ in tasks if k in reproduce.GRID_KINDS and a[-1] == 100}
    twins = [(k, a[:-1]) for k, a, _ in tasks if k in reproduce.GRID_KINDS and a[-1] == 0]
    assert decoupled == grid_exact  # the same points, decoupled
    multi = [(k, a) for k, a in decoupled if a[2] > 1 and a[5] == 0]
    assert len(twins) == -(-len(multi) // reproduce.CHECK_EVERY) and set(twins) <= set(multi)
    assert {k for k, _ in twins} == {"point", "smp_point", "ms_point", "wide_point"}  # every kernel, wide too
    others = [t for t in tasks if t[0] not in reproduce.GRID_KINDS]
    assert others == [t for t in exact if t[0] not in reproduce.GRID_KINDS]  # latency etc. as before


def _twinned(results: list, quantum: int, moved: float) -> list:
    """`results` as decoupled points, the first three also as exact twins whose loops differ by `moved`."""
    out = [(kind, (*args, quantum), r) for kind, args, r in results]
    for i, (kind, args, r) in enumerate(results[:3]):
        out.append((kind, (*args, 0), {**r, "loops": round(r["loops"] * (1 + moved * (i + 1)))}))
    return out


def test_the_check_finds_the_largest_difference_and_where() -> None:
    results = _twinned(grid(), 100, 0.01)
    check = reproduce.engine_check(results, 100)
    assert check["quantum"] == 100 and check["points"] == 3
    loops = check["largest"]["loops"]
    third = results[2]
    assert loops["args"] == list(third[1][:-1]) and loops["kind"] == third[0]
    a = third[2]["loops"]
    assert loops["difference"] == pytest.approx(abs(a - round(a * 1.03)) / max(a, round(a * 1.03)))
    assert check["largest"]["forwarded_calls"]["difference"] == 0.0  # only the loops were moved
    assert reproduce.engine_check(results, 0) is None
    assert reproduce.engine_check([(k, (*a, 100), r) for k, a, r in grid()], 100) is None  # no twins


def test_the_report_names_the_engine_and_what_the_quantum_moved(tmp_path) -> None:
    points = grid()
    s = reproduce.analyse(points)
    s["config"] = {"precision": "synthetic", "seed": 0, "procs": 20, "jobs": 1, "agreement": reproduce.AGREEMENT}
    s["wall_seconds"] = 0.0
    s["engine"] = {"quantum": 0, "check": None}
    write_report(s, tmp_path / "report.md")
    assert "Engine: exact." in (tmp_path / "report.md").read_text()
    s["engine"] = {"quantum": 250, "check": reproduce.engine_check(_twinned(points, 250, 0.02), 250)}
    write_report(s, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "temporal decoupling, quantum 250 instructions" in text
    line = next(x for x in text.splitlines() if x.startswith("3 points of the grid also ran exact"))
    assert f"loops (the speedup) {100 * s['engine']['check']['largest']['loops']['difference']:.2f}%" in line
    assert "noise of one run of the grid" in line


@pytest.mark.parametrize("bad", [-1, reproduce.MAX_QUANTUM + 1, True])
def test_reproduce_refuses_a_bad_quantum_before_running(tmp_path, bad: object) -> None:
    with pytest.raises(ConfigError, match="quantum"):
        reproduce.reproduce(tmp_path / "out", quick=True, quantum=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()
