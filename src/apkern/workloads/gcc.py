"""gcc: a compiler pass with the calls, memory and compute of a traced cc1, scaled to its input.

`gcc [-verify] FILE` "compiles" FILE (preprocessed C, as SPEC2000's 176.gcc reads)
into FILE's name with .s for its suffix. What it does between its calls comes from
a real compilation, traced on the machine this was written on (Debian 12, GCC
12.2, x86-64):

    gcc -E gun.c -o gun.i       # zlib's examples/gun.c: 118,792 bytes preprocessed
    strace -f -ttt -T -o gcc.trace gcc -O2 -S gun.i -o gun.s

`traces/cc1.trace` holds cc1's lines of that trace (its pid; the driver's are
left out). The program replays cc1's calls from the open of its input to its
exit (the 181 calls of start-up and dynamic linking before it are left out):
141 calls: the input read in one call, 81 brk calls that grow the heap by
9.8 MB in all and shrink it now and then, 32 anonymous mmaps (10.1 MB, three of
2 MiB) and 3 munmaps, the output opened and written in 4,096-byte blocks (the
stdio buffer: 11 writes, 42,473 bytes), 8 path look-ups (getcwd, readlink,
newfstatat), two closes. Each call maps onto ours:
read, write, open, close as themselves; brk growth onto an mmap of its size
whose pages are all touched (cc1's allocators hand out what they get: it took
4,510 minor faults for the compilation, `/usr/bin/time -v` of cc1 on gun.i
against an empty file, 17.6 MB; these calls map 19.9 MB); a brk shrink
onto munmap of the latest growths it covers; mmap onto mmap, touched; munmap
onto munmap; a look-up onto stat.

Compute: cc1 executed 1,451,372,231 user instructions on gun.i and 55,061,460 on
an empty file (`valgrind --tool=cachegrind --cache-sim=no` of the cc1 command
line the driver ran), so the compilation is 1,396,310,771 instructions,
PER_BYTE = 11,754.2 per input byte. They are spread over the gaps between the
replayed calls in proportion to the trace's gaps (each less the smallest gap,
17 microseconds, what strace adds to every call).

For an input of S bytes everything scales by S / 118,792: the compute, the
sizes mapped (in whole pages, at least one) and the output (about 0.36 bytes a
byte of input); the calls stay the same in number and order. The output is real:
a line `.long CRC` per 50 bytes of input (CRC-32 of those bytes), so that -verify
can read FILE.s back and check it against the input; a mismatch is status 1.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from ..hw.memory import PAGE_SIZE
from ..hw.ops import Op
from ..userland import libc
from . import strace
from .stdio import BUFSIZ

Gen = Generator[Op, Any, Any]

TRACED_INPUT = 118_792
COMPILE_INSTRUCTIONS = 1_451_372_231 - 55_061_460
PER_BYTE = COMPILE_INSTRUCTIONS / TRACED_INPUT
CHUNK = 50  # input bytes per output line: 18 / 50 = 0.36, as 42,473 / 118,792 bytes in the trace


@dataclass(frozen=True)
class Event:
    call: str  # open_in read close lookup open_out write brk mmap munmap exit
    size: int  # bytes: brk growth (negative: shrink), mmap/munmap length, read/write count
    share: float  # of the compilation's instructions spent before this call


def parse(text: str) -> list[Event]:
    """cc1's calls from the open of its (.i) input to exit_group, as Events; ValueError if there is none."""
    calls = strace.parse(text).calls  # strace.TraceError is a ValueError
    rows = [(c.start, c.duration or 0.0, c.name, c.args, c.result) for c in calls]
    first = next((i for i, r in enumerate(rows) if r[2] == "openat" and re.search(r'\.i"', r[3])), None)
    if first is None:
        raise ValueError("no open of a .i input in the trace")
    gaps = [max(0.0, rows[i][0] - rows[i - 1][0] - rows[i - 1][1]) for i in range(first, len(rows))]
    floor = min(g for g in gaps if g > 0)
    gaps = [max(0.0, g - floor) for g in gaps]
    total = sum(gaps)
    events, brk = [], None
    for (_start, _dur, call, args, ret), gap in zip(rows[first:], gaps, strict=True):
        share, a = gap / total, strace.split_args(args)
        if call == "openat":
            events.append(Event("open_out" if "O_CREAT" in args else "open_in", 0, share))
        elif call in ("read", "write"):
            events.append(Event(call, int(ret), share))
        elif call == "close":
            events.append(Event("close", 0, share))
        elif call == "brk":
            now = int(ret, 16)
            events.append(Event("brk", 0 if brk is None else now - brk, share))
            brk = now
        elif call == "mmap" and a[4] == "-1":
            events.append(Event("mmap", int(a[1]), share))
        elif call == "munmap":
            events.append(Event("munmap", int(a[1]), share))
        elif call == "exit_group":
            events.append(Event("exit", 0, share))
        else:  # newfstatat, readlink, getcwd and the like: a look-up
            events.append(Event("lookup", 0, share))
    return events


@functools.cache
def events() -> tuple[Event, ...]:
    """The replayed calls of the shipped trace."""
    return tuple(parse((importlib.resources.files(__package__) / "traces" / "cc1.trace").read_text()))


def assemble(source: bytes) -> bytes:
    """The output for `source`: `.long CRC` per CHUNK bytes."""
    return b"".join(b"\t.long 0x%08x\n" % zlib.crc32(source[i : i + CHUNK]) for i in range(0, len(source), CHUNK))


def _pages(nbytes: float) -> int:
    return max(1, round(nbytes / PAGE_SIZE)) * PAGE_SIZE


def _touch(addr: int, length: int) -> Gen:
    for off in range(0, length, PAGE_SIZE):
        yield from libc.store(addr + off, off)


def output_path(path: str) -> str:
    return (path[:-2] if path.endswith(".i") else path) + ".s"


def compile_file(path: str, out_path: str) -> Gen:
    """Replay cc1 on `path` (its size scales the trace); return the input's bytes."""
    size = (yield from libc.stat(path))[1]
    scale = size / TRACED_INPUT
    buf = yield from libc.mmap(max(size, 1))
    outbuf = yield from libc.mmap(BUFSIZ)
    heap: list[tuple[int, int]] = []  # brk growths, oldest first
    maps: dict[int, list[tuple[int, int]]] = {}  # traced length -> our regions
    source, output, written, fd = b"", b"", 0, -1
    write_events = sum(1 for e in events() if e.call == "write")
    seen_writes = 0
    for e in events():
        yield from libc.compute(round(e.share * PER_BYTE * size))
        if e.call == "open_in":
            fd = yield from libc.open(path)
        elif e.call == "read":
            got = 0
            while got < size and (n := (yield from libc.read(fd, buf + got, size - got))):
                got += n
            if got:
                source = yield from libc.read_mem(buf, got)
            output = assemble(source)
        elif e.call == "close":
            yield from libc.close(fd)
        elif e.call == "lookup":
            yield from libc.stat(path)
        elif e.call == "open_out":
            fd = yield from libc.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        elif e.call == "write":
            seen_writes += 1
            end = len(output) if seen_writes == write_events else min(len(output), written + BUFSIZ)
            while written < end:
                k = min(BUFSIZ, end - written)
                yield from libc.write_mem(outbuf, output[written : written + k])
                written += yield from libc.write(fd, outbuf, k)
        elif e.call in ("mmap", "brk") and e.size > 0:
            length = _pages(e.size * scale)
            addr = yield from libc.mmap(length)
            yield from _touch(addr, length)
            (heap if e.call == "brk" else maps.setdefault(e.size, [])).append((addr, length))
        elif e.call == "brk" and e.size < 0:
            left = _pages(-e.size * scale)
            while heap and heap[-1][1] <= left:
                addr, length = heap.pop()
                yield from libc.munmap(addr, length)
                left -= length
        elif e.call == "munmap" and maps.get(e.size):
            yield from libc.munmap(*maps[e.size].pop())
    return source


def _usage() -> Gen:
    yield from libc.write_bytes(2, b"usage: gcc [-verify] FILE\n")
    return 2


def gcc(argv: list[str]) -> Gen:
    """Compile FILE into its .s; with -verify, read that back and check it against FILE."""
    args = argv[1:]
    verify = bool(args) and args[0] == "-verify"
    args = args[1:] if verify else args
    if len(args) != 1 or args[0].startswith("-"):
        return (yield from _usage())
    path, out_path = args[0], output_path(args[0])
    try:
        source = yield from compile_file(path, out_path)
    except OSError as e:
        yield from libc.write_bytes(2, f"gcc: {path}: {e.strerror}\n".encode())
        return 1
    yield from libc.print(f"gcc: {path}: {len(source)} bytes -> {out_path}\n")
    if not verify:
        return 0
    fd = yield from libc.open(out_path)
    got = b""
    while chunk := (yield from libc.read_bytes(fd, libc.STAGING_SIZE)):
        got += chunk
    yield from libc.close(fd)
    ok = got == assemble(source)
    yield from libc.print(f"gcc: {out_path} matches its input {ok}\n")
    return 0 if ok else 1
