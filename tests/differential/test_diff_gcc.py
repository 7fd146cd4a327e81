"""gcc (cc1's traced calls, memory and compute, scaled to its input) runs unmodified on every kernel."""

from __future__ import annotations

import collections
import sys
from collections.abc import Generator
from typing import Any

import pytest
from diffkit import assert_ak_clean, compare_all, observe

from apkern import libc
from apkern.workloads import tree

gcc_mod = sys.modules["apkern.workloads.gcc"]


def text_then_gcc(argv: list[str]) -> Generator[Any, Any, int]:
    """text_then_gcc BYTES: mktext /a.i BYTES, then gcc -verify /a.i; gcc's status."""
    pid = yield from libc.spawn("mktext", ["mktext", "/a.i", argv[1], "4"])
    if (yield from libc.waitpid(pid)) != 0:
        return 100
    pid = yield from libc.spawn("gcc", ["gcc", "-verify", "/a.i"])
    return (yield from libc.waitpid(pid))


def test_the_trace_replayed() -> None:
    ev = gcc_mod.events()
    calls = collections.Counter(e.call for e in ev)
    assert dict(calls) == {
        "open_in": 1,
        "read": 1,
        "close": 2,
        "lookup": 8,
        "brk": 81,
        "mmap": 32,
        "munmap": 3,
        "open_out": 1,
        "write": 11,
        "exit": 1,
    }
    assert abs(sum(e.share for e in ev) - 1) < 1e-9 and all(e.share >= 0 for e in ev)
    assert [e.size for e in ev if e.call == "read"] == [gcc_mod.TRACED_INPUT]
    assert sum(e.size for e in ev if e.call == "write") == 42473
    with pytest.raises(ValueError):
        gcc_mod.parse("1 1.0 getpid() = 1 <0.000001>\n")


def test_gcc_compiles_the_same_on_every_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcc_mod, "PER_BYTE", 200)  # less machine time, the same calls: a quicker test
    ref, runs = compare_all(text_then_gcc, ["text_then_gcc", "3000"], [2, 4, 8])
    source = tree.text(3000, 4)
    assert ref.files["/a.s"] == gcc_mod.assemble(source) and len(ref.files["/a.s"]) == 18 * 60
    assert ref.console.endswith("gcc: /a.i: 3000 bytes -> /a.s\ngcc: /a.s matches its input True\n")
    assert ref.top_status == 0
    assert runs[0].stats["syscalls_by_name"]["munmap"] > 0 and runs[0].stats["forwarded_page_faults"] > 100


def test_gcc_on_a_perturbed_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcc_mod, "PER_BYTE", 200)
    got = observe(text_then_gcc, ["text_then_gcc", "2000"], "apkern", 5, perturb=9)
    assert got.top_status == 0 and got.console.endswith("matches its input True\n")
    assert_ak_clean(got)


def test_gccs_check_catches_a_wrong_output(monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = gcc_mod.assemble, []

    def wrong_once(source: bytes) -> bytes:
        calls.append(1)
        out = real(source)
        return out[:-2] + b"0\n" if len(calls) == 1 else out

    monkeypatch.setattr(gcc_mod, "assemble", wrong_once)
    monkeypatch.setattr(gcc_mod, "PER_BYTE", 10)
    got = observe(text_then_gcc, ["text_then_gcc", "500"], "up", 1)
    assert got.top_status == 1 and got.console.endswith("matches its input False\n")


@pytest.mark.parametrize("argv", [["gcc"], ["gcc", "-O2", "x.i"], ["gcc", "/a", "/b"]])
def test_usage(argv: list[str]) -> None:
    ref, _ = compare_all("gcc", argv, [2])
    assert ref.top_status == 2 and ref.console.startswith("usage: gcc")


def test_gcc_of_a_missing_file() -> None:
    ref, _ = compare_all("gcc", ["gcc", "/nope.i"], [2])
    assert ref.top_status == 1 and ref.console == "gcc: /nope.i: No such file or directory\n"
