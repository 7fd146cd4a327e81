"""`apkern bench balance`: the paper's one ready queue against a queue per AP, measured on the throughput benchmark."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from apkern.cli import cli
from apkern.experiments import balance


@pytest.fixture(scope="module")
def points() -> list[dict]:
    result = CliRunner().invoke(cli, ["bench", "balance", "--cpus", "8", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _at(points: list[dict], k: int, cpus: int, queues: str) -> dict:
    (pt,) = [p for p in points if p["syscall_instr"] == k and p["cpus"] == cpus and p["queues"] == queues]
    return pt


def test_every_point_is_measured_with_both_queues(points: list[dict]) -> None:
    assert len(points) == len(balance.POINTS) * 2
    for pt in points:
        assert pt["forwarded_calls"] > 0 and pt["loops"] > 0 and pt["speedup"] > 1
        assert pt["calls_per_second"] == pt["forwarded_calls"] * 100_000_000 / pt["window_instructions"]


def test_per_ap_queues_take_the_spinning_off_the_short_call_point(points: list[dict]) -> None:
    """(Its growth with the machine's size is `bench extensions`' test: 8 against 16 CPUs.)"""
    g, b = _at(points, 151, 8, "global"), _at(points, 151, 8, "per-AP")
    assert g["spin_per_call"] > 20 and b["spin_per_call"] < g["spin_per_call"] / 10
    assert g["lock_contended_per_call"] > 1 and b["lock_contended_per_call"] < 0.1
    assert b["lock_acquisitions_per_call"] < g["lock_acquisitions_per_call"]  # no AP takes it to find nothing
    assert b["handoffs_per_call"] == pytest.approx(1.0, abs=0.01)  # each activation wakes one idle AP
    assert g["steals_per_call"] == g["handoffs_per_call"] == 0
    # the bootstrap processor bounds this point; the activation's placement costs it a few instructions
    assert 0 < b["bsp_instructions_per_call"] - g["bsp_instructions_per_call"] < 30
    assert b["calls_per_second"] == pytest.approx(g["calls_per_second"], rel=0.05)


def test_the_table_names_its_columns() -> None:
    pt = balance.measure_point(151, 95.0, 3, "per-AP", 100_000, 300_000)
    text = balance.format_table([pt])
    assert "spin/call" in text.splitlines()[0] and "per-AP" in text.splitlines()[1]


def test_a_point_is_deterministic() -> None:
    a = balance.measure_point(151, 95.0, 4, "per-AP", 100_000, 300_000, seed=3)
    b = balance.measure_point(151, 95.0, 4, "per-AP", 100_000, 300_000, seed=3)
    assert a == b


@pytest.mark.parametrize("arg", ["1,8", "x", ""])
def test_bad_machine_sizes_are_usage_errors(arg: str) -> None:
    result = CliRunner().invoke(cli, ["bench", "balance", "--cpus", arg])
    assert result.exit_code == 2 and "--cpus" in result.output
