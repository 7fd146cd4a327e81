"""Every built-in program on the uniprocessor kernel: console output and exit status."""

from __future__ import annotations

import random
import re

import pytest

from apkern import System
from apkern.bootkernel import abi
from apkern.userland import libc
from apkern.userland.programs import PROGRAMS, USAGE


def run_program(name: str, argv: list[str] | None = None, files: dict[str, bytes] | None = None, **kw):
    sim = System(kernel="up", strict=True, **kw)
    for path, data in (files or {}).items():
        sim.fs.write_file(path, data)
    proc = sim.spawn(name, argv if argv is not None else [name])
    sim.run(limit=500_000_000)
    return sim, proc


def out(sim: System, proc, fd: int | None = None) -> str:
    return sim.kernel.console.text(proc.pid, fd)


def test_hello() -> None:
    sim, proc = run_program("hello")
    assert proc.exit_status == 0
    assert sim.console(proc.pid) == "hello, world\n"
    assert out(sim, proc, 2) == ""


def test_cat_concatenates_files() -> None:
    a = b"first file\nwith two lines\n"
    b = bytes(range(32, 127)) * 200  # longer than libc's staging buffer
    sim, proc = run_program("cat", ["cat", "/a", "/b", "/a"], {"/a": a, "/b": b})
    assert proc.exit_status == 0
    assert out(sim, proc, 1) == (a + b + a).decode()
    assert out(sim, proc, 2) == ""


def test_cat_of_an_empty_file_prints_nothing() -> None:
    sim, proc = run_program("cat", ["cat", "/empty"], {"/empty": b""})
    assert (proc.exit_status, sim.console(proc.pid)) == (0, "")


def test_cat_missing_file_reports_and_exits_1() -> None:
    sim, proc = run_program("cat", ["cat", "/missing"])
    assert proc.exit_status == 1
    assert out(sim, proc, 2) == "cat: /missing: No such file or directory\n"
    assert out(sim, proc, 1) == ""


def test_cat_goes_on_after_a_missing_file() -> None:
    sim, proc = run_program("cat", ["cat", "/x", "/nope", "/y"], {"/x": b"X\n", "/y": b"Y\n"})
    assert proc.exit_status == 1
    assert out(sim, proc, 1) == "X\nY\n"
    assert out(sim, proc, 2) == "cat: /nope: No such file or directory\n"


def test_cat_of_a_directory_fails() -> None:
    sim, proc = run_program("cat", ["cat", "/bin"])
    assert proc.exit_status == 1
    assert out(sim, proc, 2).startswith("cat: /bin: ")


def test_cat_without_arguments_prints_usage() -> None:
    sim, proc = run_program("cat", ["cat"])
    assert proc.exit_status == 2
    assert out(sim, proc, 2) == f"usage: {USAGE['cat']}\n"


def _text(seed: int, n_words: int) -> bytes:
    rng = random.Random(seed)
    seps = [b" ", b"  ", b"\n", b"\t", b" \n", b"\r\n", b"\x0b", b"\x0c"]
    words = [bytes(rng.choice(b"abcdefghij.,;") for _ in range(rng.randint(1, 12))) for _ in range(n_words)]
    return b"".join(w + rng.choice(seps) for w in words)


def _wc_line(data: bytes, name: str) -> str:
    lines = data.count(b"\n")
    return f"{lines} {len(data.split())} {len(data)} {name}\n"


def test_wc_counts_match_python() -> None:
    data = _text(1, 3000)  # larger than one staging chunk: words straddle the chunk boundary
    assert len(data) > libc.STAGING_SIZE
    sim, proc = run_program("wc", ["wc", "/t"], {"/t": data})
    assert proc.exit_status == 0
    assert sim.console(proc.pid) == _wc_line(data, "/t")


def test_wc_several_files_and_total() -> None:
    files = {"/a": _text(2, 50), "/b": b"no newline at end", "/c": b"", "/d": b"   \n\n  \t"}
    sim, proc = run_program("wc", ["wc", *files], files)
    assert proc.exit_status == 0
    data = b"".join(files.values())
    lines, words = data.count(b"\n"), sum(len(d.split()) for d in files.values())
    total = f"{lines} {words} {len(data)} total\n"
    assert sim.console(proc.pid) == "".join(_wc_line(d, n) for n, d in files.items()) + total


def test_wc_missing_file() -> None:
    sim, proc = run_program("wc", ["wc", "/a", "/missing"], {"/a": b"one two\n"})
    assert proc.exit_status == 1
    assert out(sim, proc, 1) == "1 2 8 /a\n1 2 8 total\n"
    assert out(sim, proc, 2) == "wc: /missing: No such file or directory\n"


@pytest.mark.parametrize("n", [0, 1, 7, 600])
def test_pipeline(n: int) -> None:
    sim, proc = run_program("pipeline", ["pipeline", str(n)])
    expected_bytes = sum(len(f"line {i}\n") for i in range(n))
    assert proc.exit_status == 0
    assert sim.console(proc.pid) == f"pipeline: received {n} lines, {expected_bytes} bytes, child exit 0\n"
    assert sim.stats["processes"] == 2


def test_pipeline_default_and_usage() -> None:
    sim, proc = run_program("pipeline", ["pipeline"])
    assert proc.exit_status == 0
    assert sim.console(proc.pid).startswith("pipeline: received 20 lines,")
    sim, proc = run_program("pipeline", ["pipeline", "many"])
    assert proc.exit_status == 2
    assert out(sim, proc, 2) == f"usage: {USAGE['pipeline']}\n"


@pytest.mark.parametrize("pages", [1, 5, 33])
def test_pagetouch(pages: int) -> None:
    sim, proc = run_program("pagetouch", ["pagetouch", str(pages)])
    assert proc.exit_status == 0
    assert sim.console(proc.pid) == f"pagetouch: {pages} pages ok\n"
    assert sim.stats["zero_fills"] >= pages


def test_pagetouch_zero_fills_grow_with_pages() -> None:
    fills = [run_program("pagetouch", ["pagetouch", str(p)])[0].stats["zero_fills"] for p in (2, 10)]
    assert fills[1] - fills[0] == 8


def test_pagetouch_rejects_zero_pages() -> None:
    sim, proc = run_program("pagetouch", ["pagetouch", "0"])
    assert proc.exit_status == 2
    assert out(sim, proc, 2) == f"usage: {USAGE['pagetouch']}\n"


def test_signals() -> None:
    sim, proc = run_program("signals")
    assert proc.exit_status == 0
    assert sim.console(proc.pid) == (
        f"signals: handler ran for signal {abi.SIGUSR1}\n"
        "signals: read interrupted: EINTR\n"
        f"signals: child killed by signal {abi.SIGKILL}\n"
    )
    assert sim.stats["signals_delivered"] >= 2


@pytest.mark.parametrize("n", [1, 3, 6])
def test_threads(n: int) -> None:
    sim, proc = run_program("threads", ["threads", str(n)])
    assert proc.exit_status == 0
    assert sim.console(proc.pid) == f"threads: {n} threads joined, sum {sum(i * i for i in range(1, n + 1))}\n"


def test_segv_is_killed_by_sigsegv() -> None:
    sim, proc = run_program("segv")
    assert proc.exit_status == -abi.SIGSEGV == -11
    assert sim.console(proc.pid) == "segv: touching 0x10\n"


def test_illegal_is_killed_by_sigill() -> None:
    sim, proc = run_program("illegal")
    assert proc.exit_status == -abi.SIGILL == -4
    assert sim.console(proc.pid) == "illegal: executing ud2\n"


def test_loop_runs_n_iterations_of_compute_and_spin() -> None:
    u, k, n = 300, 40, 5
    sim, proc = run_program("loop", ["loop", str(u), str(k), str(n)])
    assert proc.exit_status == 0
    assert sim.console(proc.pid) == f"loop: {n} iterations\n"
    assert sim.stats["syscalls_by_name"]["spin"] == n
    user = sim.stats["per_cpu"][0]["user_instructions"]
    assert user >= n * u


def test_loop_time_grows_with_its_sizes() -> None:
    def time_of(u: int, k: int, n: int) -> int:
        sim, proc = run_program("loop", ["loop", str(u), str(k), str(n)])
        assert proc.exit_status == 0
        return sim.stats["time"]

    base = time_of(100, 10, 4)
    assert time_of(100, 10, 8) > base
    assert time_of(1100, 10, 4) - base == pytest.approx(4 * 1000, abs=200)
    assert time_of(100, 1010, 4) - base == pytest.approx(4 * 1000, abs=200)


def test_loop_usage() -> None:
    sim, proc = run_program("loop", ["loop", "x"])
    assert proc.exit_status == 2
    assert out(sim, proc, 2) == f"usage: {USAGE['loop']}\n"


def test_gettid_costs_about_100_instructions_on_the_uniprocessor_kernel() -> None:
    sim, proc = run_program("gettid", ["gettid", "50"])
    assert proc.exit_status == 0
    m = re.fullmatch(r"gettid: 50 calls, mean ([0-9.]+) instructions\n", sim.console(proc.pid))
    assert m is not None
    assert 90 <= float(m.group(1)) <= 110  # the paper's calibration (section 5.1)
    assert sim.stats["syscalls_by_name"]["gettid"] == 50


def test_every_program_is_covered() -> None:
    with open(__file__, encoding="utf-8") as f:
        tested = set(re.findall(r'run_program\(\s*"(\w+)"', f.read()))
    assert tested == set(PROGRAMS)


# --- determinism -----------------------------------------------------------------------------------

SCENARIOS = [("signals", None), ("pipeline", ["pipeline", "30"]), ("threads", ["threads", "4"]), ("segv", None)]


@pytest.mark.parametrize("name,argv", SCENARIOS)
def test_two_runs_give_identical_stats(name: str, argv: list[str] | None) -> None:
    runs = []
    for _ in range(2):
        sim, proc = run_program(name, argv)
        runs.append((proc.exit_status, sim.console(), sim.stats, sim.fs.snapshot()))
    assert runs[0] == runs[1]
    assert runs[0][2]["instructions"] > 0


def test_several_programs_at_once_are_deterministic_and_separate() -> None:
    def once():
        sim = System(kernel="up", strict=True)
        sim.fs.write_file("/t", b"a b c\n")
        procs = [sim.spawn("pipeline", ["pipeline", "9"]), sim.spawn("wc", ["wc", "/t"]), sim.spawn("threads")]
        sim.run()
        return [(p.exit_status, sim.console(p.pid)) for p in procs], sim.stats

    first, second = once(), once()
    assert first == second
    outputs = [text for _, text in first[0]]
    assert outputs[1] == "1 3 6 /t\n"
    assert outputs[0].startswith("pipeline: received 9 lines")
    assert outputs[2].startswith("threads: 4 threads joined")


def test_non_strict_python_error_in_a_program_is_sigill() -> None:
    def broken(argv):
        yield from libc.print("about to fail\n")
        raise KeyError("bug")

    sim = System(kernel="up")
    proc = sim.spawn(broken)
    sim.run()
    assert proc.exit_status == -abi.SIGILL
    assert sim.console(proc.pid) == "about to fail\n"

    strict = System(kernel="up", strict=True)
    strict.spawn(broken)
    with pytest.raises(KeyError):
        strict.run()
