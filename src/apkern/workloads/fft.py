"""FFT, after SPLASH-2's six-step 1-D FFT: transposes between barriers, row FFTs in between.

`fft THREADS M [SEED]` transforms N = 4^M complex points (seeded), seen as a
sqrt(N) x sqrt(N) matrix whose rows are shared out among the threads: transpose;
an FFT of every row; multiply by the twiddle factors; transpose; an FFT of every row;
transpose (Bailey's six steps), with a barrier after each step that reads other
threads' rows. Thread 0 writes the result to /fft.out (N complex doubles, real and
imaginary parts, little-endian), which a test compares with numpy's FFT of the
same input.

The matrix lives in simulated memory: rows are read and written as bytes, a
transpose writes each point to its new place (page faults on first touch). The
arithmetic is charged per radix-2 butterfly and per twiddle multiplication at the
costs below (SSE2 complex arithmetic: four multiplies, four adds, the loads and
stores and the loop's share; estimated).
"""

from __future__ import annotations

import cmath
import os
import random
import struct
from collections.abc import Generator
from typing import Any

from ..hw.ops import Op
from ..userland import libc
from .team import run_team

Gen = Generator[Op, Any, Any]

BUTTERFLY = 12  # one radix-2 butterfly: a complex multiply and two complex adds, with loads and stores
TWIDDLE = 8  # one complex multiply by a twiddle factor (computed from a table)
SHARED = libc.PROGRAM_DATA + 0x400  # the barrier, then the parameters
OUT = "/fft.out"


def points(m: int, seed: int) -> list[complex]:
    """The input: 4**m seeded complex points (the test draws the same)."""
    rng = random.Random(seed)
    return [complex(rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(4**m)]


def _fft(x: list[complex]) -> tuple[list[complex], int]:
    """Iterative radix-2 decimation-in-time FFT; returns the result and the butterflies done."""
    n = len(x)
    j, a = 0, list(x)
    for i in range(1, n):  # bit-reversal permutation
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            a[i], a[j] = a[j], a[i]
    size, ops = 2, 0
    while size <= n:
        w = cmath.exp(-2j * cmath.pi / size)
        for start in range(0, n, size):
            wk = 1.0 + 0j
            for k in range(size // 2):
                u, v = a[start + k], a[start + k + size // 2] * wk
                a[start + k], a[start + k + size // 2] = u + v, u - v
                wk *= w
                ops += 1
        size *= 2
    return a, ops


class _Matrix:
    def __init__(self, base: int, side: int) -> None:
        self.base, self.side = base, side

    def read_row(self, r: int) -> Gen:
        data = yield from libc.read_mem(self.base + 16 * self.side * r, 16 * self.side)
        f = struct.unpack(f"<{2 * self.side}d", data)
        return [complex(f[2 * i], f[2 * i + 1]) for i in range(self.side)]

    def write_row(self, r: int, row: list[complex]) -> Gen:
        yield from libc.write_mem(
            self.base + 16 * self.side * r,
            struct.pack(f"<{2 * self.side}d", *(p for z in row for p in (z.real, z.imag))),
        )

    def write_point(self, r: int, c: int, z: complex) -> Gen:
        yield from libc.write_mem(self.base + 16 * (self.side * r + c), struct.pack("<2d", z.real, z.imag))


def _worker(me: int) -> Gen:
    threads, side, a_base, b_base = struct.unpack("<4I", (yield from libc.read_mem(SHARED + 16, 16)))
    a, b = _Matrix(a_base, side), _Matrix(b_base, side)
    barrier = libc.Barrier(SHARED, threads)
    rows = range(side * me // threads, side * (me + 1) // threads)
    n = side * side

    def transpose(src: _Matrix, dst: _Matrix) -> Gen:  # my rows of src become my columns of dst
        for r in rows:
            row = yield from src.read_row(r)
            for c, z in enumerate(row):
                yield from dst.write_point(c, r, z)

    def row_ffts(m: _Matrix, twiddle: bool) -> Gen:
        for r in rows:
            row, ops = _fft((yield from m.read_row(r)))
            yield from libc.compute(BUTTERFLY * ops)
            if twiddle:  # the row r of the transposed input: scale point c by w^(r c)
                row = [z * cmath.exp(-2j * cmath.pi * r * c / n) for c, z in enumerate(row)]
                yield from libc.compute(TWIDDLE * side)
            yield from m.write_row(r, row)

    yield from transpose(a, b)
    yield from barrier.wait()
    yield from row_ffts(b, twiddle=True)
    yield from barrier.wait()
    yield from transpose(b, a)
    yield from barrier.wait()
    yield from row_ffts(a, twiddle=False)
    yield from barrier.wait()
    yield from transpose(a, b)
    yield from barrier.wait()
    return 0


def fft(argv: list[str]) -> Gen:
    """Transform 4**M points with THREADS threads; write them to /fft.out."""
    try:
        threads, m = int(argv[1]), int(argv[2])
        seed = int(argv[3]) if len(argv) > 3 else 1
        if not (1 <= threads <= 32 and 1 <= m <= 7) or len(argv) > 4:
            raise ValueError
    except (ValueError, IndexError):
        yield from libc.write_bytes(2, b"usage: fft THREADS M [SEED] (4**M points, 1 <= M <= 7)\n")
        return 2
    x = points(m, seed)
    side = 2**m
    a_base = yield from libc.mmap(16 * side * side)
    b_base = yield from libc.mmap(16 * side * side)
    a = _Matrix(a_base, side)
    for r in range(side):
        yield from a.write_row(r, x[r * side : (r + 1) * side])
    yield from libc.Barrier(SHARED, threads).init()
    yield from libc.write_mem(SHARED + 16, struct.pack("<4I", threads, side, a_base, b_base))
    yield from run_team(_worker, threads)
    fd = yield from libc.open(OUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    for r in range(side):
        yield from libc.write_bytes(fd, (yield from libc.read_mem(b_base + 16 * side * r, 16 * side)))
    yield from libc.close(fd)
    yield from libc.print(f"fft: {side * side} points, {threads} threads: written to {OUT}\n")
    return 0
