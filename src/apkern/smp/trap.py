"""The SMP port's vector table: the bootstrap kernel's handlers behind the kernel lock, on every CPU.

Every entry from user mode or from an idle loop -- system call, exception,
interrupt -- takes the kernel lock first and releases it on the way out
(`locked`). A fault in kernel code (a system call touching a user page) comes
from code that already holds the lock and runs its handler directly. The exit
may happen on another CPU than the entry: a handler that sleeps resumes wherever
its thread is picked, and releases the lock that CPU holds.

Two handlers are new: the reschedule IPI (an idle CPU wakes to look at the run
queue; a busy one goes through the return-to-user path, where pending signals
and death are acted on), and the TLB shoot-down IPI (shootdown.py), which takes
no lock: the CPU that sends it holds the lock and waits for it.

The timer runs on every CPU. Timekeeping (the tick count, timed sleepers, the
swapper) stays on CPU 0, as Linux's do_timer did; every CPU counts its own
thread's time slice. Preemption and signal delivery happen only on the way back
to user mode: an interrupt taken while its CPU spun for the lock at a kernel
entry returns to that entry, which does both when it leaves the kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ..bootkernel import costs as boot_costs
from ..bootkernel.proc import DEAD
from ..bootkernel.trap import Traps
from ..hw import CPU, IVT, AssertHeld, Compute, CpuId, Fault, Gate, Op
from ..hw import traps as vec

if TYPE_CHECKING:
    from .kernel import SMPKernel

Gen = Generator[Op, Any, Any]
Handler = Callable[[CPU, Any], Gen]


def interrupted_user(cpu: CPU) -> bool:
    """The code an interrupt handler interrupted was user code (the saved CS has RPL 3)."""
    frames = cpu.ctx.frames
    return len(frames) >= 2 and frames[-2].user


class SMPTraps(Traps):
    def __init__(self, kernel: SMPKernel) -> None:
        super().__init__(kernel)
        self.k: SMPKernel = kernel
        self.reschedule_ipis = 0

    def ivt(self) -> IVT:
        table = IVT(
            {v: Gate(self.locked(g.handler, marks=v == vec.SYSCALL), user=g.user) for v, g in super().ivt().items()}
        )
        table[vec.IPI_RESCHEDULE] = Gate(self.locked(self.reschedule))
        table[vec.IPI_TLB_SHOOTDOWN] = Gate(self.k.shootdown.ipi)  # no lock: the sender holds it
        return table

    def locked(self, handler: Handler, marks: bool = False) -> Handler:
        """`handler` behind the kernel lock: taken at entry, released at exit (on the CPU we leave from)."""
        k = self.k

        def entry(cpu: CPU, info: Any) -> Gen:
            if isinstance(info, Fault) and not info.from_user:  # kernel code faulted: it holds the lock already
                yield AssertHeld(k.lock.kva, "the kernel (a fault in kernel code)", k.lock.name)
                return (yield from handler(cpu, info))
            if marks:
                k.trace(cpu, "smp_lock", None)  # no thread is known before the lock is held
            yield Compute(self.k.port_costs.LOCK_ENTRY)
            yield from k.lock.acquire(cpu.id)
            t = k.sched.current
            if t is not None and t.state == DEAD:  # its process died while it ran here
                yield from k.leave_dead(t)
            result = yield from handler(cpu, info)
            if marks:
                k.mark("smp_unlock")
                t = k.sched.current  # the lock's holder's thread, read while we hold it
            cid = yield CpuId()  # perhaps not the CPU we entered on
            yield from k.unlock(cid)
            if marks:
                k.trace(k.machine.cpus[cid], "smp_exit", t)
            return result

        entry.__name__ = f"locked_{getattr(handler, '__name__', 'handler')}"
        return entry

    # --- interrupts ------------------------------------------------------------------------------------

    def timer(self, cpu: CPU, info: Any) -> Gen:
        k = self.k
        yield Compute(self.k.costs.TIMER_TICK)
        if cpu.id == 0:  # timekeeping for the whole machine
            k.ticks += 1
            k.sched.tick()
            if k.swapper is not None:
                yield from k.swapper.on_tick()
        t = k.sched.current
        if t is None or cpu.ctx is not t.ctx or not interrupted_user(cpu):
            return
        t.ticks += 1
        if t.ticks >= boot_costs.QUANTUM_TICKS:
            yield from k.sched.yield_()
        yield from self.return_to_user(t)

    def reschedule(self, cpu: CPU, info: Any) -> Gen:
        """IPI_RESCHEDULE: an idle CPU's loop looks at the run queue next; a thread acts on signals and death."""
        yield Compute(self.k.port_costs.RESCHEDULE_IPI)
        self.reschedule_ipis += 1
        t = self.k.sched.current
        if t is None or cpu.ctx is not t.ctx or not interrupted_user(cpu):
            return
        yield from self.return_to_user(t)
