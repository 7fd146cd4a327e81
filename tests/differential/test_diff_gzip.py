"""gzip (and mktext, its input) run unmodified on every kernel; the output is real gzip data."""

from __future__ import annotations

import gzip as host_gzip
import sys
from collections.abc import Generator
from typing import Any

import pytest
from diffkit import assert_ak_clean, compare_all, observe

from apkern import libc
from apkern.workloads import tree

gzip_mod = sys.modules["apkern.workloads.gzip"]


def text_then_gzip(argv: list[str]) -> Generator[Any, Any, int]:
    """text_then_gzip BYTES [-verify]: mktext /in BYTES, then gzip [-verify] /in; gzip's status."""
    pid = yield from libc.spawn("mktext", ["mktext", "/in", argv[1], "2"])
    if (yield from libc.waitpid(pid)) != 0:
        return 100
    pid = yield from libc.spawn("gzip", ["gzip", *argv[2:], "/in"])
    return (yield from libc.waitpid(pid))


def test_gzip_compresses_the_same_on_every_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gzip_mod, "GZIP_PER_BYTE", 10)  # less machine time, the same calls and bytes: a quicker test
    monkeypatch.setattr(gzip_mod, "GUNZIP_PER_BYTE", 2)
    ref, runs = compare_all(text_then_gzip, ["text_then_gzip", "70000", "-verify"], [2, 4, 8])
    data = tree.text(70000, 2)
    assert ref.files["/in"] == data and host_gzip.decompress(ref.files["/in.gz"]) == data
    assert ref.console.endswith(f"-> {len(ref.files['/in.gz'])} bytes\ngzip: /in.gz inflates to the input True\n")
    assert ref.top_status == 0
    calls = runs[0].stats["syscalls_by_name"]
    assert calls["read"] >= 3 and calls["write"] >= 1  # 64 KiB, then 32 KiB, then end of file


def test_gzip_on_a_perturbed_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gzip_mod, "GZIP_PER_BYTE", 10)
    monkeypatch.setattr(gzip_mod, "GUNZIP_PER_BYTE", 2)
    got = observe(text_then_gzip, ["text_then_gzip", "100000", "-verify"], "apkern", 5, perturb=8)
    assert got.top_status == 0 and got.console.endswith("inflates to the input True\n")
    assert_ak_clean(got)


def test_gzips_check_catches_a_wrong_output(monkeypatch: pytest.MonkeyPatch) -> None:
    real = gzip_mod._write_all

    def corrupt(fd: int, buf: int, data: bytes) -> Generator[Any, Any, None]:
        yield from real(fd, buf, data[:100] + bytes([data[100] ^ 1]) + data[101:])

    monkeypatch.setattr(gzip_mod, "_write_all", corrupt)
    got = observe(text_then_gzip, ["text_then_gzip", "20000", "-verify"], "up", 1)
    assert got.top_status == 1 and got.console.endswith("inflates to the input False\n")


@pytest.mark.parametrize(
    "argv", [["gzip"], ["gzip", "-x"], ["gzip", "/a", "/b"], ["mktext", "rel", "10"], ["mktext", "/a", "-1"]]
)
def test_usage(argv: list[str]) -> None:
    ref, _ = compare_all(argv[0], argv, [2])
    assert ref.top_status == 2 and ref.console.startswith(f"usage: {argv[0]}")


def test_gzip_of_a_missing_file() -> None:
    ref, _ = compare_all("gzip", ["gzip", "/nope"], [2])
    assert ref.top_status == 1 and ref.console == "gzip: /nope: No such file or directory\n"
