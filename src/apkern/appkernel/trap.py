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
from .tcb import DEAD

if TYPE_CHECKING:
    from .kernel import AppKernel
    from .tcb import TCB

Gen = Generator[Op, Any, Any]
USER_TOP = sys_abi.USER_TOP
CLEANUP_FIRST = frozenset({sys_abi.SYS_EXIT, sys_abi.SYS_THREAD_EXIT})
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
                vec.SYSCALL: Gate(self.syscall, user=True, kind="trap"),
                vec.PF: Gate(self.page_fault, kind="fault"),
                vec.UD: Gate(self.exception, kind="fault"),
                vec.GP: Gate(self.exception, kind="fault"),
                vec.DE: Gate(self.exception, kind="fault"),
                vec.TIMER: Gate(self.timer),
                vec.IPI_RESCHEDULE: Gate(self.ipi),
                vec.IPI_STOP: Gate(self.ipi),
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

    def post(
        self,
        cid: int,
        tcb: TCB,
        kind: int,
        nr: int,
        args: tuple[int, ...] = (),
        addr: int = 0,
        error: int = 0,
        pending: bool = False,
    ) -> Gen:
        """Step 2: write the message into the communication area and post it (or leave it PENDING)."""
        yield Compute(costs.MESSAGE)
        words = [kind, nr, *(a & 0xFFFFFFFF for a in args[: abi.MAX_ARGS])]
        words += [0] * (2 + abi.MAX_ARGS - len(words))
        body = struct.pack(f"<{len(words)}I", *words) + struct.pack("<II", addr & 0xFFFFFFFF, error)
        comm = tcb.comm
        try:
            yield WriteMem(comm + abi.KIND, body)
            yield Store(comm + abi.STATE, abi.PENDING if pending else abi.POSTED)
        except UserAccessFault:
            return False  # the process broke its own communication area
        self.ak.mark(cid, "ak_posted", tcb)
        return True

    # --- system calls ------------------------------------------------------------------------------

    def syscall(self, cpu: CPU, args: tuple[Any, ...]) -> Gen:
        ak = self.ak
        cid = cpu.id
        tcb = ak.current[cid]
        ak.mark(cid, "ak_trap", tcb)
        yield Compute(costs.TRAP_ENTRY)
        if not args or not all(_word(a) for a in args):
            yield from ak.return_to_user(cid, tcb)
            return -sys_abi.EINVAL  # what the bootstrap kernel answers; nothing a message could carry
        nr = args[0]
        ak.forwarded_calls += 1
        if nr in CLEANUP_FIRST:
            yield from ak.destroy_current(cid, tcb)
            yield from self.post(cid, tcb, abi.KIND_SYSCALL, nr, args[1:])
            yield from ak.leave_dead(cid, tcb)
        tcb.waiting = True
        if not (yield from self.post(cid, tcb, abi.KIND_SYSCALL, nr, args[1:])):
            yield from ak.destroy_current(cid, tcb)
            yield from ak.leave_dead(cid, tcb)
        cid = yield from ak.block(cid, tcb)
        # step 7: activated by the bootstrap thread
        result = yield from self.try_load(tcb.comm + abi.RESULT)
        if result is None:
            yield from ak.destroy_current(cid, tcb)
            yield from ak.leave_dead(cid, tcb)
        cid = yield from ak.return_to_user(cid, tcb)
        yield Compute(costs.TRAP_EXIT)
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
        yield Compute(costs.TRAP_ENTRY)
        ak.forwarded_faults += 1
        yield from ak.lock.acquire(cid)
        tcb.waiting = True
        tcb.fault = True
        pending = yield from ak.stop_siblings(cid, tcb)
        yield from ak.lock.release()
        error = (abi.FAULT_WRITE if flt.write else 0) | vec.PF_USER
        if not (yield from self.post(cid, tcb, abi.KIND_PAGE_FAULT, vec.PF, (), flt.addr, error, pending > 0)):
            yield from ak.destroy_current(cid, tcb)
            yield from ak.leave_dead(cid, tcb)
        tcb.pt_changed = True  # the bootstrap kernel will change the page table: reload CR3 on resume
        cid = yield from ak.block(cid, tcb)
        cid = yield from ak.return_to_user(cid, tcb)
        yield Compute(costs.TRAP_EXIT)
        ak.mark(cid, "ak_resumed", tcb)
        return None

    def exception(self, cpu: CPU, flt: Fault) -> Gen:
        ak = self.ak
        cid = cpu.id
        tcb = ak.current[cid]
        if not flt.from_user or tcb is None:
            raise MachineError(f"application kernel exception on cpu{cid}: {flt!r}")
        ak.mark(cid, "ak_trap", tcb)
        yield Compute(costs.TRAP_ENTRY)
        ak.forwarded_exceptions += 1
        # fatal: the bootstrap kernel will end the process without telling us, so clean up first
        yield from ak.destroy_current(cid, tcb)
        yield from self.post(cid, tcb, abi.KIND_EXCEPTION, flt.vector, (), flt.addr, flt.error)
        yield from ak.leave_dead(cid, tcb)

    # --- interrupts ------------------------------------------------------------------------------------

    def timer(self, cpu: CPU, info: Any) -> Gen:
        ak = self.ak
        cid = cpu.id
        yield Compute(costs.TIMER_TICK)
        tcb = ak.current[cid]
        if tcb is None or cpu.ctx is not tcb.ctx:
            return
        tcb.ticks += 1
        if tcb.ticks >= costs.QUANTUM_TICKS and tcb.state != DEAD:
            tcb.ticks = 0
            cid = yield from ak.preempt(cid, tcb)
        yield from ak.return_to_user(cid, tcb)

    def ipi(self, cpu: CPU, info: Any) -> Gen:
        """Reschedule/stop request: act on a killed process, a stop for a page fault, or a signal."""
        ak = self.ak
        cid = cpu.id
        yield Compute(costs.TIMER_TICK)
        tcb = ak.current[cid]
        if tcb is None or cpu.ctx is not tcb.ctx:
            return
        yield from ak.return_to_user(cid, tcb)
