"""The giant-lock SMP port of the bootstrap kernel: every CPU runs user code and enters the kernel itself.

The port keeps the uniprocessor kernel's code and data and changes what an SMP
port of such a kernel must change, by subclassing and replacing its parts:

- one kernel lock (giant_lock.py), taken at every kernel entry and released at
  kernel exit, or handed on when the thread blocks (trap.py);
- per-CPU current thread, loaded CR3, idle loop and timer; one shared run queue
  (sched.py); reschedule IPIs wake idle CPUs when threads wait to run, and reach
  a CPU running a thread that a signal or a kill must stop (signal.py);
- TLB shoot-down on munmap, on freeing a joined thread's stack and on the
  swapper's evictions (shootdown.py, portkit/syscall.py and portkit/swap.py); on exit, the other
  threads of the process are got off their CPUs before the address space goes
  (`stop_others`);
- boot: the application processors are started by INIT and SIPI through a
  trampoline page below 1 MiB, each with the kernel's vector table, paging and
  its own timer, and go to their idle loops (portkit/ap_start.py).

What the port adds in kernel memory (one page; the rest of the kernel's data
stays where the uniprocessor kernel keeps it, guarded by the lock):
- the lock word (owner CPU + 1);
- the start-up counter (lock xadd by each AP) and the word that lets the APs
  schedule once all are up;
- the idle flags, one word per CPU, and their count (lock held: a CPU sets its
  own before it halts, a CPU that wakes it clears it);
- the shoot-down request and its acknowledgement counter (portkit/shootdown.py).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

from ..bootkernel import BootKernel, Driver
from ..bootkernel import costs as boot_costs
from ..bootkernel.proc import ALIVE, DEAD, RUNNING, Process, Thread
from ..bootkernel.vm import KERNBASE
from ..hw import (
    CPU,
    IVT,
    PAGE_SIZE,
    AssertHeld,
    Compute,
    CpuId,
    EnablePaging,
    Frame,
    GuardedBy,
    Load,
    LoadCR3,
    Machine,
    Op,
    SendIPI,
    SetIVT,
    SetTimer,
    Store,
    Switch,
)
from ..hw import traps as vec
from ..portkit.ap_start import APStartup
from ..portkit.swap import PortSwapper
from ..portkit.syscall import PortSyscalls
from .costs import Costs as PortCosts
from .giant_lock import GiantLock
from .sched import SMPScheduler
from .shootdown import Shootdown
from .signal import SMPSignals
from .trap import SMPTraps

Gen = Generator[Op, Any, Any]

# the port's kernel page
LOCK = 0
STARTED = 4  # APs that have started (lock xadd)
IDLE_COUNT = 8  # CPUs whose idle flag is set
COMMENCED = 12  # set by the BSP once every AP has started: they may schedule (Linux 2.2's smp_commenced)
SHOOTDOWN = 16  # the shoot-down request (portkit/shootdown.py)
IDLE = 64  # + 4 * cpu: 1 while that CPU's idle loop halts and nobody has woken it yet


class SMPKernel(APStartup, BootKernel):
    """The bootstrap kernel ported to every CPU of the machine behind one lock."""

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
        page = self.heap.kmalloc(PAGE_SIZE)
        self.page = KERNBASE + page
        self.lock = GiantLock(machine.memory, self.page + LOCK, page + LOCK, n)
        self.shootdown = Shootdown(self, self.page + SHOOTDOWN)
        self.idle = [False] * n  # mirrors of the idle flags
        self.kick_cpus: set[int] = set()  # CPUs whose running thread a signal must reach (lock held)
        self.wakeup_ipis = 0
        self.sched = SMPScheduler(self)
        self.traps = SMPTraps(self)
        self.syscalls = PortSyscalls(self)
        self.signals = SMPSignals(self)
        if self.swapper is not None:
            self.swapper = PortSwapper(self)
        self.aps_started = 0  # APs that reached their idle loop
        self.started_kva, self.commenced_kva = self.page + STARTED, self.page + COMMENCED

    # --- boot -----------------------------------------------------------------------------------------------

    def ap_ivt(self) -> IVT:
        return self.traps.ivt()

    def _start(self) -> Gen:
        yield SetIVT(self.traps.ivt())
        yield LoadCR3(self.kernel_cr3)
        yield EnablePaging()
        yield SetTimer(self.tick)
        self.sched.loaded_cr3 = self.kernel_cr3  # every CPU's, before any runs
        lock = self.lock
        yield GuardedBy(self.page + IDLE_COUNT, 4, lock.kva, "the idle count", lock.name)
        yield GuardedBy(self.page + IDLE, 4 * len(self.machine.cpus), lock.kva, "the idle flags", lock.name)
        yield from self.shootdown.annotate()
        for d in self.drivers.values():
            yield from d.init(self.services)
        self.booted = True  # from now on per-CPU state changes only under the kernel lock
        yield from self._start_aps()
        yield Switch(self.sched.idle_ctxs[0])

    # --- the lock's exit path and waking other CPUs ----------------------------------------------------------

    def unlock(self, cid: int) -> Gen:
        """Kernel exit on CPU `cid`: wake idle CPUs for queued threads and CPUs that signals must reach; release."""
        yield Compute(self.port_costs.LOCK_EXIT)
        if (self.sched.runq and (yield Load(self.page + IDLE_COUNT))) or self.kick_cpus:
            yield from self._wake_cpus(cid)
        yield from self.lock.release(cid)

    def _wake_cpus(self, me: int) -> Gen:
        """Lock held: a reschedule IPI to one idle CPU per queued thread (lowest first) and to each CPU to kick."""
        kick, self.kick_cpus = self.kick_cpus, set()
        wanted = len(self.sched.runq)
        for c in range(len(self.machine.cpus)):
            if wanted == 0:
                break
            yield Compute(self.port_costs.CPU_SCAN)
            if c != me and (yield Load(self.page + IDLE + 4 * c)):
                yield from self.set_idle(c, False)
                kick.add(c)
                wanted -= 1
        for c in sorted(kick):
            yield SendIPI(c, "fixed", vec.IPI_RESCHEDULE)
            self.wakeup_ipis += 1

    def set_idle(self, cid: int, idle: bool) -> Gen:
        """Lock held: CPU `cid`'s idle flag (and the count of set flags)."""
        if self.idle[cid] == idle:
            return
        self.idle[cid] = idle
        yield Store(self.page + IDLE + 4 * cid, int(idle))
        yield Store(self.page + IDLE_COUNT, sum(self.idle))

    # --- threads ----------------------------------------------------------------------------------------------

    def _new_thread(self, p: Process, entry: int, args: tuple[int, ...]) -> Thread:
        """A new thread starts in kernel code that releases the lock its CPU holds (xv6's forkret), then user code."""
        t = super()._new_thread(p, entry, args)
        t.ctx.frames.append(Frame(self._thread_start(), user=False))
        return t

    def _thread_start(self) -> Gen:
        cid = yield CpuId()
        yield from self.unlock(cid)

    def leave_dead(self, t: Thread) -> Gen:
        """Lock held, at a kernel entry: `t`'s process died while it ran here; leave its CPU for good."""
        yield Compute(self.port_costs.LEAVE_DEAD)
        self.sched.current = None
        yield from self.sched.wake(("off-cpu", t.proc))
        yield from self.sched.schedule()
        raise AssertionError("a dead thread was resumed")

    def stop_others(self, t: Thread) -> Gen:
        """Lock held: kill every other thread of `t`'s process and wait until none runs on a CPU.

        One that runs (in user mode, or spinning for the lock at a kernel entry) is sent a
        reschedule IPI; at its next kernel entry it finds itself dead and leaves (`leave_dead`).
        `t` sleeps meanwhile, so the lock is free for them.
        """
        p = t.proc
        yield AssertHeld(self.lock.kva, "the threads of a dying process", self.lock.name)
        on_cpu = []
        for other in p.threads:
            yield Compute(self.port_costs.THREAD_VISIT)
            if other is t or other.state == DEAD:
                continue
            if other.state == RUNNING:
                on_cpu.append(other)
            self.sched.remove(other)
        for other in on_cpu:
            cid = self.sched.cpu_of(other)
            if cid is not None:
                yield SendIPI(cid, "fixed", vec.IPI_RESCHEDULE)
                self.wakeup_ipis += 1
        while any(self.sched.cpu_of(other) is not None for other in on_cpu):
            yield from self.sched.sleep(("off-cpu", p))

    def exit_process(self, t: Thread, status: int) -> Gen:
        """The uniprocessor exit, once no other thread of the process runs on any CPU."""
        if t.proc.state == ALIVE:
            yield from self.stop_others(t)
        yield from super().exit_process(t, status)

    def free_thread(self, t: Thread) -> Gen:
        """A joined thread's stack goes: shot down on every CPU that runs its process."""
        yield from self.shootdown.begin(t.proc.aspace.cr3)
        yield from super().free_thread(t)
        yield from self.shootdown.end()

    # --- observers ----------------------------------------------------------------------------------------------

    def trace(self, cpu: CPU, name: str, t: Thread | None, call: str | None = None) -> None:
        """A trace mark on `cpu` for thread `t` (a no-op unless the machine is tracing)."""
        tracer = self.machine.tracer
        if tracer is not None:
            tracer.mark(cpu, name, t.tid if t else None, call=call)

    def mark(self, name: str, call: str | None = None) -> None:
        """A trace mark of kernel code, on the CPU that runs it (the lock holder) for its current thread."""
        cid = self.lock.holder()
        self.trace(self.machine.cpus[0 if cid is None else cid], name, self.sched.current, call)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        spin = [c.acct.get("spin", 0) for c in self.machine.cpus]
        out.update(
            {
                "lock_acquisitions": self.lock.acquisitions,
                "lock_contended": self.lock.contended,
                "lock_spins": self.lock.spins,
                "lock_spin_instructions": sum(spin),
                "lock_spin_by_cpu": spin,
                "lock_holder": self.lock.holder(),
                "reschedule_ipis": self.traps.reschedule_ipis,
                "wakeup_ipis": self.wakeup_ipis,
                "aps_started": self.aps_started,
                "cpus_on_dead_processes": [
                    cid for cid, t in enumerate(self.sched._current) if t is not None and t.proc.state != ALIVE
                ],
                **self.shootdown.stats(),
            }
        )
        return out
