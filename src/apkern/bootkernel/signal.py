"""Signals: dispositions, sending, and delivery on the way back to user mode.

A signal is made pending on its process and aimed at the process's first live
thread. If that thread sleeps interruptibly and the signal will not be ignored,
the sleep ends early and the call returns EINTR. Pending signals are acted on
only when a thread of the process returns to user mode: ignore, terminate (the
default for most), or run the handler in that thread by pushing a user frame
beneath the returning kernel frame. SIGKILL cannot be caught and also ends
uninterruptible sleeps.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import Call, Compute, Op, PushFrame
from . import abi
from .proc import ALIVE, Process, Thread

if TYPE_CHECKING:
    from .kernel import BootKernel

Gen = Generator[Op, Any, Any]

DEFAULT_IGNORE = frozenset({abi.SIGCHLD})


def signal_trampoline(handler: int, sig: int) -> Gen:
    """User-mode code the kernel places beneath the interrupted code: call the handler, then return.

    Its return resumes the interrupted code exactly where it was (the `sigreturn` step).
    """
    yield Call(handler, sig)


class Signals:
    def __init__(self, kernel: BootKernel) -> None:
        self.k = kernel
        self.sent = 0
        self.delivered = 0

    @staticmethod
    def target(p: Process) -> Thread | None:
        live = p.live_threads
        return live[0] if live else None

    def send(self, p: Process, sig: int) -> None:
        if p.state != ALIVE or sig == 0:
            return
        self.sent += 1
        sched = self.k.sched
        if sig == abi.SIGKILL:
            p.killed = True
            for t in p.threads:
                sched.interrupt(t, force=True)
            return
        disp = p.disposition(sig)
        if disp == abi.SIG_IGN or (disp == abi.SIG_DFL and sig in DEFAULT_IGNORE):
            return
        p.pending.append(sig)
        t = self.target(p)
        if t is not None:
            sched.interrupt(t)

    def deliver(self, t: Thread) -> Gen:
        """Act on pending signals as `t` returns to user mode (may not return: the process dies)."""
        p = t.proc
        if p.killed:
            yield from self.k.exit_process(t, -abi.SIGKILL)
        if not p.pending or t is not self.target(p):
            return
        while p.pending:
            sig = p.pending.pop(0)
            disp = p.disposition(sig)
            if disp == abi.SIG_IGN or (disp == abi.SIG_DFL and sig in DEFAULT_IGNORE):
                continue
            if disp == abi.SIG_DFL:
                yield from self.k.exit_process(t, -sig)
            yield Compute(self.k.costs.SIGNAL_DELIVER)
            self.delivered += 1
            yield PushFrame(signal_trampoline(disp, sig))
