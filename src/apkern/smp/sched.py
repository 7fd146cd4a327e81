"""The scheduler of the SMP port: the bootstrap kernel's, with per-CPU state and one shared run queue.

What changes from the uniprocessor scheduler:
- `current` and `loaded_cr3` are per CPU. Kernel code reads them as before; they
  mean the values of the CPU that runs the code, which is the CPU that holds the
  kernel lock (giant_lock.py). Read with the lock free (from outside the
  machine) `current` is None; set with the lock free after boot is a kernel bug.
- every CPU has its own idle context. The idle loop takes the lock to look at
  the shared run queue, and halts (with its idle flag set) when it is empty; a
  CPU releasing the lock with threads waiting wakes idle CPUs with a reschedule
  IPI (`SMPKernel.unlock`).
- `schedule` switches to this CPU's idle context.
- a signal or kill may come while the thread, running on its CPU, waits for the
  lock at a call's entry: the sender finds it RUNNING (`Signals.send` interrupts
  sleepers only). The bootstrap kernel's interruptible sleep looks for a waiting
  signal first (as it must on one CPU, for a call's loop that sleeps twice), and
  that look ends the sleep at once here too.
The run queue, the sleep channels and every thread's state stay the bootstrap
kernel's, guarded by the kernel lock. Invariant: the lock is held from the
moment a thread is queued, put to sleep or killed until its CPU has switched
away from it, so no other CPU can pick a thread whose context is still in use.
And a sender and a sleeper are serialised by it: the sleeper's look for
a waiting signal and its going on the channel happen under the lock, so a signal
comes either before the look (which sees it) or after the thread is on the
channel (and `Signals.send` wakes it).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..bootkernel.proc import Thread
from ..bootkernel.sched import Scheduler
from ..hw import AssertHeld, Compute, Context, CpuId, DisableInterrupts, Frame, Halt, LoadCR3, MachineError, Op, Switch

if TYPE_CHECKING:
    from .kernel import SMPKernel

Gen = Generator[Op, Any, Any]


class SMPScheduler(Scheduler):
    """One run queue for all CPUs; current thread, loaded CR3 and idle context per CPU."""

    def __init__(self, kernel: SMPKernel) -> None:
        n = len(kernel.machine.cpus)
        self._current: list[Thread | None] = [None] * n
        self._cr3 = [0] * n
        super().__init__(kernel)
        self.k: SMPKernel = kernel
        self.idle_ctxs = [
            Context([Frame(self.idle_loop(c), user=False, intr=True, acct="idle")], name=f"idle{c}") for c in range(n)
        ]
        self.idle_ctx = self.idle_ctxs[0]

    # --- per-CPU state, for the CPU that holds the kernel lock -------------------------------------

    def _cpu(self, what: str) -> int | None:
        cid = self.k.lock.holder()
        if cid is None and self.k.booted:
            raise MachineError(f"{what} changed without {self.k.lock.name}")
        return cid

    @property  # type: ignore[override]
    def current(self) -> Thread | None:
        cid = self.k.lock.holder()
        return None if cid is None else self._current[cid]

    @current.setter
    def current(self, t: Thread | None) -> None:
        cid = self._cpu("the current thread")
        if cid is None:  # initialisation, before boot: every CPU
            self._current = [t] * len(self._current)
        else:
            self._current[cid] = t

    @property  # type: ignore[override]
    def loaded_cr3(self) -> int:
        cid = self.k.lock.holder()
        return 0 if cid is None else self._cr3[cid]

    @loaded_cr3.setter
    def loaded_cr3(self, cr3: int) -> None:
        cid = self._cpu("the loaded CR3")
        if cid is None:
            self._cr3 = [cr3] * len(self._cr3)
        else:
            self._cr3[cid] = cr3

    def cpu_of(self, t: Thread) -> int | None:
        """The CPU `t` runs on (it is that CPU's current thread), or None."""
        for cid, cur in enumerate(self._current):
            if cur is t:
                return cid
        return None

    def cpus_with_cr3(self, cr3: int) -> list[int]:
        """The CPUs whose loaded CR3 is `cr3`: those that may cache translations of that address space."""
        return [cid for cid, loaded in enumerate(self._cr3) if loaded == cr3]

    # --- code that runs on a CPU ----------------------------------------------------------------------

    def schedule(self) -> Gen:
        """Lock held: switch away from the current thread (queued, asleep or dead) to the next, or to idle."""
        yield Compute(self.k.costs.CONTEXT_SWITCH)
        yield AssertHeld(self.k.lock.kva, "the run queue", self.k.lock.name)
        self.switches += 1
        nxt = self.runq.popleft() if self.runq else None
        if nxt is None:
            cid = yield CpuId()
            self.current = None
            if self.loaded_cr3 != self.k.kernel_cr3:
                self.loaded_cr3 = self.k.kernel_cr3
                yield LoadCR3(self.k.kernel_cr3)
            yield Switch(self.idle_ctxs[cid])  # its idle loop releases the lock
            return
        yield from self._run(nxt)

    def idle_loop(self, cid: int) -> Gen:
        """CPU `cid`'s idle context: take the lock, run a queued thread or halt until an interrupt."""
        k = self.k
        while True:
            yield DisableInterrupts()
            yield from k.lock.acquire(cid)
            yield from k.set_idle(cid, False)
            if self.runq:
                yield Compute(self.k.costs.CONTEXT_SWITCH)
                yield AssertHeld(k.lock.kva, "the run queue", k.lock.name)
                self.switches += 1
                yield from self._run(self.runq.popleft())
                # back here when a thread of this CPU found nothing else to run; the lock is still held
            yield from k.set_idle(cid, True)
            yield from k.unlock(cid)
            yield Halt()  # sti; hlt: an interrupt that arrived since the release ends it at once
