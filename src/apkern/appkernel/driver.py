"""`/dev/apkern`: the application kernel as a driver of the bootstrap kernel (Figures 3 and 5).

The bootstrap kernel knows only a driver: `init` runs `apkern_init`; the
bootstrap thread reaches `apkern_create_thread` and `apkern_activate_thread`
through `driver_control`, on the bootstrap processor. The driver checks that
the caller owns the thread it names. When a process closes the device or dies
(which closes it), `flush` removes that process's application threads and waits
until no AP runs on them any more, before the bootstrap kernel frees the address
space: no AP ever runs in a destroyed address space, and no TCB outlives its process.
The driver finds a process's threads through its record (`AKProcess`), never by
scanning the TCB table.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from typing import Any

from ..bootkernel import Caller, Driver, DriverServices
from ..bootkernel import abi as sys_abi
from ..hw import (
    AdoptUser,
    Compute,
    Context,
    Debugger,
    Frame,
    Load,
    Op,
    ReadCR3,
    ReleaseUser,
    SendIPI,
    SpinWhile,
    Store,
    Trap,
    UserAccessFault,
    Xchg,
    entry_frame,
)
from ..hw import traps as vec
from . import abi
from .costs import Costs
from .kernel import BSP, AppKernel
from .process import PROC_PID, AKProcess
from .tcb import BLOCKED, DEAD, FAULT, HELD, HOME, RUNNING, SLEEPING, TCB, WAITING

Gen = Generator[Op, Any, Any]
MAX_PER_PROCESS = 64
SIGNAL_MASK = 0xFFFFFFFE & ~(1 << sys_abi.SIGKILL)


def _user_range(addr: int, n: int) -> bool:
    return addr > 0 and addr + n <= sys_abi.USER_TOP


class ApkernDriver(Driver):
    """The application kernel's bootstrap-kernel side."""

    name = "apkern"

    def __init__(self, extensions: frozenset[str] = frozenset(), costs: Costs | None = None) -> None:
        self.ak: AppKernel | None = None
        self.extensions = extensions  # section 4.3's optional parts, chosen when the kernel is built
        self.costs = costs if costs is not None else Costs()  # the profile's (apkern.profiles)

    def init(self, services: DriverServices) -> Gen:
        self.ak = AppKernel(services, self.extensions, self.costs)
        yield from self.ak.apkern_init()

    def open(self, file: Any) -> Gen:
        return 0 if self.ak is not None and self.ak.started else -sys_abi.ENODEV
        yield

    def control(self, file: Any, caller: Caller, op: int, arg: int) -> Gen:
        if op == abi.APKERN_CREATE_THREAD:
            return (yield from self.apkern_create_thread(file, caller, arg))
        if op == abi.APKERN_ACTIVATE_THREAD:
            return (yield from self.apkern_activate_thread(caller, arg))
        if op == abi.APKERN_STOP_THREADS:
            return (yield from self.apkern_stop_threads(caller, arg))
        if op == abi.APKERN_MIGRATE_HOME and self.ak.migration is not None:
            return (yield from self.apkern_migrate_home(caller, arg))
        if op == abi.APKERN_MIGRATE_AWAY and self.ak.migration is not None:
            return (yield from self.apkern_migrate_away(caller, arg))
        return -sys_abi.EINVAL

    # --- apkern_create_thread (Figure 3, steps 3-5) --------------------------------------------------

    def apkern_create_thread(self, file: Any, caller: Caller, arg: int) -> Gen:
        ak = self.ak
        svc = ak.svc
        block = yield from svc.copy_from_user(arg, abi.CREATE_SIZE)
        comm, entry, a0, a1, tls, handlers = struct.unpack("<6I", block)
        if not (_user_range(comm, abi.COMM_SIZE) and _user_range(handlers, 4 * 32) and _user_range(tls, 4)):
            return -sys_abi.EFAULT
        area = yield from svc.copy_from_user(comm, abi.COMM_SIZE)  # must be mapped: fault it in now, or EFAULT
        yield Compute(self.ak.costs.TCB_INIT)
        cr3 = yield ReadCR3()  # requirement 3: the new thread runs on the caller's page table
        yield from ak.lock.acquire(BSP)
        yield Compute(self.ak.costs.PROC_LOOKUP)
        proc = ak.procs.get(caller.pid)
        tid = None
        if proc is None or len(proc.threads) < MAX_PER_PROCESS:
            tid = yield from ak.tcbs.alloc()
        if tid is None:
            yield from ak.lock.release()
            return -sys_abi.EAGAIN
        if proc is None:  # its first application thread: a record, unless kernel memory is out
            slot = yield from ak.proc_slots.alloc()
            if slot is None:
                yield from ak.tcbs.release(tid)
                yield from ak.lock.release()
                return -sys_abi.EAGAIN
            proc = AKProcess(caller.pid, slot, ak.proc_slots.kva(slot), ak.costs)
            yield Store(proc.kva + PROC_PID, caller.pid)
            ak.procs[caller.pid] = proc
        ctx = Context(
            [Frame(entry_frame(entry, a0, a1), user=True), Frame(ak.thread_start(), user=False, kind="irq")],
            name=f"{caller.pid}:app{tid}",
            tls=tls,
        )
        tcb = TCB(tid, proc, caller.tid, cr3, comm, handlers, ctx, ak.tcbs.kva(tid), file)
        ctx.owner = tcb
        if ak.migration is not None:  # section 4.3: its crt0 named an entry for it at home
            tcb.migratable = isinstance(area, bytes) and area[abi.MIG_ENTRY : abi.MIG_ENTRY + 4] != bytes(4)
        yield from ak.tcbs.add(tcb)
        yield from proc.threads.push(tcb)
        if proc.faults:  # section 4.3: it waits with its siblings
            yield from ak.set_state(tcb, HELD)
            tcb.pt_changed = True
        else:
            yield from ak.ready.push(tcb)
        yield from ak.lock.release()
        return tid

    def _owned(self, caller: Caller, tid: int) -> Gen:
        """The live TCB `tid` if the caller is the bootstrap thread that owns it, else -ESRCH or -EPERM."""
        yield Compute(self.ak.costs.DRIVER_CHECKS)
        tcb = self.ak.tcbs.live.get(tid)
        if tcb is None or tcb.state == DEAD:
            return -sys_abi.ESRCH
        if tcb.pid != caller.pid or tcb.owner != caller.tid:
            return -sys_abi.EPERM
        return tcb

    # --- apkern_activate_thread (Figure 2 step 6; section 4.1 asynchronous activation) --------------------

    def apkern_activate_thread(self, caller: Caller, tid: int) -> Gen:
        ak = self.ak
        tcb = yield from self._owned(caller, tid)
        if isinstance(tcb, int):
            return tcb
        yield from ak.lock.acquire(BSP)
        try:  # read under the lock: the AP posts (waiting + STATE) under it too
            sigs = (yield Xchg(tcb.comm + abi.SIGNALS, 0)) & SIGNAL_MASK
            state = yield Load(tcb.comm + abi.STATE)
        except UserAccessFault:
            yield from ak.lock.release()
            return -sys_abi.EFAULT
        if tcb.state == DEAD:
            yield from ak.lock.release()
            return -sys_abi.ESRCH
        yield from ak.held("a TCB's pending signals")
        tcb.pending_signals |= sigs
        if sigs and tcb.state == RUNNING and not tcb.waiting:
            yield SendIPI(tcb.cpu, "fixed", vec.IPI_RESCHEDULE)
        if sigs and tcb.state == SLEEPING:  # a sleep served on the application kernel ends: EINTR
            yield from ak.local.wake(tcb, -sys_abi.EINTR)
        if state == abi.EMPTY and tcb.waiting:
            faulted = tcb.fault
            yield from ak.update_flags(tcb, clear=WAITING | FAULT)
            if faulted:
                yield from ak.release_held(tcb.proc)
            if tcb.state == BLOCKED:
                if tcb.proc.faults:
                    yield from ak.set_state(tcb, HELD)
                else:
                    yield from ak.make_ready(tcb)
            ak.mark(BSP, "ak_activated", tcb)
        yield from ak.lock.release()
        return 0

    # --- section 4.3's unmap protocol, asked for by a bootstrap thread ------------------------------------

    def apkern_stop_threads(self, caller: Caller, tid: int) -> Gen:
        """Hold every other application thread of the caller's process until `tid` is activated.

        The bootstrap thread of `tid` calls this while it handles `tid`'s message and before it
        re-issues a call that removes mappings behind the other threads' backs: when this returns,
        none of them is on a CPU, and each reloads CR3 before it runs again. The activation that
        ends the message releases them, as it does after a forwarded page fault.
        """
        ak = self.ak
        tcb = yield from self._owned(caller, tid)
        if isinstance(tcb, int):
            return tcb
        yield from ak.lock.acquire(BSP)
        if not tcb.waiting:  # only while its own message is being handled
            yield from ak.lock.release()
            return -sys_abi.EINVAL
        yield from ak.update_flags(tcb, add=FAULT)  # until its activation: siblings made ready meanwhile are held
        tcb.pt_changed = True  # its own CPU may still be on it when the unmap is done (activation before block)
        running = yield from ak.stop_siblings(tcb, notify=False)
        yield from ak.lock.release()
        for t, cpu in running:  # until that CPU has left it (ON_CPU is cleared once it runs another context)
            on_cpu = yield Load(t.on_cpu_kva)
            while on_cpu == cpu + 1:
                on_cpu = yield SpinWhile(t.on_cpu_kva, on_cpu)
        return 0

    # --- section 4.3: migration (see migration.py) ---------------------------------------------------------

    def apkern_migrate_home(self, caller: Caller, tid: int) -> Gen:
        """After `tid`'s KIND_MIGRATE message: its user context runs on in the calling bootstrap thread.

        Returns to the thread's own code, which issues its call again, now on the bootstrap
        kernel; the bootstrap thread's call returns only when APKERN_MIGRATE_AWAY ends it.
        Signals passed on while it moved are delivered here.
        """
        ak = self.ak
        tcb = yield from self._owned(caller, tid)
        if isinstance(tcb, int):
            return tcb
        try:
            entry = yield Load(tcb.comm + abi.MIG_ENTRY)
        except UserAccessFault:
            return -sys_abi.EFAULT
        yield from ak.lock.acquire(BSP)
        frames = tcb.home_frames
        if tcb.state != HOME or frames is None:
            yield from ak.lock.release()
            return -sys_abi.EINVAL
        tcb.home_frames = None
        yield from ak.held("a TCB's pending signals")
        sigs, tcb.pending_signals = tcb.pending_signals, 0
        yield from ak.lock.release()
        yield Compute(self.ak.costs.MIGRATE)  # load the user registers
        tcb.home_saved = yield AdoptUser(frames, tcb.ctx.tls, (entry, tcb.comm))
        yield from ak.deliver_signals(tcb, sigs)
        ak.mark(BSP, "ak_home", tcb)
        return 0

    def apkern_migrate_away(self, caller: Caller, tid: int) -> Gen:
        """From crt0's entry at home, before it issues a call: the thread goes back to the APs.

        The call is issued again there; the bootstrap thread's MIGRATE_HOME call returns 0.
        EAGAIN, and it stays, while a signal handler has interrupted an earlier call's entry.
        """
        ak = self.ak
        tcb = yield from self._owned(caller, tid)
        if isinstance(tcb, int):
            return tcb
        if tcb.state != HOME or tcb.home_saved is None:
            return -sys_abi.EINVAL
        frames = yield ReleaseUser(tcb.home_saved, "vsyscall")
        if frames is None:
            ak.migration.refused += 1
            return -sys_abi.EAGAIN
        tcb.home_saved = None
        entry = frames.pop()  # crt0's entry, about to issue the call: the AP issues it instead
        frames[-1].retry = Trap(vec.SYSCALL, *entry.regs)
        yield Compute(self.ak.costs.MIGRATE)  # save the user registers
        ctx = Context([*frames, Frame(ak.thread_start(), user=False, kind="irq")], name=tcb.ctx.name, tls=tcb.ctx.tls)
        ctx.owner = tcb
        yield from ak.lock.acquire(BSP)
        tcb.ctx = ctx  # a fresh context: the AP that sent it home may still be leaving the old one
        if tcb.proc.faults:
            yield from ak.set_state(tcb, HELD)
        else:
            yield from ak.make_ready(tcb)
        ak.migration.away += 1
        ak.mark(BSP, "ak_migrate_away", tcb)
        yield from ak.lock.release()
        return 0

    # --- death: the descriptor is closed (explicitly or by process exit) ----------------------------------

    def flush(self, file: Any, caller: Caller) -> Gen:
        """The caller's process closes a descriptor of `file`: end its application threads made through it."""
        ak = self.ak
        if ak is None or not ak.started:
            return
        yield from ak.lock.acquire(BSP)
        yield Compute(self.ak.costs.PROC_LOOKUP)
        proc = ak.procs.get(caller.pid)
        mine = []
        for t in proc.threads if proc is not None else ():
            yield Compute(self.ak.costs.LIST_VISIT)
            if t.file is file:
                mine.append(t)
        running = []  # (TCB, the CPU on it), noted under the lock: the CPU may leave at any moment after
        for t in mine:
            if t.cpu is not None:  # dead ones too: an exiting thread's CPU may not have left it yet
                running.append((t, t.cpu))
            yield from ak.kill(t)
        yield from ak.lock.release()
        for _, cpu in running:
            yield SendIPI(cpu, "fixed", vec.IPI_STOP)  # harmless if it has already left
        for t, _ in running:
            # until that CPU has loaded another CR3 (finish_switch frees t or clears ON_CPU, t.cpu with it)
            while ak.tcbs.live.get(t.id) is t and t.cpu is not None:
                on_cpu = yield Load(t.on_cpu_kva)
                if not on_cpu:
                    break
                yield SpinWhile(t.on_cpu_kva, on_cpu)

    def release(self, file: Any) -> Gen:
        """Nothing left: a TCB is made through a descriptor its process holds, and that process's
        first close of one (`flush`, process death included) ended it."""
        return
        yield

    # --- observability ----------------------------------------------------------------------------------

    def stats(self, debugger: Debugger | None = None) -> dict[str, Any]:
        """Counters of the application kernel; with a `debugger`, the live threads' loop counters too."""
        ak = self.ak
        if ak is None:
            return {}
        passes, busy = ak.passes_done.passes, ak.passes_done.busy
        for t in ak.tcbs.live.values() if debugger is not None else ():
            passes += debugger.read_u32(t.cr3, t.comm + abi.PASSES) or 0
            busy += debugger.read_u32(t.cr3, t.comm + abi.BUSY_PASSES) or 0
        return {
            "forwarded_calls": ak.forwarded_calls,
            "local_calls": ak.local.served if ak.local is not None else 0,
            "forwarded_page_faults": ak.forwarded_faults,
            "forwarded_exceptions": ak.forwarded_exceptions,
            "bootstrap_loop_passes": passes,
            "bootstrap_loop_busy_passes": busy,
            "bootstrap_loop_idle_passes": passes - busy,
            "spinlock_acquisitions": ak.lock.acquisitions,
            "spinlock_contended": ak.lock.contended,
            "spinlock_spins": ak.lock.spins,
            "ak_signals_delivered": ak.signals_delivered,
            "ak_preemptions": ak.preemptions,
            "ak_switches": ak.switches,
            "migrations_home": ak.migration.home if ak.migration is not None else 0,
            "migrations_away": ak.migration.away if ak.migration is not None else 0,
            "migrations_refused": ak.migration.refused if ak.migration is not None else 0,
            **ak.shootdown.stats(),
            "tcbs_live": len(ak.tcbs.live),
            "tcbs_created": ak.tcbs.created,
            "tcbs_freed": ak.tcbs.freed,
            **ak.ready.stats(),
        }
