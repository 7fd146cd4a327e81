"""The machine's operations: what code running on a CPU yields.

Each op is one instruction (or one `rep`-prefixed string instruction) of the
machine. `run(cpu, frame)` performs its effect at the current instant, puts the
value the code receives in `frame.send`, and returns the instructions it costs.
Privileged ops raise #GP from user mode.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from .memory import PAGE_SIZE
from .traps import GP, UD, Fault, MachineError

if TYPE_CHECKING:
    from .cpu import CPU, IVT, Context, Frame

Program = Generator["Op", Any, Any]


class Op:
    """Base class of all operations."""

    __slots__ = ()
    privileged = False

    def run(self, cpu: CPU, frame: Frame) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


def _priv(frame: Frame, what: str) -> None:
    if frame.user:
        raise Fault(GP, 0, 0, f"{what} in user mode")


class Compute(Op):
    """`n` instructions of plain work; an interrupt may split it (the CPU keeps the rest)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def run(self, cpu: CPU, frame: Frame) -> int:
        return self.n


class SpinWhile(Op):
    """Spin in a load-compare loop while the word at `vaddr` equals `value`; the new value comes back.

    Equivalent to `while (*p == value) pause;`: the CPU executes the loop all the
    while (the time counts as instructions of account `acct`, "spin" by default),
    and it sees another CPU's write at once. Interrupts split it like a `Compute`
    when the code has them enabled; the loop then starts over.
    """

    __slots__ = ("vaddr", "value", "acct")

    def __init__(self, vaddr: int, value: int, acct: str = "spin") -> None:
        self.vaddr = vaddr
        self.value = value
        self.acct = acct

    def run(self, cpu: CPU, frame: Frame) -> int:  # pragma: no cover - the CPU runs it itself
        raise AssertionError("SpinWhile is executed by the CPU loop")


class SpinAcquire(Op):
    """Go on taking a test-and-test-and-set spinlock after a compare-exchange that saw it held by `holder`.

    The rest of the usual loop: spin while the word at `vaddr` equals the holder (`SpinWhile`,
    account `acct`), then `lock cmpxchg` it from 0 to `value`; again until that succeeds. Each
    failure adds 1 to `lock.spins` when the loop would. The loop (`ttas`) runs in a frame called
    from the caller's, so it costs exactly its own instructions; the CPU may run the waiters of
    one lock word together (`hw.herd`), with the same result. A kernel spinlock is taken with
    interrupts disabled: with them enabled this raises `MachineError`.
    """

    __slots__ = ("vaddr", "holder", "value", "lock", "acct")
    privileged = True

    def __init__(self, vaddr: int, holder: int, value: int, lock: Any, acct: str = "spin") -> None:
        self.vaddr = vaddr
        self.holder = holder
        self.value = value
        self.lock = lock
        self.acct = acct

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "spinlock")
        if frame.intr:
            raise MachineError(f"cpu{cpu.id}: spinning for {self.lock.name} with interrupts enabled")
        cpu.call(ttas(self.vaddr, self.holder, self.value, self.lock, self.acct), frame)
        return 0


def ttas(vaddr: int, holder: int, value: int, lock: Any, acct: str) -> Generator[Op, Any, None]:
    """`SpinAcquire`'s loop, as the kernel would write it (`lock` has `name` and `spins`)."""
    while True:
        yield SpinWhile(vaddr, holder, acct)
        holder = yield CmpXchg(vaddr, 0, value)
        if holder == 0:
            return
        if holder == value:  # it would spin for ever: say so (lockdep's recursive locking)
            raise MachineError(f"cpu{value - 1} takes {lock.name}, which it already holds")
        lock.spins += 1


TTAS_CODE = ttas.__code__  # how the CPU recognises a frame running the loop


class Load(Op):
    """Read the 32-bit word at a virtual address."""

    __slots__ = ("vaddr",)

    def __init__(self, vaddr: int) -> None:
        self.vaddr = vaddr

    def run(self, cpu: CPU, frame: Frame) -> int:
        frame.send = cpu.read_u32(self.vaddr, frame.user)
        return 1


class Store(Op):
    """Write a 32-bit word at a virtual address."""

    __slots__ = ("vaddr", "value")

    def __init__(self, vaddr: int, value: int) -> None:
        self.vaddr = vaddr
        self.value = value

    def run(self, cpu: CPU, frame: Frame) -> int:
        if cpu.machine.locks is not None and not frame.user:
            cpu.machine.locks.check(cpu, self.vaddr, 4)
        cpu.write_u32(self.vaddr, self.value, frame.user)
        return 1


def _string_cost(n: int) -> int:
    return max(1, (n + 3) // 4)  # rep movsd: one instruction per word


class ReadMem(Op):
    """Read `n` bytes at a virtual address (`rep movs`); faults name the first bad page."""

    __slots__ = ("vaddr", "n")

    def __init__(self, vaddr: int, n: int) -> None:
        self.vaddr = vaddr
        self.n = n

    def run(self, cpu: CPU, frame: Frame) -> int:
        frame.send = cpu.read_bytes(self.vaddr, self.n, frame.user)
        return _string_cost(self.n)


class WriteMem(Op):
    """Write bytes at a virtual address (`rep movs`); all pages are checked before any byte moves."""

    __slots__ = ("vaddr", "data")

    def __init__(self, vaddr: int, data: bytes) -> None:
        self.vaddr = vaddr
        self.data = bytes(data)

    def run(self, cpu: CPU, frame: Frame) -> int:
        if cpu.machine.locks is not None and not frame.user:
            cpu.machine.locks.check(cpu, self.vaddr, len(self.data))
        cpu.write_bytes(self.vaddr, self.data, frame.user)
        return _string_cost(len(self.data))


class Xchg(Op):
    """Atomically exchange the word at `vaddr` with `value`; the old value is returned."""

    __slots__ = ("vaddr", "value")

    def __init__(self, vaddr: int, value: int) -> None:
        self.vaddr = vaddr
        self.value = value

    def run(self, cpu: CPU, frame: Frame) -> int:
        if cpu.machine.locks is not None and not frame.user:
            cpu.machine.locks.check(cpu, self.vaddr, 4)
        pa = cpu.translate(self.vaddr, True, frame.user)
        mem = cpu.machine.memory
        frame.send = mem.read_u32(pa)
        mem.write_u32(pa, self.value)
        return 1


class CmpXchg(Op):
    """`lock cmpxchg`: if the word at `vaddr` equals `expected`, write `value`; the old value is returned.

    The access is a write either way, as on IA-32 (the page must be writable).
    """

    __slots__ = ("vaddr", "expected", "value")

    def __init__(self, vaddr: int, expected: int, value: int) -> None:
        self.vaddr = vaddr
        self.expected = expected
        self.value = value

    def run(self, cpu: CPU, frame: Frame) -> int:
        pa = cpu.translate(self.vaddr, True, frame.user)
        mem = cpu.machine.memory
        old = mem.read_u32(pa)
        if old == self.expected & 0xFFFFFFFF:
            if cpu.machine.locks is not None and not frame.user:
                cpu.machine.locks.check(cpu, self.vaddr, 4)
            mem.write_u32(pa, self.value)
        frame.send = old
        return 1


class AtomicAdd(Op):
    """Atomically add `delta` to the word at `vaddr` (`lock xadd`); the old value is returned.

    `AtomicAdd(addr, 0)` is the classic way to touch a page for writing without changing it.
    """

    __slots__ = ("vaddr", "delta")

    def __init__(self, vaddr: int, delta: int) -> None:
        self.vaddr = vaddr
        self.delta = delta

    def run(self, cpu: CPU, frame: Frame) -> int:
        if cpu.machine.locks is not None and not frame.user:
            cpu.machine.locks.check(cpu, self.vaddr, 4)
        pa = cpu.translate(self.vaddr, True, frame.user)
        mem = cpu.machine.memory
        old = mem.read_u32(pa)
        mem.write_u32(pa, old + self.delta)
        frame.send = old
        return 1


class Rdtsc(Op):
    """Read the time-stamp counter: the machine's time in instructions (an inspection point)."""

    __slots__ = ()

    def run(self, cpu: CPU, frame: Frame) -> int:
        frame.send = cpu.env.now
        tracer = cpu.machine.tracer
        if tracer is not None:
            tracer.mark(cpu, "inspect")
        return 1


class CpuId(Op):
    """This CPU's number (its local APIC id); CPU 0 is the bootstrap processor."""

    __slots__ = ()

    def run(self, cpu: CPU, frame: Frame) -> int:
        frame.send = cpu.id
        return 1


class ReadTP(Op):
    """Read the thread-pointer register: the address of this thread's local storage."""

    __slots__ = ()

    def run(self, cpu: CPU, frame: Frame) -> int:
        frame.send = cpu.ctx.tls
        return 1


class ReadSysinfo(Op):
    """Read the cookie of this thread's system-call entry (`Context.sysinfo`), 0 if it has none."""

    __slots__ = ()

    def run(self, cpu: CPU, frame: Frame) -> int:
        sysinfo = cpu.ctx.sysinfo
        frame.send = 0 if sysinfo is None else sysinfo[1]
        return 1


class CodeAddr(Op):
    """The code address of a generator function (`lea main`)."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def run(self, cpu: CPU, frame: Frame) -> int:
        frame.send = cpu.machine.code.address_of(self.func)
        return 1


class Call(Op):
    """Call the code at a code address with arguments; its return value comes back (`call *addr`).

    An address that holds no code raises #UD, as jumping into data would; so does a function
    that is not a generator function (a TypeError, which makes user code's call an invalid
    instruction).
    """

    __slots__ = ("addr", "args")

    def __init__(self, addr: int, *args: Any) -> None:
        self.addr = addr
        self.args = args

    def run(self, cpu: CPU, frame: Frame) -> int:
        func = cpu.machine.code.resolve(self.addr)
        if func is None:
            raise Fault(UD, 0, self.addr, f"call to {self.addr:#x}: no code there")
        code = func(*self.args)
        if not isinstance(code, Generator):  # a plain function: it ran at once, outside the machine
            name = getattr(func, "__qualname__", repr(func))
            raise TypeError(
                f"{name} returned {code!r}, not a generator: code that runs on a CPU is a generator "
                "function (it yields operations, e.g. `yield from libc.print(...)`)"
            )
        cpu.call(code, frame)
        return 1


class Trap(Op):
    """A software interrupt (`int vector`) with register arguments; the handler's return value comes back."""

    __slots__ = ("vector", "args")

    def __init__(self, vector: int, *args: Any) -> None:
        self.vector = vector
        self.args = args

    def run(self, cpu: CPU, frame: Frame) -> int:
        cpu.software_interrupt(self, frame)
        return 1


class Illegal(Op):
    """An undefined opcode (`ud2`): raises #UD."""

    __slots__ = ()

    def run(self, cpu: CPU, frame: Frame) -> int:
        raise Fault(UD, 0, 0, "ud2")


# --- privileged operations -------------------------------------------------


class LoadCR3(Op):
    """Load CR3 with a page-directory frame address; flushes the TLB."""

    __slots__ = ("cr3",)
    privileged = True

    def __init__(self, cr3: int) -> None:
        self.cr3 = cr3

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "mov cr3")
        cpu.mmu.load_cr3(self.cr3)
        return 1


class ReadCR3(Op):
    """Read CR3 (requirement 3 of section 3.2: the current page table address)."""

    __slots__ = ()
    privileged = True

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "mov from cr3")
        frame.send = cpu.mmu.cr3
        return 1


class EnablePaging(Op):
    """Set CR0.PG: from now on addresses are translated through CR3."""

    __slots__ = ()
    privileged = True

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "mov cr0")
        cpu.mmu.paging = True
        cpu.mmu.tlb.flush()
        return 1


class InvalidatePage(Op):
    """`invlpg`: drop this CPU's TLB entry for one virtual page."""

    __slots__ = ("vaddr",)
    privileged = True

    def __init__(self, vaddr: int) -> None:
        self.vaddr = vaddr

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "invlpg")
        cpu.mmu.tlb.invalidate(self.vaddr // PAGE_SIZE)
        return 1


class FlushTLB(Op):
    """Reload CR3 with itself: drop every TLB entry of this CPU."""

    __slots__ = ()
    privileged = True

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "tlb flush")
        cpu.mmu.tlb.flush()
        return 1


class SendIPI(Op):
    """Send an inter-processor interrupt: kind "fixed" (with a vector), "init" or "sipi" (vector = page)."""

    __slots__ = ("dest", "kind", "vector")
    privileged = True

    def __init__(self, dest: int, kind: str, vector: int = 0) -> None:
        self.dest = dest
        self.kind = kind
        self.vector = vector

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "write to the local APIC")
        cpu.machine.intc.send_ipi(cpu.id, self.dest, self.kind, self.vector)
        return 1


class SetTimer(Op):
    """Program this CPU's local timer: an interrupt every `period` instructions (0 stops it)."""

    __slots__ = ("period",)
    privileged = True

    def __init__(self, period: int) -> None:
        self.period = period

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "write to the local APIC timer")
        cpu.timer.program(self.period)
        return 1


class SetIVT(Op):
    """`lidt`: install this CPU's interrupt vector table (requirement 4: one table per CPU)."""

    __slots__ = ("ivt",)
    privileged = True

    def __init__(self, ivt: IVT) -> None:
        self.ivt = ivt

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "lidt")
        cpu.ivt = self.ivt
        return 1


class GuardedBy(Op):
    """Annotation, no instruction: `size` bytes at kernel address `vaddr` (`what`) are guarded by a spinlock.

    The lock word at `lock_vaddr` holds its owner, the id of the holding CPU + 1 (0: free).
    Only the machine's lock checker (`Machine(check_locks=True)`) looks at it.
    """

    __slots__ = ("vaddr", "size", "lock_vaddr", "what", "lock")
    privileged = True

    def __init__(self, vaddr: int, size: int, lock_vaddr: int, what: str, lock: str = "spinlock") -> None:
        self.vaddr = vaddr
        self.size = size
        self.lock_vaddr = lock_vaddr
        self.what = what
        self.lock = lock

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "lock annotation")
        locks = cpu.machine.locks
        if locks is not None:
            locks.guard(cpu, self.vaddr, self.size, self.lock_vaddr, self.what, self.lock)
        return 0


class AssertHeld(Op):
    """Annotation, no instruction: the code here changes `what`, which needs the spinlock at `lock_vaddr` held.

    Lockdep's `lockdep_assert_held`, for data the lock checker cannot watch in memory.
    Only the machine's lock checker (`Machine(check_locks=True)`) looks at it.
    """

    __slots__ = ("lock_vaddr", "what", "lock")
    privileged = True

    def __init__(self, lock_vaddr: int, what: str, lock: str = "spinlock") -> None:
        self.lock_vaddr = lock_vaddr
        self.what = what
        self.lock = lock

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "lock annotation")
        locks = cpu.machine.locks
        if locks is not None:
            locks.assert_held(cpu, self.lock_vaddr, self.what, self.lock)
        return 0


class DisableInterrupts(Op):
    """`cli`: the running code takes no interrupt until `EnableInterrupts` (a spinlock held in an idle loop)."""

    __slots__ = ()
    privileged = True

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "cli")
        frame.intr = False
        return 1


class EnableInterrupts(Op):
    """`sti`: interrupts are taken again at the running code's op boundaries."""

    __slots__ = ()
    privileged = True

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "sti")
        frame.intr = True
        return 1


class Halt(Op):
    """`sti; hlt`: stop executing until an interrupt arrives (time passes, no instructions count)."""

    __slots__ = ()
    privileged = True

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "hlt")
        cpu.halt_requested = True
        return 0


class Switch(Op):
    """Switch this CPU to another context (the kernel's `swtch`); the current one keeps its frames."""

    __slots__ = ("ctx",)
    privileged = True

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "context switch")
        cpu.switch_to(self.ctx)
        return 0


class AdoptUser(Op):
    """Kernel: run another thread's saved user frames in this context (section 4.3, migration).

    `frames` (bottom first, taken whole from the context they ran in) go between the
    user frame that trapped into this kernel path and the kernel frame, which returns
    to the top one of them; the thread pointer and system-call entry become `tls` and
    `sysinfo`. Sends back what `ReleaseUser` needs to undo it: (the frame that trapped,
    the old thread pointer, the old entry).
    """

    __slots__ = ("frames", "tls", "sysinfo")
    privileged = True

    def __init__(self, frames: list[Frame], tls: int, sysinfo: tuple[int, int] | None) -> None:
        self.frames = frames
        self.tls = tls
        self.sysinfo = sysinfo

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "adopt user frames")
        ctx = cpu.ctx
        frames = ctx.frames
        i = _trap_frame(frames)
        trap = frames[i]
        frames[i:i] = self.frames
        saved = (trap.caller, ctx.tls, ctx.sysinfo)
        trap.caller = self.frames[-1]
        ctx.tls, ctx.sysinfo = self.tls, self.sysinfo
        frame.send = saved
        return 1


class ReleaseUser(Op):
    """Kernel: undo `AdoptUser`; sends back the adopted frames (with what ran on them since), or None.

    `saved` is what `AdoptUser` sent; the kernel path must have been entered from a user
    frame of kind `entry_kind` above the frame that trapped then. The user frames above
    that one are cut out and returned, and the kernel frame returns to it again. None,
    and no change, if another frame of kind `entry_kind` is among them: code entered
    that way and interrupted (by a signal handler) would go on elsewhere.
    """

    __slots__ = ("saved", "entry_kind")
    privileged = True

    def __init__(self, saved: tuple[Frame, int, tuple[int, int] | None], entry_kind: str) -> None:
        self.saved = saved
        self.entry_kind = entry_kind

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "release user frames")
        ctx = cpu.ctx
        frames = ctx.frames
        anchor, tls, sysinfo = self.saved
        i = _trap_frame(frames)
        j = next((n for n in range(i) if frames[n] is anchor), None)
        if j is None or j + 1 == i or frames[i - 1].kind != self.entry_kind:
            raise MachineError(f"cpu{cpu.id}: release of user frames not adopted beneath this {self.entry_kind} path")
        if any(f.kind == self.entry_kind for f in frames[j + 1 : i - 1]):
            frame.send = None
            return 1
        cut = frames[j + 1 : i]
        del frames[j + 1 : i]
        frames[j + 1].caller = anchor
        ctx.tls, ctx.sysinfo = tls, sysinfo
        frame.send = cut
        return 1


def _trap_frame(frames: list[Frame]) -> int:
    """The index of the kernel frame entered from the topmost user frame."""
    i = len(frames) - 1
    while i > 0 and not frames[i - 1].user:
        i -= 1
    return i


class PushFrame(Op):
    """Run user code `gen` in the current context before returning to the interrupted user code.

    The kernel uses it to deliver a signal: the handler frame goes beneath the kernel
    frame that pushes it, so it runs first on the way back to user mode.
    """

    __slots__ = ("gen", "kind")
    privileged = True

    def __init__(self, gen: Program, kind: str = "signal") -> None:
        self.gen = gen
        self.kind = kind

    def run(self, cpu: CPU, frame: Frame) -> int:
        _priv(frame, "push user frame")
        cpu.push_user_frame(self.gen, self.kind)
        return 0
