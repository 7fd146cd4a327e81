"""The scheduler of the master-slave port: who runs what, and how threads pass between master and slaves.

CPU 0, the master, runs the bootstrap kernel; the slaves run user code only.
What changes from the uniprocessor scheduler:

- `current` and `loaded_cr3` are per CPU. Kernel code runs on the master alone,
  so where it reads them it means the master's, as before; the slaves' are the
  port's (`cur`, and their loaded CR3 for the shoot-down).
- Threads pass through two queues (queues.py): a slave hands a thread that needs
  kernel code to the master (`handoff`, the master queue); a thread whose kernel
  path is done goes back to user mode through the user queue, which any CPU may
  take from (`user_return`). The bootstrap kernel's run queue stays the master's:
  the threads its kernel code makes runnable. The master drains the master queue
  into it, so both are served in the order they came.
- The master's choice, each time it switches (`_master_pick`): kernel work first
  (its run queue), then a thread of the user queue, but only one that no slave is
  on its way to take (more queued than `wakes`), else its idle loop. A slave takes
  the user queue's head, or halts in its idle loop until an IPI wakes it.
- On its way back to user mode the master keeps the thread (Bach's dual VAX:
  "if other processes must run on the master, do a context switch") unless kernel
  work waits, a slave is idle (user code goes to slaves first: the master is every
  CPU's kernel), or its time slice is over with threads waiting in the user queue.
- Each CPU has its own timer (trap.py): the master keeps time; a slave's tick only
  preempts its thread for the user queue's head at the end of a time slice.
- IPIs: a slave that queues a thread for a master that runs user code or halts
  interrupts it; a CPU that queues a thread for user mode wakes an idle slave.
- a signal may come while a thread is on its way to the master: the bootstrap
  kernel's interruptible sleep looks for a waiting signal first, and ends at once.

Invariant: the queue lock is held from the moment a thread is queued until its
CPU has switched away from it, and from the moment a CPU picks a thread until it
runs on it: whatever runs first on a context (a thread's resume path, `_tail`, or
an idle loop) releases it. A thread on the user queue has no kernel work left but
its return (`RESUME_USER`) and the signals the master delivers if it takes it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..bootkernel.proc import DEAD, RUNNABLE, RUNNING, Thread
from ..bootkernel.sched import Scheduler
from ..hw import (
    Compute,
    Context,
    CpuId,
    DisableInterrupts,
    Frame,
    Halt,
    Load,
    LoadCR3,
    MachineError,
    Op,
    SendIPI,
    Store,
    Switch,
)
from ..hw import traps as vec

if TYPE_CHECKING:
    from .kernel import MasterSlaveKernel

Gen = Generator[Op, Any, Any]
MASTER = 0
# the master's state word (kernel.STATE): what a slave that queues a thread for it must do
KERNEL, USER, IDLE, NOTIFIED = 0, 1, 2, 3  # in kernel code: it will look; running user code or halted: IPI it


class MSScheduler(Scheduler):
    """The master's run queue as before; per-CPU current thread, CR3 and idle loop; the queues between CPUs."""

    def __init__(self, kernel: MasterSlaveKernel) -> None:
        n = len(kernel.machine.cpus)
        self.cur: list[Thread | None] = [None] * n
        self._cr3 = [0] * n
        super().__init__(kernel)
        self.k: MasterSlaveKernel = kernel
        self.n = n
        self.idle_ctxs = [
            Context(
                [Frame(self.master_idle() if c == MASTER else self.slave_idle(c), user=False, intr=True, acct="idle")],
                name=f"idle{c}",
            )
            for c in range(n)
        ]
        self.idle_ctx = self.idle_ctxs[MASTER]
        self.idle = [False] * n  # mirrors of the idle flags
        self.wakes = 0  # mirror of WAKES: slaves woken for the user queue that have not looked at it yet
        self.switches_by_cpu = [0] * n
        self.handoffs = 0  # threads slaves handed to the master
        self.requeues = 0  # threads the master sent back to user mode through the user queue
        self.master_user_picks = 0  # threads of the user queue the master took in its spare time
        self.preemptions = 0  # threads slaves preempted at the end of a time slice
        self.notify_ipis = 0  # IPIs slaves sent the master
        self.wakeup_ipis = 0  # IPIs sent to idle slaves
        self.dropped = 0  # threads of dead processes slaves gave up

    # --- per-CPU state: the kernel's own reads and writes are the master's -----------------------

    @property  # type: ignore[override]
    def current(self) -> Thread | None:
        return self.cur[MASTER]

    @current.setter
    def current(self, t: Thread | None) -> None:
        self.cur[MASTER] = t

    @property  # type: ignore[override]
    def loaded_cr3(self) -> int:
        return self._cr3[MASTER]

    @loaded_cr3.setter
    def loaded_cr3(self, cr3: int) -> None:
        if not self.k.booted:  # before boot: every CPU's
            self._cr3 = [cr3] * len(self._cr3)
        else:
            self._cr3[MASTER] = cr3

    def cpu_of(self, t: Thread) -> int | None:
        """The CPU `t` runs on (it is that CPU's current thread), or None."""
        for cid, cur in enumerate(self.cur):
            if cur is t:
                return cid
        return None

    def cpus_with_cr3(self, cr3: int) -> list[int]:
        """The CPUs whose loaded CR3 is `cr3`: those that may cache translations of that address space."""
        return [cid for cid, loaded in enumerate(self._cr3) if loaded == cr3]

    def needs_kernel(self, t: Thread) -> bool:
        """A signal or a kill waits for `t`: it must see the master before it runs user code again."""
        p = t.proc
        return p.killed or (bool(p.pending) and t is self.k.signals.target(p))

    # --- the uniprocessor's paths, where threads may be on the port's queues --------------------------

    def remove(self, t: Thread) -> None:
        q = self.k.queue_of(t)
        if q is not None:
            raise MachineError(f"{t!r} is removed while on {q.name}: unlink it under {self.k.qlock.name} first")
        super().remove(t)

    def yield_(self) -> Gen:
        """Master, in a system call: give way if anything else waits for the master (or in the user queue)."""
        t = self.current
        k = self.k
        waiting = bool(self.runq) or bool((yield Load(k.masterq.count_kva)))
        if not waiting:
            waiting = (yield Load(k.userq.count_kva)) > (yield Load(k.page + k.WAKES))
        if waiting:
            t.state = RUNNABLE
            self.runq.append(t)
            yield from self.schedule()

    def schedule(self) -> Gen:
        """Master, queue lock free: switch away from the current thread (queued, asleep or dead) to the next."""
        t = self.current
        yield from self.k.qlock.acquire(MASTER)
        yield from self._master_switch()
        yield from self._tail(t)  # resumed by the master: its run queue is its own

    # --- the master ---------------------------------------------------------------------------------

    def _drain(self) -> Gen:
        """Master, lock held: the threads slaves handed over join its run queue, in the order they came."""
        while self.k.masterq:
            self.runq.append((yield from self.k.masterq.pop()))

    def _master_pick(self) -> Gen:
        """Master, lock held: kernel work first, then a user-queue thread no woken slave is coming for."""
        k = self.k
        if self.runq:
            yield Store(k.page + k.STATE, KERNEL)
            return self.runq.popleft()
        if len(k.userq) > self.wakes:
            yield Store(k.page + k.STATE, USER)
            self.master_user_picks += 1
            return (yield from k.userq.pop())
        return None

    def _master_switch(self) -> Gen:
        """Master, lock held, its thread already queued, asleep or dead: switch to what it runs next."""
        k = self.k
        yield from k.flush_kicks()
        yield from self._drain()
        nxt = yield from self._master_pick()
        yield Compute(self.k.costs.CONTEXT_SWITCH)
        self.switches += 1
        if nxt is not None:
            yield from self._run(MASTER, nxt)
            return
        self.cur[MASTER] = None
        yield Store(k.page + k.CUR, 0)
        if self._cr3[MASTER] != k.kernel_cr3:
            self._cr3[MASTER] = k.kernel_cr3
            yield LoadCR3(k.kernel_cr3)
        yield Switch(self.idle_ctxs[MASTER])

    def _run(self, cid: int, nxt: Thread) -> Gen:
        """Lock held: CPU `cid` switches to `nxt` (whose first code releases the lock)."""
        k = self.k
        if nxt.state == DEAD:
            raise MachineError(f"cpu{cid} picked {nxt!r}")
        nxt.state = RUNNING
        nxt.ticks = 0
        self.cur[cid] = nxt
        self.switches_by_cpu[cid] += 1
        yield Store(k.page + k.CUR + 4 * cid, nxt.tid)
        cr3 = nxt.proc.aspace.cr3
        if cr3 != self._cr3[cid]:
            self._cr3[cid] = cr3
            yield LoadCR3(cr3)
        yield Switch(nxt.ctx)

    def _tail(self, t: Thread | None) -> Gen:
        """The first code of a resumed thread: release the lock the CPU that picked it holds; its CPU id."""
        cid = yield CpuId()
        yield from self.k.qlock.release(cid)
        return cid

    def user_return(self, t: Thread, slice_over: bool = False) -> Gen:
        """Master, lock free, `t` about to return to user mode: keep it, or send it through the user queue.

        Returns on the CPU that runs `t` in user mode next: the master, or a slave that took it.
        """
        k = self.k
        while True:
            yield Compute(self.k.port_costs.USER_RETURN)
            if k.kicks:  # a signal this path sent must reach threads on slaves or in the user queue
                yield from k.qlock.acquire(MASTER)
                yield from k.flush_kicks()
                yield from k.qlock.release(MASTER)
            yield Store(k.page + k.STATE, USER)  # before looking: a slave that queues after sees it and IPIs
            handoff = yield Load(k.masterq.count_kva)
            idle = yield Load(k.page + k.IDLE_COUNT)
            surplus = 0
            if slice_over:
                surplus = (yield Load(k.userq.count_kva)) - (yield Load(k.page + k.WAKES))
            if not (handoff or idle or surplus > 0 or self.runq):
                return
            yield Store(k.page + k.STATE, KERNEL)
            k.mark("ms_requeue")
            yield from k.qlock.acquire(MASTER)
            t.state = RUNNABLE
            yield from self.push_user(t)
            self.requeues += 1
            k.mark("ms_user_queued")
            yield from self._master_switch()
            cid = yield from self._tail(t)
            if cid != MASTER:
                yield from self._slave_resume(cid, t)
                return
            yield from k.traps.return_to_user(t)  # taken back by the master: signals first
            slice_over = False

    def _slave_resume(self, cid: int, t: Thread) -> Gen:
        k = self.k
        k.trace(k.machine.cpus[cid], "ms_resumed", t)
        yield Compute(self.k.port_costs.RESUME_USER)

    def resume_to_user(self, t: Thread, cid: int) -> Gen:
        """`t`, queued for user mode, runs again on CPU `cid`: a slave returns; the master delivers signals first."""
        if cid != MASTER:
            yield from self._slave_resume(cid, t)
            return
        yield from self.k.traps.return_to_user(t)
        yield from self.user_return(t)

    def master_idle(self) -> Gen:
        """The master's idle context: look for work under the lock, else halt until an interrupt."""
        k = self.k
        yield DisableInterrupts()
        yield from k.qlock.acquire(MASTER)
        while True:  # lock held
            yield from k.flush_kicks()
            yield from self._drain()
            nxt = yield from self._master_pick()
            if nxt is not None:
                yield Compute(self.k.costs.CONTEXT_SWITCH)
                self.switches += 1
                yield from self._run(MASTER, nxt)
                continue  # back with the lock held, from a thread that found nothing else to run
            yield Store(k.page + k.STATE, IDLE)
            yield from k.qlock.release(MASTER)
            yield Halt()  # sti; hlt: a slave's IPI since the release ends it at once
            yield DisableInterrupts()
            yield from k.qlock.acquire(MASTER)
            yield Store(k.page + k.STATE, KERNEL)

    # --- queueing threads --------------------------------------------------------------------------------

    def push_user(self, t: Thread) -> Gen:
        """Lock held: `t` waits to return to user mode; an idle slave is woken for it if none is coming."""
        k = self.k
        yield from k.userq.push(t)
        if len(k.userq) > self.wakes and (yield Load(k.page + k.IDLE_COUNT)):
            for c in range(1, self.n):
                yield Compute(self.k.port_costs.CPU_SCAN)
                if (yield Load(k.page + k.IDLE + 4 * c)):
                    yield from self.set_idle(c, False)
                    self.wakes += 1
                    yield Store(k.page + k.WAKES, self.wakes)
                    yield SendIPI(c, "fixed", vec.IPI_RESCHEDULE)
                    self.wakeup_ipis += 1
                    break

    def push_master(self, cid: int, t: Thread) -> Gen:
        """Slave, lock held: `t` needs kernel code; the master is interrupted if it runs user code or halts."""
        k = self.k
        yield from k.masterq.push(t)
        state = yield Load(k.page + k.STATE)
        if state in (USER, IDLE):
            yield SendIPI(MASTER, "fixed", vec.IPI_RESCHEDULE)
            yield Store(k.page + k.STATE, NOTIFIED)
            self.notify_ipis += 1

    def set_idle(self, cid: int, idle: bool) -> Gen:
        """Lock held: slave `cid`'s idle flag (and the count of set flags)."""
        if self.idle[cid] == idle:
            return
        self.idle[cid] = idle
        k = self.k
        yield Store(k.page + k.IDLE + 4 * cid, int(idle))
        yield Store(k.page + k.IDLE_COUNT, sum(self.idle))

    # --- the slaves -------------------------------------------------------------------------------------

    def _slave_next(self, cid: int) -> Gen:
        """Slave, lock held, its thread queued or given up: switch to the user queue's head, or to idle."""
        k = self.k
        if k.userq:
            nxt = yield from k.userq.pop()
            yield Compute(self.k.costs.CONTEXT_SWITCH)
            yield from self._run(cid, nxt)
            return
        self.cur[cid] = None
        yield Store(k.page + k.CUR + 4 * cid, 0)
        if self._cr3[cid] != k.kernel_cr3:  # an idle slave keeps no address space that may go away
            self._cr3[cid] = k.kernel_cr3
            yield LoadCR3(k.kernel_cr3)
        yield Switch(self.idle_ctxs[cid])

    def handoff(self, cid: int, t: Thread) -> Gen:
        """Slave `cid`, lock free, `t` trapped (its registers saved): queue `t` for the master and run another.

        Returns on the master, which took `t` from its queue: the caller runs the kernel path there.
        """
        k = self.k
        yield from self._lock_own(cid, t)
        yield Compute(self.k.port_costs.HANDOFF)
        t.state = RUNNABLE
        yield from self.push_master(cid, t)
        self.handoffs += 1
        k.trace(k.machine.cpus[cid], "ms_queued", t)
        yield from self._slave_next(cid)
        if (yield from self._tail(t)) != MASTER:
            raise MachineError(f"{t!r}, queued for the master, was resumed by a slave")
        k.mark("ms_master")

    def preempt(self, cid: int, t: Thread) -> Gen:
        """Slave `cid`, lock free, `t`'s time slice over: the user queue's head runs instead, `t` joins the queue."""
        k = self.k
        yield from self._lock_own(cid, t)
        if not k.userq:  # taken meanwhile: keep running `t`
            yield from k.qlock.release(cid)
            return
        t.state = RUNNABLE
        yield from self.push_user(t)
        self.preemptions += 1
        yield from self._slave_next(cid)
        yield from self.resume_to_user(t, (yield from self._tail(t)))

    def _lock_own(self, cid: int, t: Thread) -> Gen:
        """Slave `cid`: take the lock to queue its thread `t`; if `t`'s process died meanwhile, give `t` up."""
        yield from self.k.qlock.acquire(cid)
        if t.state == DEAD:  # the exit on the master waits for this CPU (`stop_others`)
            yield from self.drop(cid, t)

    def drop(self, cid: int, t: Thread) -> Gen:
        """Slave `cid`, lock held: `t`'s process died while `t` ran here; leave its context for good."""
        yield Compute(self.k.port_costs.DROP_DEAD)
        self.dropped += 1
        yield from self._slave_next(cid)
        raise AssertionError("a dead thread was resumed")

    def slave_idle(self, cid: int) -> Gen:
        """Slave `cid`'s idle context: take the user queue's head under the lock, else halt until an IPI."""
        k = self.k
        yield DisableInterrupts()
        yield from k.qlock.acquire(cid)
        while True:  # lock held
            if k.userq:
                nxt = yield from k.userq.pop()
                yield Compute(self.k.costs.CONTEXT_SWITCH)
                yield from self._run(cid, nxt)
                continue  # back with the lock held, from a thread that found nothing else to run
            yield from self.set_idle(cid, True)
            yield from k.qlock.release(cid)
            yield Halt()  # sti; hlt: an IPI since the release ends it at once
            yield DisableInterrupts()
            yield from k.qlock.acquire(cid)
            if self.idle[cid]:  # woke by itself (its timer, a shoot-down): nobody counted on it
                yield from self.set_idle(cid, False)
            else:  # woken for the user queue
                self.wakes -= 1
                yield Store(k.page + k.WAKES, self.wakes)
