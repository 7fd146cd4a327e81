"""A processor: executes the ops that code yields, one instruction per tick.

Code is a stack of frames (generators) in a context. The top frame runs. A trap,
fault or interrupt pushes a kernel frame from this CPU's own vector table; when
that frame returns, a trap's value goes to the frame that trapped, a fault's
faulting op is retried (or a `Fixup` throws into it), an interrupt's value is
dropped. Interrupts are taken only at an op boundary of a frame that has them
enabled (user code, idle loops) or by `Halt`; a `Compute` in progress is split
and its remainder kept. States: held in reset, waiting for SIPI, running, shut down.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import simpy
from simpy.events import URGENT

from .code import CODE_PAGE_MAGIC
from .herd import Herd
from .lockstep import Wake, tick
from .memory import PAGE_SHIFT, PAGE_SIZE
from .mmu import MMU, CheckingMMU
from .ops import TTAS_CODE, Compute, Load, Op, SpinWhile, Store
from .traps import GP, SYSCALL, TIMER, UD, Fault, Fixup, MachineError

if TYPE_CHECKING:
    from .machine import Machine

RESET = "reset"  # held in reset: ignores everything but INIT
WAIT_SIPI = "wait-for-sipi"  # after INIT: a SIPI starts it at a trampoline page
RUNNING = "running"
SHUTDOWN = "shutdown"  # triple fault: stopped for good

Handler = Callable[["CPU", Any], Generator[Op, Any, Any]]


@dataclass(frozen=True)
class Gate:
    """An entry of a vector table: the handler, and whether user code may `int` to it.

    How a handler's return is used follows from how it was entered: a trap's value goes
    to the trapping code, a fault's op is retried (or a `Fixup` thrown), an interrupt's
    value is dropped.
    """

    handler: Handler
    user: bool = False


class IVT(dict[int, Gate]):
    """An interrupt vector table: vector -> `Gate`. Each CPU loads its own (`SetIVT`)."""


class Frame:
    """One generator on a context's stack, with its privilege and resume state.

    A frame a trap, fault or interrupt pushed records what the hardware saw: `vector`, and
    `regs` (a system call's register arguments, eax first; a fault's error code and CR2).
    """

    __slots__ = (
        "gen",
        "user",
        "kind",
        "caller",
        "send",
        "throw",
        "retry",
        "remaining",
        "intr",
        "acct",
        "vector",
        "regs",
    )

    def __init__(
        self,
        gen: Generator[Op, Any, Any],
        user: bool,
        kind: str = "base",
        caller: Frame | None = None,
        intr: bool | None = None,
        acct: str | None = None,
        vector: int | None = None,
        regs: tuple[Any, ...] = (),
    ) -> None:
        self.gen = gen
        self.user = user
        self.kind = kind
        self.caller = caller
        self.send: Any = None
        self.throw: BaseException | None = None
        self.retry: Op | None = None
        self.remaining = 0
        self.intr = user if intr is None else intr
        self.acct = acct or ("user" if user else "kernel")
        self.vector = vector
        self.regs = regs


class Context:
    """An execution context (a thread's register state and stacks): the frames, top last."""

    __slots__ = ("frames", "name", "owner", "cpu", "tls", "sysinfo")

    def __init__(self, frames: list[Frame], name: str = "", owner: Any = None, tls: int = 0) -> None:
        self.frames = frames
        self.name = name
        self.owner = owner
        self.cpu: CPU | None = None
        self.tls = tls  # the thread-pointer register (the %gs base of IA-32 TLS)
        # The thread's system-call entry (code address, cookie), like the vsyscall entry IA-32
        # Linux gives each thread (AT_SYSINFO, called through %gs:0x10): None means `int 0x80`.
        # Only the kernel sets it; user code reads the cookie (`ReadSysinfo`).
        self.sysinfo: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"<Context {self.name} depth={len(self.frames)}>"


class CPU:
    """One processor of the machine. CPU 0 is the bootstrap processor."""

    def __init__(self, machine: Machine, cid: int) -> None:
        from .timer import LocalTimer

        self.machine = machine
        self.env: simpy.Environment = machine.env
        self.id = cid
        self.mmu = (CheckingMMU if machine.check_tlb else MMU)(machine.memory, cid)
        self.timer = LocalTimer(self)
        self.ivt: IVT | None = None
        self.state = RESET
        self.ctx: Context | None = None
        self.pending: deque[tuple[int, Any]] = deque()
        self.halt_requested = False
        self.shutdown_reason = ""
        self.acct: dict[str, int] = {"user": 0, "kernel": 0, "spin": 0, "idle": 0}
        self._halted = 0  # ticks spent halted in halts that have ended
        self._halt_start = 0
        self.interrupts = 0
        self.ops = 0  # operations executed (the simulator's unit of work)
        self._wake: simpy.Event | None = None
        self._computing = False
        self._waiting: simpy.Event | None = None  # the event of an interruptible wait in progress (fast engine)
        self.proc = self.env.process(self._run() if machine.engine == "fast" else self._run_reference())

    @property
    def halted(self) -> int:
        """Ticks spent halted, including a halt still in progress."""
        if self._wake is not None and self.halt_requested:
            return self._halted + max(0, int(self.env.now - self._halt_start))
        return self._halted

    # --- power-on and start-up ------------------------------------------------

    def power_on(self, ctx: Context) -> None:
        """Start the bootstrap processor in `ctx` (the BIOS hands it to the kernel)."""
        self.state = RUNNING
        self.switch_to(ctx)
        self._kick()

    def init_ipi(self) -> None:
        if self.state in (RESET, WAIT_SIPI, RUNNING) and self.id != 0:
            if self.ctx is not None:
                self.ctx.cpu = None
            self.ctx = None
            self.pending.clear()
            self.halt_requested = False
            self.mmu.paging = False
            self.mmu.tlb.flush()
            self.ivt = None
            self.timer.program(0)
            self.state = WAIT_SIPI

    def startup_ipi(self, page: int) -> None:
        """SIPI: start executing the code page at physical page `page` (< 1 MiB), in real mode."""
        if self.state != WAIT_SIPI:
            return  # a SIPI without a preceding INIT is ignored
        mem = self.machine.memory
        base = page << PAGE_SHIFT
        func = None
        if mem.read_u32(base) == CODE_PAGE_MAGIC:
            func = self.machine.code.resolve(mem.read_u32(base + 4))
        if func is None:
            self._shutdown(f"SIPI to page {page:#x}: no start-up code there")
            return
        self.state = RUNNING
        self.switch_to(Context([Frame(func(self), user=False, acct="kernel")], name=f"ap{self.id}-startup"))
        self._kick()

    def _shutdown(self, reason: str) -> None:
        self.state = SHUTDOWN
        self.shutdown_reason = reason
        if self.ctx is not None:
            self.ctx.cpu = None
        self.ctx = None
        self.machine.log(f"cpu{self.id}: shutdown: {reason}")

    # --- interrupts -------------------------------------------------------------

    def raise_irq(self, vector: int, info: Any = None) -> None:
        """Make interrupt `vector` pending; it is taken at this CPU's next op boundary."""
        if self.state != RUNNING:
            return
        if vector == TIMER and any(v == vector for v, _ in self.pending):
            return  # the APIC has one request bit per vector
        self.pending.append((vector, info))
        self._kick()

    def _kick(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        elif self._computing:
            self._computing = False
            if self.machine.quantum:
                # decoupled: this CPU's wait may end before the kicker's time; interrupt it only if it still waits
                waited = self._waiting
                ev = self.env.event()
                ev.callbacks.append(lambda _ev: self._waiting is waited and self.proc.interrupt())
                ev._ok = True
                ev._value = None
                self.env.schedule(ev, URGENT)
            else:
                self.proc.interrupt()

    def _gate(self, vector: int) -> Gate | None:
        return None if self.ivt is None else self.ivt.get(vector)

    def _deliver(self, vector: int, info: Any) -> None:
        self.halt_requested = False
        gate = self._gate(vector)
        if gate is None:
            self._shutdown(f"interrupt {vector:#x} with no handler")
            return
        self.interrupts += 1
        self.ctx.frames.append(Frame(gate.handler(self, info), user=False, kind="irq", acct="kernel", vector=vector))

    def software_interrupt(self, op: Any, frame: Frame) -> None:
        sysinfo = self.ctx.sysinfo
        if sysinfo is not None and frame.user and op.vector == SYSCALL and frame.kind != "vsyscall":
            self._vsyscall(op, frame, *sysinfo)
            return
        gate = self._gate(op.vector)
        if gate is None or (frame.user and not gate.user):
            raise Fault(GP, op.vector << 3, 0, f"int {op.vector:#x} not allowed")
        self.ctx.frames.append(
            Frame(gate.handler(self, op.args), user=False, kind="trap", caller=frame, vector=op.vector, regs=op.args)
        )

    def _vsyscall(self, op: Any, frame: Frame, entry: int, cookie: int) -> None:
        """The system call goes to the thread's user-mode entry, called as entry(cookie, *registers);
        a trap from that frame itself is a real one. The frame keeps the registers (`regs`)."""
        func = self.machine.code.resolve(entry)
        if func is None:
            raise Fault(GP, 0, entry, f"system-call entry {entry:#x} is not code")
        self.ctx.frames.append(
            Frame(func(cookie, *op.args), user=True, kind="vsyscall", caller=frame, intr=frame.intr, regs=op.args)
        )

    def call(self, gen: Generator[Op, Any, Any], frame: Frame) -> None:
        self.ctx.frames.append(Frame(gen, user=frame.user, kind="call", caller=frame, intr=frame.intr, acct=frame.acct))

    def _fault(self, frame: Frame, op: Op, flt: Fault) -> None:
        gate = self._gate(flt.vector)
        if gate is None:
            self._shutdown(f"unhandled {flt!r}")
            return
        frame.retry = op
        flt.from_user = frame.user
        self.ctx.frames.append(
            Frame(
                gate.handler(self, flt),
                user=False,
                kind="fault",
                caller=frame,
                vector=flt.vector,
                regs=(flt.error, flt.addr),
            )
        )

    # --- context switching --------------------------------------------------------

    def switch_to(self, ctx: Context) -> None:
        old = self.ctx
        if old is ctx:
            return
        if ctx.cpu is not None:
            raise MachineError(f"cpu{self.id}: {ctx!r} is already running on cpu{ctx.cpu.id}")
        if not ctx.frames:
            raise MachineError(f"cpu{self.id}: switch to empty {ctx!r}")
        if old is not None:
            old.cpu = None
        ctx.cpu = self
        self.ctx = ctx
        tracer = self.machine.tracer
        if tracer is not None:
            tracer.switch(self, old, ctx)

    def push_user_frame(self, gen: Generator[Op, Any, Any], kind: str) -> None:
        frames = self.ctx.frames
        frames.insert(len(frames) - 1, Frame(gen, user=True, kind=kind))

    # --- memory access through the MMU -------------------------------------------------

    def translate(self, vaddr: int, write: bool, user: bool) -> int:
        return self.mmu.translate(vaddr & 0xFFFFFFFF, write, user)

    def read_u32(self, vaddr: int, user: bool) -> int:
        if vaddr & 3 and (vaddr & 0xFFF) > PAGE_SIZE - 4:
            return int.from_bytes(self.read_bytes(vaddr, 4, user), "little")
        return self.machine.memory.read_u32(self.mmu.translate(vaddr, False, user))

    def write_u32(self, vaddr: int, value: int, user: bool) -> None:
        if vaddr & 3 and (vaddr & 0xFFF) > PAGE_SIZE - 4:
            self.write_bytes(vaddr, (value & 0xFFFFFFFF).to_bytes(4, "little"), user)
            return
        self.machine.memory.write_u32(self.mmu.translate(vaddr, True, user), value)

    def _pieces(self, vaddr: int, n: int, write: bool, user: bool) -> list[tuple[int, int]]:
        out = []
        while n > 0:
            chunk = min(n, PAGE_SIZE - (vaddr & 0xFFF))
            out.append((self.mmu.translate(vaddr, write, user), chunk))
            vaddr += chunk
            n -= chunk
        return out

    def read_bytes(self, vaddr: int, n: int, user: bool) -> bytes:
        mem = self.machine.memory
        return b"".join(mem.read(pa, c) for pa, c in self._pieces(vaddr, n, False, user))

    def write_bytes(self, vaddr: int, data: bytes, user: bool) -> None:
        mem = self.machine.memory
        off = 0
        for pa, c in self._pieces(vaddr, len(data), True, user):
            mem.write(pa, data[off : off + c])
            off += c

    # --- the execution loop --------------------------------------------------------------

    def _run(self) -> Generator[simpy.Event, Any, None]:
        """The execution loop of the fast engine: the reference loop's semantics with fewer events.

        Run-ahead: an op that costs n instructions at time t needs no SimPy event when every event
        already scheduled comes strictly after t + n. The event it would have scheduled would be the
        next one processed (it would carry the largest id so far, so a tie goes to the others), so
        nothing can happen in between: no write, no interrupt, no stop. The loop advances the clock
        itself and goes on. Otherwise an uninterruptible wait may share the event scheduled just
        before it, and a spin its word's wake-up (`lockstep`); a spinlock waiter may wait in the
        word's herd (`herd`). A run is the same, bit for bit, as with `_run_reference`
        (tests/test_engine.py).

        With a decoupling quantum Q > 0 (`Machine(quantum=Q)`), an op may also run ahead when it
        ends less than Q instructions after the next event: the CPU's clock runs ahead of the
        others' by less than Q, its writes are seen early, an interrupt for it is taken when it
        next looks (late by less than Q). Its clock never goes back: resumed by an event of a CPU
        that is behind it, it goes on from its own time. No herds then (they assume one clock).
        Mutual exclusion holds in the order the host runs the CPUs, not in time: a lock's holder
        that runs ahead releases it early for the CPUs behind it, so the spinlock kernels'
        contention, and their figures, move (benchmarks/engine_speed.py measures how much).
        """
        env = self.env
        queue = env._queue  # SimPy's heap of (time, priority, id, event): queue[0] is the next event
        acct = self.acct
        machine = self.machine
        memory = machine.memory
        mmu = self.mmu
        tracer = machine.tracer
        perturb = None if machine.perturb is None else machine.perturb.for_cpu(self.id)
        profiler = machine.profiler
        observed = tracer is not None or profiler is not None
        # Waiting for a spinlock, this CPU may join the lock word's herd (hw.herd) if nothing observes it.
        watches = getattr(profiler, "watches", None)
        quantum = machine.quantum
        herding = (
            not quantum
            and tracer is None
            and mmu.__class__ is MMU
            and (profiler is None or (watches is not None and not watches(self.id)))
        )
        pending = self.pending
        translate = mmu.translate
        locks = machine.locks
        while True:
            if self.state != RUNNING or self.halt_requested and not pending:
                start = self._halt_start = env._now
                self._wake = env.event()
                yield self._wake
                if env._now < start:  # decoupled: woken by a CPU behind this one
                    env._now = start
                self._wake = None
                if self.halt_requested:
                    self._halted += env._now - start
                    if tracer is not None:
                        tracer.slice(self, "halt", start, env._now)
                continue
            frames = self.ctx.frames
            f = frames[-1]
            if pending and (f.intr or self.halt_requested):
                self._deliver(*pending.popleft())
                continue
            n = f.remaining
            if n:
                now = env._now
                if not queue or now + n < queue[0][0] + quantum:  # run-ahead: nothing can interrupt it
                    env._now = now + n
                    done = n
                elif f.intr:
                    self._computing = True
                    self._waiting = timeout = env.timeout(n)  # interruptible: its own event
                    try:
                        yield timeout
                        done = n
                    except simpy.Interrupt:
                        if env._now < now:  # decoupled: interrupted by a CPU behind this one
                            env._now = now
                        done = env._now - now
                    self._computing = False
                    self._waiting = None
                else:
                    yield tick(env, n)
                    done = n
                f.remaining = n - done
                acct[f.acct] += done
                if observed:
                    self._observe(f, f.acct, done)
                continue
            op = f.retry
            if op is not None:
                f.retry = None
            else:
                try:
                    if f.throw is not None:
                        exc, f.throw = f.throw, None
                        op = f.gen.throw(exc)
                    else:
                        v, f.send = f.send, None
                        op = f.gen.send(v)
                except StopIteration as stop:
                    self._return(frames, f, stop.value)
                    continue
                except Exception as exc:
                    if not f.user or machine.strict:
                        raise
                    # A program's own Python error is its crash: an invalid instruction.
                    self._crash(f, f"user code raised {exc!r}", _raised_at(exc))
                    continue
            self.ops += 1
            cls = op.__class__
            if cls is Compute:
                n = op.n
                if perturb is not None and n and not f.user:
                    n = perturb.cost(n)
                if f.intr:
                    if f.user and (n.__class__ is not int or n < 0):
                        self._crash(f, f"user code yielded {op!r} with n={n!r}, not an instruction count")
                        continue
                    f.remaining = n  # interruptible: the top of the loop runs it
                elif n:  # kernel code: nothing can split it
                    now = env._now
                    if not queue or now + n < queue[0][0] + quantum:
                        env._now = now + n
                    else:
                        yield tick(env, n)
                    acct[f.acct] += n
                    if observed:
                        self._observe(f, f.acct, n)
                continue
            if cls is SpinWhile:
                try:
                    pa = mmu.translate(op.vaddr, False, f.user)
                except Fault as flt:
                    self._fault(f, op, flt)
                    continue
                except (TypeError, ValueError, OverflowError) as exc:
                    if not f.user:
                        raise
                    self._crash(f, f"user code yielded a malformed {type(op).__name__}: {exc}")
                    continue
                value = memory.read_u32(pa)
                start = env._now
                if value == op.value and herding and getattr(f.gen, "gi_code", None) is TTAS_CODE:
                    # SpinAcquire's loop (interrupts disabled): wait in the word's herd until it takes the lock
                    loop = f.gen.gi_frame.f_locals
                    ev = env.event()
                    Herd.joinable(machine, pa, value, loop["lock"], op.acct).join(self, f, ev, op.vaddr, loop["value"])
                    yield ev
                    acct[f.acct] += 1  # the compare-exchange that took it ends now
                    f.gen.close()
                    self._return(frames, f, None)
                    continue
                if value == op.value:
                    # the word's last watcher, if it is a spinner's untriggered Wake, wakes this CPU too
                    cbs = memory.watchers.get(pa & ~3)
                    ev = getattr(cbs[-1], "__self__", None) if cbs else None
                    if ev.__class__ is not Wake or ev.triggered:
                        ev = Wake(env)
                        memory.watch(pa, ev.succeed)
                    self._computing = f.intr
                    self._waiting = ev
                    try:
                        yield ev
                        value = memory.read_u32(pa)
                    except simpy.Interrupt:
                        if not ev.callbacks:  # the others that wait on it still watch
                            memory.unwatch(pa, ev.succeed)
                        f.retry = op
                    if env._now < start:  # decoupled: woken by a CPU behind this one
                        env._now = start
                    self._computing = False
                    self._waiting = None
                    acct[op.acct] = acct.get(op.acct, 0) + env._now - start
                    if observed:
                        self._observe(f, op.acct, env._now - start)
                    if f.retry is not None or value == op.value:
                        f.retry = op
                        continue
                f.send = value
                now = env._now
                if not queue or now + 1 < queue[0][0] + quantum:
                    env._now = now + 1
                else:
                    yield tick(env, 1)
                acct[op.acct] = acct.get(op.acct, 0) + 1
                if observed:
                    self._observe(f, op.acct, 1)
                continue
            try:
                if cls is Load and not op.vaddr & 3:  # an aligned load: what Load.run does, without the calls
                    f.send = memory.read_u32(translate(op.vaddr, False, f.user))
                    cost = 1
                elif cls is Store and locks is None and not op.vaddr & 3:  # likewise Store.run
                    memory.write_u32(translate(op.vaddr, True, f.user), op.value)
                    cost = 1
                else:
                    cost = op.run(self, f)
            except Fault as flt:
                self._fault(f, op, flt)
                continue
            except AttributeError:
                if isinstance(op, Op):
                    raise
                if not f.user:
                    raise MachineError(f"cpu{self.id}: code yielded {op!r}, which is not an operation") from None
                self._crash(f, f"user code yielded {op!r}, which is not an operation")
                continue
            except (TypeError, ValueError, OverflowError) as exc:
                if not f.user:
                    raise
                # a malformed operand (an address that is not a number, say) is an invalid instruction
                self._crash(f, f"user code yielded a malformed {type(op).__name__}: {exc}")
                continue
            if cost:
                now = env._now
                if not queue or now + cost < queue[0][0] + quantum:
                    env._now = now + cost
                else:
                    yield tick(env, cost)
                acct[f.acct] += cost
                if observed:
                    self._observe(f, f.acct, cost)

    def _observe(self, f: Frame, account: str, n: int) -> None:
        """Tell the tracer and the profiler of `n` instructions of `account` that end now."""
        tracer = self.machine.tracer
        if tracer is not None:
            tracer.slice(self, account, self.env.now - n, self.env.now)
        profiler = self.machine.profiler
        if profiler is not None:
            profiler.charge(self, f, account, n)

    def _run_reference(self) -> Generator[simpy.Event, Any, None]:
        """The engine as it was before run-ahead (`Machine(engine="reference")`): one SimPy event per
        instruction-costing op. Kept to check that the fast engine gives the same run, bit for bit."""
        env = self.env
        acct = self.acct
        tracer = self.machine.tracer
        perturb = None if self.machine.perturb is None else self.machine.perturb.for_cpu(self.id)
        profiler = self.machine.profiler
        while True:
            if self.state != RUNNING or self.halt_requested and not self.pending:
                start = self._halt_start = env.now
                self._wake = env.event()
                yield self._wake
                self._wake = None
                if self.halt_requested:
                    self._halted += env.now - start
                    if tracer is not None:
                        tracer.slice(self, "halt", start, env.now)
                continue
            frames = self.ctx.frames
            f = frames[-1]
            if self.pending and (f.intr or self.halt_requested):
                self._deliver(*self.pending.popleft())
                continue
            n = f.remaining
            if n:
                if f.intr:
                    start = env.now
                    self._computing = True
                    try:
                        yield env.timeout(n)
                        done = n
                    except simpy.Interrupt:
                        done = env.now - start
                    self._computing = False
                else:
                    yield env.timeout(n)
                    done = n
                f.remaining = n - done
                acct[f.acct] += done
                if tracer is not None:
                    tracer.slice(self, f.acct, env.now - done, env.now)
                if profiler is not None:
                    profiler.charge(self, f, f.acct, done)
                continue
            op = f.retry
            if op is not None:
                f.retry = None
            else:
                try:
                    if f.throw is not None:
                        exc, f.throw = f.throw, None
                        op = f.gen.throw(exc)
                    else:
                        v, f.send = f.send, None
                        op = f.gen.send(v)
                except StopIteration as stop:
                    self._return(frames, f, stop.value)
                    continue
                except Exception as exc:
                    if not f.user or self.machine.strict:
                        raise
                    # A program's own Python error is its crash: an invalid instruction.
                    self._crash(f, f"user code raised {exc!r}", _raised_at(exc))
                    continue
            self.ops += 1
            if op.__class__ is Compute:
                n = op.n
                if perturb is not None and n and not f.user:
                    n = perturb.cost(n)
                if f.intr:
                    if f.user and (n.__class__ is not int or n < 0):
                        self._crash(f, f"user code yielded {op!r} with n={n!r}, not an instruction count")
                        continue
                    f.remaining = n  # interruptible: the top of the loop runs it
                elif n:  # kernel code: nothing can split it
                    yield env.timeout(n)
                    acct[f.acct] += n
                    if tracer is not None:
                        tracer.slice(self, f.acct, env.now - n, env.now)
                    if profiler is not None:
                        profiler.charge(self, f, f.acct, n)
                continue
            if op.__class__ is SpinWhile:
                try:
                    pa = self.mmu.translate(op.vaddr, False, f.user)
                except Fault as flt:
                    self._fault(f, op, flt)
                    continue
                except (TypeError, ValueError, OverflowError) as exc:
                    if not f.user:
                        raise
                    self._crash(f, f"user code yielded a malformed {type(op).__name__}: {exc}")
                    continue
                value = self.machine.memory.read_u32(pa)
                start = env.now
                if value == op.value:
                    ev = env.event()
                    wake = ev.succeed
                    self.machine.memory.watch(pa, wake)
                    self._computing = f.intr
                    try:
                        yield ev
                        value = self.machine.memory.read_u32(pa)
                    except simpy.Interrupt:
                        self.machine.memory.unwatch(pa, wake)
                        f.retry = op
                    self._computing = False
                    acct[op.acct] = acct.get(op.acct, 0) + env.now - start
                    if tracer is not None:
                        tracer.slice(self, op.acct, start, env.now)
                    if profiler is not None:
                        profiler.charge(self, f, op.acct, env.now - start)
                    if f.retry is not None or value == op.value:
                        f.retry = op
                        continue
                f.send = value
                yield env.timeout(1)
                acct[op.acct] = acct.get(op.acct, 0) + 1
                if tracer is not None:
                    tracer.slice(self, op.acct, env.now - 1, env.now)
                if profiler is not None:
                    profiler.charge(self, f, op.acct, 1)
                continue
            try:
                cost = op.run(self, f)
            except Fault as flt:
                self._fault(f, op, flt)
                continue
            except AttributeError:
                if isinstance(op, Op):
                    raise
                if not f.user:
                    raise MachineError(f"cpu{self.id}: code yielded {op!r}, which is not an operation") from None
                self._crash(f, f"user code yielded {op!r}, which is not an operation")
                continue
            except (TypeError, ValueError, OverflowError) as exc:
                if not f.user:
                    raise
                # a malformed operand (an address that is not a number, say) is an invalid instruction
                self._crash(f, f"user code yielded a malformed {type(op).__name__}: {exc}")
                continue
            if cost:
                yield env.timeout(cost)
                acct[f.acct] += cost
                if tracer is not None:
                    tracer.slice(self, f.acct, env.now - cost, env.now)
                if profiler is not None:
                    profiler.charge(self, f, f.acct, cost)

    def _crash(self, f: Frame, why: str, where: str | None = None) -> None:
        """User code did something no instruction does: #UD, and it never runs again (its kernel kills it)."""
        if where is None:
            where = _suspended_at(f.gen)
        self.machine.log(f"cpu{self.id}: {why}{f' at {where}' if where else ''}; raising #UD")
        owner = self.ctx.owner if self.ctx is not None else None
        self.machine.crashes.append({"time": self.env.now, "cpu": self.id, "owner": owner, "why": why, "where": where})
        f.gen = _dead()
        self._fault(f, _DEAD_OP, Fault(UD, 0, 0, why))

    def _return(self, frames: list[Frame], f: Frame, value: Any) -> None:
        frames.pop()
        kind = f.kind
        if kind == "trap" or kind == "call" or kind == "vsyscall":
            f.caller.send = value
        elif kind == "fault":
            if isinstance(value, Fixup):
                f.caller.retry = None
                f.caller.throw = value.exc
        elif kind == "base" and not frames:
            raise MachineError(f"cpu{self.id}: {self.ctx!r} returned from its last frame")


def _raised_at(exc: BaseException) -> str | None:
    """file:line of the innermost frame an exception passed through."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def _suspended_at(gen: Any) -> str | None:
    """file:line where a generator (and the generators it delegates to) is suspended."""
    where = None
    while gen is not None and getattr(gen, "gi_frame", None) is not None:
        frame = gen.gi_frame
        where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        gen = getattr(gen, "gi_yieldfrom", None)
    return where


def entry_frame(entry: int, *args: Any) -> Generator[Op, Any, Any]:
    """A new thread's first frame: call `entry` with a null return address.

    Code that returns from its entry point "returns to address 0": the fetch
    there is a user page fault at 0, as on real hardware.
    """
    from .ops import Call, Load

    yield Call(entry, *args)
    while True:
        yield Load(0)


class _DeadOp(Op):
    __slots__ = ()

    def run(self, cpu: CPU, frame: Frame) -> int:
        raise Fault(UD, 0, 0, "resumed a crashed program")


_DEAD_OP = _DeadOp()


def _dead() -> Generator[Op, Any, Any]:
    while True:
        yield _DEAD_OP
