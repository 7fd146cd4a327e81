"""Signals in the master-slave port: a thread on a slave that a signal must reach is sent to the master.

On one CPU a signal's target is never running while the sender is, and acts on
it when it next returns to user mode. Here the sender is the master's kernel code
and the target may run user code on a slave, where no kernel code runs, or wait
in the user queue to do so. The sender notes the process (`kicks`); before the
master leaves the kernel path (`MasterSlaveKernel.flush_kicks`, queue lock held)
a queued thread that must act is moved to the master's run queue, and a slave
running one gets an IPI, whose handler queues it for the master (trap.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..bootkernel.proc import ALIVE, Process
from ..bootkernel.signal import Signals

if TYPE_CHECKING:
    from .kernel import MasterSlaveKernel


class MSSignals(Signals):
    def __init__(self, kernel: MasterSlaveKernel) -> None:
        super().__init__(kernel)
        self.k: MasterSlaveKernel = kernel

    def send(self, p: Process, sig: int) -> None:
        super().send(p, sig)
        if p.state == ALIVE and (p.killed or p.pending):
            self.k.kicks.add(p)
