"""An instrumentation hook: an observer told of every charge of instructions, at no simulated cost.

Like a Simics instrumentation module, a profiler watches the machine without
changing it: attach one with `Machine.profile` before the first run, and each CPU
reports every instruction count it charges, with the frame whose operation was
charged (walk `frame.caller` and read `frame.vector`/`frame.regs` on trap frames
to see which system call a kernel frame serves). With none attached a CPU pays
one `is None` test per charge. A profiler may also have `watches(cpu_id) -> bool`: the
CPUs it says no to may wait for spinlocks in herds (`hw.herd`), whose members are charged
in bulk, not instruction by instruction; without it every CPU is watched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .cpu import CPU, Frame


class Profiler(Protocol):
    def charge(self, cpu: CPU, frame: Frame, account: str, n: int) -> None:
        """`cpu` has just executed `n` instructions of `account` ("user", "kernel", "spin", "idle") for `frame`.

        Called after the CPU's account was updated, at the instant the instructions end.
        """
