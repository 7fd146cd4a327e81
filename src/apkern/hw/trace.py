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
    """Collects marks, context switches and per-CPU activity slices, in time order."""

    def __init__(self) -> None:
        self.marks: list[Mark] = []
        self.switches: list[tuple[int, int, str, str]] = []
        # per CPU: [start, end, account ("user", "kernel", "spin", "idle", "halt"), context name]
        self.slices: dict[int, list[list[Any]]] = {}

    def slice(self, cpu: CPU, account: str, start: int, end: int) -> None:
        """CPU `cpu` spent [start, end) in `account` for its current context; adjacent equal slices merge."""
        if end <= start:
            return
        name = cpu.ctx.name if cpu.ctx is not None else ""
        rows = self.slices.setdefault(cpu.id, [])
        if rows:
            last = rows[-1]
            if last[1] == start and last[2] == account and last[3] == name:
                last[1] = end
                return
        rows.append([start, end, account, name])

    def mark(self, cpu: CPU, name: str, key: Any = None, **args: Any) -> None:
        self.marks.append(Mark(cpu.env.now, cpu.id, name, key, args))

    def switch(self, cpu: CPU, old: Context | None, new: Context) -> None:
        self.switches.append((cpu.env.now, cpu.id, old.name if old else "", new.name))
