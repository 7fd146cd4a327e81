"""The `apkern` command: in process through `apkern.cli.main`, and a few runs of the installed script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from apkern.cli import main
from apkern.workloads.programs import PROGRAMS, USAGE

SCRIPT = Path(sys.executable).parent / "apkern"


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `apkern ARGS...` in process: (exit status, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def assert_usage_error(code: int, out: str, err: str) -> None:
    assert code == 2
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("apkern: error:")
    assert len(lines[0]) > len("apkern: error: ")


def test_run_hello(capsys) -> None:
    assert call(capsys, "run", "hello") == (0, "hello, world\n", "")


def test_run_segv_exits_128_plus_sigsegv(capsys) -> None:
    code, out, err = call(capsys, "run", "segv")
    assert code == 128 + 11
    assert out == "segv: touching 0x10\n"


def test_run_illegal_exits_128_plus_sigill(capsys) -> None:
    code, _, _ = call(capsys, "run", "illegal")
    assert code == 128 + 4


def test_run_passes_arguments_and_program_status(capsys) -> None:
    code, out, _ = call(capsys, "run", "threads", "3")
    assert (code, out) == (0, "threads: 3 threads joined, sum 14\n")
    code, out, err = call(capsys, "run", "cat", "/missing")
    assert code == 1
    assert "cat: /missing: No such file or directory" in err
    assert out == ""


def test_run_with_a_host_file(capsys, tmp_path: Path) -> None:
    host = tmp_path / "in.txt"
    host.write_bytes(b"one two three\nfour\n")
    code, out, _ = call(capsys, "run", "wc", "/in.txt", "--file", f"/in.txt={host}")
    assert (code, out) == (0, "2 4 19 /in.txt\n")
    code, out, _ = call(capsys, "run", "--file", f"/data/x={host}", "cat", "/data/x")
    assert (code, out) == (0, "one two three\nfour\n")


def test_run_json(capsys) -> None:
    code, out, err = call(capsys, "run", "hello", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["program"] == "hello" and doc["exit_status"] == 0
    assert doc["console"] == "hello, world\n"
    assert doc["stats"]["kernel"] == "up" and doc["stats"]["syscalls"] >= 2


def test_run_json_of_a_killed_program(capsys) -> None:
    code, out, _ = call(capsys, "run", "segv", "--json")
    assert code == 139
    assert json.loads(out)["exit_status"] == -11


@pytest.mark.parametrize(
    "args",
    [
        ("run", "nosuch"),
        ("run", "hello", "--cpus", "0"),
        ("run", "hello", "--cpus", "65"),
        ("run", "hello", "--cpus", "-2"),
        ("run", "hello", "--cpus", "four"),
        ("run", "hello", "--kernel", "linux"),
        ("run", "hello", "--kernel", "apkern", "--cpus", "1"),
        ("run", "hello", "--seed", "x"),
        ("run",),
        ("run", "cat", "/x", "--file", "no-equals-sign"),
        ("run", "cat", "/x", "--file", f"relative={__file__}"),
        ("run", "cat", "/x", "--file", "/x=/definitely/not/here"),
        ("run", "cat", "/dev/x", "--file", f"/dev/x={__file__}"),
        ("run", "cat", "/bin", "--file", f"/={__file__}"),
        ("bench", "latency", "--iterations", "0"),
        ("bench", "latency", "--iterations", "-5"),
        ("bench", "latency", "--iterations", "x"),
        ("bench", "latency", "--cpus", "0"),
        ("bench", "nosuch"),
        ("frobnicate",),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_status_2(capsys, args: tuple[str, ...]) -> None:
    assert_usage_error(*call(capsys, *args))


def test_no_arguments_shows_help_and_fails(capsys) -> None:
    code, out, err = call(capsys)
    assert code == 2
    assert "Traceback" not in out + err
    assert "run" in err and "bench" in err


def test_help_and_version(capsys) -> None:
    code, out, _ = call(capsys, "--help")
    assert code == 0 and "run" in out and "programs" in out
    code, out, _ = call(capsys, "--version")
    assert code == 0 and "0.1.0" in out


def test_programs_lists_every_program(capsys) -> None:
    code, out, err = call(capsys, "programs")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == len(PROGRAMS)
    for name, line in zip(PROGRAMS, lines, strict=True):
        assert line.split()[0] == name
        assert line.startswith(USAGE[name])


def test_bench_latency_json(capsys) -> None:
    code, out, err = call(capsys, "bench", "latency", "--kernel", "up", "--iterations", "40", "--json")
    assert code == 0 and err == ""
    r = json.loads(out)
    assert (r["kernel"], r["cpus"], r["iterations"]) == ("up", 1, 40)
    assert 80 <= r["mean_instructions"] <= 150
    assert r["min_instructions"] <= r["mean_instructions"] <= r["max_instructions"]
    assert r["breakdown"] and all(v >= 0 for v in r["breakdown"].values())
    assert sum(r["breakdown"].values()) == pytest.approx(r["mean_instructions"], abs=1e-6)
    # the program's own inspection-point figure agrees with the trace-derived one
    assert r["program_mean"] == pytest.approx(r["mean_instructions"], abs=0.01)


def test_bench_latency_text(capsys) -> None:
    code, out, _ = call(capsys, "bench", "latency", "--iterations", "10")
    assert code == 0
    first, *stages = out.splitlines()
    assert first.startswith("gettid latency, kernel up, 1 CPU(s), 10 calls: mean ")
    assert stages and all(len(s.split()) >= 2 for s in stages)


def test_bench_latency_is_deterministic(capsys) -> None:
    runs = [call(capsys, "bench", "latency", "--iterations", "20", "--json")[1] for _ in range(2)]
    assert runs[0] == runs[1]


def test_run_trace_writes_chrome_trace_json(capsys, tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    code, out, err = call(capsys, "run", "hello", "--trace", str(trace))
    assert (code, out) == (0, "hello, world\n")
    assert "Traceback" not in err
    doc = json.loads(trace.read_text())
    events = doc["traceEvents"]
    assert events and all("ph" in e for e in events)
    assert any(e["ph"] != "M" for e in events)  # more than metadata: the run itself


def test_run_trace_to_an_unwritable_place_is_a_usage_error(capsys, tmp_path: Path) -> None:
    assert_usage_error(*call(capsys, "run", "hello", "--trace", str(tmp_path / "no" / "such" / "dir" / "t.json")))


def test_run_program_errors_go_to_stderr(capsys) -> None:
    code, out, err = call(capsys, "run", "pagetouch", "-1")
    assert code == 2
    assert err == f"usage: {USAGE['pagetouch']}\n"
    assert out == ""


# --- the installed script --------------------------------------------------------------------


def script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_script_run_hello_and_segv() -> None:
    r = script("run", "hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello, world\n", "")
    r = script("run", "segv")
    assert r.returncode == 139 and r.stdout == "segv: touching 0x10\n"


def test_script_bad_input() -> None:
    for args in (("run", "nosuch"), ("run", "hello", "--cpus", "0"), ("frobnicate",)):
        r = script(*args)
        assert_usage_error(r.returncode, r.stdout, r.stderr)


def test_bench_throughput_with_local_calls_forwards_only_the_spin(capsys) -> None:
    args = ["bench", "throughput", "--syscall-instr", "151", "--user-pct", "95", "--cpus", "3", "--getpids", "2"]
    args += ["--warmup", "100000", "--window", "300000", "--json"]
    code, out, _ = call(capsys, *args)
    off = json.loads(out)
    code2, out2, _ = call(capsys, *args, "--ext", "local_calls")
    on = json.loads(out2)
    assert code == code2 == 0
    assert off["forwarded_calls"] >= 3 * off["loops"] - 20  # the spin and both getpids
    assert on["forwarded_calls"] <= on["loops"] + 20  # the spin only
    bad = ["bench", "throughput", "--syscall-instr", "151", "--user-pct", "95", "--cpus", "1", "--ext", "local_calls"]
    assert_usage_error(*call(capsys, *bad))


def test_run_and_bench_throughput_with_balance(capsys) -> None:
    run = ["run", "threads", "5", "--kernel", "apkern", "--cpus", "3", "--ext", "balance", "--json"]
    code, out, _ = call(capsys, *run)
    assert code == 0
    stats = json.loads(out)["stats"]
    assert stats.get("balance_handoffs", 0) > 0
    args = ["bench", "throughput", "--syscall-instr", "151", "--user-pct", "95", "--cpus", "4"]
    args += ["--warmup", "100000", "--window", "300000", "--json", "--ext", "local_calls,balance"]
    code, out, _ = call(capsys, *args)
    assert code == 0 and json.loads(out)["forwarded_calls"] > 0


def test_bench_throughput_decoupled_says_so_and_keeps_its_baseline_exact(capsys) -> None:
    args = ["bench", "throughput", "--syscall-instr", "151", "--user-pct", "95", "--cpus", "4"]
    args += ["--warmup", "100000", "--window", "300000"]
    exact = json.loads(call(capsys, *args, "--json")[1])
    code, out, _ = call(capsys, *args, "--json", "--quantum", "30")
    decoupled = json.loads(out)
    assert code == 0 and (exact["quantum"], decoupled["quantum"]) == (0, 30)
    # the same one-CPU baseline: speedup over it is loops over the same number
    assert exact["speedup"] / exact["loops"] == pytest.approx(decoupled["speedup"] / decoupled["loops"])
    code, out, _ = call(capsys, *args, "--quantum", "30")
    assert code == 0 and out.rstrip().endswith("(decoupled, quantum 30)")
    assert "decoupled" not in call(capsys, *args)[1]
    assert_usage_error(*call(capsys, *args, "--quantum", "31"))


def test_run_with_placement_auto_moves_a_kernel_bound_program_home(capsys) -> None:
    args = ["run", "gettid", "40", "--kernel", "apkern", "--cpus", "3", "--json"]
    code, out, _ = call(capsys, *args, "--ext", "migration", "--placement", "auto")
    auto = json.loads(out)
    code2, out2, _ = call(capsys, *args)
    ap = json.loads(out2)
    assert code == code2 == 0 and auto["console"].startswith("gettid: 40 calls")
    assert auto["stats"]["migrations_home"] == 1 and ap["stats"]["migrations_home"] == 0
    assert auto["stats"]["forwarded_calls"] < ap["stats"]["forwarded_calls"] / 2
    assert_usage_error(*call(capsys, *args, "--placement", "auto"))  # without the extension
    assert_usage_error(*call(capsys, *args, "--placement", "sideways"))


def test_bench_throughput_on_the_smp_port(capsys) -> None:
    args = ["bench", "throughput", "--syscall-instr", "151", "--user-pct", "95", "--cpus", "4", "--kernel", "smp"]
    code, out, err = call(capsys, *args, "--window", "400000", "--warmup", "200000", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["kernel"] == "smp" and d["forwarded_calls"] == 0 and d["loops"] > 0
    assert 3 < d["speedup"] <= d["ideal_bound"] * 1.05  # every CPU runs user code under the port
    assert 0 <= d["lock_spin_share"] < 0.5
    code, out, _ = call(capsys, *args, "--window", "400000", "--warmup", "200000")
    assert code == 0 and "lock spin" in out and "kernel instructions per call" in out
    bad = args + ["--ext", "local_calls"]
    assert_usage_error(*call(capsys, *bad))


def test_bench_latency_on_the_smp_port(capsys) -> None:
    code, out, err = call(capsys, "bench", "latency", "--kernel", "smp", "--cpus", "2", "--iterations", "30")
    assert code == 0, err
    assert "lock acquire" in out and "lock release" in out


def test_the_master_slave_port_from_the_command_line(capsys) -> None:
    code, out, err = call(capsys, "run", "pipeline", "5", "--kernel", "master-slave", "--cpus", "3", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert "received 5 lines" in d["console"] and d["stats"]["kernel"] == "master-slave" and d["stats"]["handoffs"] > 0
    code, out, err = call(capsys, "bench", "latency", "--kernel", "master-slave", "--cpus", "2", "--iterations", "30")
    assert code == 0, err
    assert "slave trap stub and queueing" in out and "wait for the master" in out and "wait for a slave" in out
    args = ["bench", "throughput", "--syscall-instr", "151", "--user-pct", "95", "--cpus", "4"]
    code, out, err = call(capsys, *args, "--kernel", "master-slave", "--window", "400000", "--warmup", "200000")
    assert code == 0, err
    assert "master load" in out and "master kernel instructions per call" in out
    code, out, err = call(capsys, *args, "--kernel", "master-slave", "--window", "400000", "--json")
    d = json.loads(out)
    assert d["kernel"] == "master-slave" and 3 < d["speedup"] <= d["ideal_bound"] * 1.05 and 0 < d["master_load"] < 1
    assert_usage_error(*call(capsys, *args, "--kernel", "master-slave", "--ext", "local_calls"))


@pytest.mark.parametrize(("flags", "cache"), [([], True), (["--no-cache"], False)])
def test_reproduce_takes_the_cache_unless_told(tmp_path: Path, monkeypatch, capsys, flags, cache) -> None:
    """The run itself is `reproduce`'s tests' (tests/experiments); here only what the command line passes."""
    from apkern.experiments import reproduce as rp

    seen = {}

    def fake(out, **kw):
        seen.update(kw)
        return {
            "throughput": [],
            "derived_overhead": None,
            "attributed_overhead": None,
            "wall_seconds": 0.0,
            "tasks": {"total": 3, "cached": 3 if cache else 0, "not_kept": 0, "cache_error": None},
        }

    monkeypatch.setattr(rp, "reproduce", fake)
    main(["reproduce", "--quick", "--out", str(tmp_path), *flags])
    assert seen["cache"] is cache
    assert seen["quantum"] == 0
    assert ("3 of 3 tasks taken from" in capsys.readouterr().out) is cache


def test_reproduce_passes_the_quantum_and_says_what_it_moved(tmp_path: Path, monkeypatch, capsys) -> None:
    from apkern.experiments import reproduce as rp

    seen = {}

    def fake(out, **kw):
        seen.update(kw)
        kinds = {
            "point": {"points": 4, "largest": {"loops": {"difference": 0.0023, "args": []}}},
            "smp_point": {"points": 3, "largest": {"loops": {"difference": 0.0123, "args": []}}},
        }
        check = {"quantum": 100, "points": 7, "kinds": kinds}
        return {"throughput": [], "derived_overhead": None, "attributed_overhead": None, "wall_seconds": 0.0,
                "tasks": {"total": 3, "cached": 0, "not_kept": 0, "cache_error": None},
                "engine": {"quantum": 100, "check": check}}  # fmt: skip

    monkeypatch.setattr(rp, "reproduce", fake)
    main(["reproduce", "--quick", "--out", str(tmp_path), "--quantum", "30"])
    assert seen["quantum"] == 30
    out = capsys.readouterr().out
    assert "temporal decoupling, quantum 100: on the 7 points also run exact the loops moved by at most 1.23%" in out


@pytest.mark.parametrize("command", [["run", "--kernel", "apkern", "--cpus", "4"], ["reproduce", "--quick"]])
@pytest.mark.parametrize("bad", ["-1", "31", "many"])
def test_a_bad_quantum_is_one_line_and_exit_2(capsys, tmp_path: Path, command: list[str], bad: str) -> None:
    extra = ["threads", "3"] if command[0] == "run" else ["--out", str(tmp_path / "out")]
    assert_usage_error(*call(capsys, *command, "--quantum", bad, *extra))
    assert not (tmp_path / "out").exists()


def test_run_decoupled_prints_what_the_uniprocessor_prints(capsys) -> None:
    up = call(capsys, "run", "threads", "5")
    assert up[0] == 0 and up[1]
    for q in ("10", "30"):
        assert call(capsys, "run", "--kernel", "apkern", "--cpus", "4", "--quantum", q, "threads", "5") == up


def test_reproduce_says_which_results_the_cache_did_not_keep(tmp_path: Path, monkeypatch, capsys) -> None:
    from apkern.experiments import reproduce as rp

    def fake(out, **kw):
        return {"throughput": [], "derived_overhead": None, "attributed_overhead": None, "wall_seconds": 0.0,
                "tasks": {"total": 9, "cached": 0, "not_kept": 2, "cache_error": "Permission denied: x"}}  # fmt: skip

    monkeypatch.setattr(rp, "reproduce", fake)
    main(["reproduce", "--quick", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert err == f"apkern: 2 tasks not kept in {tmp_path}/cache (they run again next time): Permission denied: x\n"
