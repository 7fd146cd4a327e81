"""The application kernel: shared state, `apkern_init`, and scheduling on the application processors.

Everything here runs in kernel mode: `apkern_init` and the driver entry points
on the bootstrap processor (inside the bootstrap kernel's driver calls), the
rest on the APs. Kernel data lives in kernel memory and changes through memory
operations; the Python objects mirror it. What guards what:
- the spinlock (`lock`): the ready queue (with the `balance` extension: the
  per-AP queues, their idle flags, the mask of available APs; balance.py says
  why one lock still), every TCB slot (state, flags, ON_CPU, links, home AP), the
  process records, the slot free lists (annotated with `GuardedBy`: the machine's
  lock checker fails any write to them by a CPU not holding the lock); also, in
  Python only, the stop bookkeeping (`stop_waiters`, `stops_pending`, `_to_post`),
  the passes folded from dead threads and the signals the driver passes on (where
  they change: `held`, an `AssertHeld`);
- a CPU's own: `current[cid]`, `prev[cid]`, `idle_ctx[cid]`, a running TCB's `ticks`;
- atomic operations: the start-up counter (`AtomicAdd`); a TCB's pending signals
  are taken whole by its CPU (an xchg in C);
- the message protocol, not a lock: a communication area's STATE word orders its
  body between the two sides (trap.py).
Invariants:
- a TCB is in a ready queue only while no CPU is on its context; a thread made
  ready while its CPU is still leaving it is queued by that CPU once it has left
  (`finish_switch`, as Linux's finish_task_switch);
- ON_CPU is set from the moment a CPU picks a TCB until that CPU runs another
  context (with that context's CR3, or the kernel's), so the driver can wait for
  it before the address space goes;
- an AP holds the kernel's page directory when idle, and the running thread's
  otherwise; it reloads CR3 when a forwarded page fault may have changed the
  tables (section 4.1);
- on every trap or exception an AP blocks the thread and schedules another;
- a HOME thread (the migration extension) is in no queue and on no AP: its user
  frames are in transit (`home_frames`, lock held) or run in its bootstrap thread.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..bootkernel.kalloc import OutOfMemory
from ..hw import (
    CODE_PAGE_MAGIC,
    PAGE_SHIFT,
    PAGE_SIZE,
    AssertHeld,
    AtomicAdd,
    CodeAddr,
    Compute,
    Context,
    CpuId,
    DisableInterrupts,
    EnableInterrupts,
    EnablePaging,
    Frame,
    GuardedBy,
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
    WriteMem,
)
from ..hw import traps as vec
from . import abi, costs
from .balance import Runqueues
from .local_calls import LocalCalls
from .migration import MIG_SIZE, Migration
from .process import PROC_SIZE, AKProcess
from .ready_queue import ReadyQueue
from .shootdown import Shootdown
from .slots import SlotTable
from .spinlock import Spinlock
from .tcb import (
    BLOCKED,
    DEAD,
    FAULT,
    HELD,
    READY,
    RUNNING,
    SLOT_FLAGS,
    SLOT_STATE,
    STATE_CODES,
    STOP_REQUESTED,
    TCB,
    TCB_SIZE,
    WAITING,
    TCBTable,
)
from .tcb_list import LIST_WORDS
from .trap import APTraps, signal_trampoline

if TYPE_CHECKING:
    from ..bootkernel import DriverServices
    from .costs import Costs

Gen = Generator[Op, Any, Any]
TCBS_PER_PAGE = PAGE_SIZE // TCB_SIZE
START_TCBS = 256  # TCBs (and process records) of the tables at start-up; a full table grows (slots.py)
BSP = 0  # the driver's calls run on the bootstrap processor, CPU 0

# the shared page: the lock word, the start-up counter, then the data the lock guards
SHARED_LOCK = 0
SHARED_STARTED = 4
SHARED_READY = 16  # the ready queue: head, tail, length
SHARED_FREE_TCBS = 32  # the TCB table's free-list head and high-water mark
SHARED_FREE_PROCS = 40  # the process records' free-list head and high-water mark
SHARED_SLEEPERS = 48  # the sleep list of the local_calls extension: head, tail, length


class _Passes:
    """Bootstrap-loop pass counters accumulated from thread pairs that are gone."""

    def __init__(self) -> None:
        self.passes = 0
        self.busy = 0


class AppKernel:
    """State shared by the application processors and the driver."""

    def __init__(self, services: DriverServices, extensions: frozenset[str], costs: Costs) -> None:
        self.svc = services
        self.costs = costs
        self.extensions = extensions
        self.local: LocalCalls | None = None
        self.migration: Migration | None = None
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
        shared = kb + svc.kmalloc(4096)
        self.lock = Spinlock(shared + SHARED_LOCK, "the application kernel's spinlock")
        self.started_kva = shared + SHARED_STARTED
        self.ready: ReadyQueue | Runqueues = ReadyQueue(shared + SHARED_READY, self.costs)
        tcbs = kb + svc.kmalloc(START_TCBS * TCB_SIZE)
        self.tcbs = TCBTable(tcbs, START_TCBS, shared + SHARED_FREE_TCBS, self._grow_tcbs)
        # a process with application threads has a record: at most one per TCB
        records = kb + svc.kmalloc(START_TCBS * PROC_SIZE)
        self.proc_slots = SlotTable(records, PROC_SIZE, START_TCBS, shared + SHARED_FREE_PROCS, self._grow_records)
        self.procs: dict[int, AKProcess] = {}  # pid -> record (a hash table in C: PROC_LOOKUP)
        lock = self.lock
        yield GuardedBy(shared + SHARED_READY, LIST_WORDS * 4, lock.kva, "the ready queue", lock.name)
        if "balance" in self.extensions:  # section 4.3: a queue per AP, under the same lock (balance.py says why)
            self.ready = Runqueues(kb + svc.kmalloc(Runqueues.block_size(self.cpus)), self.cpus, self.costs)
            yield from self.ready.init()  # no AP runs yet: nobody else can see them
            yield GuardedBy(self.ready.kva, self.ready.size(), lock.kva, "the per-AP ready queues", lock.name)
        yield GuardedBy(shared + SHARED_FREE_TCBS, 16, lock.kva, "the free lists", lock.name)
        yield GuardedBy(self.tcbs.base, START_TCBS * TCB_SIZE, lock.kva, "the TCB table", lock.name)
        yield GuardedBy(self.proc_slots.base, START_TCBS * PROC_SIZE, lock.kva, "the process records", lock.name)
        if "local_calls" in self.extensions:
            self.local = LocalCalls(self, shared + SHARED_SLEEPERS)
            yield GuardedBy(shared + SHARED_SLEEPERS, LIST_WORDS * 4, lock.kva, "the sleep list", lock.name)
        if "migration" in self.extensions:  # per-thread windows, each written by the CPU running it
            self.migration = Migration(self, kb + svc.kmalloc(START_TCBS * MIG_SIZE), TCBS_PER_PAGE)
        # section 4.3: with the bootstrap kernel's patch, its swapper's unmaps are shot down on the APs
        self.shootdown = Shootdown(svc, self.cpus, self.costs)
        self.tlb_hook = svc.register_tlb_hook(self.shootdown.begin, self.shootdown.end)
        self.shootdown.enabled = self.tlb_hook
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

    # --- a full table takes one more page (slots.py), as a slab grows --------------------------------

    def _grow_tcbs(self, table: SlotTable) -> Gen:
        """Lock held: a page for TCBS_PER_PAGE more TCBs (and, with migration, a page for their windows), or None."""
        pages = yield from self._pages(2 if self.migration is not None else 1)
        if pages is None:
            return None
        if self.migration is not None:
            self.migration.pages.append(pages[1])  # written by the CPU running the thread: not guarded
        yield GuardedBy(pages[0], PAGE_SIZE, self.lock.kva, "the TCB table", self.lock.name)
        return pages[0]

    def _grow_records(self, table: SlotTable) -> Gen:
        """Lock held: a page for more process records, or None."""
        pages = yield from self._pages(1)
        if pages is None:
            return None
        yield GuardedBy(pages[0], PAGE_SIZE, self.lock.kva, "the process records", self.lock.name)
        return pages[0]

    def _pages(self, n: int) -> Gen:
        """`n` zero-filled pages of kernel memory (their kernel addresses); None, taking none, if there are not."""
        taken: list[int] = []
        try:
            for _ in range(n):
                taken.append(self.svc.kmalloc(PAGE_SIZE))
        except OutOfMemory:
            for pa in taken:
                self.svc.kfree(pa)
            return None
        yield Compute(n * self.costs.SLAB_GROW)
        return [self.svc.kernbase + pa for pa in taken]

    def ap_start(self, cpu: Any) -> Gen:
        """An AP's first code, reached through the trampoline page in real mode (paging off)."""
        yield Compute(self.costs.AP_START)
        cid = yield CpuId()
        yield SetIVT(self.traps.ivt())  # requirement 4: this AP's own handlers
        yield LoadCR3(self.svc.kernel_cr3)  # paging is off: nothing to shoot down yet
        yield EnablePaging()
        yield SetTimer(costs.TICK)  # requirement 2: its own timer
        idle = Context([Frame(self.idle(cid), user=False, intr=True, acct="idle")], name=f"ak-idle{cid}")
        self.idle_ctx[cid] = idle
        yield AtomicAdd(self.started_kva, 1)
        yield Switch(idle)

    # --- the idle loop: APs spin until some thread becomes schedulable (section 5.1) ----------------

    def idle(self, cid: int) -> Gen:
        """Interrupts are taken only while it waits: an interrupt handler may take the lock the loop holds."""
        while True:
            yield SpinWhile(self.ready.wait_kva(cid), 0, acct="idle")
            yield DisableInterrupts()
            yield from self.lock.acquire(cid)
            nxt = yield from self._pick(cid)
            yield from self.lock.release()
            if nxt is not None:
                yield from self.switch(cid, None, nxt)
            yield EnableInterrupts()

    def _pick(self, cid: int) -> Gen:
        """Lock held: claim the next ready TCB for CPU `cid`."""
        tcb = yield from self.ready.take(cid)
        if tcb is not None:
            yield from self.set_state(tcb, RUNNING)
            yield from self.set_cpu(tcb, cid)
        return tcb

    def make_ready(self, tcb: TCB) -> Gen:
        """Lock held: READY, and queued now unless a CPU is still leaving its context."""
        yield from self.set_state(tcb, READY)
        if tcb.cpu is None:
            yield from self.ready.push(tcb)

    # --- the setters: the one way a TCB's scheduling words change (lock held) ---------------------------

    def held(self, what: str) -> Gen:
        """Lockdep's assertion, for data kept in Python only (no instruction; checked in test mode)."""
        yield AssertHeld(self.lock.kva, what, self.lock.name)

    def set_state(self, tcb: TCB, state: str) -> Gen:
        tcb._state = state
        yield Store(tcb.slot_kva + SLOT_STATE, STATE_CODES[state])

    def set_cpu(self, tcb: TCB, cpu: int | None) -> Gen:
        """ON_CPU: the CPU that picked `tcb` (until it runs another context), or None."""
        tcb._cpu = cpu
        yield Store(tcb.on_cpu_kva, 0 if cpu is None else cpu + 1)

    def update_flags(self, tcb: TCB, add: int = 0, clear: int = 0) -> Gen:
        """Set the flags `add` and clear `clear`; a change of FAULT updates the process's count of faults."""
        old = tcb._flags
        new = (old | add) & ~clear
        if new == old:
            return
        if (old ^ new) & FAULT:
            proc = tcb.proc
            proc.faults += 1 if new & FAULT else -1
            yield Store(proc.faults_kva, proc.faults)
        tcb._flags = new
        yield Store(tcb.slot_kva + SLOT_FLAGS, new)

    # --- switching (on an AP) ---------------------------------------------------------------------

    def switch(self, cid: int, prev: TCB | None, nxt: TCB | None) -> Gen:
        """Leave `prev` (queued, blocked, held or dead) for `nxt` or the idle loop; returns the CPU we resume on."""
        yield Compute(self.costs.CONTEXT_SWITCH)
        self.switches += 1
        cr3 = yield ReadCR3()
        if nxt is not None and nxt.state == DEAD:  # killed between being picked and now
            self.prev[cid] = nxt
            yield from self.finish_switch(cid)
            nxt = None
        if nxt is None:
            if cr3 != self.svc.kernel_cr3:
                yield from self.shootdown.load_cr3(cid, self.svc.kernel_cr3)
            target = self.idle_ctx[cid]
        else:
            if cr3 != nxt.cr3 or nxt.pt_changed:
                nxt.pt_changed = False
                yield from self.shootdown.load_cr3(cid, nxt.cr3)
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
        by the activation if the CPU had already left it, or here. ON_CPU is cleared
        last: the driver, waiting for it, finds the TCB freed.
        """
        prev, self.prev[cid] = self.prev[cid], None
        if prev is None:
            return
        yield from self.lock.acquire(cid)
        if prev.state == READY:
            yield from self.ready.push(prev)
        if prev.state == DEAD and self.tcbs.live.get(prev.id) is prev:
            yield from self.free(prev)  # clears the slot, ON_CPU with it
        else:
            yield from self.set_cpu(prev, None)
        yield from self.lock.release()

    def thread_start(self) -> Gen:
        """A new application thread's first kernel code (like xv6's forkret): finish the switch,
        then look at what may have happened to it since it was picked (killed, held, signalled)."""
        cid = yield CpuId()
        yield from self.finish_switch(cid)
        tcb = self.current[cid]
        if tcb.migratable:
            yield from self.migration.start(tcb)
        yield from self.return_to_user(cid, tcb)

    def schedule_next(self, cid: int, prev: TCB) -> Gen:
        """Lock held on entry, released here: switch this AP to the next ready thread or to idle."""
        nxt = yield from self._pick(cid)
        yield from self.lock.release()
        return (yield from self.switch(cid, prev, nxt))

    def block(self, cid: int, tcb: TCB) -> Gen:
        """Section 4.1 step 1: the thread waits for its bootstrap thread; this AP runs another."""
        yield Compute(self.costs.BLOCK)
        yield from self.lock.acquire(cid)
        if tcb.state == DEAD:
            yield from self.schedule_next(cid, tcb)
            raise AssertionError("a dead application thread was resumed")
        if not tcb.waiting:  # the bootstrap thread was quicker: the thread may go on
            yield from self.lock.release()
            if tcb.pt_changed:  # and its page table changed meanwhile
                tcb.pt_changed = False
                yield from self.shootdown.load_cr3(cid, tcb.cr3)
            return cid
        yield from self.set_state(tcb, BLOCKED)
        yield from self._stopped(tcb)
        yield from self.post_waiting()
        return (yield from self.schedule_next(cid, tcb))

    def preempt(self, cid: int, tcb: TCB, voluntary: bool = False) -> Gen:
        """Timer preemption (or a yield) among ready threads: the running one goes to the back of the queue."""
        if not (yield from self.ready.worth_locking(cid)):  # balance: an unlocked look first (the paper's: none)
            return cid
        yield from self.lock.acquire(cid)
        if tcb.state != RUNNING or tcb.stop_requested or not (yield from self.ready.worth_preempting(cid)):
            yield from self.lock.release()
            return cid
        self.preemptions += not voluntary
        yield from self.set_state(tcb, READY)  # queued by finish_switch once this CPU has left it
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
        yield from self.fold_passes(tcb)
        if tcb in self.ready:
            yield from self.ready.remove(tcb)
        if self.local is not None:
            yield from self.local.forget(tcb)
        yield from self.set_state(tcb, DEAD)
        yield from self.update_flags(tcb, clear=WAITING | FAULT)
        yield from self._stopped(tcb)
        yield Compute(self.costs.TCB_FREE)
        if tcb.cpu is None:
            yield from self.free(tcb)

    def free(self, tcb: TCB) -> Gen:
        """Lock held: the slot goes back to the table; the process's record goes with its last thread."""
        proc = tcb.proc
        tcb.ctx.frames.clear()
        yield from proc.threads.remove(tcb)
        if not proc.threads:
            assert proc.faults == 0, proc
            del self.procs[proc.pid]
            yield WriteMem(proc.kva, bytes(PROC_SIZE))
            yield from self.proc_slots.release(proc.slot)
        yield from self.tcbs.remove(tcb)

    def destroy_current(self, cid: int, tcb: TCB) -> Gen:
        """Section 4.1 step 2, modified: clean the running thread up before its last message goes out."""
        yield from self.lock.acquire(cid)
        yield from self.kill(tcb)
        yield from self.post_waiting()
        yield from self.lock.release()

    def fold_passes(self, tcb: TCB) -> Gen:
        """Lock held: keep a dying thread's bootstrap-loop counters (its communication area's) in the totals.

        Read where the thread's address space is loaded (the AP that runs it, the driver
        called by its process), which is everywhere `kill` is called from.
        """
        if (yield ReadCR3()) != tcb.cr3:
            return
        passes = yield from self.traps.try_load(tcb.comm + abi.PASSES)
        busy = yield from self.traps.try_load(tcb.comm + abi.BUSY_PASSES)
        yield from self.held("the folded loop counters")
        self.passes_done.passes += passes or 0
        self.passes_done.busy += busy or 0

    # --- section 4.3: a page fault blocks every thread of its process ------------------------------

    def stop_siblings(self, tcb: TCB, notify: bool = True) -> Gen:
        """Lock held: hold every other thread of `tcb`'s process; returns the (TCB, CPU) pairs still on a CPU.

        Each will reload CR3 before it runs user code again. A running one is held on its way
        back to user mode (an IPI sends it there); one already forwarding leaves by blocking,
        or is held on its way back if its activation overtakes it. With `notify`, `tcb`'s
        message is posted by whichever CPU stops the last of them (`tcb.stops_pending`).
        """
        yield from self.held("the stop bookkeeping")
        running = []
        for other in tcb.proc.threads:
            yield Compute(self.costs.LIST_VISIT)
            if other is tcb or other.state == DEAD:
                continue
            other.pt_changed = True
            if other.state == READY:
                if other in self.ready:
                    yield from self.ready.remove(other)
                yield from self.set_state(other, HELD)
            elif other.state == RUNNING:
                yield from self.update_flags(other, add=STOP_REQUESTED)
                running.append((other, other.cpu))
                if notify:
                    other.stop_waiters.append(tcb)
                    tcb.stops_pending += 1
                if not other.waiting:
                    yield SendIPI(other.cpu, "fixed", vec.IPI_RESCHEDULE)
        return running

    def _stopped(self, tcb: TCB) -> Gen:
        """Lock held: `tcb` is leaving its CPU; faulting threads that waited only for it may post."""
        yield from self.update_flags(tcb, clear=STOP_REQUESTED)
        yield from self.held("the stop bookkeeping")
        for waiter in tcb.stop_waiters:
            yield Compute(self.costs.LIST_VISIT)
            waiter.stops_pending -= 1
            if waiter.stops_pending == 0 and waiter.state != DEAD:
                self._to_post.append(waiter)
        tcb.stop_waiters.clear()

    def post_waiting(self) -> Gen:
        """Lock held: post the messages of faulting threads whose siblings have all stopped (same address space)."""
        yield from self.held("the stop bookkeeping")
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
        yield from self.set_state(tcb, HELD)
        yield from self._stopped(tcb)
        yield from self.post_waiting()
        return (yield from self.schedule_next(cid, tcb))

    def release_held(self, proc: AKProcess) -> Gen:
        """Lock held: if no fault of the process is in flight any more, its held threads may run."""
        if proc.faults:
            return
        for t in proc.threads:
            yield Compute(self.costs.LIST_VISIT)
            if t.state == HELD:
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
        yield from self.deliver_signals(tcb, sigs)
        return cid

    def deliver_signals(self, tcb: TCB, sigs: int) -> Gen:
        """Push the program's handlers for the signals `sigs` onto the thread's way back to user mode."""
        while sigs:  # the pending signals, lowest first (bsf): no signal, no iteration
            sig = (sigs & -sigs).bit_length() - 1
            sigs &= sigs - 1
            handler = yield from self.traps.try_load(tcb.handlers + 4 * sig)
            if handler is None or handler in (0, 1):
                continue
            yield Compute(self.costs.SIGNAL_DELIVER)
            self.signals_delivered += 1
            yield PushFrame(signal_trampoline(handler, sig))

    def mark(self, cid: int, name: str, tcb: TCB | None) -> None:
        if tcb is not None:
            self.svc.trace(cid, name, tcb.id, owner=tcb.owner, pid=tcb.pid)
