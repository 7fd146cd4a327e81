"""`apkern bench extensions`: each figure is measured, and each extension buys what it should."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from apkern.cli import cli


@pytest.fixture(scope="module")
def report() -> dict:
    result = CliRunner().invoke(cli, ["bench", "extensions", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _row(report: dict, start: str) -> dict:
    (row,) = [r for r in report["rows"] if r["measure"].startswith(start)]
    return row


def test_a_local_gettid_costs_what_the_uniprocessor_one_does(report: dict) -> None:
    row = _row(report, "gettid latency")
    up = float(row["note"].split(": ")[1])
    assert row["on"] == pytest.approx(up, abs=1.0)
    assert row["off"] > 4 * row["on"]


def test_serving_getpid_on_the_aps_takes_load_off_the_bootstrap_processor(report: dict) -> None:
    speed = _row(report, "loop K=151 P=95% + 2 getpid per loop, 8 CPUs: speedup")
    calls = _row(report, "loop K=151 P=95% + 2 getpid per loop, 8 CPUs: forwarded calls per loop")
    assert calls["off"] == pytest.approx(3.0, abs=0.05) and calls["on"] == pytest.approx(1.0, abs=0.05)
    assert speed["on"] > 1.5 * speed["off"]


def test_the_shootdown_keeps_the_workload_right_and_its_cost_is_counted(report: dict) -> None:
    statuses = _row(report, "memory pressure")
    assert statuses["on"] == "statuses [0, 0, 0, 0]" and statuses["off"] != statuses["on"]
    assert "stale translation" in statuses["note"]
    sd = report["shootdown"]
    assert sd["pages_evicted"] > 0 and sd["shootdowns_per_eviction"] == 1.0
    assert 0 < sd["ipis_per_shootdown"] <= 3  # at most the APs of a 4-CPU machine
    assert sd["bsp_instructions_per_shootdown"] > 0 and sd["ap_instructions_per_ipi"] > 1024  # parked for the copy


def test_placement_is_measured_for_both_mixes(report: dict) -> None:
    rows = [r for r in report["rows"] if r["extension"] == "placement"]
    assert len(rows) == 6 and all(r["off"] > 0 and r["on"] > 0 for r in rows)
    short = {int(r["measure"].split(" on ")[1].split()[0]): r for r in rows if r["measure"].startswith("short")}
    # short kernel-bound calls: forwarding costs them more than the bootstrap processor's own time does
    assert short[8]["on"] > short[8]["off"]


def test_per_ap_queues_end_the_lock_storm_of_the_single_queue(report: dict) -> None:
    """With one queue every idle AP races for the lock whenever a thread is made ready: the more APs, the worse."""
    spin = {c: _row(report, f"loop K=151 P=95%, {c} CPUs: lock spinning") for c in (8, 16)}
    acq = {c: _row(report, f"loop K=151 P=95%, {c} CPUs: lock acquisitions") for c in (8, 16)}
    assert spin[16]["off"] > 5 * spin[8]["off"] > 0  # the single queue's spinning grows with the idle APs
    assert spin[8]["on"] < 1 and spin[16]["on"] < 1
    first = {c: float(acq[c][side].split()[0]) for c in (8, 16) for side in ("on",)}
    assert first[8] == first[16] == pytest.approx(5.0, abs=0.1)  # per-AP: the same few per call, whatever the size
    calls = {c: _row(report, f"loop K=151 P=95%, {c} CPUs: forwarded calls") for c in (8, 16)}
    for c in (8, 16):  # the bootstrap processor bounds this point: the throughput moves by the placement's cost only
        assert calls[c]["on"] == pytest.approx(calls[c]["off"], rel=0.05)


def test_migration_finds_the_better_placement_without_being_told(report: dict) -> None:
    """The policy moves the short-call loops home and leaves the long-call ones on the APs: on each mix
    it comes near the better fixed choice, which is a different one for the two mixes."""
    mixes = report["mixes"]
    assert len(mixes) == 6 and {m["cpus"] for m in mixes} == {2, 4, 8}
    for m in mixes:
        best = max(m["ap_speedup"], m["static_speedup"])
        assert m["auto_speedup"] >= 0.9 * best, m
        if m["mix"] == "the issue's mix":  # long calls, 18,040 user instructions between them: nobody moves
            assert m["static_speedup"] < m["ap_speedup"] and m["migrations_home"] == 0
        else:  # 8 user instructions between calls: the four short-call loops go home
            assert m["migrations_home"] >= 4
            if m["cpus"] >= 4:
                assert m["auto_speedup"] > 1.1 * m["ap_speedup"]
    rows = [r for r in report["rows"] if r["extension"] == "migration" and "speedup over up" in r["measure"]]
    assert [(r["off"], r["on"]) for r in rows] == [(m["ap_speedup"], m["auto_speedup"]) for m in mixes]


def test_migration_leaves_compute_bound_loops_alone_and_takes_kernel_bound_ones_home(report: dict) -> None:
    stay = _row(report, "loop K=151 P=95% (2869 user instructions per call)")
    home = _row(report, "loop K=151 P=50% (151 user instructions per call)")
    assert stay["extension"] == home["extension"] == "migration"
    assert stay["on"] == pytest.approx(stay["off"], rel=0.01) and stay["note"].endswith("1.00 / 1.00")
    assert home["on"] > 1.3 * home["off"] and home["note"].endswith(" / 0.00")  # nothing forwarded once home
