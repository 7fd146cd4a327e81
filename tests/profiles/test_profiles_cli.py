"""--costs on every command that builds systems: it is used, it is recorded, and a bad one is one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from apkern.cli import cli

COMMANDS = [
    ["run", "hello"],
    ["compare", "hello", "--cpus", "1,2"],
    ["bench", "latency"],
    ["bench", "throughput", "--syscall-instr", "151", "--user-pct", "95"],
    ["bench", "extensions"],
    ["bench", "balance"],
    ["bench", "sensitivity"],
    ["reproduce"],
    ["study"],
    ["replay", "find"],
    ["predict", "find"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize("bad", ["nope", "zero.toml", "broken.toml"])
def test_a_bad_profile_is_one_line_and_exit_status_2_on_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], bad: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zero.toml").write_text("[appkernel]\nLIST_OP = 0\n")
    (tmp_path / "broken.toml").write_text("[appkernel\n")
    r = CliRunner().invoke(cli, [*argv, "--costs", bad])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("apkern: error: --costs: ") and r.output.count("\n") == 1, r.output
    assert not (tmp_path / "results").exists()  # refused before any work


def test_run_uses_the_profile_and_its_json_records_it() -> None:
    runs = {}
    for costs in ("xv6", "linux-2.4"):
        r = CliRunner().invoke(cli, ["run", "gettid", "20", "--costs", costs, "--json"])
        assert r.exit_code == 0, r.output
        runs[costs] = json.loads(r.output)
    assert runs["xv6"]["stats"]["costs"] == {"name": "xv6", "file": None, "overrides": {}}
    linux = runs["linux-2.4"]["stats"]["costs"]
    assert linux["name"] == "linux-2.4" and linux["file"] == "linux-2.4.toml"
    assert linux["overrides"]["bootkernel"]["SYSCALL_ENTRY"] == 16
    r = CliRunner().invoke(
        cli, ["replay", "find", "--kernel", "apkern", "--cpus", "2", "--costs", "linux-2.4", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["costs"]["name"] == "linux-2.4"
    means = {k: float(re.search(r"mean ([0-9.]+)", v["console"]).group(1)) for k, v in runs.items()}
    assert abs(means["linux-2.4"] - (1 + 16 + 6 + 4 + 16)) <= 1 and abs(means["xv6"] - 100) <= 1


def test_a_user_profile_file_reaches_the_bench_and_its_json(tmp_path: Path) -> None:
    mine = tmp_path / "mykernel.toml"
    mine.write_text('name = "mykernel"\n[bootkernel]\nSYS_GETTID = { value = 510, source = "measured by me" }\n')
    r = CliRunner().invoke(
        cli, ["bench", "latency", "--kernel", "up", "--iterations", "20", "--costs", str(mine), "--json"]
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    overrides = {"bootkernel": {"SYS_GETTID": 510}, "appkernel": {"LOCAL_BODY": 510}}  # the AP's local gettid follows
    assert d["costs"] == {"name": "mykernel", "file": str(mine), "overrides": overrides}
    assert d["mean_instructions"] == pytest.approx(600, abs=3)  # 100 - 10 + 510, and a timer tick among the calls


def test_apkern_costs_shows_values_and_sources() -> None:
    r = CliRunner().invoke(cli, ["costs", "linux-2.4", "--json"])
    d = json.loads(r.output)
    by = {c["cost"]: c for c in d["costs"]}
    assert by["bootkernel.SYSCALL_ENTRY"]["value"] == 16 and by["bootkernel.SYSCALL_ENTRY"]["default"] == 34
    assert "entry.S" in by["bootkernel.SYSCALL_ENTRY"]["source"]
    r = CliRunner().invoke(cli, ["costs", "--all"])
    lines = r.output.splitlines()
    assert lines[1] == "calibrated: gettid = 100 instructions" and len(lines) == 2 + 88
    assert CliRunner().invoke(cli, ["costs", "linux-9"]).exit_code == 2
