"""The bootstrap kernel's vector table: system calls, exceptions, the timer.

Every path back to user mode goes through `return_to_user`, which acts on
pending signals. A system call's stages are marked for the latency breakdown
(entry, dispatch, body, exit).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import CPU, IVT, Compute, Fault, Fixup, Gate, InvalidatePage, MachineError, Op, UserAccessFault
from ..hw import traps as vec
from . import abi, costs
from .kalloc import OutOfMemory

if TYPE_CHECKING:
    from .kernel import BootKernel
    from .proc import Thread

Gen = Generator[Op, Any, Any]


class Traps:
    def __init__(self, kernel: BootKernel) -> None:
        self.k = kernel
        self.page_faults = 0
        self.zero_fills = 0
        self.swap_ins = 0

    def ivt(self) -> IVT:
        t = IVT(
            {
                vec.SYSCALL: Gate(self.syscall, user=True),
                vec.PF: Gate(self.page_fault),
                vec.UD: Gate(self.fatal(abi.SIGILL)),
                vec.GP: Gate(self.fatal(abi.SIGSEGV)),
                vec.DE: Gate(self.fatal(8)),  # SIGFPE
                vec.TIMER: Gate(self.timer),
            }
        )
        for irq in range(16):
            t[vec.IRQ_BASE + irq] = Gate(self.device_irq)
        return t

    def return_to_user(self, t: Thread) -> Gen:
        yield from self.k.signals.deliver(t)

    # --- system calls ------------------------------------------------------------------

    def syscall(self, cpu: CPU, args: tuple[Any, ...]) -> Gen:
        k = self.k
        t = k.sched.current
        call = abi.SYSCALL_NAMES.get(args[0]) if args and type(args[0]) is int else None
        k.mark("sys_enter", call)
        yield Compute(self.k.costs.SYSCALL_ENTRY)
        k.mark("sys_dispatch", call)
        yield Compute(self.k.costs.SYSCALL_DISPATCH)
        k.mark("sys_body", call)
        result = yield from k.syscalls.dispatch(args)
        k.mark("sys_exit", call)
        yield from self.return_to_user(t)
        yield Compute(self.k.costs.SYSCALL_EXIT)
        k.mark("sys_return", call)
        return result

    # --- exceptions ----------------------------------------------------------------------

    def page_fault(self, cpu: CPU, flt: Fault) -> Gen:
        k = self.k
        t = k.sched.current
        if t is None:
            raise MachineError(f"kernel page fault outside any thread: {flt!r}")
        self.page_faults += 1
        yield Compute(self.k.costs.PAGE_FAULT)
        outcome = (yield from self.resolve(t, flt.addr, flt.write)) if flt.addr < abi.USER_TOP else "segv"
        if outcome == "oom":  # nothing could be freed: the process that needs a frame dies, nobody else
            if not flt.from_user:
                return Fixup(UserAccessFault(flt.addr))
            t.proc.death = "out of memory"
            k.machine.log(f"out of memory: killed process {t.proc.pid} ({t.proc.name})")
            yield from k.exit_process(t, -abi.SIGKILL)
        if outcome == "spurious":
            yield InvalidatePage(flt.addr)  # a stale TLB entry of this CPU
        if outcome != "segv":
            if flt.from_user:
                yield from self.return_to_user(t)
            return None
        if not flt.from_user:
            return Fixup(UserAccessFault(flt.addr))
        yield from k.exit_process(t, -abi.SIGSEGV)

    def resolve(self, t: Thread, vaddr: int, write: bool) -> Gen:
        """Make a user page of `t`'s process present; the outcome of `AddressSpace.resolve_fault`, or "oom".

        A fault that finds no free frame makes room by evicting (with a swapper), then tries again.
        """
        k = self.k
        while True:
            try:
                outcome = t.proc.aspace.resolve_fault(vaddr, write)
            except OutOfMemory:
                outcome = "oom"
            if outcome != "oom" or k.swapper is None or not (yield from k.swapper.reclaim()):
                break
        if outcome == "zero":
            self.zero_fills += 1
            yield Compute(self.k.costs.ZERO_PAGE)
        elif outcome == "swap":
            self.swap_ins += 1
            yield Compute(self.k.costs.COPY_PAGE)
        return outcome

    def fatal(self, sig: int) -> Any:
        def handler(cpu: CPU, flt: Fault) -> Gen:
            t = self.k.sched.current
            if not flt.from_user or t is None:
                raise MachineError(f"kernel fault {flt!r}")
            yield Compute(self.k.costs.PAGE_FAULT)
            yield from self.k.exit_process(t, -sig)

        handler.__name__ = f"fatal_{sig}"
        return handler

    # --- interrupts -------------------------------------------------------------------------

    def timer(self, cpu: CPU, info: Any) -> Gen:
        k = self.k
        yield Compute(self.k.costs.TIMER_TICK)
        k.ticks += 1
        k.sched.tick()
        if k.swapper is not None:
            yield from k.swapper.on_tick()
        t = k.sched.current
        if t is None or cpu.ctx is not t.ctx:
            return
        t.ticks += 1
        if t.ticks >= costs.QUANTUM_TICKS:
            yield from k.sched.yield_()
        yield from self.return_to_user(t)

    def device_irq(self, cpu: CPU, info: Any) -> Gen:
        self.k.device_irqs += 1
        yield Compute(self.k.costs.TIMER_TICK)
