"""RADIX, after SPLASH-2's integer radix sort: per-thread histograms, a barrier, a global prefix sum, a permutation.

`radix THREADS KEYS [BITS [SEED]]` sorts KEYS 32-bit keys (from a seeded generator)
with THREADS threads, BITS bits of the key per pass (32/BITS passes). Each pass:
every thread counts the digits of its slice into its own histogram in shared
memory; a barrier; every thread works out, from all the histograms, where each
of its keys goes (the keys with a smaller digit, then those of the threads
before it with the same digit: a stable sort); it writes its keys there; a
barrier; source and destination swap. At the end thread 0 checks that the array
is sorted and a permutation of the input (by a checksum) and prints both.

The keys and histograms live in simulated memory: the threads really read and write
them (page faults on first touch, `rep movs`-style block moves), and synchronise
with libc's futex barrier. The arithmetic Python does on the words it read is
charged per key, at the costs below (the inner loops of SPLASH-2's radix.C, as a
compiler turns them into IA-32 instructions: load, shift, mask, index, increment,
store; estimated, not measured).
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

HIST_PER_KEY = 7  # digit = (key >> shift) & mask; hist[digit]++: load, shift, and, load, inc, store, loop
RANK_PER_DIGIT = 6  # one step of the prefix sums over the histograms
PERMUTE_PER_KEY = 10  # digit, rank[digit]++, dest[rank] = key: the scatter loop
SHARED = libc.PROGRAM_DATA + 0x200  # the program's static data: barrier, then the array addresses
CHUNK = 1024  # keys a thread moves through user memory at a time (the staging buffer's size)


def _keys(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(32) for _ in range(n)]


def _read_words(addr: int, n: int) -> Gen:
    out: list[int] = []
    for i in range(0, n, CHUNK):
        k = min(CHUNK, n - i)
        out += struct.unpack(f"<{k}I", (yield from libc.read_mem(addr + 4 * i, 4 * k)))
    return out


def _write_words(addr: int, words: list[int]) -> Gen:
    for i in range(0, len(words), CHUNK):
        part = words[i : i + CHUNK]
        yield from libc.write_mem(addr + 4 * i, struct.pack(f"<{len(part)}I", *part))


def _worker(me: int) -> Gen:
    threads, n, bits, src, dst, hists = struct.unpack("<6I", (yield from libc.read_mem(SHARED + 16, 24)))
    barrier = libc.Barrier(SHARED, threads)
    radix_n = 1 << bits
    lo, hi = n * me // threads, n * (me + 1) // threads
    for shift in range(0, 32, bits):
        mine = yield from _read_words(src + 4 * lo, hi - lo)
        hist = [0] * radix_n
        for key in mine:
            hist[(key >> shift) & (radix_n - 1)] += 1
        yield from libc.compute(HIST_PER_KEY * len(mine))
        yield from _write_words(hists + 4 * radix_n * me, hist)
        yield from barrier.wait()
        every = yield from _read_words(hists, radix_n * threads)
        rank, below = [0] * radix_n, 0
        for d in range(radix_n):  # keys with a smaller digit, then earlier threads' keys with this digit
            rank[d] = below + sum(every[t * radix_n + d] for t in range(me))
            below += sum(every[t * radix_n + d] for t in range(threads))
        yield from libc.compute(RANK_PER_DIGIT * radix_n * (threads + me))
        for key in mine:
            d = (key >> shift) & (radix_n - 1)
            yield from libc.store(dst + 4 * rank[d], key)
            rank[d] += 1
        yield from libc.compute(PERMUTE_PER_KEY * len(mine))
        yield from barrier.wait()
        src, dst = dst, src
    return 0


def radix(argv: list[str]) -> Gen:
    """Sort KEYS keys with THREADS threads; print whether the result is sorted and a permutation of the input."""
    try:
        threads, n = int(argv[1]), int(argv[2])
        bits = int(argv[3]) if len(argv) > 3 else 8
        seed = int(argv[4]) if len(argv) > 4 else 1
        if not (1 <= threads <= 32 and 1 <= n <= 1 << 18 and bits in (1, 2, 4, 8, 16)) or len(argv) > 5:
            raise ValueError
    except (ValueError, IndexError):
        yield from libc.write_bytes(2, b"usage: radix THREADS KEYS [BITS [SEED]] (BITS 1, 2, 4, 8 or 16)\n")
        return 2
    keys = _keys(n, seed)
    src = yield from libc.mmap(4 * n)
    dst = yield from libc.mmap(4 * n)
    hists = yield from libc.mmap(4 * (1 << bits) * threads)
    yield from _write_words(src, keys)
    yield from libc.Barrier(SHARED, threads).init()
    yield from libc.write_mem(SHARED + 16, struct.pack("<6I", threads, n, bits, src, dst, hists))
    yield from run_team(_worker, threads)
    result = yield from _read_words(src if (32 // bits) % 2 == 0 else dst, n)
    ok = all(a <= b for a, b in zip(result, result[1:], strict=False))
    same = sorted(keys) == result
    yield from libc.compute(3 * n)  # the check: a compare per key
    yield from libc.print(f"radix: {n} keys, {threads} threads, {bits}-bit digits: sorted {ok}, permutation {same}\n")
    return 0 if ok and same else 1
