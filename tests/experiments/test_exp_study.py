"""`apkern study` on a tiny configuration: its files, its rows, speedups from times, checks that flag, bad options.

One tiny study (RADIX, find and FFT on 1 and 2 CPUs, every kernel, small inputs; a few
seconds) serves most tests; the mismatch tests re-analyse its runs with one of them
altered, as a kernel that produced other output would leave them.
"""

from __future__ import annotations

import csv
import functools
import json

import pytest

from apkern.cli import main
from apkern.experiments import study as study_mod
from apkern.experiments.report import _other_sections, write_section
from apkern.experiments.study import (
    BASELINE,
    JOURNAL,
    QUICK,
    Sizes,
    Workload,
    analyse,
    bend,
    compare,
    registry_workloads,
    run_one,
    study,
    workloads,
    write_outputs,
)
from apkern.system import KERNELS, ConfigError, System

TINY = Sizes("tiny", radix_keys=1000, lu_n=16, lu_block=4, fft_m=3, entries=40, gzip_bytes=4096, gcc_bytes=256,
             mix_scale=1, threads=4)  # fmt: skip
NAMES = ["radix", "find", "fft"]
CPUS = [1, 2]


def tiny(out, jobs: int = 1):
    return study(out, jobs=jobs, workloads_=NAMES, cpus=CPUS, sizes=TINY)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return out, tiny(out)


def csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def inconsistent(rows) -> list[dict]:
    """Rows whose speedup is not the uniprocessor time over theirs (to the CSV's six digits)."""
    up = {r["workload"]: int(r["instructions"]) for r in rows if (r["kernel"], r["cpus"]) == (BASELINE, "1")}
    return [r for r in rows if abs(float(r["speedup"]) - up[r["workload"]] / int(r["instructions"])) > 1e-5]


def expected_points() -> set[tuple[str, str, int]]:
    """Every workload on the baseline's one CPU and on every other kernel at each CPU count it accepts."""
    out = set()
    for k in KERNELS:
        for n in CPUS if k != BASELINE else [1]:
            try:
                System(kernel=k, cpus=n)
            except ConfigError:
                continue
            out |= {(w, k, n) for w in NAMES}
    return out


def test_every_file_is_written(run) -> None:
    out, summary = run
    for name in ("applications.csv", "study.json", "report.md", *(f"study_{w}.png" for w in NAMES)):
        assert (out / name).stat().st_size > 0, name
    assert (out / "study_radix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "## Applications" in report and "Software: Practice and Experience" in report
    assert "The journal's findings beside ours" in report and "| radix | apkern |" in report
    assert json.loads((out / "study.json").read_text())["checks"] == summary["checks"]


def test_the_csv_has_a_row_per_workload_kernel_and_cpu_count(run) -> None:
    out, summary = run
    rows = csv_rows(out / "applications.csv")
    assert {(r["workload"], r["kernel"], int(r["cpus"])) for r in rows} == expected_points()
    assert len(rows) == len(expected_points())
    assert [r["workload"] for r in rows] == sorted((r["workload"] for r in rows), key=NAMES.index)
    assert {s["kernel"] for s in summary["skipped"]} <= set(KERNELS) - {BASELINE}  # e.g. apkern on one CPU


def test_speedups_are_the_uniprocessor_time_over_the_time(run) -> None:
    out, _ = run
    rows = csv_rows(out / "applications.csv")
    assert inconsistent(rows) == []
    assert all(float(r["speedup"]) == 1 for r in rows if r["kernel"] == BASELINE)
    rows[1]["speedup"] = str(float(rows[1]["speedup"]) * 1.01)  # the check can fail
    assert inconsistent(rows) == [rows[1]]


def test_every_run_checks_itself_and_matches_the_uniprocessor(run) -> None:
    out, summary = run
    rows = csv_rows(out / "applications.csv")
    assert {r["check"] for r in rows} == {"ok"} and {r["exit_status"] for r in rows} == {"0"}
    assert {r["same_output_as_up"] for r in rows} == {"True"}
    for w in NAMES:
        assert len({r["output_digest"] for r in rows if r["workload"] == w}) == 1
    assert len({r["output_digest"] for r in rows}) == len(NAMES)
    assert summary["checks"] == {"runs": len(rows), "ok": len(rows), "flagged": []}
    assert f"All {len(rows)} runs pass both." in (out / "report.md").read_text()


def test_the_files_depend_on_the_options_not_on_jobs(run, tmp_path) -> None:
    out, _ = run
    tiny(tmp_path, jobs=2)
    for name in ("applications.csv", "study.json", "report.md"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def _raw(summary) -> list:
    keep = ("workload", "kernel", "cpus", "instructions", "syscalls", "bsp_load", "spin_share", "exit_status")
    return [("run", (), {**{k: r[k] for k in keep}, "self_check": r["self_check"], "digest": r["digest"]})
            for r in summary["rows"]]  # fmt: skip


def test_a_mismatch_with_the_uniprocessor_is_flagged(run, tmp_path) -> None:
    _, summary = run
    raw = _raw(summary)
    assert analyse(raw, NAMES)["checks"]["flagged"] == []  # the runs as they were
    victim = next(r for _, _, r in raw if r["workload"] == "find" and r["kernel"] != BASELINE)
    victim["digest"] = "0" * 64  # a kernel whose run showed something else
    s = analyse(raw, NAMES)
    s["config"] = summary["config"]
    write_outputs(tmp_path, s)
    bad = [r for r in csv_rows(tmp_path / "applications.csv") if r["check"] != "ok"]
    assert [(r["workload"], r["kernel"], r["cpus"], r["same_output_as_up"]) for r in bad] == [
        ("find", victim["kernel"], str(victim["cpus"]), "False")
    ]
    assert bad[0]["check"].startswith("MISMATCH")
    report = (tmp_path / "report.md").read_text()
    where = f"find on {victim['kernel']} ({victim['cpus']} CPUs): MISMATCH"
    assert f"**flagged**: {where}" in report  # in the checks
    assert f"**{victim['cpus']}: MISMATCH" in report  # and in the speedup table's row


def test_a_failed_self_check_is_flagged(run) -> None:
    _, summary = run
    raw = _raw(summary)
    raw[0][2]["self_check"] = "exit status 1"
    s = analyse(raw, NAMES)
    assert s["rows"][0]["check"] == "FAILED: exit status 1" and len(s["checks"]["flagged"]) == 1


def test_a_workload_whose_own_check_fails_is_caught() -> None:
    mk = ("mktree", "/t", "20", "1")
    wrong = Workload("find", ("find", "-verify", "/t.manifest", "/t/missing"), (mk,))
    r = run_one(wrong, "up", 1, 0)
    assert r["exit_status"] != 0 and r["self_check"].startswith(f"exit status {r['exit_status']}")


def test_a_run_that_crashes_is_a_flagged_failure_not_the_end_of_the_study(monkeypatch) -> None:
    real = System.run

    def run(self, until=None, limit=10**10):
        if self.now > 0:  # the warm-up ran: this is the timed run
            raise RuntimeError("a kernel bug")
        return real(self, until, limit)

    monkeypatch.setattr(System, "run", run)
    r = run_one(workloads(TINY)["radix"], "up", 1, 0)
    assert r["self_check"] == "crashed: RuntimeError: a kernel bug"


def test_ffts_output_is_checked_against_a_reference() -> None:
    w = workloads(TINY)["fft"]
    sim = System()
    study_mod._install(sim, ())
    assert study_mod._fft_check(sim, w.argv) == "no /fft.out"
    p = sim.spawn("fft", list(w.argv))
    sim.run()
    assert p.exit_status == 0 and study_mod._fft_check(sim, w.argv) is None
    data = bytearray(sim.fs.read_file("/fft.out"))
    data[7] ^= 0x40  # the first real part's exponent (little-endian: its top byte)
    sim.fs.write_file("/fft.out", bytes(data))
    assert study_mod._fft_check(sim, w.argv).startswith("differs from the reference FFT")


def test_the_study_covers_every_workload_of_the_registry() -> None:
    assert set(workloads(QUICK)) == set(registry_workloads())


def test_bend_is_where_a_curve_stops_rising() -> None:
    assert bend({1: 1.0, 2: 1.8, 3: 1.81, 4: 1.82}) == 2
    assert bend({2: 1.0, 4: 2.0, 8: 3.0}) == 8
    assert bend({1: 1.0, 2: 0.8, 3: 0.8}) == 1


def test_the_comparison_is_computed_from_the_data() -> None:
    """A made-up result where apkern beats SMP on RADIX is reported as such, and the journal's shape as not held."""
    curve = {1: 1.0, 8: 7.0}
    radix = next(f for f in JOURNAL if f.workloads == ("radix",))
    curves = {"radix": {"apkern": {"points": curve, "peak": 7.0, "peak_cpus": 8, "bend": 8},
                        "smp": {"points": {1: 1.0, 8: 5.0}, "peak": 5.0, "peak_cpus": 8, "bend": 8}}}  # fmt: skip
    c = compare(radix, curves)
    assert c["journal_ahead"] == "smp"
    (e,) = c["ours"]
    assert e["ahead"] == "apkern" and e["apkern_position"] == "above" and e["smp_position"] == "below"
    summary = {"journal": [c]}
    assert "not for radix (apkern ahead)" in study_mod._shape_sentence(summary)


def test_the_section_replaces_itself_and_keeps_the_rest(tmp_path) -> None:
    path = tmp_path / "report.md"
    path.write_text("# apkern: the paper's section 5, reproduced\n\ntext\n")
    write_section(path, "applications", ["one"])
    write_section(path, "applications", ["two"])
    text = path.read_text()
    assert text.startswith("# apkern: the paper's section 5") and "two" in text and "one" not in text
    assert text.count("section applications: begin") == 1
    assert "two" in _other_sections(path) and "section 5" not in _other_sections(path)  # what a rewrite keeps


def call(capsys, *argv: str) -> tuple[int, str, str]:
    """`apkern ARGV...` in process: (exit status, stdout, stderr)."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_runs_the_study(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(study_mod, "study", functools.partial(study, workloads_=["radix"], cpus=[1, 2], sizes=TINY))
    code, out, err = call(capsys, "study", "--out", str(tmp_path / "o"), "--jobs", "1")
    assert code == 0, err
    assert "applications.csv" in out and "checks: " in out and (tmp_path / "o" / "study_radix.png").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--jobs", "0"], "--jobs"),
        (["--out", "{file}"], "--out"),
        (["--out", "{file}/sub"], "cannot write into"),
        (["--jobs", "x"], "jobs"),
    ],
)
def test_cli_bad_options_are_one_line_and_status_2(capsys, tmp_path, args, words) -> None:
    file = tmp_path / "file"
    file.write_text("")
    code, out, err = call(capsys, "study", *(a.format(file=file) for a in args))
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("apkern: error:") and words in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing made, nothing run


def test_a_study_run_again_takes_every_run_from_the_cache(run, monkeypatch) -> None:
    """Each run's result went into OUT/cache: run again, nothing is simulated and the files are the same."""
    out, first = run
    before = {name: (out / name).read_bytes() for name in ("applications.csv", "study.json")}

    def no_run(*args, **kw):
        raise AssertionError("a run ran although its result was in the cache")

    monkeypatch.setattr(study_mod, "run_one", no_run)
    again = tiny(out)
    assert first["cache"]["cached"] == 0
    assert again["cache"]["cached"] == again["cache"]["runs"] == first["cache"]["runs"] > 0
    assert {name: (out / name).read_bytes() for name in before} == before
