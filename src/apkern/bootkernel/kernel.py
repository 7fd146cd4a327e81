"""The bootstrap kernel: a uniprocessor kernel that runs on CPU 0 and knows of no other.

It takes no lock and assumes one CPU. Its drivers are fixed when it is built (the
`drivers` argument is configuration, like a kernel config file); it starts them
at boot, after its own vector table, paging and timer are set up, and then idles.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

from ..hw import (
    Compute,
    Context,
    EnablePaging,
    Frame,
    InvalidatePage,
    LoadCR3,
    Machine,
    Op,
    SetIVT,
    SetTimer,
    Switch,
    UserAccessFault,
)
from ..hw.cpu import entry_frame
from . import abi
from .console import Console
from .costs import TICK, Costs
from .driver import Caller, Driver, DriverServices
from .file import ConsoleFile, FileTable, close_file
from .fs import FileSystem
from .kalloc import FrameAllocator, KernelHeap, OutOfMemory
from .proc import ALIVE, DEAD, EXITED, REAPED, Process, Thread
from .sched import Scheduler
from .signal import Signals
from .swap import Swapper, SwapStore
from .syscall import Syscalls
from .tlb_patch import TLBPatch  # PATCH (section 4.3)
from .trap import Traps
from .vm import KERNBASE, AddressSpace, KernelMap

Gen = Generator[Op, Any, Any]
MAX_THREADS = 64


class BootKernel:
    """The uniprocessor kernel. Build it with its drivers, `boot()` it, then run the machine."""

    def __init__(
        self,
        machine: Machine,
        drivers: Iterable[Driver] = (),
        swapper: bool = False,
        tlb_patch: bool = False,  # PATCH (section 4.3)
        tick: int = TICK,
        costs: Costs | None = None,
    ) -> None:
        self.machine = machine
        self.costs = costs if costs is not None else Costs()  # its path costs (apkern.profiles)
        self.frames = FrameAllocator(machine)
        self.heap = KernelHeap(self.frames)
        self.kmap = KernelMap(self.frames)
        self.kernel_cr3 = self.kmap.cr3
        self.fs = FileSystem()
        self.console = Console()
        self.sched = Scheduler(self)
        self.signals = Signals(self)
        self.traps = Traps(self)
        self.syscalls = Syscalls(self)
        self.swap_store = SwapStore() if swapper else None
        self.swapper = Swapper(self) if swapper else None
        self.tlb_patch = TLBPatch(tlb_patch)  # PATCH (section 4.3)
        self.drivers: dict[str, Driver] = {}
        for d in drivers:
            if not d.name or d.name in self.drivers:
                raise ValueError(f"bad or duplicate driver name {d.name!r}")
            self.drivers[d.name] = d
        self.services = DriverServices(self)
        self.tick = tick
        self.ticks = 0
        self.device_irqs = 0
        self.procs: dict[int, Process] = {}
        self._next_pid = 1
        self._next_tid = 1
        self.live = 0  # processes not yet exited; the machine stops when it drops to zero
        self.booted = False

    # --- boot ---------------------------------------------------------------------------

    def boot(self) -> None:
        """Power on the bootstrap processor into the kernel's start-up code."""
        self.machine.power_on(Context([Frame(self._start(), user=False)], name="boot"))

    def _start(self) -> Gen:
        yield SetIVT(self.traps.ivt())
        yield LoadCR3(self.kernel_cr3)
        yield EnablePaging()
        yield SetTimer(self.tick)
        self.sched.loaded_cr3 = self.kernel_cr3
        for d in self.drivers.values():
            yield from d.init(self.services)
        self.booted = True
        yield Switch(self.sched.idle_ctx)

    # --- processes and threads --------------------------------------------------------------

    def create_process(self, entry: int, block: bytes, name: str, parent: Process | None = None) -> Process | None:
        """A new process whose first thread starts `entry(block address)`, with `block` on its stack.

        A spawned child inherits its parent's descriptors (but close-on-spawn ones);
        a process created from outside gets the console on fds 0, 1 and 2. None when
        memory ran out (nothing is left behind).
        """
        try:
            aspace = AddressSpace(self.frames, self.kmap, self.swap_store)
        except OutOfMemory:
            return None
        try:
            top = abi.STACK_TOP
            block_addr = (top - abi.TLS_SIZE - len(block) - 16) & ~15
            aspace.add_region(abi.STACK_TOP - abi.STACK_SIZE, abi.STACK_SIZE, "stack", True)
            aspace.copyout(block_addr, block)
        except OutOfMemory:
            aspace.destroy()
            return None
        aspace.add_region(abi.CODE_BASE, abi.CODE_SIZE, "code", False)
        aspace.add_region(abi.DATA_BASE, abi.DATA_SIZE, "data", True)
        if parent is not None:
            files = parent.files.inherit()
        else:
            files = FileTable()
            for fd in (0, 1, 2):
                files.install(ConsoleFile(fd))
        p = Process(self._next_pid, name, parent, aspace, files, created_at=self.machine.now)
        self._next_pid += 1
        self.procs[p.pid] = p
        if parent is not None:
            parent.children.append(p)
        self.live += 1
        self._new_thread(p, entry, (block_addr,))
        return p

    def create_thread(self, p: Process, entry: int, args: tuple[int, ...]) -> Thread | None:
        if len(p.threads) >= MAX_THREADS:
            return None
        return self._new_thread(p, entry, args)

    def _new_thread(self, p: Process, entry: int, args: tuple[int, ...]) -> Thread:
        used = {t.stack_top for t in p.threads}
        slot = next(i for i in range(MAX_THREADS + 1) if abi.STACK_TOP - i * abi.STACK_STRIDE not in used)
        top = abi.STACK_TOP - slot * abi.STACK_STRIDE
        if p.aspace.find(top - 1) is None:
            p.aspace.add_region(top - abi.STACK_SIZE, abi.STACK_SIZE, "stack", True)
        tid = self._next_tid
        self._next_tid += 1
        ctx = Context([Frame(entry_frame(entry, *args), user=True)], name=f"{p.name}:{tid}", tls=top - abi.TLS_SIZE)
        t = Thread(tid, p, ctx, top)
        ctx.owner = t
        p.threads.append(t)
        t.state = "new"
        self.sched.make_runnable(t)
        return t

    def free_thread(self, t: Thread) -> Gen:
        """A joined thread is gone: its stack region and its slot are free again."""
        t.state = DEAD
        t.proc.threads.remove(t)
        r = t.proc.aspace.find(t.stack_top - 1)
        if r is not None and t.stack_top != abi.STACK_TOP:
            for vpn in t.proc.aspace.remove_region(r):
                yield Compute(self.costs.UNMAP_PAGE)
                yield InvalidatePage(vpn << 12)

    def exit_process(self, t: Thread, status: int) -> Gen:
        """End `t`'s process with `status` (-SIG for a signal): never returns to `t`."""
        p = t.proc
        if p.state == ALIVE:
            p.state = "exiting"
            yield Compute(self.costs.EXIT)
            for other in p.threads:
                if other is not t and other.state != DEAD:
                    self.sched.remove(other)
            for fd in sorted(p.files.fds):
                yield from close_file(self, p.files.remove(fd))
            if self.sched.loaded_cr3 != self.kernel_cr3:
                self.sched.loaded_cr3 = self.kernel_cr3
                yield LoadCR3(self.kernel_cr3)
            p.aspace.destroy()
            p.state = EXITED
            p.exit_status = status
            p.exited_at = self.machine.now
            for c in list(p.children):
                c.parent = None
                if c.state == EXITED:
                    self.reap(c)
            parent = p.parent
            if parent is None or parent.state != ALIVE:
                self.reap(p)
            else:
                yield from self.sched.wake(("wait", parent))
                self.signals.send(parent, abi.SIGCHLD)
            self.live -= 1
            if self.live == 0:
                self.machine.stop()
        t.state = DEAD
        self.sched.current = None
        yield from self.sched.schedule()
        raise AssertionError("a dead thread was resumed")

    def reap(self, p: Process) -> None:
        p.state = REAPED
        if p.parent is not None and p in p.parent.children:
            p.parent.children.remove(p)
        p.parent = None

    def live_processes(self) -> list[Process]:
        return [p for p in self.procs.values() if p.state == ALIVE]

    # --- helpers for system calls and drivers ----------------------------------------------------

    def caller(self) -> Caller:
        t = self.sched.current
        return Caller(t.proc.pid, t.tid, t.proc.aspace.cr3)

    def check_user_range(self, addr: int, n: int) -> None:
        if addr < 0 or n < 0 or addr + n > abi.USER_TOP:
            raise UserAccessFault(addr)

    def mark(self, name: str, call: str | None = None) -> None:
        tracer = self.machine.tracer
        if tracer is not None:
            t = self.sched.current
            tracer.mark(self.machine.bsp, name, t.tid if t else None, call=call)

    def stats(self) -> dict[str, Any]:
        return {
            "syscalls": sum(self.syscalls.counts.values()),
            "syscalls_by_name": dict(sorted(self.syscalls.counts.items())),
            "page_faults": self.traps.page_faults,
            "zero_fills": self.traps.zero_fills,
            "swap_ins": self.traps.swap_ins,
            "pages_evicted": self.swapper.evicted if self.swapper else 0,
            "reclaims": self.swapper.reclaims if self.swapper else 0,
            "context_switches": self.sched.switches,
            "signals_sent": self.signals.sent,
            "signals_delivered": self.signals.delivered,
            "early_wakeups": self.sched.early_wakeups,
            "processes": len(self.procs),
            "ticks": self.ticks,
            "frames_in_use": self.frames.in_use,
            "frames_peak": self.frames.peak,
            "kernel_heap_bytes": self.heap.bytes,
        }


__all__ = ["BootKernel", "EXITED", "KERNBASE", "REAPED"]
