"""The user land: libc, the plain crt0 and the built-in programs (they reach kernels only by trapping)."""

from . import crt0, libc, programs
from .programs import PROGRAMS, describe

__all__ = ["PROGRAMS", "crt0", "describe", "libc", "programs"]
