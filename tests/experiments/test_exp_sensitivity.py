"""The sensitivity analysis: each cost halved and doubled, what it changes, and what it may skip.

The checks lean on what the figures must be by construction of the paths, not on their
values: a path the bootstrap side runs once per forwarded call moves the overhead by its
own change; a path only the application processors run moves the forwarded latency but
not the bootstrap side's overhead; a cost no run reads changes nothing, bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from apkern import profiles
from apkern.cli import cli
from apkern.experiments import costs_report, sensitivity
from apkern.experiments.sensitivity import Precision

TINY = Precision("tiny", iterations=40, warmup=200_000, window=600_000, up_window=1_500_000)


@pytest.fixture(scope="module")
def base() -> dict:
    return sensitivity._tracked_task(profiles.DEFAULT, TINY, 0)


def test_the_baseline_reads_the_forwarding_paths_and_not_the_ports(base: dict) -> None:
    reads = set(base["reads"])
    for key in ("bootkernel.SYSCALL_ENTRY", "bootkernel.DRIVER_CONTROL", "appkernel.TRAP_ENTRY", "appkernel.MESSAGE"):
        assert key in reads
    assert not any(k.startswith(("smp.", "master-slave.")) for k in reads)
    assert base["overhead"] > 0 and base["speedup"] > 1 and base["forwarded_gettid"] > base["up_gettid"]


def test_costs_no_run_reads_change_nothing_bit_for_bit(base: dict) -> None:
    """The premise of skipping them: every unread cost tripled at once, and every figure is the same."""
    unread = [k for k, _, _ in profiles.DEFAULT.items() if k not in base["reads"]]
    assert len(unread) > 20
    tripled = profiles.DEFAULT.with_values("unread x3", {k: profiles.DEFAULT.value(k) * 3 + 1 for k in unread})
    r = sensitivity.measure(tripled, TINY)
    assert {k: r[k] for k in sensitivity.METRICS} == {k: base[k] for k in sensitivity.METRICS}
    # and one cost that is read does change them: the check could fail
    read = profiles.DEFAULT.scaled("bootkernel.SYSCALL_EXIT", 3)
    assert sensitivity.measure(read, TINY)["forwarded_gettid"] != base["forwarded_gettid"]


def test_the_ioctl_runs_once_per_forwarded_call_on_the_bootstrap_side(base: dict) -> None:
    """Figure 4: one activation (a driver_control call) per forwarded call: its cost moves the overhead 1:1."""
    value = profiles.DEFAULT.value("bootkernel.DRIVER_CONTROL")
    r = sensitivity._scaled_task("bootkernel.DRIVER_CONTROL", 2.0, profiles.DEFAULT, TINY, 0)
    assert r["overhead"] - base["overhead"] == pytest.approx(value, rel=0.03)
    assert r["forwarded_gettid"] - base["forwarded_gettid"] == pytest.approx(value, rel=0.03)
    assert r["speedup"] < base["speedup"]


def test_an_application_processor_path_moves_the_latency_not_the_bootstrap_overhead(base: dict) -> None:
    """The AP's trap entry: the bootstrap side never runs it. A small change of it can even vanish in the
    latency (the AP waits for the bootstrap thread's next pass either way); a large one shows."""
    value = profiles.DEFAULT.value("appkernel.TRAP_ENTRY")
    for factor in (2.0, 4.0):
        r = sensitivity._scaled_task("appkernel.TRAP_ENTRY", factor, profiles.DEFAULT, TINY, 0)
        assert abs(r["overhead"] - base["overhead"]) < 0.05 * value, factor
        assert r["up_gettid"] == base["up_gettid"]
    assert r["forwarded_gettid"] - base["forwarded_gettid"] >= 3 * value  # 4x: past the slack, once per call


def test_plan_skips_a_factor_that_rounds_to_the_same_value() -> None:
    one = profiles.DEFAULT.with_values("ones", {"appkernel.MASK_UPDATE": 1})
    tasks = sensitivity.plan(one, ["appkernel.MASK_UPDATE", "bootkernel.SYSCALL_ENTRY"])
    assert [args for _, args, _ in tasks] == [
        ("appkernel.MASK_UPDATE", 2.0),
        ("bootkernel.SYSCALL_ENTRY", 0.5),
        ("bootkernel.SYSCALL_ENTRY", 2.0),
    ]


def test_the_ranking_puts_the_larger_effect_first(base: dict) -> None:
    keys = ["appkernel.LIST_OP", "bootkernel.DRIVER_CONTROL", "appkernel.TRAP_ENTRY"]
    results = [
        ("scaled", (k, f), sensitivity._scaled_task(k, f, profiles.DEFAULT, TINY, 0))
        for _, (k, f), _ in sensitivity.plan(profiles.DEFAULT, keys)
    ]
    rep = sensitivity.analyse(profiles.DEFAULT, TINY, {**base, "reads": keys}, results)
    assert [e.key for e in rep.effects][0] == "bootkernel.DRIVER_CONTROL"  # 40 once per call beats 8 a few times
    ranks = [e.rank_key(rep.base) for e in rep.effects]
    assert ranks == sorted(ranks, reverse=True)
    text = sensitivity.format_table(rep)
    assert text.splitlines()[2].split()[1] == "bootkernel.DRIVER_CONTROL"
    d = rep.to_dict()
    json.dumps(d)
    lines = costs_report.sensitivity_lines(d)
    named = sum(e["at"]["2.0"]["overhead"] - d["base"]["overhead"] for e in d["effects"])
    assert f"make up {named:.0f} of the {d['base']['overhead']:.0f}" in "\n".join(lines)


def test_the_linux_profile_predicts_its_own_entry_path_for_the_uniprocessor_getpid() -> None:
    """Out of sample: 1 (int) + entry.S's 16 + 6 + the body's 4 + 16, as counted in the profile's file."""
    oos = sensitivity.out_of_sample(TINY, analyse_costs=False)
    b = profiles.load("linux-2.4").bootkernel
    assert (
        abs(oos["predicted"]["up_getpid"] - (1 + b.SYSCALL_ENTRY + b.SYSCALL_DISPATCH + b.SYS_GETTID + b.SYSCALL_EXIT))
        <= 1
    )
    assert oos["published"] == {"up_getpid": 74, "forwarded_getpid": 860, "ratio": 860 / 74, "overhead": 2000}
    assert oos["predicted"]["ratio"] == oos["predicted"]["forwarded_getpid"] / oos["predicted"]["up_getpid"]


@pytest.mark.parametrize(
    "pred,pub,word", [(100, 110, "match"), (100, 130, "miss: 0.77 of it"), (300, 200, "miss: 1.50 times it")]
)
def test_the_verdict_says_match_within_twenty_percent(pred: float, pub: float, word: str) -> None:
    assert costs_report._verdict(pred, pub).startswith(word)


def test_bench_sensitivity_prints_the_ranked_table(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = ["bootkernel.DRIVER_CONTROL", "appkernel.LIST_OP"]
    real_plan = sensitivity.plan
    monkeypatch.setattr(sensitivity, "QUICK", TINY)
    monkeypatch.setattr(sensitivity, "plan", lambda costs, reads: real_plan(costs, keys))
    r = CliRunner().invoke(cli, ["bench", "sensitivity", "--quick", "--jobs", "1", "--top", "1"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "overhead" in lines[0] and lines[2].split()[:2] == ["1", "bootkernel.DRIVER_CONTROL"]
    assert len(lines) == 4  # --top 1, then the count of unread costs
    r = CliRunner().invoke(cli, ["bench", "sensitivity", "--quick", "--jobs", "1", "--json"])
    d = json.loads(r.output)
    assert d["costs"]["name"] == "xv6" and [e["key"] for e in d["effects"]][0] == "bootkernel.DRIVER_CONTROL"


def test_bench_sensitivity_refuses_a_bad_profile_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[bootkernel]\nSYSCALL_ENTRY = 0\n")
    r = CliRunner().invoke(cli, ["bench", "sensitivity", "--costs", str(bad)])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and "SYSCALL_ENTRY must be a positive whole number" in r.output


def _effect(key: str, value: int, d05: float, d2: float, metric: str = "forwarded_gettid") -> dict:
    base = {"overhead": 400.0, "forwarded_gettid": 500.0, "speedup": 5.0}
    at = {f: dict(base) for f in ("0.5", "2.0")}
    at["0.5"][metric] += d05
    at["2.0"][metric] += d2
    scaled = {"0.5": max(1, int(value * 0.5 + 0.5)), "2.0": 2 * value}
    return {"key": key, "value": value, "origin": "", "scaled": scaled, "at": at}


def test_a_count_per_call_is_given_only_when_halving_and_doubling_agree() -> None:
    base = {"overhead": 400.0, "forwarded_gettid": 500.0, "speedup": 5.0}
    assert costs_report.times_per_call(_effect("a", 40, -20.0, 40.0), base, "forwarded_gettid") == 1.0
    assert costs_report.times_per_call(_effect("b", 30, -45.0, 90.0), base, "forwarded_gettid") == 3.0
    assert costs_report.times_per_call(_effect("c", 34, 0.0, 0.0), base, "forwarded_gettid") == 0.0
    assert costs_report.times_per_call(_effect("d", 70, -6.5, 105.0), base, "forwarded_gettid") is None  # slack
    assert costs_report.times_per_call(_effect("e", 1, 0.0, 2.0), base, "forwarded_gettid") == 2.0  # 1 x 0.5 is 1


def test_the_out_of_sample_text_uses_the_linux_profile_s_own_analysis() -> None:
    base = {"overhead": 400.0, "forwarded_gettid": 500.0, "speedup": 5.0, "up_gettid": 43.0}
    sens = {
        "base": base,
        "point": {"procs": 20},
        "effects": [
            _effect("bootkernel.DRIVER_CONTROL", 64, -32.0, 64.0),
            _effect("appkernel.CONTEXT_SWITCH", 70, -6.5, 105.0),
            {**_effect("bootkernel.CONTEXT_SWITCH", 174, -87.0, 174.0, "overhead")},
        ],
    }
    oos = {
        "sensitivity": sens,
        "same_body": True,
        "counted": ["bootkernel.CONTEXT_SWITCH", "bootkernel.DRIVER_CONTROL"],
        "profile": {"name": "linux-2.4", "overrides": {"bootkernel": {"CONTEXT_SWITCH": 174}}},
        "predicted": {"up_getpid": 43.0, "forwarded_getpid": 500.0, "ratio": 500 / 43, "overhead": 400.0},
        "published": {"up_getpid": 74, "forwarded_getpid": 860, "ratio": 860 / 74, "overhead": 2000},
    }
    own = {"name": "xv6", "up_gettid": 100.4, "forwarded_gettid": 531.3, "overhead": 398.0}
    text = "\n".join(costs_report.out_of_sample_lines(oos, own))
    assert "`bootkernel.DRIVER_CONTROL` 1.0 times at 64" in text and "+360 instructions longer" in text
    assert "`appkernel.CONTEXT_SWITCH`" in text.split("hide in slack")[1]  # not given a count
    more = costs_report.GOODNESS_PER_TASK * 18 * 1.0
    assert f"about {more:.0f} instructions more per forwarded call (1.0 switches each)" in text
    assert f"{more / 1600:.0%} of the gap" in text
    assert "| uniprocessor getpid | 74 (Linux) | 43.0 | miss: 0.58 of it | 100.4 |" in text
