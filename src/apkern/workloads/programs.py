"""The built-in programs of the workloads, and the whole registry: the user land's programs and these.

The system installs every program here as /bin/NAME, so `spawn(NAME, argv)` and
`apkern run NAME` find it and a program may start another by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..userland import libc
from ..userland import programs as base
from .fft import fft
from .find import find
from .findgrep import findgrep
from .gcc import gcc
from .grep import grep
from .gzip import gzip
from .lu import lu
from .mix import mix
from .radix import radix
from .tree import mktext, mktree

WORKLOADS: dict[str, base.Main] = {
    "radix": radix,
    "lu": lu,
    "fft": fft,
    "mktree": mktree,
    "find": find,
    "grep": grep,
    "findgrep": findgrep,
    "mix": mix,
    "mktext": mktext,
    "gzip": gzip,
    "gcc": gcc,
}

WORKLOAD_USAGE: dict[str, str] = {
    "radix": "radix THREADS KEYS [BITS [SEED]]",
    "lu": "lu THREADS N [B [SEED]]",
    "fft": "fft THREADS M [SEED]",
    "mktree": "mktree ROOT ENTRIES [SEED [SIZE_PERCENT]]",
    "find": "find [-q] [-verify MANIFEST] ROOT",
    "grep": "grep [-r] [-verify MANIFEST] PATTERN [PATH...]",
    "findgrep": "findgrep [-verify] ROOT [PATTERN]",
    "mix": "mix [SCALE [THREADS [SEED [SIZE_PERCENT]]]]",
    "mktext": "mktext PATH BYTES [SEED]",
    "gzip": "gzip [-verify] FILE",
    "gcc": "gcc [-verify] FILE",
}

WORKLOAD_DESCRIPTIONS: dict[str, str] = {
    "radix": "SPLASH-2 RADIX: sort KEYS keys with THREADS threads; checks sorted and a permutation",
    "lu": "SPLASH-2 LU: factor an N x N matrix in B x B blocks; checks L U against the input",
    "fft": "SPLASH-2 FFT: six-step FFT of 4**M points; writes /fft.out",
    "mktree": "make a seeded directory tree of ENTRIES entries shaped like /usr/include, and ROOT.manifest",
    "find": "walk ROOT with getdents and stat, print every path (-verify: check against the manifest)",
    "grep": "print lines containing PATTERN, files read in 96 KiB blocks (-r: a tree; no PATH: stdin)",
    "findgrep": "find ROOT | grep PATTERN: two processes joined by a pipe",
    "mix": "the multiprogramming mix: gcc, find, grep, find | grep, FFT and LU started together",
    "mktext": "write BYTES of seeded C-like text to PATH (an input for gzip)",
    "gzip": "compress FILE to FILE.gz with gzip 1.12's traced reads, writes and memory (-verify: inflate and compare)",
    "gcc": "compile FILE to FILE.s with a traced cc1's calls, memory and compute, scaled to FILE's size",
}

PROGRAMS: dict[str, base.Main] = {**base.PROGRAMS, **WORKLOADS}
USAGE: dict[str, str] = {**base.USAGE, **WORKLOAD_USAGE}
DESCRIPTIONS: dict[str, str] = {**base.DESCRIPTIONS, **WORKLOAD_DESCRIPTIONS}


def describe(name: str) -> str:
    """The one-line description of built-in program `name`."""
    return DESCRIPTIONS[name]


def bin_files(address_of: Callable[[Callable[..., Any]], int]) -> dict[str, bytes]:
    """The /bin/NAME files for every built-in program, given the machine's `code.address_of`."""
    return {f"/bin/{name}": libc.bin_image(address_of(main)) for name, main in PROGRAMS.items()}
