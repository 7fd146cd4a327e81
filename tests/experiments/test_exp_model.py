"""The capacity model and `apkern model`."""

from __future__ import annotations

import json

import pytest

from apkern.cli import main
from apkern.experiments.model import capacity, predicted_speedup


def test_paper_worked_example() -> None:
    c = capacity(ipsc=1000, interval=15000, opsc=2000, ips=100e6)
    assert c.max_calls_per_second == pytest.approx(33_333.33, rel=1e-6)
    assert c.max_speedup == pytest.approx(5.0)
    assert predicted_speedup(15000, 1000, 2000) == pytest.approx(5.0)


@pytest.mark.parametrize("bad", [dict(ipsc=-1), dict(interval=0), dict(opsc=-5), dict(ips=0)])
def test_model_rejects_impossible_input(bad) -> None:
    args = dict(ipsc=1000, interval=15000, opsc=2000, ips=100e6) | bad
    with pytest.raises(ValueError):
        capacity(**args)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(argv))
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_model_paper_example(capsys) -> None:
    code, out, _ = run(
        capsys, "model", "--ipsc", "1000", "--interval", "15000", "--opsc", "2000", "--ips", "100000000", "--json"
    )
    assert code == 0
    d = json.loads(out)
    assert round(d["max_calls_per_second"]) == 33333 and d["max_speedup"] == pytest.approx(5.0)


def test_cli_model_without_overhead_needs_a_reproduction(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.json").write_text(json.dumps({"derived_overhead": 700.0}))
    monkeypatch.chdir(tmp_path)  # a results folder in the working directory is not taken silently
    code, out, err = run(capsys, "model", "--ipsc", "1000", "--interval", "15000")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--from DIR" in err
    code, out, err = run(capsys, "model", "--ipsc", "1000", "--interval", "15000", "--from", str(tmp_path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "apkern reproduce" in err
    (tmp_path / "summary.json").write_text(json.dumps({"derived_overhead": 500.0}))
    code, out, _ = run(capsys, "model", "--ipsc", "1000", "--interval", "15000", "--from", str(tmp_path), "--json")
    d = json.loads(out)
    assert d["opsc"] == 500.0 and d["max_speedup"] == pytest.approx(10.0)
