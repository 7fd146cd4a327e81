"""Application workloads run unmodified on every kernel and do their work for real (issue: real workloads)."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
from diffkit import PORTS, assert_clean, compare_all, observe

from apkern.workloads import fft, lu, radix


@pytest.mark.parametrize(("threads", "keys", "bits"), [(4, 3001, 8), (3, 1000, 4), (1, 500, 16)])
def test_radix_sorts_the_same_on_every_kernel(threads: int, keys: int, bits: int) -> None:
    argv = ["radix", str(threads), str(keys), str(bits)]
    ref, runs = compare_all(radix, argv, [2, 4, 8])
    assert ref.console == f"radix: {keys} keys, {threads} threads, {bits}-bit digits: sorted True, permutation True\n"
    assert ref.top_status == 0
    if threads > 1:  # the threads really ran side by side on the application processors (and on the port's CPUs)
        for got in (runs[2], runs[-1]):  # apkern and smp on 8 CPUs
            assert got.stats["time"] < ref.stats["time"], got.label
            assert got.stats["syscalls_by_name"].get("futex", 0) > 0


@pytest.mark.parametrize("kernel", PORTS)
def test_radix_on_a_perturbed_machine(kernel: str) -> None:
    got = observe(radix, ["radix", "4", "2000", "8", "7"], kernel, 5, perturb=3)
    assert got.console.endswith("sorted True, permutation True\n")
    assert_clean(got)


@pytest.mark.parametrize("argv", [["radix"], ["radix", "0", "10"], ["radix", "2", "10", "3"], ["radix", "x", "y"]])
def test_radix_usage(argv: list[str]) -> None:
    ref, _ = compare_all(radix, argv, [2])
    assert ref.top_status == 2 and ref.per_pid[ref.top_pid][2].startswith("usage: radix")


@pytest.mark.parametrize(("threads", "n", "b"), [(4, 32, 8), (3, 24, 4), (1, 16, 16)])
def test_lu_factors_the_same_on_every_kernel(threads: int, n: int, b: int) -> None:
    argv = ["lu", str(threads), str(n), str(b)]
    ref, _ = compare_all(lu, argv, [2, 4, 8])
    assert ref.console == f"lu: {n} x {n}, {b} x {b} blocks, {threads} threads: L U matches the input True\n"


@pytest.mark.parametrize("kernel", PORTS)
def test_lu_on_a_perturbed_machine(kernel: str) -> None:
    got = observe(lu, ["lu", "4", "32", "8", "5"], kernel, 5, perturb=2)
    assert got.console.endswith("matches the input True\n")
    assert_clean(got)


def test_lus_check_finds_wrong_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules["apkern.workloads.lu"], "_update", lambda a, left, up: 0)
    ref = observe(lu, ["lu", "2", "16", "4"], "up", 1)
    assert ref.top_status == 1 and ref.console.endswith("matches the input False\n")


@pytest.mark.parametrize("argv", [["lu"], ["lu", "2", "10", "3"], ["lu", "2", "512", "8"]])
def test_lu_usage(argv: list[str]) -> None:
    ref, _ = compare_all(lu, argv, [2])
    assert ref.top_status == 2 and ref.per_pid[ref.top_pid][2].startswith("usage: lu")


fft_mod = sys.modules["apkern.workloads.fft"]


def _fft_out(obs) -> np.ndarray:
    data = obs.files[fft_mod.OUT]
    f = struct.unpack(f"<{len(data) // 8}d", data)
    return np.array([complex(f[2 * i], f[2 * i + 1]) for i in range(len(f) // 2)])


@pytest.mark.parametrize(("threads", "m"), [(4, 3), (3, 4), (1, 2)])
def test_fft_matches_numpy_on_every_kernel(threads: int, m: int) -> None:
    ref, runs = compare_all(fft, ["fft", str(threads), str(m)], [2, 4, 8])  # the same bytes in /fft.out
    want = np.fft.fft(np.array(fft_mod.points(m, 1)))
    assert np.max(np.abs(_fft_out(ref) - want)) < 1e-9 * len(want)


@pytest.mark.parametrize("kernel", PORTS)
def test_fft_on_a_perturbed_machine(kernel: str) -> None:
    got = observe(fft, ["fft", "4", "3", "9"], kernel, 5, perturb=4)
    want = np.fft.fft(np.array(fft_mod.points(3, 9)))
    assert np.max(np.abs(_fft_out(got) - want)) < 1e-9 * len(want)
    assert_clean(got)


@pytest.mark.parametrize("argv", [["fft"], ["fft", "2", "0"], ["fft", "2", "9"]])
def test_fft_usage(argv: list[str]) -> None:
    ref, _ = compare_all(fft, argv, [2])
    assert ref.top_status == 2 and ref.per_pid[ref.top_pid][2].startswith("usage: fft")
