"""Where a processor's instructions go, path by path: an observer on the machine's profiler hook.

On the bootstrap processor under the application kernel every instruction is
tagged with one path (paper section 5.2's overhead, taken apart):

- `call`: the program's own system call or exception, re-issued by its bootstrap
  thread (on the uniprocessor: issued by the program itself);
- `busy_pass`: the bootstrap loop's own user instructions in a pass that found a
  message (Figure 4: check, take the message, store the result);
- `empty_pass`: a pass that found no message, with its `yield` system call
  (including the switch to the next thread);
- `activation`: the `driver_control(APKERN_ACTIVATE_THREAD)` call, but its spinning;
- `spin`: spinning on a lock word (the CPU's "spin" account);
- `interrupts`: timer ticks, IPIs and device interrupts, with what their handlers run;
- `idle`: the idle context;
- `user`: user code of threads that are not bootstrap threads (the programs on the
  uniprocessor; other processes on the bootstrap processor);
- `other`: any other kernel work (boot, process start-up, a bootstrap thread's
  calls outside its loop's paths).

The parts sum to the instructions the CPU executed. A pass's first instructions
(check the area) come before it knows whether it found a message: they are held
and tagged when the pass's outcome shows (its `yield`, or its message).

The observer reads what a debugger would: the frame stack, each trap frame's
vector and registers, and which function each generator is suspended in. It costs
no simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..appkernel import abi as ak
from ..bootkernel import abi
from ..hw import CPU, Frame
from ..hw.traps import SYSCALL
from ..userland.ak_crt0 import bootstrap_loop, handle_message

PARTS = ("call", "busy_pass", "empty_pass", "activation", "spin", "interrupts", "idle", "user", "other")
CALL = "call"
LOOP_CODE = bootstrap_loop.__code__
MESSAGE_CODE = handle_message.__code__
MAX_CACHED = 4096  # user frames remembered with their loop (a bootstrap thread has one or two)


@dataclass
class _Pass:
    """A bootstrap thread's current pass: whether it has found a message, and the instructions not yet tagged."""

    busy: bool = False
    held: int = 0


@dataclass
class Attribution:
    """Tags the instructions of CPU `cpu` executed in [start, end) (the whole run if unset).

    Attach with `Machine.profile` before the run; read `parts` after it (see
    `settle` for passes still open at `end`).
    """

    cpu: int = 0
    start: int = 0
    end: int | None = None
    parts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PARTS, 0), init=False)
    _passes: dict[Any, _Pass] = field(default_factory=dict, init=False, repr=False)
    # a user frame -> the loop it runs, whether it is above the loop's frame, the loop's pass
    _loops: dict[Frame, tuple[Any, bool, _Pass]] = field(default_factory=dict, init=False, repr=False)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def held(self) -> int:
        """Instructions of passes whose outcome is not known yet."""
        return sum(p.held for p in self._passes.values())

    def settle(self) -> None:
        """Tag what is still held as `other` (passes cut by the end of the run)."""
        for p in self._passes.values():
            self.parts["other"] += p.held
            p.held = 0

    # --- the profiler hook ------------------------------------------------------------------------

    def watches(self, cid: int) -> bool:
        """Only the one CPU's charges matter (the others may be run in herds: `hw.herd`)."""
        return cid == self.cpu

    def charge(self, cpu: CPU, frame: Frame, account: str, n: int) -> None:
        # Before `start` nothing is looked at: a pass under way at `start` is held from there and
        # tagged when its outcome shows, as any other.
        if cpu.id != self.cpu or not n or cpu.env.now < self.start:
            return
        counted = self.end is None or cpu.env.now < self.end
        part = self._classify(frame, account, n if counted else 0)
        if part is not None and counted:
            self.parts[part] += n

    def _classify(self, frame: Frame, account: str, n: int) -> str | None:
        if account == "idle" or account == "spin":
            return account
        entry = None  # the kernel frame that was entered from user mode
        f: Frame | None = frame
        while f is not None and not f.user:
            if f.kind == "irq":
                return "interrupts"
            entry = f
            f = f.caller
        if f is None:
            return "other"  # kernel code no user thread entered: boot, start-up
        regs = entry.regs if entry is not None and entry.vector == SYSCALL else ()
        found = self._loops.get(f)
        if found is None:
            loop, inner = _loop_of(f)
            if loop is not None:  # once in its loop, a bootstrap thread's frame stays there
                if len(self._loops) > MAX_CACHED:
                    self._loops.clear()
                found = self._loops[f] = (loop, inner, self._passes.setdefault(loop, _Pass()))
        if regs[:1] == (abi.SYS_DRIVER_CONTROL,) and regs[2:3] == (ak.APKERN_ACTIVATE_THREAD,):
            if found is not None:
                self._found(found[2])
                found[2].busy = False  # the pass ends with the activation
            return "activation"
        if found is None:
            return "user" if entry is None else CALL
        loop, inner, p = found
        if inner or getattr(loop.gi_yieldfrom, "gi_code", None) is MESSAGE_CODE:
            self._found(p)
            return CALL if entry is not None else "busy_pass"
        if entry is None:  # the loop's own instructions outside the message
            if p.busy:
                return "busy_pass"
            p.held += n
            return None
        if regs[:1] == (abi.SYS_YIELD,) and not p.busy:
            self.parts["empty_pass"] += p.held
            p.held = 0
            return "empty_pass"
        return "other"

    def _found(self, p: _Pass) -> None:
        """The pass has a message: what it held was a busy pass's."""
        self.parts["busy_pass"] += p.held
        p.held = 0
        p.busy = True


def _loop_of(user: Frame) -> tuple[Any, bool]:
    """The bootstrap loop that user frame `user` (or a frame below it) runs, and whether `user` is above the loop's."""
    f: Frame | None = user
    inner = False  # a user frame above the loop's: a call made while handling the message
    while f is not None:
        g: Any = f.gen
        while g is not None:
            if getattr(g, "gi_code", None) is LOOP_CODE:
                return g, inner
            g = getattr(g, "gi_yieldfrom", None)
        inner = True
        f = f.caller
    return None, False


def per_call(parts: dict[str, int], calls: int) -> dict[str, float]:
    """Instructions per forwarded call by path."""
    return {k: v / calls for k, v in parts.items()}


# --- the master of the master-slave port: whose code ran ---------------------------------------------

MASTER_PARTS = ("call", "port", "interrupts", "spin", "user", "idle", "other")
PORT_DIR = "/masterslave/"


def _innermost_file(frame: Frame) -> str:
    """The file of the function a frame's generator (or the one it delegates to) is suspended in."""
    g: Any = frame.gen
    while True:
        inner = getattr(g, "gi_yieldfrom", None)
        if inner is None or not hasattr(inner, "gi_code"):
            return g.gi_code.co_filename if hasattr(g, "gi_code") else ""
        g = inner


@dataclass
class MasterAttribution:
    """Tags the master's (CPU `cpu`'s) instructions in [start, end) by whose code ran.

    - `interrupts`: anything under an interrupt (timer ticks, device IRQs, the slaves' IPIs,
      with the step back to user mode they take);
    - `call`: the bootstrap kernel's code on a path entered from user mode (a system call or
      an exception, the uniprocessor's path: `ipsc` measured on the master);
    - `port`: the master-slave port's code on such a path (taking a thread a slave queued,
      the step back to user mode that sends it to a slave, switches, the shoot-down);
    - `spin`: spinning on the queue lock or for a shoot-down's acknowledgements;
    - `user`, `idle`, `other` (start-up, the kernel's code outside any entry from user mode).
    """

    cpu: int = 0
    start: int = 0
    end: int | None = None
    parts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MASTER_PARTS, 0), init=False)

    def watches(self, cid: int) -> bool:
        """Only the master's charges matter."""
        return cid == self.cpu

    def charge(self, cpu: CPU, frame: Frame, account: str, n: int) -> None:
        if cpu.id != self.cpu or not n:
            return
        now = cpu.env.now
        lo, hi = max(now - n, self.start), now if self.end is None else min(now, self.end)
        if hi <= lo:
            return
        self.parts[self._classify(frame, account)] += int(hi - lo)

    @staticmethod
    def _classify(frame: Frame, account: str) -> str:
        if account in ("idle", "user"):
            return account
        if account != "kernel":
            return "spin"
        f: Frame | None = frame
        while f is not None and not f.user:
            if f.kind == "irq":
                return "interrupts"
            f = f.caller
        if PORT_DIR in _innermost_file(frame):
            return "port"
        return CALL if f is not None else "other"
