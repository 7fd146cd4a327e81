"""The master-slave port's vector tables: the kernel's handlers on the master, a stub on the slaves.

The master's table is the bootstrap kernel's, with two changes: an entry from
user mode notes that the master is in kernel code (its state word: a slave that
queues a thread then does not interrupt it), and the way back to user mode goes
through `MSScheduler.user_return`, which may send the thread to a slave. Its
timer is the kernel's (timekeeping, sleepers, the swapper, signals) with that
same step. Its IPI means a slave queued a thread for it.

A slave runs no kernel code but its own few paths, as on the dual VAX:
- a system call or an exception stops at the trap stub: save the user registers,
  queue the thread for the master and switch to another (`MSScheduler.handoff`).
  What follows runs on the master: the bootstrap kernel's handler, then the way
  back to user mode, which queues the thread for any CPU;
- the timer counts the running thread's time slice and, at its end, gives the CPU
  to the user queue's head (`MSScheduler.preempt`). It hands nothing to the master:
  the rest of a tick's work (timekeeping, timed sleepers, the swapper) is the
  master's own tick's, and signals reach a thread on a slave by the master's IPI,
  so queueing every slave's thread for the master at every tick would cost each a
  handoff per tick for nothing;
- an IPI wakes an idle slave, or tells a busy one that its thread has a signal or a
  kill waiting (it is handed to the master like a trap) or is dead (it is dropped);
- a TLB shoot-down IPI parks it until the master has changed the page tables.
A fault in a slave's own code is a kernel bug (`MachineError`): it touches only
kernel memory. Device IRQs are routed to the master only.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ..bootkernel import costs as boot_costs
from ..bootkernel.proc import DEAD
from ..bootkernel.trap import Traps
from ..hw import CPU, IVT, Compute, Fault, Gate, Load, MachineError, Op, Store
from ..hw import traps as vec
from .sched import KERNEL

if TYPE_CHECKING:
    from .kernel import MasterSlaveKernel

Gen = Generator[Op, Any, Any]
Handler = Callable[[CPU, Any], Gen]
FAULTS = (vec.PF, vec.UD, vec.GP, vec.DE)


def interrupted_user(cpu: CPU) -> bool:
    """The code a handler interrupted (or that trapped) was user code (the saved CS has RPL 3)."""
    frames = cpu.ctx.frames
    return len(frames) >= 2 and frames[-2].user


class MSTraps(Traps):
    def __init__(self, kernel: MasterSlaveKernel) -> None:
        super().__init__(kernel)
        self.k: MasterSlaveKernel = kernel
        self.master_ipis = 0
        self.slave_ipis = 0

    # --- the master ------------------------------------------------------------------------------------

    def ivt(self) -> IVT:
        """The master's table."""
        table = IVT({v: Gate(self.master(g.handler), user=g.user) for v, g in super().ivt().items()})
        table[vec.TIMER] = Gate(self.master_timer)
        table[vec.IPI_RESCHEDULE] = Gate(self.master(self.notify))
        return table

    def master(self, handler: Handler) -> Handler:
        """`handler` on the master: note the entry from user mode; on the way back, `user_return`."""
        k = self.k

        def entry(cpu: CPU, info: Any) -> Gen:
            if isinstance(info, Fault) and not info.from_user:  # kernel code faulted (a user pointer)
                return (yield from handler(cpu, info))
            from_user = interrupted_user(cpu)
            if from_user:
                yield Store(k.page + k.STATE, KERNEL)
            result = yield from handler(cpu, info)
            t = k.sched.current
            if from_user and t is not None and cpu.ctx is t.ctx:
                yield from k.sched.user_return(t)
            return result

        entry.__name__ = f"master_{getattr(handler, '__name__', 'handler')}"
        return entry

    def master_timer(self, cpu: CPU, info: Any) -> Gen:
        """The kernel's timer on the master; at a slice's end its thread may give way to the user queue."""
        k = self.k
        from_user = interrupted_user(cpu)
        if from_user:
            yield Store(k.page + k.STATE, KERNEL)
        yield Compute(self.k.costs.TIMER_TICK)
        k.ticks += 1
        k.sched.tick()
        if k.swapper is not None:
            yield from k.swapper.on_tick()
        t = k.sched.current
        if t is None or cpu.ctx is not t.ctx or not from_user:
            return
        t.ticks += 1
        yield from self.return_to_user(t)
        yield from k.sched.user_return(t, slice_over=t.ticks >= boot_costs.QUANTUM_TICKS)

    def notify(self, cpu: CPU, info: Any) -> Gen:
        """IPI from a slave that queued a thread: the way back to user mode (`master`) looks at the queue."""
        yield Compute(self.k.port_costs.NOTIFY_IPI)
        self.master_ipis += 1
        if self.k.sched.current is None:
            self.k.trace(cpu, "ms_master_woken", None)

    # --- the slaves --------------------------------------------------------------------------------------

    def slave_ivt(self) -> IVT:
        """A slave's table: the stub for every trap and exception, its timer, the IPIs."""
        base = super().ivt()
        table = IVT({v: Gate(self.stub(base[v].handler), user=base[v].user) for v in (vec.SYSCALL, *FAULTS)})
        table[vec.TIMER] = Gate(self.slave_timer)
        table[vec.IPI_RESCHEDULE] = Gate(self.slave_ipi)
        table[vec.IPI_TLB_SHOOTDOWN] = Gate(self.k.shootdown.ipi)
        return table

    def stub(self, handler: Handler) -> Handler:
        """The slave's trap stub: save the registers, queue the thread for the master; `handler` runs there."""
        k = self.k

        def entry(cpu: CPU, info: Any) -> Gen:
            if isinstance(info, Fault) and not info.from_user:
                raise MachineError(f"cpu{cpu.id}: a slave's own code faulted: {info!r}")
            t = k.sched.cur[cpu.id]
            if t is None or cpu.ctx is not t.ctx:
                raise MachineError(f"cpu{cpu.id}: a trap with no thread of its own")
            k.trace(cpu, "ms_trap", t)
            yield Compute(self.k.port_costs.STUB_ENTRY)
            yield from k.sched.handoff(cpu.id, t)
            # on the master from here on
            result = yield from handler(k.machine.bsp, info)
            yield from k.sched.user_return(t)
            return result

        entry.__name__ = f"stub_{getattr(handler, '__name__', 'handler')}"
        return entry

    def slave_timer(self, cpu: CPU, info: Any) -> Gen:
        yield Compute(self.k.port_costs.SLAVE_TICK)
        k = self.k
        t = k.sched.cur[cpu.id]
        if t is None or cpu.ctx is not t.ctx or not interrupted_user(cpu):
            return
        t.ticks += 1
        if t.ticks < boot_costs.QUANTUM_TICKS or not (yield Load(k.userq.count_kva)):
            return
        yield from k.sched.preempt(cpu.id, t)

    def slave_ipi(self, cpu: CPU, info: Any) -> Gen:
        """IPI_RESCHEDULE on a slave: an idle one looks at the user queue next; a busy one checks its thread."""
        yield Compute(self.k.port_costs.WAKE_IPI)
        self.slave_ipis += 1
        k = self.k
        t = k.sched.cur[cpu.id]
        if t is None:
            k.trace(cpu, "ms_slave_woken", None)
        if t is None or cpu.ctx is not t.ctx or not interrupted_user(cpu):
            return
        yield Compute(self.k.port_costs.AST_CHECK)
        if t.state == DEAD:  # its process is exiting on the master, which waits for this CPU
            yield from k.qlock.acquire(cpu.id)
            yield from k.sched.drop(cpu.id, t)
        if not k.sched.needs_kernel(t):
            return
        k.trace(cpu, "ms_trap", t)
        yield Compute(self.k.port_costs.STUB_ENTRY)
        yield from k.sched.handoff(cpu.id, t)
        yield from self.return_to_user(t)  # on the master: the signal is delivered, or the process dies
        yield from k.sched.user_return(t)


__all__ = ["MSTraps", "interrupted_user"]
