"""`apkern sweep`: the grid file, the cache, the table, resuming after a kill, Ctrl-C, and a real Dask cluster.

The central promise: a sweep interrupted at any point (SIGKILL in the middle of it, or
Ctrl-C) and run again does only the missing points and writes the same table, byte for
byte, as a sweep run straight through; and the same table again on a Dask cluster.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from apkern.experiments import grid as grid_mod
from apkern.experiments import points, runner, throughput
from apkern.experiments import sweep as sweep_mod
from apkern.experiments.sweep import RESERVED, sweep
from test_cli import SCRIPT, assert_usage_error, call

# 20 points of a tenth of a second or so: 3 x 5 of the pipeline, 5 of the throughput loop
GRID = """
[grid]
kernels = ["up", "apkern", "smp"]
cpus = [2, 3]

[[workload]]
program = "pipeline"
args = ["{lines}"]
params = { lines = [10, 40, 80] }

[[workload]]
throughput = { syscall_instr = 451, user_pct = 95, procs = 4, warmup = 20_000, window = 100_000 }
"""
POINTS = 20


def _write(tmp_path: Path, text: str, name: str = "grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


def _tables(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("sweep.*"))}


def _cached(out: Path) -> int:
    return len(list((out / "cache").glob("*/*.json")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The grid run straight through, in this process: (grid file, output folder)."""
    tmp = tmp_path_factory.mktemp("sweep")
    path = _write(tmp, GRID)
    sweep(path, tmp / "ref", jobs=1)
    return path, tmp / "ref"


# --- the grid file -----------------------------------------------------------------------------------------


def test_grid_expands_in_file_order_with_up_once_and_apkern_from_two_cpus() -> None:
    doc = {
        "grid": {"kernels": ["up", "apkern", "smp"], "cpus": [1, 4], "seeds": [0, 1], "extensions": [[], ["balance"]]},
        "workload": [{"program": "radix", "args": ["{t}", "64"], "params": {"t": [1, 2]}}],
    }
    g = grid_mod.expand(doc)
    # per thread count: up 1 CPU x 2 seeds; apkern 4 CPUs x 2 extension sets x 2 seeds; smp 2 CPU counts x 2 seeds
    assert len(g.points) == 2 * (2 + 4 + 4)
    assert g.left_out == 2 * 2 * 2  # apkern on one CPU, per thread count, extension set and seed
    first = [(p.config["kernel"], p.config["cpus"], tuple(p.config["extensions"]), p.config["seed"]) for p in g.points]
    assert first[:7] == [
        ("up", 1, (), 0),
        ("up", 1, (), 1),
        ("apkern", 4, (), 0),
        ("apkern", 4, (), 1),
        ("apkern", 4, ("balance",), 0),
        ("apkern", 4, ("balance",), 1),
        ("smp", 1, (), 0),
    ]
    assert [p.config["args"] for p in g.points][::10] == [["1", "64"], ["2", "64"]]
    assert [p.index for p in g.points] == list(range(len(g.points)))
    assert g.param_names == ["t"]


def test_grid_defaults_and_the_throughput_loop() -> None:
    g = grid_mod.expand({"workload": [{"throughput": {"syscall_instr": [151, 451], "user_pct": 90}}]})
    from apkern.system import KERNELS

    assert {p.config["kernel"] for p in g.points} == set(KERNELS)
    c = g.points[0].config
    assert (c["syscall_instr"], c["user_pct"], c["procs"], c["window"]) == (151, 90.0, 20, throughput.DEFAULT_WINDOW)
    assert g.param_names == ["syscall_instr", "user_pct", "procs", "warmup", "window", "getpids"]
    assert g.points[0].workload == "loop"


BAD = {
    "not TOML": ("[grid\n", "not valid TOML"),
    "unknown top-level key": ("[grids]\n", "unknown key 'grids'"),
    "no workload": ("[grid]\ncpus = [2]\n", "no workload"),
    "unknown kernel": ('[grid]\nkernels = ["linux"]\n[[workload]]\nprogram = "hello"\n', "unknown kernel 'linux'"),
    "zero CPUs": ('[grid]\ncpus = [0]\n[[workload]]\nprogram = "hello"\n', "1 to 64 CPUs, not 0"),
    "CPUs not a list": ('[grid]\ncpus = 4\n[[workload]]\nprogram = "hello"\n', "cpus must be a list"),
    "empty list": ('[grid]\nseeds = []\n[[workload]]\nprogram = "hello"\n', "seeds is an empty list"),
    "repeated value": ('[grid]\ncpus = [2, 2]\n[[workload]]\nprogram = "hello"\n', "lists 2 twice"),
    "unknown extension": ('[grid]\nextensions = [["turbo"]]\n[[workload]]\nprogram = "hello"\n', "'turbo'"),
    "extensions not sets": ('[grid]\nextensions = ["local_calls"]\n[[workload]]\nprogram = "hello"\n', "list of sets"),
    "unknown program": ('[[workload]]\nprogram = "nosuch"\n', "unknown program 'nosuch'"),
    "program and loop": ('[[workload]]\nprogram = "hello"\nthroughput = { syscall_instr = 1 }\n', "either"),
    "undefined placeholder": ('[[workload]]\nprogram = "cat"\nargs = ["{path}"]\n', "{path} is used"),
    "share of 100 percent": ("[[workload]]\nthroughput = { syscall_instr = 451, user_pct = 100 }\n", "percentage"),
    "loop without K": ("[[workload]]\nthroughput = { user_pct = 90 }\n", "needs syscall_instr"),
    "no user instruction": ("[[workload]]\nthroughput = { syscall_instr = 0, user_pct = 50 }\n", "no user instruction"),
    "unknown workload key": ('[[workload]]\nprogram = "hello"\nargv = []\n', "unknown key 'argv'"),
    "parameter named like a column": ('[[workload]]\nprogram = "hello"\nparams = { time = [1] }\n', "column"),
    "two workloads, one name": ('[[workload]]\nprogram = "hello"\n[[workload]]\nprogram = "hello"\n', "second"),
    "relative file path": ('[[workload]]\nprogram = "cat"\nfiles = { "in" = "x" }\n', "absolute path"),
    "only apkern on one CPU": (
        '[grid]\nkernels = ["apkern"]\ncpus = [1]\n[[workload]]\nprogram = "hello"\n',
        "no point",
    ),
    "limit zero": ('[grid]\nlimit = 0\n[[workload]]\nprogram = "hello"\n', "limit"),
    "unknown profile": (
        '[grid]\ncosts = ["linux-9"]\n[[workload]]\nprogram = "hello"\n',
        "costs: unknown cost profile",
    ),
    "profile not a name": ('[grid]\ncosts = [3]\n[[workload]]\nprogram = "hello"\n', "profile names or TOML files"),
    "one profile twice": ('[grid]\ncosts = ["xv6", "xv6"]\n[[workload]]\nprogram = "hello"\n', "twice"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_malformed_grid_file_is_one_line_and_status_2(case: str, tmp_path: Path, capsys) -> None:
    text, says = BAD[case]
    code, out, err = call(capsys, "sweep", str(_write(tmp_path, text)), "--out", str(tmp_path / "out"))
    assert_usage_error(code, out, err)
    assert says in err and "grid.toml" in err
    assert not (tmp_path / "out").exists()  # checked before anything is made


def test_other_usage_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert_usage_error(*call(capsys, "sweep", str(tmp_path / "missing.toml")))
    good = _write(tmp_path, '[[workload]]\nprogram = "hello"\n')
    assert_usage_error(*call(capsys, "sweep", str(good), "--jobs", "0"))
    (tmp_path / "file").write_text("")
    code, out, err = call(capsys, "sweep", str(good), "--out", str(tmp_path / "file" / "out"))
    assert_usage_error(code, out, err)
    assert "cannot write" in err
    assert set(RESERVED) >= {"time", "kernel", "speedup", "console_sha256"}


# --- what a point measures ------------------------------------------------------------------------------------


def test_the_loop_point_counts_what_bench_throughput_counts() -> None:
    config = {"kind": "throughput", "syscall_instr": 451, "user_pct": 95.0, "procs": 6, "warmup": 50_000}
    config |= {"window": 150_000, "getpids": 0, "kernel": "apkern", "cpus": 3, "extensions": [], "seed": 0, "limit": 1}
    row = points.run_point(config)["row"]
    ref = throughput.measure(451, 95.0, 3, procs=6, warmup=50_000, window=150_000, attribute=False)
    assert (row["loops"], row["forwarded_calls"], row["bsp_load"]) == (ref.loops, ref.forwarded_calls, ref.bsp_load)
    assert row["time"] == 150_000 and row["status"] == "ok"
    assert sum(row["per_cpu"][1]) == pytest.approx(1, abs=0.01)


def test_a_table_row_per_point_with_speedups_and_the_same_output_everywhere(reference) -> None:
    _, out = reference
    rows = _rows(out)
    assert len(rows) == POINTS and [int(r["point"]) for r in rows] == list(range(POINTS))
    assert list(rows[0])[:8] == ["point", "key", "workload", "kind", "program", "args", "lines", "syscall_instr"]
    assert all(r["status"] == "ok" for r in rows)
    pipe = [r for r in rows if r["workload"] == "pipeline" and r["lines"] == "40"]
    assert [(r["kernel"], r["cpus"]) for r in pipe] == [("up", "1"), ("apkern", "2"), ("apkern", "3"), ("smp", "2")] + [
        ("smp", "3")
    ]
    assert len({r["console_sha256"] for r in pipe}) == 1  # one program, one output, on every kernel
    assert all(r["exit_status"] == "0" for r in pipe)
    up = pipe[0]
    assert up["speedup"] == "1.0" and up["forwarded_calls"] == "" and up["bsp_load"] == ""
    for r in pipe[1:]:
        assert float(r["speedup"]) == pytest.approx(int(up["time"]) / int(r["time"]))
    ak = pipe[1]
    assert int(ak["forwarded_calls"]) > 0 and 0 < float(ak["bsp_load"]) <= 1
    assert len(json.loads(ak["per_cpu"])) == 2
    loop = [r for r in rows if r["kind"] == "throughput"]
    assert len(loop) == 5 and all(r["program"] == "loop" and int(r["loops"]) > 0 for r in loop)
    assert float(loop[2]["speedup"]) > float(loop[1]["speedup"])  # apkern, 3 CPUs over 2


def test_run_again_everything_comes_from_the_cache_and_the_bytes_are_the_same(reference, tmp_path, monkeypatch) -> None:
    path, ref = reference
    monkeypatch.setattr(sweep_mod, "TABLE_EVERY", 0.0)  # the table rewritten after every point, on the way
    out = tmp_path / "again"
    first = sweep(path, out, jobs=1)
    assert (first.cached, first.ran) == (0, POINTS)
    assert _tables(out) == _tables(ref)
    assert _cached(out) == POINTS
    bad = next((out / "cache").glob("*/*.json"))
    bad.write_text('{"row": ')  # a damaged entry is measured again
    (bad.parent / ".left-by-a-kill.tmp").write_text("half")
    again = sweep(path, out, jobs=1)
    assert (again.cached, again.ran) == (POINTS - 1, 1)
    assert _tables(out) == _tables(ref)


def test_the_key_covers_configuration_and_code() -> None:
    c = {"kind": "program", "program": "hello", "args": [], "setup": [], "files": {}, "kernel": "up", "cpus": 1}
    c |= {"extensions": [], "seed": 0, "limit": 10}
    k = sweep_mod.point_key(c, "code-a")
    assert k != sweep_mod.point_key(c, "code-b")
    assert k != sweep_mod.point_key(dict(c, seed=1), "code-a")
    assert k == sweep_mod.point_key(dict(reversed(list(c.items()))), "code-a")
    assert len(points.code_fingerprint()) == 32


def test_a_failing_point_is_reported_and_not_cached(tmp_path, capsys, monkeypatch) -> None:
    def broken(config: dict[str, Any]) -> Any:
        raise RuntimeError("simulator bug")

    monkeypatch.setattr(points, "_program_point", broken)
    path = _write(tmp_path, '[grid]\nkernels = ["up"]\n[[workload]]\nprogram = "hello"\n')
    code, out, err = call(capsys, "sweep", str(path), "--out", str(tmp_path / "o"), "--jobs", "1")
    assert code == 1
    assert err.splitlines()[-1].startswith("apkern: 1 point(s) failed; point 0: RuntimeError: simulator bug")
    assert _rows(tmp_path / "o")[0]["status"] == "failed" and _cached(tmp_path / "o") == 0


def test_a_worker_with_other_code_stops_the_sweep(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sweep_mod, "code_fingerprint", lambda: "0" * 32)
    path = _write(tmp_path, '[grid]\nkernels = ["up"]\n[[workload]]\nprogram = "hello"\n')
    code, out, err = call(capsys, "sweep", str(path), "--out", str(tmp_path / "o"), "--jobs", "1")
    assert_usage_error(code, out, err)
    assert "other apkern code" in err


def _die(config: dict[str, Any]) -> Any:
    os._exit(9)  # a worker process gone (the kernel's OOM killer, say)


def test_a_dead_worker_process_stops_the_sweep_with_one_line_and_keeps_what_finished(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep_mod, "run_point", _die)
    path = _write(
        tmp_path, '[grid]\nkernels = ["up"]\n[[workload]]\nprogram = "hello"\nargs = ["{n}"]\nparams = {n = [1, 2]}\n'
    )
    code, out, err = call(capsys, "sweep", str(path), "--out", str(tmp_path / "o"), "--jobs", "2")
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("apkern: the sweep stopped: BrokenProcessPool")
    assert (tmp_path / "o" / "sweep.csv").exists()


# --- interrupted, then resumed ---------------------------------------------------------------------------


def _start(path: Path, out: Path, jobs: int) -> subprocess.Popen[str]:
    args = [str(SCRIPT), "sweep", str(path), "--out", str(out), "--jobs", str(jobs)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_points(p: subprocess.Popen[str], out: Path, n: int) -> None:
    deadline = time.monotonic() + 120
    while (not (out / "cache").exists() or _cached(out) < n) and time.monotonic() < deadline:
        assert p.poll() is None, p.communicate()
        time.sleep(0.01)


def test_killed_mid_way_then_resumed_gives_the_same_table_byte_for_byte(reference, tmp_path, capsys) -> None:
    path, ref = reference
    out = tmp_path / "killed"
    p = _start(path, out, jobs=1)
    _wait_for_points(p, out, 4)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    done = _cached(out)
    assert 4 <= done < POINTS  # killed in the middle
    code, stdout, _ = call(capsys, "sweep", str(path), "--out", str(out), "--jobs", "1")
    assert code == 0 and f"({done} from the cache, {POINTS - done} run)" in stdout
    assert _tables(out) == _tables(ref)


def test_ctrl_c_cancels_at_once_keeps_the_finished_points_and_exits_130(reference, tmp_path, capsys) -> None:
    path, ref = reference
    out = tmp_path / "interrupted"
    p = _start(path, out, jobs=2)
    _wait_for_points(p, out, 3)
    t = time.perf_counter()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert time.perf_counter() - t < 5
    assert p.returncode == 130
    assert err.splitlines()[-1].startswith("apkern: interrupted: ")
    kept = _rows(out)  # the table of what was finished
    assert 3 <= len(kept) <= _cached(out) < POINTS  # (a point cached as the signal came is in the next table)
    assert f"{len(kept)} of {POINTS} points finished" in err
    assert sweep(path, out, jobs=2).cached == len(kept)
    assert _tables(out) == _tables(ref)


# --- the machinery -----------------------------------------------------------------------------------------


def _square(x: int) -> int:
    return x * x


def _fail(x: int) -> int:
    raise ValueError(f"bad {x}")


def test_run_calls_delivers_every_result_with_its_index_here_and_in_a_pool() -> None:
    calls = [(_square, (i,)) for i in range(7)]
    for jobs in (1, 2):
        got: dict[int, int] = {}
        seen: list[tuple[int, int]] = []
        runner.run_calls(calls, jobs, on_result=got.__setitem__, progress=lambda d, t, seen=seen: seen.append((d, t)))
        assert got == {i: i * i for i in range(7)} and seen[-1] == (7, 7) and len(seen) == 7
    with pytest.raises(ValueError, match="bad 0"):
        runner.run_calls([(_fail, (0,)), (_square, (1,))], 2)


def test_run_calls_cancels_on_ctrl_c_after_delivering_what_finished() -> None:
    got: list[int] = []

    def progress(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(runner.Cancelled) as e:
        runner.run_calls(
            [(_square, (i,)) for i in range(6)], 1, on_result=lambda i, r: got.append(i), progress=progress
        )
    assert (e.value.done, e.value.total, got) == (3, 6, [0, 1, 2])


# --- a real Dask cluster ----------------------------------------------------------------------------------


def test_a_sweep_on_a_dask_localcluster_gives_the_same_table(reference, tmp_path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    path, ref = reference
    out = tmp_path / "dask"
    # workers in this process (threads), reached over TCP by the sweep, a separate process
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        p = subprocess.run(
            [str(SCRIPT), "sweep", str(path), "--out", str(out), "--scheduler", cluster.scheduler_address],
            capture_output=True,
            text=True,
            timeout=300,
        )
        computed = cluster.scheduler.task_prefixes["run_point"].state_counts["memory"]  # by the cluster's workers
    assert p.returncode == 0, p.stderr
    assert f"{POINTS} points (0 from the cache, {POINTS} run)" in p.stdout
    assert _tables(out) == _tables(ref)
    assert computed == POINTS


# --- the guide -------------------------------------------------------------------------------------------


def test_the_guide_shows_the_example_grid_which_expands() -> None:
    root = Path(__file__).resolve().parent.parent
    example = (root / "examples" / "grids" / "sweep.toml").read_text()
    guide = (root / "docs" / "sweep.md").read_text()
    shown = guide.split("```toml\n", 1)[1].split("```", 1)[0]
    assert shown == "".join(line + "\n" for line in example.splitlines() if not line.startswith("#")).lstrip("\n")
    g = grid_mod.load(root / "examples" / "grids" / "sweep.toml", reserved=RESERVED)
    assert len(g.points) == 35 and f"({len(g.points)} points" in guide


def test_a_cost_profile_axis_gives_each_profile_its_own_baseline(tmp_path: Path) -> None:
    """costs = [...] is an axis: every profile runs every point, and its speedups are over its own up point."""
    (tmp_path / "mine.toml").write_text("[bootkernel]\nSYS_GETTID = 400\n")
    text = (
        '[grid]\nkernels = ["up", "apkern"]\ncpus = [2]\ncosts = ["xv6", "linux-2.4", "mine.toml"]\n'
        '[[workload]]\nprogram = "gettid"\nargs = ["20"]\n'
    )
    g = grid_mod.load(_write(tmp_path, text))
    assert [(p.config["kernel"], p.config.get("costs", {}).get("name", "xv6")) for p in g.points] == [
        ("up", "xv6"),
        ("apkern", "xv6"),
        ("up", "linux-2.4"),
        ("apkern", "linux-2.4"),
        ("up", "mine"),
        ("apkern", "mine"),
    ]
    assert "costs" not in g.points[0].config  # the default profile's points keep their cache keys
    out = tmp_path / "out"
    sweep(_write(tmp_path, text), out=out, jobs=1)
    rows = _rows(out)
    assert [r["costs"] for r in rows] == ["xv6", "xv6", "linux-2.4", "linux-2.4", "mine", "mine"]
    times = {(r["kernel"], r["costs"]): int(r["time"]) for r in rows}
    for r in rows:
        assert float(r["speedup"]) == pytest.approx(times[("up", r["costs"])] / int(r["time"]))
    assert times[("up", "linux-2.4")] < times[("up", "xv6")] < times[("up", "mine")]  # each ran on its own costs
    assert len({r["console_sha256"] for r in rows}) > 1  # the programs print their mean: the costs are seen
