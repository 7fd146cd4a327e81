"""Application workloads: programs with the structure of the benchmarks the Linux version measured."""

from .lu import lu
from .radix import radix

__all__ = ["lu", "radix"]
