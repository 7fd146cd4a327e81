"""A user's own program file and TOML workloads run unmodified, and identically, on every kernel.

Programs come through `apkern.workloads.source.resolve`, as `apkern run` and `compare` take
them; each is compared by diffkit's oracle between the uniprocessor kernel and every other
kernel of `apkern.system.KERNELS`. The examples in `examples/` are run here, and so is a
workload made of every call the TOML format knows, so a call added to the format is covered.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from diffkit import compare_all

from apkern import libc
from apkern.system import KERNELS
from apkern.workloads import declarative
from apkern.workloads.source import resolve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OTHERS = [k for k in KERNELS if k != "up"]  # each compared with "up"


def _examples() -> list[Path]:
    return sorted(EXAMPLES.glob("*.toml")) + sorted(EXAMPLES.glob("*.py"))


def test_there_are_examples_of_both_kinds() -> None:
    names = [p.name for p in _examples()]
    assert sum(n.endswith(".toml") for n in names) >= 2 and any(n.endswith(".py") for n in names), names


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_every_example_runs_identically_on_every_kernel(path: Path) -> None:
    prog = resolve(str(path))
    ref, runs = compare_all(prog.main, prog.argv, [4], files=prog.files, kernels=OTHERS)
    assert ref.top_status == 0, ref.console
    assert [r.kernel for r in runs] == OTHERS
    if prog.kind == "toml":
        w = declarative.load_workload(str(path))
        copies = sum(p.count for p in w.processes)
        assert ref.console.endswith(f"{w.name}: {copies} of {copies} processes succeeded\n")
        assert "errors" not in ref.console and len(ref.procs) == 1 + copies
        assert not [f for f in ref.files if f.startswith(declarative.REPORT_DIR)]  # the launcher removed them
    else:
        assert ref.console.strip() and ref.files


def test_a_file_function_other_than_main_with_arguments(tmp_path: Path) -> None:
    prog = resolve(str(EXAMPLES / "hello_threads.py") + ":count_down", ["2"])
    ref, _ = compare_all(prog.main, prog.argv, [2], kernels=OTHERS)
    assert ref.console == "2...\n1...\nlift-off\n"


def test_a_workload_of_every_call_runs_identically(tmp_path: Path) -> None:
    """Every call of the format, two threads in two copies, a pipe, generated files: the same everywhere."""
    params = {
        "write": '{ pipe = "p", bytes = 300 }',
        "read": '{ file = "/in/{copy}.txt", bytes = 100 }',
        "open": '{ file = "/in/{copy}.txt" }',
        "stat": '{ file = "/in/0.txt" }',
        "sleep": "{ instructions = 500 }",
        "spin": "{ instructions = 200 }",
        "mmap": "{ bytes = 12288 }",
    }
    mix = "\n".join(f"{call} = {params.get(call, 1)}" for call in declarative.CALLS)
    text = f"""
[files]
"/in/0.txt" = {{ text = "zero ", repeat = 50 }}
"/in/1.txt" = {{ size = 333, seed = 5 }}

[[pipe]]
name = "p"

[[process]]
name = "all"
count = 2
threads = 2
iterations = 3
compute = 700
[process.calls]
{mix}

[[process]]
name = "sink"
threads = 2
iterations = 2
[process.calls]
read = {{ pipe = "p", bytes = 256 }}
write = {{ file = "/out/sink.{{thread}}.log", bytes = 10 }}
"""
    path = tmp_path / "every.toml"
    path.write_text(text)
    prog = resolve(str(path))
    ref, runs = compare_all(prog.main, prog.argv, [3], files=prog.files, kernels=OTHERS)
    lines = ref.console.splitlines()
    assert lines[-1] == "every: 3 of 3 processes succeeded", ref.console
    calls = 2 * 3 * len(declarative.CALLS)  # threads x iterations x one of each
    assert lines[0].startswith(f"all[0]: 2 threads x 3 iterations, {calls} calls, wrote 1800 bytes")
    assert lines[0].endswith("counter 6")  # both threads' mutex calls: none lost
    written = [line.split("wrote 1800 bytes (sum ")[1].split(")")[0] for line in lines[:2]]
    # the sink read all both copies wrote into the pipe: its byte count and sum are theirs added up
    sink = lines[2]
    assert "read 3600 bytes" in sink and f"(sum {sum(int(w, 16) for w in written):#x})" in sink.split(", read ")[1]
    assert [len(ref.files[f"/out/sink.{t}.log"]) for t in (0, 1)] == [2 * 10, 2 * 10]
    for got in runs:
        assert got.stats["syscalls_by_name"].get("spin") == ref.stats["syscalls_by_name"]["spin"] == 2 * 2 * 3
        if got.kernel == "apkern":
            assert got.stats["forwarded_calls"] > calls


def test_unlink_atomic_add_mutex_and_the_constants_on_every_kernel() -> None:
    counter, lock = libc.PROGRAM_DATA, libc.PROGRAM_DATA + 4

    def adder(n):
        m = libc.mutex(lock)
        for _ in range(20):
            yield from libc.atomic_add(counter, n)
            yield from m.lock()
            yield from libc.store(counter + 8, (yield from libc.load(counter + 8)) + 1)
            yield from m.unlock()
        return 0

    def main(argv):
        fd = yield from libc.open("/tmp/x", libc.O_RDWR | libc.O_CREAT | libc.O_TRUNC)
        yield from libc.write_bytes(fd, b"data")
        yield from libc.unlink("/tmp/x")
        try:
            yield from libc.open("/tmp/x")
        except OSError as e:
            yield from libc.print(f"gone: {e.errno == libc.ENOENT}\n")
        yield from libc.lseek(fd, 0, libc.SEEK_SET)
        yield from libc.print(f"still readable: {(yield from libc.read_bytes(fd, 9))!r}\n")
        for path, want in (("/", libc.EISDIR), ("/tmp/x", libc.ENOENT), ("/keep/f/below", libc.ENOTDIR)):
            try:
                yield from libc.unlink(path)
            except OSError as e:
                yield from libc.print(f"unlink {path}: {e.errno == want}\n")
        tids = []
        for n in (1, 2, 3):
            tids.append((yield from libc.thread_create(adder, n)))
        for tid in tids:
            yield from libc.thread_join(tid)
        yield from libc.print(f"sum {(yield from libc.load(counter))}, locked {(yield from libc.load(counter + 8))}\n")
        yield from libc.print(
            f"signals {libc.SIGKILL} {libc.SIGUSR1}, old {(yield from libc.atomic_add(counter, -200))}\n"
        )
        return 0

    ref, runs = compare_all(main, ["main"], [2, 4], files={"/keep/f": b"f"}, kernels=OTHERS)
    assert ref.console == (
        "gone: True\nstill readable: b'data'\nunlink /: True\nunlink /tmp/x: True\nunlink /keep/f/below: True\n"
        "sum 120, locked 60\nsignals 9 10, old 120\n"
    )
    assert ref.files["/keep/f"] == b"f" and "/tmp/x" not in ref.files
    for got in runs:
        assert got.stats["syscalls_by_name"]["unlink"] == 4
