"""The application processors' vector table: every trap and exception becomes a message (Figure 2).

System call (steps 1, 2, 7): block the thread, write the call into the process's
communication area, run another thread; when the bootstrap thread has activated
it, read the result and return. A page fault is forwarded the same way and the
faulting instruction retried on return. Exit, thread exit and fatal exceptions
free the TCB *before* the message goes out (section 4.1, step 2 modified): the
bootstrap kernel will end the thread without telling us. Kernel-mode faults on
user addresses (the communication area itself) surface as `UserAccessFault`.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..bootkernel import abi as sys_abi
from ..hw import CPU, IVT, Call, Compute, Fault, Fixup, Gate, Load, MachineError, Op, Store, UserAccessFault, WriteMem
from ..hw import traps as vec
from . import abi, costs
from .local_calls import LOCAL
from .tcb import DEAD, FAULT, WAITING

if TYPE_CHECKING:
    from .kernel import AppKernel
    from .tcb import TCB

Gen = Generator[Op, Any, Any]
USER_TOP = sys_abi.USER_TOP
CLEANUP_FIRST = frozenset({sys_abi.SYS_EXIT, sys_abi.SYS_THREAD_EXIT})
PT_REMOVING = frozenset({sys_abi.SYS_MUNMAP})  # calls that remove mappings: handled like a page fault
STAY = PT_REMOVING | {sys_abi.SYS_THREAD_JOIN}  # never migration points: at home they would go back at once
ERRNO_WORDS = (1 << 32) - 4095  # results -4095..-1 are -errno, as stored in a 32-bit word


def signal_trampoline(handler: int, sig: int) -> Gen:
    """User code placed beneath the interrupted code: run the program's handler, then resume."""
    yield Call(handler, sig)


def _word(v: Any) -> bool:
    return type(v) is int and -(1 << 31) <= v < (1 << 32)


class APTraps:
    def __init__(self, ak: AppKernel) -> None:
        self.ak = ak

    def ivt(self) -> IVT:
        return IVT(
            {
                vec.SYSCALL: Gate(self.syscall, user=True),
                vec.PF: Gate(self.page_fault),
                vec.UD: Gate(self.exception),
                vec.GP: Gate(self.exception),
                vec.DE: Gate(self.exception),
                vec.TIMER: Gate(self.timer),
                vec.IPI_RESCHEDULE: Gate(self.ipi),
                vec.IPI_STOP: Gate(self.ipi),
                vec.IPI_TLB_SHOOTDOWN: Gate(self.ak.shootdown.ipi),
            }
        )

    # --- user memory from kernel mode ------------------------------------------------------------

    def try_load(self, vaddr: int) -> Gen:
        if not 0 <= vaddr < USER_TOP - 4:
            return None
        try:
            return (yield Load(vaddr))
        except UserAccessFault:
            return None

    def try_store(self, vaddr: int, value: int) -> Gen:
        if not 0 <= vaddr < USER_TOP - 4:
            return False
        try:
            yield Store(vaddr, value)
            return True
        except UserAccessFault:
            return False

    def write_message(
        self, tcb: TCB, kind: int, nr: int, args: tuple[int, ...] = (), addr: int = 0, error: int = 0
    ) -> Gen:
        """Step 2: the message body (STATE is set after it, so the bootstrap thread never sees half a message)."""
        yield Compute(self.ak.costs.MESSAGE)
        words = [kind, nr, *args[: abi.MAX_ARGS]]
        words += [0] * (2 + abi.MAX_ARGS - len(words))
        body = struct.pack(f"<{len(words) + 2}I", *(w & 0xFFFFFFFF for w in (*words, addr, error)))
        try:
            yield WriteMem(tcb.comm + abi.KIND, body)
        except UserAccessFault:
            return False  # the process broke its own communication area
        return True

    def forward(
        self,
        cid: int,
        tcb: TCB,
        kind: int,
        nr: int,
        args: tuple[int, ...] = (),
        addr: int = 0,
        error: int = 0,
        pt_change: bool = False,
    ) -> Gen:
        """Steps 1-2 and 7: post the message, block until activated; returns (cpu, result word).

        A page-table change (a page fault, an unmap) first stops every other thread of the
        process (section 4.3); its message is posted only once they are all off their CPUs,
        by whichever CPU stops the last one, and all of them reload CR3 before they run again.
        """
        ak = self.ak
        if not (yield from self.write_message(tcb, kind, nr, args, addr, error)):
            yield from ak.destroy_current(cid, tcb)
            yield from ak.leave_dead(cid, tcb)
        yield from ak.lock.acquire(cid)
        yield from ak.update_flags(tcb, add=WAITING | FAULT if pt_change else WAITING)
        pending = 0
        if pt_change:
            tcb.pt_changed = True
            yield from ak.stop_siblings(tcb)
            pending = tcb.stops_pending
        posted = yield from self.try_store(tcb.comm + abi.STATE, abi.PENDING if pending else abi.POSTED)
        yield from ak.lock.release()
        if not posted:
            yield from ak.destroy_current(cid, tcb)
            yield from ak.leave_dead(cid, tcb)
        if not pending:
            ak.mark(cid, "ak_posted", tcb)
        cid = yield from ak.block(cid, tcb)
        result = yield from self.try_load(tcb.comm + abi.RESULT)
        if result is None:
            yield from ak.destroy_current(cid, tcb)
            yield from ak.leave_dead(cid, tcb)
        return cid, result

    def post_final(
        self, cid: int, tcb: TCB, kind: int, nr: int, args: tuple[int, ...] = (), addr: int = 0, error: int = 0
    ) -> Gen:
        """Section 4.1 step 2, modified: free the thread, then post its last message; never returns."""
        ak = self.ak
        yield from ak.destroy_current(cid, tcb)
        if (yield from self.write_message(tcb, kind, nr, args, addr, error)) and (
            yield from self.try_store(tcb.comm + abi.STATE, abi.POSTED)
        ):
            ak.mark(cid, "ak_posted", tcb)
        yield from ak.leave_dead(cid, tcb)

    # --- system calls ------------------------------------------------------------------------------

    def syscall(self, cpu: CPU, args: tuple[Any, ...]) -> Gen:
        ak = self.ak
        cid = cpu.id
        tcb = ak.current[cid]
        ak.mark(cid, "ak_trap", tcb)
        yield Compute(self.ak.costs.TRAP_ENTRY)
        if not args or not all(_word(a) for a in args):
            yield from ak.return_to_user(cid, tcb)
            return -sys_abi.EINVAL  # what the bootstrap kernel answers; nothing a message could carry
        nr = args[0]
        if ak.local is not None and nr in LOCAL:  # section 4.3: served here, never forwarded
            ak.mark(cid, "ak_local", tcb)
            cid, result = yield from ak.local.serve(cid, tcb, nr, args[1:])
            ak.mark(cid, "ak_local_exit", tcb)
            cid = yield from ak.return_to_user(cid, tcb)
            yield Compute(self.ak.costs.TRAP_EXIT)
            ak.mark(cid, "ak_resumed", tcb)
            return result
        if nr in CLEANUP_FIRST:
            ak.forwarded_calls += 1
            yield from self.post_final(cid, tcb, abi.KIND_SYSCALL, nr, args[1:])
        if tcb.migratable and (yield from ak.migration.trapped(tcb, decide=nr not in STAY)):
            yield from ak.migration.go_home(cid, tcb, args)  # section 4.3: the call is issued at home
        ak.forwarded_calls += 1
        cid, result = yield from self.forward(cid, tcb, abi.KIND_SYSCALL, nr, args[1:], pt_change=nr in PT_REMOVING)
        if tcb.migratable:
            yield from ak.migration.resumed(tcb)
        cid = yield from ak.return_to_user(cid, tcb)
        yield Compute(self.ak.costs.TRAP_EXIT)
        ak.mark(cid, "ak_resumed", tcb)
        return result - (1 << 32) if result >= ERRNO_WORDS else result

    # --- exceptions ------------------------------------------------------------------------------------

    def page_fault(self, cpu: CPU, flt: Fault) -> Gen:
        ak = self.ak
        cid = cpu.id
        tcb = ak.current[cid]
        if not flt.from_user:
            if flt.addr < USER_TOP and tcb is not None:
                return Fixup(UserAccessFault(flt.addr))
            raise MachineError(f"application kernel fault on cpu{cid}: {flt!r}")
        ak.mark(cid, "ak_trap", tcb)
        yield Compute(self.ak.costs.TRAP_ENTRY)
        ak.forwarded_faults += 1
        error = (abi.FAULT_WRITE if flt.write else 0) | vec.PF_USER
        if tcb.migratable:
            yield from ak.migration.trapped(tcb, decide=False)
        cid, _ = yield from self.forward(cid, tcb, abi.KIND_PAGE_FAULT, vec.PF, (), flt.addr, error, pt_change=True)
        if tcb.migratable:
            yield from ak.migration.resumed(tcb)
        cid = yield from ak.return_to_user(cid, tcb)
        yield Compute(self.ak.costs.TRAP_EXIT)
        ak.mark(cid, "ak_resumed", tcb)
        return None

    def exception(self, cpu: CPU, flt: Fault) -> Gen:
        ak = self.ak
        cid = cpu.id
        tcb = ak.current[cid]
        if not flt.from_user or tcb is None:
            raise MachineError(f"application kernel exception on cpu{cid}: {flt!r}")
        ak.mark(cid, "ak_trap", tcb)
        yield Compute(self.ak.costs.TRAP_ENTRY)
        ak.forwarded_exceptions += 1
        # fatal: the bootstrap kernel will end the process without telling us, so clean up first
        yield from self.post_final(cid, tcb, abi.KIND_EXCEPTION, flt.vector, (), flt.addr, flt.error)

    # --- interrupts ------------------------------------------------------------------------------------

    def timer(self, cpu: CPU, info: Any) -> Gen:
        """The AP's local timer: preemption among ready threads (section 3.2, requirement 2)."""
        yield from self._interrupted(cpu, tick=True)

    def ipi(self, cpu: CPU, info: Any) -> Gen:
        """Reschedule/stop request: act on a killed process, a stop for a page fault, or a signal."""
        yield from self._interrupted(cpu, tick=False)

    def _interrupted(self, cpu: CPU, tick: bool) -> Gen:
        ak = self.ak
        cid = cpu.id
        yield Compute(self.ak.costs.TIMER_TICK)
        if tick and ak.local is not None:
            yield from ak.local.tick(cid)
        tcb = ak.current[cid]
        if tcb is None or cpu.ctx is not tcb.ctx:
            return  # the idle loop: it looks at the ready queue itself
        if tick:
            tcb.ticks += 1
            if tcb.ticks >= costs.QUANTUM_TICKS and tcb.state != DEAD:
                tcb.ticks = 0
                cid = yield from ak.preempt(cid, tcb)
        yield from ak.return_to_user(cid, tcb)
