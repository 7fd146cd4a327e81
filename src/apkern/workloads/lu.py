"""LU, after SPLASH-2's blocked dense LU factorisation: block steps between barriers.

`lu THREADS N [B [SEED]]` factors an N x N matrix of doubles (seeded, diagonally
dominant, so that no pivoting is needed, as in SPLASH-2's LU) in B x B blocks,
owned round-robin by the threads. For each diagonal block k: its owner factors it;
a barrier; the owners of the blocks right of it and below it solve them against it;
a barrier; every owner of an interior block subtracts the product of its row's and
column's blocks; a barrier. At the end thread 0 multiplies L by U and prints the
largest difference from the input, and whether it is within rounding.

The matrix lives in simulated memory (blocks are read and written as bytes, page
faults on first touch); the floating-point work Python does on a block is charged
per multiply-add at FLOP_PAIR instructions (SSE2: a load, mulsd, addsd and the
loop's share, as a compiler turns SPLASH-2's daxpy-like inner loops; estimated).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Generator
from typing import Any

from ..hw.ops import Op
from ..userland import libc
from .team import run_team

Gen = Generator[Op, Any, Any]

FLOP_PAIR = 4  # one multiply-add of the inner loops
SHARED = libc.PROGRAM_DATA + 0x300  # the barrier, then the parameters
TOLERANCE = 1e-9


def _matrix(n: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    a = [[rng.uniform(-1.0, 1.0) for _ in range(n)] for _ in range(n)]
    for i in range(n):
        a[i][i] += n  # diagonally dominant: stable without pivoting
    return a


class _Blocks:
    def __init__(self, base: int, n: int, b: int) -> None:
        self.base, self.n, self.b = base, n, b

    def addr(self, i: int, j: int) -> int:  # blocks are stored contiguously, row-major within a block
        return self.base + 8 * self.b * self.b * (i * (self.n // self.b) + j)

    def read(self, i: int, j: int) -> Gen:
        b = self.b
        data = yield from libc.read_mem(self.addr(i, j), 8 * b * b)
        flat = struct.unpack(f"<{b * b}d", data)
        return [list(flat[r * b : (r + 1) * b]) for r in range(b)]

    def write(self, i: int, j: int, blk: list[list[float]]) -> Gen:
        yield from libc.write_mem(
            self.addr(i, j), struct.pack(f"<{self.b * self.b}d", *(x for row in blk for x in row))
        )


def _factor(a: list[list[float]]) -> int:
    """In place: A = L U (L unit lower); returns the multiply-adds done."""
    b, ops = len(a), 0
    for k in range(b):
        for i in range(k + 1, b):
            a[i][k] /= a[k][k]
            for j in range(k + 1, b):
                a[i][j] -= a[i][k] * a[k][j]
            ops += b - k
    return ops


def _solve_row(d: list[list[float]], a: list[list[float]]) -> int:
    """A := L^-1 A with L the unit lower triangle of the factored diagonal block d."""
    b, ops = len(a), 0
    for k in range(b):
        for i in range(k + 1, b):
            for j in range(b):
                a[i][j] -= d[i][k] * a[k][j]
            ops += b
    return ops


def _solve_col(d: list[list[float]], a: list[list[float]]) -> int:
    """A := A U^-1 with U the upper triangle of the factored diagonal block d."""
    b, ops = len(a), 0
    for k in range(b):
        for i in range(b):
            a[i][k] /= d[k][k]
            for j in range(k + 1, b):
                a[i][j] -= a[i][k] * d[k][j]
        ops += b * (b - k)
    return ops


def _update(a: list[list[float]], left: list[list[float]], up: list[list[float]]) -> int:
    b = len(a)
    for i in range(b):
        for k in range(b):
            lik = left[i][k]
            row, src = a[i], up[k]
            for j in range(b):
                row[j] -= lik * src[j]
    return b * b * b


def _worker(me: int) -> Gen:
    threads, n, b, base = struct.unpack("<4I", (yield from libc.read_mem(SHARED + 16, 16)))
    blocks, nb = _Blocks(base, n, b), n // b
    barrier = libc.Barrier(SHARED, threads)

    def owner(i: int, j: int) -> int:
        return (i * nb + j) % threads

    for k in range(nb):
        if owner(k, k) == me:
            d = yield from blocks.read(k, k)
            yield from libc.compute(FLOP_PAIR * _factor(d))
            yield from blocks.write(k, k, d)
        yield from barrier.wait()
        d = None
        for m in range(k + 1, nb):
            for i, j, solve in ((k, m, _solve_row), (m, k, _solve_col)):
                if owner(i, j) == me:
                    d = d or (yield from blocks.read(k, k))
                    blk = yield from blocks.read(i, j)
                    yield from libc.compute(FLOP_PAIR * solve(d, blk))
                    yield from blocks.write(i, j, blk)
        yield from barrier.wait()
        for i in range(k + 1, nb):
            for j in range(k + 1, nb):
                if owner(i, j) == me:
                    blk = yield from blocks.read(i, j)
                    left = yield from blocks.read(i, k)
                    up = yield from blocks.read(k, j)
                    yield from libc.compute(FLOP_PAIR * _update(blk, left, up))
                    yield from blocks.write(i, j, blk)
        yield from barrier.wait()
    return 0


def lu(argv: list[str]) -> Gen:
    """Factor an N x N matrix with THREADS threads in B x B blocks; print the error of L U against it."""
    try:
        threads, n = int(argv[1]), int(argv[2])
        b = int(argv[3]) if len(argv) > 3 else 8
        seed = int(argv[4]) if len(argv) > 4 else 1
        if not (1 <= threads <= 32 and 1 <= b <= n <= 256 and n % b == 0) or len(argv) > 5:
            raise ValueError
    except (ValueError, IndexError):
        yield from libc.write_bytes(2, b"usage: lu THREADS N [B [SEED]] (B divides N, N <= 256)\n")
        return 2
    a = _matrix(n, seed)
    base = yield from libc.mmap(8 * n * n)
    blocks, nb = _Blocks(base, n, b), n // b
    for i in range(nb):
        for j in range(nb):
            yield from blocks.write(i, j, [row[j * b : (j + 1) * b] for row in a[i * b : (i + 1) * b]])
    yield from libc.Barrier(SHARED, threads).init()
    yield from libc.write_mem(SHARED + 16, struct.pack("<4I", threads, n, b, base))
    yield from run_team(_worker, threads)
    f = [[0.0] * n for _ in range(n)]
    for i in range(nb):
        for j in range(nb):
            blk = yield from blocks.read(i, j)
            for r in range(b):
                f[i * b + r][j * b : (j + 1) * b] = blk[r]
    err = 0.0
    for i in range(n):  # (L U)[i][j] = sum over k <= min(i, j) of L[i][k] U[k][j], L unit lower
        for j in range(n):
            s = sum(f[i][k] * f[k][j] for k in range(min(i, j))) + (f[i][j] if i <= j else f[i][j] * f[j][j])
            err = max(err, abs(s - a[i][j]))
    yield from libc.compute(FLOP_PAIR * n * n * n // 3)  # the check's multiply-adds
    ok = err < TOLERANCE * n
    yield from libc.print(f"lu: {n} x {n}, {b} x {b} blocks, {threads} threads: L U matches the input {ok}\n")
    return 0 if ok else 1
