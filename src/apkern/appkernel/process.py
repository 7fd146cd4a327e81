"""The application kernel's record of a process that has application threads.

A record (PROC_SIZE bytes of a table in kernel memory) holds the pid, how many of
the process's live threads have a page-table change in flight (section 4.3: while
any has, the others are held), and the list of its threads (a `TCBList` through
the TCBs' sibling links). It exists from the process's first application thread
to the end of its last. Lock held to change it; the Python object mirrors it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .tcb import SIBLING_LINKS
from .tcb_list import TCBList

if TYPE_CHECKING:
    from .costs import Costs

PROC_PID = 0
PROC_FAULTS = 4
PROC_THREADS = 8  # a TCBList: head, tail, length
PROC_SIZE = 32


class AKProcess:
    """The record at kernel address `kva` of process `pid`."""

    def __init__(self, pid: int, slot: int, kva: int, costs: Costs) -> None:
        self.pid = pid
        self.slot = slot
        self.kva = kva
        self.faults = 0
        self.threads = TCBList(kva + PROC_THREADS, SIBLING_LINKS, costs)

    @property
    def faults_kva(self) -> int:
        return self.kva + PROC_FAULTS

    def __repr__(self) -> str:
        return f"<AKProcess {self.pid} threads={len(self.threads)} faults={self.faults}>"
