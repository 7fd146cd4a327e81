"""`apkern run FILE.py[:FUNCTION]` and `WORKLOAD.toml`, and `apkern compare`: tables, JSON, mismatches, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apkern.system import KERNELS
from test_cli import assert_usage_error, call

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HELLO = str(EXAMPLES / "hello_threads.py")

# a program whose output depends on the kernel: it prints the time and writes it to a file
TIMING = """\
from apkern import libc
from apkern.hw.ops import Rdtsc


def main(argv):
    yield from libc.compute(1000)
    now = yield Rdtsc()
    yield from libc.print(f"now {now}\\n")
    fd = yield from libc.open("/when.txt", libc.O_WRONLY | libc.O_CREAT)
    yield from libc.write_bytes(fd, str(now).encode())
    yield from libc.close(fd)
    return 0
"""


def test_run_a_users_file_and_another_function_in_it(capsys) -> None:
    assert call(capsys, "run", HELLO, "4") == (0, "4 threads added 100 (returned 10)\n", "")
    code, out, _ = call(capsys, "run", f"{HELLO}:count_down", "2", "--kernel", "apkern", "--cpus", "3")
    assert (code, out) == (0, "2...\n1...\nlift-off\n")


def test_run_a_workload_on_each_kernel_and_as_json(capsys) -> None:
    path = str(EXAMPLES / "pipeline.toml")
    outs = set()
    for kernel in KERNELS:
        code, out, err = call(capsys, "run", path, "--kernel", kernel, "--cpus", "1" if kernel == "up" else "3")
        assert (code, err) == (0, ""), (kernel, err)
        outs.add(out)
    (out,) = outs
    assert out.endswith("pipeline: 2 of 2 processes succeeded\n")
    code, out, _ = call(capsys, "run", path, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["exit_status"] == 0 and doc["console"].startswith("producer[0]: 2 threads")


def test_run_a_workload_whose_calls_fail_exits_1(capsys, tmp_path: Path) -> None:
    path = tmp_path / "fails.toml"
    path.write_text('[[process]]\nname = "a"\niterations = 2\n[process.calls]\nopen = { file = "/none" }\n')
    code, out, _ = call(capsys, "run", str(path))
    assert code == 1
    assert out == "a[0]: 1 thread x 2 iterations, 2 calls; errors: open ENOENT x2\na[0]: exit status 1\n" + (
        "fails: 0 of 1 processes succeeded\n"
    )


def _rows(out: str) -> dict[tuple[str, int], list[str]]:
    """The summary table's lines by (kernel, cpus)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("kernel  "))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        if line.startswith("not run:"):
            continue
        cells = line.split()
        rows[(cells[0], int(cells[1]))] = cells
    return rows


def test_compare_a_builtin_prints_a_table_per_kernel_and_cpu_count(capsys) -> None:
    code, out, err = call(capsys, "compare", "threads", "3", "--cpus", "1,2")
    assert (code, err) == (0, "")
    rows = _rows(out)
    expected = [("up", 1)] + [(k, n) for k in KERNELS if k != "up" for n in (1, 2) if (k, n) != ("apkern", 1)]
    assert list(rows) == expected
    assert rows[("up", 1)][4] == "1.00"  # speedup against itself
    ak = rows[("apkern", 2)]
    assert int(ak[5].replace(",", "")) > 0 and ak[8].endswith("%")  # forwarded calls, bootstrap-loop load
    assert rows[("smp", 2)][5] == "-" and rows[("smp", 2)][8] == "-"  # the port forwards nothing
    assert "not run: apkern on 1 CPU" in out
    for kernel, n in expected:  # one per-CPU table per run, each CPU's shares adding up to 100%
        head = f"{kernel}, {n} CPU{'s' if n > 1 else ''}: per-CPU shares of the time"
        lines = out.splitlines()
        i = lines.index(head)
        assert lines[i + 1].split() == ["cpu", "user", "kernel", "spin", "idle"]
        for cpu_line in lines[i + 2 : i + 2 + n]:
            shares = [float(x.rstrip("%")) for x in cpu_line.split()[-4:]]
            assert abs(sum(shares) - 100) < 0.3, cpu_line
    assert out.rstrip().endswith(f"same output, exit status and files on every kernel ({len(expected)} runs)")


def test_compare_json_of_a_workload(capsys) -> None:
    code, out, _ = call(capsys, "compare", str(EXAMPLES / "pipeline.toml"), "--cpus", "2", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["same"] is True and doc["differences"] == []
    assert [(r["kernel"], r["cpus"]) for r in doc["runs"]] == [("up", 1)] + [(k, 2) for k in KERNELS if k != "up"]
    base = doc["runs"][0]
    assert base["speedup"] == 1.0 and base["forwarded_calls"] is None and base["bootstrap_load"] is None
    for r in doc["runs"][1:]:
        assert r["speedup"] == pytest.approx(base["time"] / r["time"])
        assert len(r["per_cpu"]) == 2 and all(
            abs(sum(c[k] for k in ("user", "kernel", "spin", "idle")) - 1) < 1e-9 for c in r["per_cpu"]
        )
        if r["kernel"] == "apkern":
            assert r["forwarded_calls"] > 100 and 0 < r["bootstrap_load"] <= 1
            assert r["forwarded_exceptions"] == r["stats"]["forwarded_page_faults"] + r["stats"]["forwarded_exceptions"]


def test_compare_reports_a_program_that_depends_on_the_kernel(capsys, tmp_path: Path) -> None:
    prog = tmp_path / "timing.py"
    prog.write_text(TIMING)
    code, out, err = call(capsys, "compare", str(prog), "--cpus", "2")
    assert code == 1 and err == ""
    others = [k for k in KERNELS if k != "up"]
    assert f"DIFFERENT: {len(others)} of {len(others)} runs differ from up on 1 CPU" in out
    for k in others:
        assert f"{k}/2cpu vs up/1cpu: output differs at offset " in out
        assert f"{k}/2cpu vs up/1cpu: files differ: /when.txt" in out
        assert _rows(out)[(k, 2)][-1] == "*"  # the status column marks it
    code, out, _ = call(capsys, "compare", str(prog), "--cpus", "2", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["same"] is False and not doc["runs"][0]["differences"]
    assert all(len(r["differences"]) == 2 for r in doc["runs"][1:])


def test_compare_sees_a_different_exit_status(capsys, tmp_path: Path) -> None:
    prog = tmp_path / "status.py"
    prog.write_text(
        "from apkern import libc\nfrom apkern.hw.ops import Rdtsc\n\n"
        "def main(argv):\n    yield from libc.getpid()\n    t = yield Rdtsc()\n    return t % 256\n"
    )
    code, out, _ = call(capsys, "compare", str(prog), "--cpus", "2", "--json")
    doc = json.loads(out)
    base = doc["runs"][0]["exit_status"]
    differing = [r for r in doc["runs"][1:] if r["exit_status"] != base]
    assert differing  # a forwarded getpid ends later on the application kernel
    assert code == 1
    for r in doc["runs"][1:]:
        said = any(f"exit status {r['exit_status']} vs {base}" in d for d in r["differences"])
        assert said == (r in differing)


BAD = [
    ("run", "missing.py"),
    ("run", "missing.toml"),
    ("run", "nosuch.txt"),
    ("run", f"{HELLO}:nosuch"),
    ("run", str(EXAMPLES / "pipeline.toml"), "extra"),
    ("compare", "hello", "--cpus", "0"),
    ("compare", "hello", "--cpus", "2,x"),
    ("compare", "hello", "--cpus", ","),
    ("compare", "hello", "--cpus", "65"),
    ("compare", "hello", "--ext", "nosuch"),
    ("compare", "hello", "--limit", "0"),
    ("compare", "hello", "--file", "no-equals"),
    ("compare", "hello", "--file", "/x=/definitely/not/here"),
    ("compare", "nosuch"),
    ("compare",),
]


@pytest.mark.parametrize("args", BAD, ids=str)
def test_bad_input_to_run_and_compare_is_one_line_and_status_2(capsys, args: tuple[str, ...]) -> None:
    assert_usage_error(*call(capsys, *args))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def main(argv)\n    yield\n", "p.py:1: syntax error"),
        ("def main(argv):\n    return 0\n", "not a generator function"),
        ("raise RuntimeError('no')\n", "p.py:1: loading the module raised RuntimeError: no"),
        ("x = 1\n", "has no function 'main'"),
    ],
)
def test_a_broken_program_file_is_a_usage_error_for_run_and_compare(
    capsys, tmp_path: Path, source: str, expected: str
) -> None:
    (tmp_path / "p.py").write_text(source)
    for command in ("run", "compare"):
        code, out, err = call(capsys, command, str(tmp_path / "p.py"))
        assert_usage_error(code, out, err)
        assert expected in err


def test_a_malformed_workload_is_a_usage_error_for_run_and_compare(capsys, tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('[[process]]\nname = "a"\nthreads = -1\n')
    for command in ("run", "compare"):
        code, out, err = call(capsys, command, str(path))
        assert_usage_error(code, out, err)
        assert "threads: must be between 1 and 16, not -1" in err


def test_compare_stops_at_the_limit_with_what_finished(capsys) -> None:
    path = str(EXAMPLES / "pipeline.toml")  # 2,470,992 instructions on up; more on 2 CPUs of the application kernel
    code, out, err = call(capsys, "compare", path, "--cpus", "2", "--limit", "2500000")
    assert code == 3 and list(_rows(out)) == [("up", 1)]
    assert "on every kernel that finished (1 runs)" in out
    assert err.startswith(f"apkern: stopped: {KERNELS[1]} on 2 CPUs: ") and len(err.splitlines()) == 1
    code, out, err = call(capsys, "compare", path, "--cpus", "2", "--limit", "1000", "--json")
    doc = json.loads(out)
    assert (code, err, doc["runs"]) == (3, "", [])
    assert doc["unfinished"].startswith("up on 1 CPU: ")


def test_compare_takes_memory_and_refuses_bad_sizes_and_timeouts(capsys) -> None:
    code, out, _ = call(capsys, "compare", "pagetouch", "100", "--cpus", "2", "--memory", "64M", "--json")
    assert code == 0 and all(r["exit_status"] == 0 for r in json.loads(out)["runs"])
    for bad in (("--memory", "64Q"), ("--memory", "1M"), ("--timeout", "0"), ("--timeout", "soon")):
        assert_usage_error(*call(capsys, "compare", "hello", "--cpus", "2", *bad))


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cpus=st.one_of(
        st.lists(st.integers(-2, 9) | st.just(65), min_size=0, max_size=3).map(lambda xs: ",".join(map(str, xs))),
        st.sampled_from(["x", "2,,4", " 2", "2.5", "-", "1e3"]),
    ),
    limit=st.integers(-5, 3_000_000),
)
def test_fuzz_compare_options(capsys, cpus: str, limit: int) -> None:
    code, out, err = call(capsys, "compare", "hello", "--cpus", cpus, "--limit", str(limit))
    assert "Traceback" not in out + err
    assert code in (0, 2, 3), (code, err)
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("apkern: error:")
