"""Signals in the SMP port: a signal for a thread running on another CPU gets there by a reschedule IPI.

On one CPU a signal's target is never running while the sender is, and acts on
it when it next returns to user mode. Here it may be running user code on
another CPU, which would notice only at its next kernel entry (its next timer
tick at the latest). The sender notes that CPU; the CPU releasing the kernel
lock sends it a reschedule IPI, whose handler takes the return-to-user path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..bootkernel.proc import RUNNING, Process
from ..bootkernel.signal import Signals

if TYPE_CHECKING:
    from .kernel import SMPKernel


class SMPSignals(Signals):
    def __init__(self, kernel: SMPKernel) -> None:
        super().__init__(kernel)
        self.k: SMPKernel = kernel

    def send(self, p: Process, sig: int) -> None:
        super().send(p, sig)
        k = self.k
        me = k.lock.holder()
        target = self.target(p)
        for t in p.threads:
            if t.state == RUNNING and (p.killed or (p.pending and t is target)):
                cid = k.sched.cpu_of(t)
                if cid is not None and cid != me:
                    k.kick_cpus.add(cid)
