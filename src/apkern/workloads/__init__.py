"""Application workloads: programs with the structure of the benchmarks the Linux version measured."""

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

__all__ = ["fft", "find", "findgrep", "gcc", "grep", "gzip", "lu", "mix", "mktext", "mktree", "radix"]
