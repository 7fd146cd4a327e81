"""The master-slave port of the bootstrap kernel: kernel code on the bootstrap processor only.

The classical asymmetric port (Goble and Marsh's dual VAX Unix; Bach's "The
Design of the UNIX Operating System", section 12.2). CPU 0, the *master*, runs
the bootstrap kernel as it was: every system call, exception, interrupt handler,
timekeeping and the swapper. The other CPUs, the *slaves*, run user code only; a
trap on a slave stops at a stub that saves the thread's registers and queues it
for the master (trap.py), which runs the kernel path and makes the thread
runnable for any CPU again. Unlike the application kernel, the port changes the
kernel (no bootstrap threads, no communication areas), by subclassing and
replacing its parts:

- the scheduler (sched.py): per-CPU current thread and CR3, the master queue and
  the user queue between master and slaves (queues.py), the master's choice of
  kernel work first, the slaves' idle loops, IPIs both ways;
- the vector tables (trap.py): the master's is the kernel's, with the step back
  to user mode that may send the thread to a slave; the slaves' has the trap stub,
  their timer (time-slice preemption among user threads only) and the IPIs;
- signals (signal.py): a thread on a slave that a signal or a kill must reach is
  sent back to the master by an IPI;
- TLB shoot-down of the slaves on munmap, on freeing a joined thread's stack and
  on the swapper's evictions (shootdown.py, portkit/syscall.py and portkit/swap.py); on exit, the
  other threads of the process are got off the slaves first (`stop_others`);
- boot: the slaves are started by INIT and SIPI through a trampoline page below
  1 MiB, each with the slaves' vector table, paging and its own timer (portkit/ap_start.py).

Only the master runs kernel code, so the kernel's own data needs no lock. What
the port adds in kernel memory, one page and the thread table, is shared with the
slaves and guarded by the queue lock (spinlock.py), but the master's state word:
- the queue lock (owner CPU + 1);
- the start-up counter (lock xadd by each slave) and the word that lets the slaves
  schedule once all are up;
- the master's state (KERNEL, USER, IDLE, NOTIFIED: sched.py), written by the
  master without the lock before it looks at the master queue, and by a slave that
  queues a thread and IPIs it;
- the idle flags, one word per CPU, their count, and the slaves on their way to
  the user queue (`WAKES`);
- each CPU's current thread (its id, 0 for none);
- the two queues' head, tail and length words, and the thread table's links;
- the shoot-down request and its acknowledgement counter (portkit/shootdown.py).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

from ..bootkernel import BootKernel, Driver
from ..bootkernel import costs as boot_costs
from ..bootkernel.proc import ALIVE, DEAD, RUNNING, ZOMBIE, Process, Thread
from ..bootkernel.vm import KERNBASE
from ..hw import (
    CPU,
    IVT,
    PAGE_SIZE,
    AssertHeld,
    Compute,
    EnablePaging,
    Frame,
    GuardedBy,
    Load,
    LoadCR3,
    Machine,
    MachineError,
    Op,
    SendIPI,
    SetIVT,
    SetTimer,
    SpinWhile,
    Switch,
)
from ..hw import traps as vec
from ..portkit.ap_start import APStartup
from ..portkit.swap import PortSwapper
from ..portkit.syscall import PortSyscalls
from .costs import Costs as PortCosts
from .queues import ThreadQueue, ThreadTable
from .sched import MASTER, MSScheduler
from .shootdown import Shootdown
from .signal import MSSignals
from .spinlock import QueueLock
from .trap import MSTraps

Gen = Generator[Op, Any, Any]


class MasterSlaveKernel(APStartup, BootKernel):
    """The bootstrap kernel on the master, CPU 0; user code on every CPU."""

    # the port's kernel page
    QLOCK = 0
    STARTED = 4  # slaves that have started (lock xadd)
    COMMENCED = 8  # set by the master once every slave has started: they may schedule
    STATE = 12  # the master's state (sched.KERNEL, USER, IDLE, NOTIFIED)
    IDLE_COUNT = 16  # slaves whose idle flag is set
    WAKES = 20  # slaves woken for the user queue that have not looked at it yet
    MASTERQ = 32  # head, tail, length
    USERQ = 48  # head, tail, length
    SHOOTDOWN = 64  # the shoot-down request (portkit/shootdown.py)
    IDLE = 128  # + 4 * cpu: 1 while that slave halts and nobody has woken it
    CUR = 512  # + 4 * cpu: the id of the thread that CPU runs, 0 for none

    def __init__(
        self,
        machine: Machine,
        drivers: Iterable[Driver] = (),
        swapper: bool = False,
        tick: int = boot_costs.TICK,
        costs: boot_costs.Costs | None = None,
        port_costs: PortCosts | None = None,
    ) -> None:
        super().__init__(machine, drivers=drivers, swapper=swapper, tick=tick, costs=costs)
        self.port_costs = port_costs if port_costs is not None else PortCosts()  # the port's own paths
        n = len(machine.cpus)
        pa = self.heap.kmalloc(PAGE_SIZE)
        self.page = KERNBASE + pa
        self.qlock = QueueLock(machine.memory, self.page + self.QLOCK, pa + self.QLOCK, n)
        self.table = ThreadTable(self)
        self.table._grow()
        self.masterq = ThreadQueue(self.table, self.page + self.MASTERQ, "the master queue")
        self.userq = ThreadQueue(self.table, self.page + self.USERQ, "the user queue")
        self.shootdown = Shootdown(self, self.page + self.SHOOTDOWN)
        self.kicks: set[Process] = set()  # processes a signal was sent to: their threads on slaves must come in
        self.kick_ipis = 0
        self.stop_ipis = 0
        self.sched = MSScheduler(self)
        self.traps = MSTraps(self)
        self.syscalls = PortSyscalls(self)
        self.signals = MSSignals(self)
        if self.swapper is not None:
            self.swapper = PortSwapper(self)
        self.aps_started = 0  # slaves that reached their idle loop
        self.started_kva, self.commenced_kva = self.page + self.STARTED, self.page + self.COMMENCED

    # --- boot -----------------------------------------------------------------------------------------------

    def ap_ivt(self) -> IVT:
        return self.traps.slave_ivt()

    def _start(self) -> Gen:
        yield SetIVT(self.traps.ivt())
        yield LoadCR3(self.kernel_cr3)
        yield EnablePaging()
        yield SetTimer(self.tick)
        self.sched.loaded_cr3 = self.kernel_cr3  # every CPU's, before any runs
        yield from self.annotate()
        for d in self.drivers.values():
            yield from d.init(self.services)
        self.booted = True
        yield from self._start_aps()
        yield Switch(self.sched.idle_ctxs[MASTER])

    def annotate(self) -> Gen:
        """The port's shared words are guarded by the queue lock (the master's state word is not)."""
        lock = self.qlock
        n = len(self.machine.cpus)
        yield GuardedBy(self.page + self.IDLE_COUNT, 8, lock.kva, "the idle count and wakes", lock.name)
        yield GuardedBy(self.page + self.IDLE, 4 * n, lock.kva, "the idle flags", lock.name)
        yield GuardedBy(self.page + self.CUR, 4 * n, lock.kva, "the current threads", lock.name)
        yield from self.masterq.annotate(lock.kva, lock.name)
        yield from self.userq.annotate(lock.kva, lock.name)
        yield from self.table.annotate()
        yield from self.shootdown.annotate()

    # --- threads ----------------------------------------------------------------------------------------------

    def queue_of(self, t: Thread) -> ThreadQueue | None:
        """The port's queue `t` is on, if any."""
        if t in self.masterq:
            return self.masterq
        if t in self.userq:
            return self.userq
        return None

    def _new_thread(self, p: Process, entry: int, args: tuple[int, ...]) -> Thread:
        """A new thread gets a slot in the thread table and starts in kernel code on the master (the return
        from spawn or thread_create into the child, as fork returns on the dual VAX), which may send it to a slave."""
        t = super()._new_thread(p, entry, args)
        self.table.add(t)
        t.ctx.frames.append(Frame(self._thread_start(t), user=False))
        return t

    def _thread_start(self, t: Thread) -> Gen:
        yield from self.sched.resume_to_user(t, (yield from self.sched._tail(t)))

    def flush_kicks(self) -> Gen:
        """Master, lock held: threads that signals must reach go to the master (queued) or are IPIed (on a slave)."""
        kicks, self.kicks = sorted(self.kicks, key=lambda p: p.pid), set()
        sched = self.sched
        for p in kicks:
            for t in p.threads:
                yield Compute(self.port_costs.THREAD_VISIT)
                if t.state == DEAD or not sched.needs_kernel(t):
                    continue
                if t in self.userq:
                    yield from self.userq.unlink(t)
                    sched.runq.append(t)
                elif t.state == RUNNING:
                    cid = sched.cpu_of(t)
                    if cid is not None and cid != MASTER:
                        yield SendIPI(cid, "fixed", vec.IPI_RESCHEDULE)
                        self.kick_ipis += 1

    def stop_others(self, t: Thread) -> Gen:
        """Master: kill every other thread of `t`'s process and wait until none runs on a slave.

        Queued ones are unlinked; one that runs on a slave (in user mode, or in the slave's stub) is
        marked dead and sent an IPI: the slave gives it up at once (`MSScheduler.drop`), and the master
        spins on that slave's current-thread word until it changes.
        """
        p = t.proc
        sched = self.sched
        yield from self.qlock.acquire(MASTER)
        yield AssertHeld(self.qlock.kva, "the threads of a dying process", self.qlock.name)
        on_cpu: list[tuple[int, Thread]] = []
        for other in p.threads:
            yield Compute(self.port_costs.THREAD_VISIT)
            if other is t or other.state in (DEAD, ZOMBIE):
                continue
            q = self.queue_of(other)
            if q is not None:
                yield from q.unlink(other)
                other.state = DEAD
            elif other.state == RUNNING:
                cid = sched.cpu_of(other)
                if cid is None or cid == MASTER:
                    raise MachineError(f"{other!r} is running but not on a slave")
                other.state = DEAD
                on_cpu.append((cid, other))
        yield from self.qlock.release(MASTER)
        for cid, _ in on_cpu:
            yield SendIPI(cid, "fixed", vec.IPI_RESCHEDULE)
            self.stop_ipis += 1
        for cid, other in on_cpu:
            word = self.page + self.CUR + 4 * cid
            tid = yield Load(word)
            while tid == other.tid:
                tid = yield SpinWhile(word, tid)

    def exit_process(self, t: Thread, status: int) -> Gen:
        """The uniprocessor exit, once no other thread of the process runs on a slave or waits in a queue."""
        p = t.proc
        if p.state == ALIVE:
            yield from self.stop_others(t)
            for other in p.threads:
                self.table.remove(other)
        yield from super().exit_process(t, status)

    def free_thread(self, t: Thread) -> Gen:
        """A joined thread's stack goes: shot down on every slave that runs its process."""
        yield from self.shootdown.begin(t.proc.aspace.cr3)
        yield from super().free_thread(t)
        yield from self.shootdown.end()
        self.table.remove(t)

    # --- observers ----------------------------------------------------------------------------------------------

    def trace(self, cpu: CPU, name: str, t: Thread | None) -> None:
        """A trace mark on `cpu` for thread `t` (a no-op unless the machine is tracing)."""
        tracer = self.machine.tracer
        if tracer is not None:
            tracer.mark(cpu, name, t.tid if t else None)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        sched = self.sched
        spin = [c.acct.get("spin", 0) for c in self.machine.cpus]
        out.update(
            {
                "aps_started": self.aps_started,
                "queue_lock_acquisitions": self.qlock.acquisitions,
                "queue_lock_contended": self.qlock.contended,
                "queue_lock_spins": self.qlock.spins,
                "spin_by_cpu": spin,
                "handoffs": sched.handoffs,
                "requeues": sched.requeues,
                "master_user_picks": sched.master_user_picks,
                "slave_preemptions": sched.preemptions,
                "notify_ipis": sched.notify_ipis,
                "wakeup_ipis": sched.wakeup_ipis,
                "kick_ipis": self.kick_ipis,
                "stop_ipis": self.stop_ipis,
                "dropped_threads": sched.dropped,
                "switches_by_cpu": list(sched.switches_by_cpu),
                "queued_for_master": len(self.masterq),
                "queued_for_user": len(self.userq),
                "thread_table_slots": len(self.table),
                "queue_lock_holder": self.qlock.holder(),
                "cpus_on_dead_processes": [
                    cid for cid, t in enumerate(sched.cur) if t is not None and t.proc.state != ALIVE
                ],
                **self.shootdown.stats(),
            }
        )
        return out
