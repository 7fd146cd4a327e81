"""Application workloads: programs with the structure of the benchmarks the Linux version measured."""

from .fft import fft
from .lu import lu
from .radix import radix

__all__ = ["fft", "lu", "radix"]
