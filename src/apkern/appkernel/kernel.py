"""The application kernel: shared state, `apkern_init`, and scheduling on the application processors.

Everything here runs in kernel mode: `apkern_init` and the driver entry points
on the bootstrap processor (inside the bootstrap kernel's driver calls), the
rest on the APs. Shared state (ready queue, TCB states) changes only under the
spinlock. Invariants:
- a TCB is in the ready queue only while no CPU is on its context; a thread made
  ready while its CPU is still leaving it is queued by that CPU once it has left
  (`finish_switch`, as Linux's finish_task_switch);
- ON_CPU is set from the moment a CPU picks a TCB until that CPU runs another
  context (with that context's CR3, or the kernel's), so the driver can wait for
  it before the address space goes;
- an AP holds the kernel's page directory when idle, and the running thread's
  otherwise; it reloads CR3 when a forwarded page fault may have changed the
  tables (section 4.1);
- on every trap or exception an AP blocks the thread and schedules another.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import (
    CODE_PAGE_MAGIC,
    PAGE_SHIFT,
    AtomicAdd,
    CodeAddr,
    Compute,
    Context,
    CpuId,
    EnablePaging,
    Frame,
    LoadCR3,
    Op,
    PushFrame,
    ReadCR3,
    SendIPI,
    SetIVT,
    SetTimer,
    SpinWhile,
    Store,
    Switch,
)
from ..hw import traps as vec
from . import abi, costs
from .ready_queue import ReadyQueue
from .spinlock import Spinlock
from .tcb import BLOCKED, DEAD, HELD, READY, RUNNING, TCB, TCBTable
from .trap import APTraps, signal_trampoline

if TYPE_CHECKING:
    from ..bootkernel import DriverServices

Gen = Generator[Op, Any, Any]
MAX_TCBS = 256
BSP = 0  # the driver's calls run on the bootstrap processor, CPU 0


class _Passes:
    """Bootstrap-loop pass counters accumulated from thread pairs that are gone."""

    def __init__(self) -> None:
        self.passes = 0
        self.busy = 0


class AppKernel:
    """State shared by the application processors and the driver."""

    def __init__(self, services: DriverServices) -> None:
        self.svc = services
        self.cpus = services.cpu_count
        self.current: list[TCB | None] = [None] * self.cpus
        self.prev: list[TCB | None] = [None] * self.cpus  # what a CPU left in its last switch
        self.idle_ctx: list[Context | None] = [None] * self.cpus
        self.traps = APTraps(self)
        self.started = False
        self._to_post: list[TCB] = []  # faulting threads whose siblings have all stopped (lock held)
        self.passes_done = _Passes()
        self.forwarded_calls = 0
        self.forwarded_faults = 0
        self.forwarded_exceptions = 0
        self.signals_delivered = 0
        self.preemptions = 0
        self.switches = 0

    # --- apkern_init (section 4.2): on the BSP, at driver initialisation --------------------------

    def apkern_init(self) -> Gen:
        svc = self.svc
        kb = svc.kernbase
        shared = svc.kmalloc(4096)  # lock word, ready count, start-up counter
        self.lock = Spinlock(kb + shared)
        self.ready = ReadyQueue(kb + shared + 4)
        self.started_kva = kb + shared + 8
        self.tcbs = TCBTable(svc.memory, svc.kmalloc(MAX_TCBS * 32), kb, MAX_TCBS)
        if self.cpus < 2:
            return
        # section 3.2: start-up code must sit below 1 MiB; the bootstrap kernel hands out such a page
        page = svc.alloc_low_page()
        entry = yield CodeAddr(self.ap_start)
        yield Store(kb + (page << PAGE_SHIFT), CODE_PAGE_MAGIC)
        yield Store(kb + (page << PAGE_SHIFT) + 4, entry)
        for ap in range(1, self.cpus):
            yield SendIPI(ap, "init")
            yield SendIPI(ap, "sipi", page)
        started = 0
        while started < self.cpus - 1:
            started = yield SpinWhile(self.started_kva, started)
        svc.free_low_page(page)
        self.started = True

    def ap_start(self, cpu: Any) -> Gen:
        """An AP's first code, reached through the trampoline page in real mode (paging off)."""
        yield Compute(costs.AP_START)
        cid = yield CpuId()
        yield SetIVT(self.traps.ivt())  # requirement 4: this AP's own handlers
        yield LoadCR3(self.svc.kernel_cr3)
        yield EnablePaging()
        yield SetTimer(costs.TICK)  # requirement 2: its own timer
        idle = Context([Frame(self.idle(cid), user=False, intr=True, acct="idle")], name=f"ak-idle{cid}")
        self.idle_ctx[cid] = idle
        yield AtomicAdd(self.started_kva, 1)
        yield Switch(idle)

    # --- the idle loop: APs spin until some thread becomes schedulable (section 5.1) ----------------

    def idle(self, cid: int) -> Gen:
        while True:
            yield SpinWhile(self.ready.count_kva, 0, acct="idle")
            yield from self.lock.acquire(cid)
            nxt = yield from self._pick(cid)
            yield from self.lock.release()
            if nxt is not None:
                yield from self.switch(cid, None, nxt)

    def _pick(self, cid: int) -> Gen:
        """Lock held: claim the next ready TCB for CPU `cid`."""
        tcb = yield from self.ready.pop()
        if tcb is not None:
            tcb.state = RUNNING
            tcb.cpu = cid
            yield Store(tcb.on_cpu_kva, cid + 1)
        return tcb

    def make_ready(self, tcb: TCB) -> Gen:
        """Lock held: READY, and queued now unless a CPU is still leaving its context."""
        tcb.state = READY
        if tcb.cpu is None:
            yield from self.ready.push(tcb)

    # --- switching (on an AP) ---------------------------------------------------------------------

    def switch(self, cid: int, prev: TCB | None, nxt: TCB | None) -> Gen:
        """Leave `prev` (queued, blocked, held or dead) for `nxt` or the idle loop; returns the CPU we resume on."""
        yield Compute(costs.CONTEXT_SWITCH)
        self.switches += 1
        cr3 = yield ReadCR3()
        if nxt is not None and nxt.state == DEAD:  # killed between being picked and now
            self.prev[cid] = nxt
            yield from self.finish_switch(cid)
            nxt = None
        if nxt is None:
            if cr3 != self.svc.kernel_cr3:
                yield LoadCR3(self.svc.kernel_cr3)
            target = self.idle_ctx[cid]
        else:
            if cr3 != nxt.cr3 or nxt.pt_changed:
                nxt.pt_changed = False
                yield LoadCR3(nxt.cr3)
            nxt.ticks = 0
            target = nxt.ctx
        self.current[cid] = nxt
        self.prev[cid] = prev
        yield Switch(target)
        # resumed: perhaps much later, perhaps on another CPU
        cid = yield CpuId()
        yield from self.finish_switch(cid)
        return cid

    def finish_switch(self, cid: int) -> Gen:
        """On the context just switched to: the previous TCB is off this CPU now.

        Under the lock, so that a thread made ready meanwhile is queued exactly once:
        by the activation if the CPU had already left it, or here.
        """
        prev, self.prev[cid] = self.prev[cid], None
        if prev is None:
            return
        yield from self.lock.acquire(cid)
        prev.cpu = None
        if prev.state == READY:
            yield from self.ready.push(prev)
        yield Store(prev.on_cpu_kva, 0)
        if prev.state == DEAD and self.tcbs.live.get(prev.id) is prev:
            self.free(prev)
        yield from self.lock.release()

    def thread_start(self) -> Gen:
        """A new application thread's first kernel code (like xv6's forkret): finish the switch,
        then look at what may have happened to it since it was picked (killed, held, signalled)."""
        cid = yield CpuId()
        yield from self.finish_switch(cid)
        yield from self.return_to_user(cid, self.current[cid])

    def schedule_next(self, cid: int, prev: TCB) -> Gen:
        """Lock held on entry, released here: switch this AP to the next ready thread or to idle."""
        nxt = yield from self._pick(cid)
        yield from self.lock.release()
        return (yield from self.switch(cid, prev, nxt))

    def block(self, cid: int, tcb: TCB) -> Gen:
        """Section 4.1 step 1: the thread waits for its bootstrap thread; this AP runs another."""
        yield Compute(costs.BLOCK)
        yield from self.lock.acquire(cid)
        if tcb.state == DEAD:
            yield from self.schedule_next(cid, tcb)
            raise AssertionError("a dead application thread was resumed")
        if not tcb.waiting:  # the bootstrap thread was quicker: the thread may go on
            yield from self.lock.release()
            if tcb.pt_changed:  # and its page table changed meanwhile
                tcb.pt_changed = False
                yield LoadCR3(tcb.cr3)
            return cid
        tcb.state = BLOCKED
        self._stopped(tcb)
        yield from self.post_waiting()
        return (yield from self.schedule_next(cid, tcb))

    def preempt(self, cid: int, tcb: TCB) -> Gen:
        """Timer preemption among ready threads: the running one goes to the back of the queue."""
        yield from self.lock.acquire(cid)
        if len(self.ready) == 0 or tcb.state != RUNNING or tcb.stop_requested:
            yield from self.lock.release()
            return cid
        self.preemptions += 1
        tcb.state = READY  # queued by finish_switch once this CPU has left it
        return (yield from self.schedule_next(cid, tcb))

    def leave_dead(self, cid: int, tcb: TCB) -> Gen:
        """The thread exited or its process is gone: never run it again."""
        yield from self.lock.acquire(cid)
        yield from self.schedule_next(cid, tcb)
        raise AssertionError("a dead application thread was resumed")

    # --- thread death -------------------------------------------------------------------------

    def kill(self, tcb: TCB) -> Gen:
        """Lock held: the thread will never run again; free it now unless a CPU is still on it."""
        if tcb.state == DEAD:
            return
        p, b = self.peek_passes(tcb)
        self.passes_done.passes += p
        self.passes_done.busy += b
        if tcb.state == READY:
            yield from self.ready.remove(tcb)
        tcb.state = DEAD
        tcb.waiting = False
        self._stopped(tcb)
        yield Compute(costs.TCB_FREE)
        if tcb.cpu is None:
            self.free(tcb)

    def free(self, tcb: TCB) -> None:
        self.tcbs.remove(tcb)
        tcb.ctx.frames.clear()

    def destroy_current(self, cid: int, tcb: TCB) -> Gen:
        """Section 4.1 step 2, modified: clean the running thread up before its last message goes out."""
        yield from self.lock.acquire(cid)
        yield from self.kill(tcb)
        yield from self.post_waiting()
        yield from self.lock.release()

    def peek_passes(self, tcb: TCB) -> tuple[int, int]:
        """The bootstrap-loop pass counters of `tcb`'s communication area (an observer's read: free)."""
        passes = self.svc.peek_user(tcb.cr3, tcb.comm + abi.PASSES)
        busy = self.svc.peek_user(tcb.cr3, tcb.comm + abi.BUSY_PASSES)
        return (passes or 0, busy or 0)

    # --- section 4.3: a page fault blocks every thread of its process ------------------------------

    def fault_in_flight(self, pid: int) -> bool:
        return any(t.pid == pid and t.fault and t.state != DEAD for t in self.tcbs.live.values())

    def stop_siblings(self, tcb: TCB, notify: bool = True) -> Gen:
        """Lock held: hold every other thread of `tcb`'s process; returns the (TCB, CPU) pairs still on a CPU.

        Each will reload CR3 before it runs user code again. A running one is held on its way
        back to user mode (an IPI sends it there); one already forwarding leaves by blocking,
        or is held on its way back if its activation overtakes it. With `notify`, `tcb`'s
        message is posted by whichever CPU stops the last of them (`tcb.stops_pending`).
        """
        running = []
        for other in list(self.tcbs.live.values()):
            if other is tcb or other.pid != tcb.pid or other.state == DEAD:
                continue
            other.pt_changed = True
            if other.state == READY:
                yield from self.ready.remove(other)
                other.state = HELD
            elif other.state == RUNNING:
                other.stop_requested = True
                running.append((other, other.cpu))
                if notify:
                    other.stop_waiters.append(tcb)
                    tcb.stops_pending += 1
                if not other.waiting:
                    yield SendIPI(other.cpu, "fixed", vec.IPI_RESCHEDULE)
        return running

    def _stopped(self, tcb: TCB) -> None:
        """Lock held: `tcb` is leaving its CPU; faulting threads that waited only for it may post."""
        tcb.stop_requested = False
        for waiter in tcb.stop_waiters:
            waiter.stops_pending -= 1
            if waiter.stops_pending == 0 and waiter.state != DEAD:
                self._to_post.append(waiter)
        tcb.stop_waiters.clear()

    def post_waiting(self) -> Gen:
        """Post the messages of faulting threads whose siblings have all stopped (same address space)."""
        while self._to_post:
            waiter = self._to_post.pop()
            if (yield from self.traps.try_store(waiter.comm + abi.STATE, abi.POSTED)):
                self.mark(waiter.cpu or 0, "ak_posted", waiter)

    def hold(self, cid: int, tcb: TCB) -> Gen:
        """Stop this running thread: another thread of its process has a page fault in flight."""
        yield from self.lock.acquire(cid)
        if not tcb.stop_requested or tcb.state != RUNNING:
            yield from self.lock.release()
            return cid
        tcb.state = HELD
        self._stopped(tcb)
        yield from self.post_waiting()
        return (yield from self.schedule_next(cid, tcb))

    def release_held(self, pid: int) -> Gen:
        """Lock held: no fault of the process is in flight any more; its held threads may run."""
        if self.fault_in_flight(pid):
            return
        for t in list(self.tcbs.live.values()):
            if t.pid == pid and t.state == HELD:
                yield from self.make_ready(t)

    # --- the way back to user mode on an AP ----------------------------------------------------------

    def return_to_user(self, cid: int, tcb: TCB) -> Gen:
        """Act on death, a stop request and pending signals; returns the CPU the thread continues on."""
        if tcb.state == DEAD:
            yield from self.leave_dead(cid, tcb)
        if tcb.stop_requested:
            cid = yield from self.hold(cid, tcb)
            if tcb.state == DEAD:
                yield from self.leave_dead(cid, tcb)
        sigs, tcb.pending_signals = tcb.pending_signals, 0
        for sig in range(1, 32):
            if sigs & (1 << sig):
                handler = yield from self.traps.try_load(tcb.handlers + 4 * sig)
                if handler is None or handler in (0, 1):
                    continue
                yield Compute(costs.SIGNAL_DELIVER)
                self.signals_delivered += 1
                yield PushFrame(signal_trampoline(handler, sig))
        return cid

    def mark(self, cid: int, name: str, tcb: TCB | None) -> None:
        if tcb is not None:
            self.svc.trace(cid, name, tcb.id, owner=tcb.owner, pid=tcb.pid)
