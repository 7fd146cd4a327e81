"""Trace points: timestamped events that kernels and the CPUs record when tracing is on.

Kernels call `mark` at the stages of a path (a system call's entry, dispatch, return...)
so that an experiment can split a measured interval into stages whose lengths sum
to the whole. CPUs report context switches. Nothing here costs simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cpu import CPU, Context


@dataclass
class Mark:
    time: int
    cpu: int
    name: str
    key: Any = None
    args: dict[str, Any] = field(default_factory=dict)


class Tracer:
    """Collects marks and context switches, in time order."""

    def __init__(self) -> None:
        self.marks: list[Mark] = []
        self.switches: list[tuple[int, int, str, str]] = []

    def mark(self, cpu: CPU, name: str, key: Any = None, **args: Any) -> None:
        self.marks.append(Mark(cpu.env.now, cpu.id, name, key, args))

    def switch(self, cpu: CPU, old: Context | None, new: Context) -> None:
        self.switches.append((cpu.env.now, cpu.id, old.name if old else "", new.name))
