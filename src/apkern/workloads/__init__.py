"""Application workloads: programs with the structure of the benchmarks the Linux version measured."""

from .radix import radix

__all__ = ["radix"]
