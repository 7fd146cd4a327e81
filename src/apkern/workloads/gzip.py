"""gzip: compress a file as GNU gzip does, with its read and write pattern and memory, from a real trace.

`gzip [-verify] FILE` deflates FILE (zlib at gzip's default level 6, gzip format)
into FILE.gz and prints the sizes. It really compresses the bytes it read from
simulated memory. With -verify it reads FILE.gz back, inflates it (which checks the
CRC-32 and length in the gzip trailer), compares the CRC-32 with the one it took
of the input while compressing, and prints the verdict; a mismatch is status 1.
`mktext PATH BYTES [SEED]` makes an input (the tree's kind of text, see tree.py).

The pattern comes from a trace of GNU gzip 1.12 (Debian 12) compressing 4,000,000
bytes of that text (`tree.text(4_000_000, 1)` written to t4.txt):

    strace -f -ttt -T -o gzip.trace gzip -c t4.txt > /dev/null

- reads into its window: one of 65,536 bytes, then 32,768 bytes each (120 of them,
  a short one and the end of file); the compute gaps between them are even
  (0.45-0.65 ms per 32 KiB block in the trace of a 4 MB file of headers), so the
  compute is charged per block, in proportion to its bytes;
- writes of 262,144 bytes (two of them, then the remaining 247,413 bytes);
- no mmap or brk of its own: its buffers (window, hash chains, literal and output
  buffers) are static, 814,784 bytes of BSS (`size /usr/bin/gzip`), all in use
  once the first 64 KiB have gone through deflate; the program maps that much and
  touches every page, a store a page, before its first read (the first-touch
  faults; the trace cannot show them).

User compute, measured with `valgrind --tool=cachegrind --cache-sim=no gzip -c`
on tree.text of 4,000,000 and 2,000,000 bytes (seed 1; the difference of the
instruction counts over the difference of the sizes): GZIP_PER_BYTE = 191.9 per
input byte (this text has long repeats and costs deflate's lazy match search
more than the 114.3 per byte measured the same way on the first 4 MB of
/usr/include's headers). The check's inflate: `gzip -dc` on the two outputs the
same way, GUNZIP_PER_BYTE = 20.8 per output byte.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Generator
from typing import Any

from ..hw.memory import PAGE_SIZE
from ..hw.ops import Op
from ..userland import libc

Gen = Generator[Op, Any, Any]

FIRST_READ = 65536
READ = 32768
WRITE = 262144
BSS = 814784
GZIP_PER_BYTE = 191.9
GUNZIP_PER_BYTE = 20.8
READMEM_PER_BYTE = 0.25  # what bringing a block into the program by ReadMem charged already
LEVEL = 6


def _usage() -> Gen:
    yield from libc.write_bytes(2, b"usage: gzip [-verify] FILE\n")
    return 2


def _write_all(fd: int, buf: int, data: bytes) -> Gen:
    yield from libc.write_mem(buf, data)
    done = 0
    while done < len(data):
        done += yield from libc.write(fd, buf + done, len(data) - done)


def compress(fd: int, out: int, bss: int, outbuf: int) -> Gen:
    """Deflate everything `fd` gives into `out`; return (bytes in, bytes out, CRC-32 of the input)."""
    z = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)
    pending, nin, nout, crc = b"", 0, 0, 0
    want = FIRST_READ
    while True:
        at = bss if want == FIRST_READ else bss + READ  # into the window's upper half after the first fill
        n = yield from libc.read(fd, at, want)
        if n == 0:
            break
        data = yield from libc.read_mem(at, n)
        yield from libc.compute(round((GZIP_PER_BYTE - READMEM_PER_BYTE) * n))
        crc = zlib.crc32(data, crc)
        pending += z.compress(data)
        nin += n
        want = READ
        while len(pending) >= WRITE:
            yield from _write_all(out, outbuf, pending[:WRITE])
            pending, nout = pending[WRITE:], nout + WRITE
    pending += z.flush()
    if pending:
        yield from _write_all(out, outbuf, pending)
        nout += len(pending)
    return nin, nout, crc


def check(path: str, crc: int, buf: int) -> Gen:
    """True when `path` inflates to data with CRC-32 `crc` (and its own trailer agrees)."""
    fd = yield from libc.open(path)
    z = zlib.decompressobj(31)
    got, nout = 0, 0
    try:
        while n := (yield from libc.read(fd, buf, WRITE)):
            plain = z.decompress((yield from libc.read_mem(buf, n)))
            yield from libc.compute(round(GUNZIP_PER_BYTE * len(plain)))
            got, nout = zlib.crc32(plain, got), nout + len(plain)
    except zlib.error:
        return False
    finally:
        yield from libc.close(fd)
    return z.eof and got == crc


def gzip(argv: list[str]) -> Gen:
    """Compress FILE into FILE.gz; with -verify, inflate it again and compare."""
    args = argv[1:]
    verify = bool(args) and args[0] == "-verify"
    args = args[1:] if verify else args
    if len(args) != 1 or args[0].startswith("-"):
        return (yield from _usage())
    path = args[0]
    bss = yield from libc.mmap(BSS)
    for page in range(0, BSS, PAGE_SIZE):
        yield from libc.store(bss + page, 0)
    outbuf = yield from libc.mmap(WRITE)
    try:
        fd = yield from libc.open(path)
    except OSError as e:
        yield from libc.write_bytes(2, f"gzip: {path}: {e.strerror}\n".encode())
        return 1
    out = yield from libc.open(path + ".gz", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        nin, nout, crc = yield from compress(fd, out, bss, outbuf)
    finally:
        yield from libc.close(fd)
        yield from libc.close(out)
    yield from libc.print(f"gzip: {path}: {nin} bytes -> {nout} bytes\n")
    if not verify:
        return 0
    ok = yield from check(path + ".gz", crc, outbuf)
    yield from libc.print(f"gzip: {path}.gz inflates to the input {ok}\n")
    return 0 if ok else 1
