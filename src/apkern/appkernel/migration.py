"""Section 4.3: moving threads between the two kernels at run time (the `migration` extension).

"A migration scheme similar to that in MOSIX could then be used to move kernel-bound
threads to the bootstrap processor during runtime." As in MOSIX, the bootstrap
thread is the thread's deputy at home: migrated home, the thread's user context
runs *in* its bootstrap thread, on the bootstrap kernel, and its calls are no
longer forwarded; migrated back, it runs on the APs again and the bootstrap
thread returns to Figure 4's loop. Only threads started with placement "auto"
(crt0 names its system-call entry in MIG_ENTRY of their communication area) move.

Mechanism, at a system call (the call is re-issued where the thread lands):
- to the bootstrap kernel: the AP detaches the thread's user frames (its saved user
  registers), posts KIND_MIGRATE and leaves the thread (state HOME); the bootstrap
  thread calls APKERN_MIGRATE_HOME, which puts those frames above its own and sets
  its thread pointer to the thread's and its system-call entry to crt0's
  `home_syscall` (the vsyscall entry of IA-32 Linux, AT_SYSINFO): the program's
  calls now go through the same translations as the bootstrap loop's, natively;
- back: crt0's entry calls APKERN_MIGRATE_AWAY before issuing a call; the driver
  cuts the frames out again, gives them a fresh kernel context and makes the thread
  ready; the call is issued again on the AP, and the bootstrap thread's
  MIGRATE_HOME call returns to its loop.
Calls that remove mappings behind the APs' backs (munmap, a join) and thread exit
always go back first, so section 4.3's stop protocol and the TCB's end stay the
application kernel's. What else changes the thread's tables while it is home only
adds mappings (its page faults, mmap) or is the swapper's, which the patch shoots
down: so, unlike after a forwarded fault, nothing forces a CR3 reload on its return.

Policy: where does the thread's kernel work cost the bootstrap processor less? On an
AP each call costs it the call plus the forwarding (the bootstrap thread's wake-up,
loop and activation); at home, the call plus the thread's user work between calls.
So a thread goes home when its user instructions per forwarded call (or fault),
over a window, fall below the forwarding work, and back when at home they exceed
twice that: between the two it stays where it is (hysteresis). Both sides measure
the same quantity, with the time-stamp counter, at their system calls.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import Compute, Load, Op, Rdtsc, Store, Trap
from ..hw import traps as vec
from . import abi
from .tcb import DEAD, HOME

if TYPE_CHECKING:
    from .kernel import AppKernel
    from .tcb import TCB

Gen = Generator[Op, Any, Any]

# a thread's window, in kernel memory (MIG_SIZE bytes per TCB id), written only by the CPU
# running the thread: when it last came back from the kernel, its user time and calls since
W_RESUMED = 0
W_USER = 4
W_CALLS = 8
MIG_SIZE = 16


class Migration:
    def __init__(self, ak: AppKernel, table_kva: int, per_page: int) -> None:
        self.ak = ak
        # the windows of each page of the TCB table, `per_page` of them: at start-up one block for all
        self.per_page = per_page
        self.pages = [table_kva + i * per_page * MIG_SIZE for i in range(len(ak.tcbs.pages))]
        self.home = 0  # migrations to the bootstrap kernel
        self.away = 0  # and back to the APs
        self.refused = 0  # moves back refused: a signal handler had interrupted a call's entry

    def _kva(self, tcb: TCB) -> int:
        i = tcb.id - 1
        return self.pages[i // self.per_page] + i % self.per_page * MIG_SIZE

    def start(self, tcb: TCB) -> Gen:
        """A migratable thread (re)starts on an AP: a fresh window from now."""
        kva = self._kva(tcb)
        yield Store(kva + W_RESUMED, (yield Rdtsc()) & 0xFFFFFFFF)
        yield Store(kva + W_USER, 0)
        yield Store(kva + W_CALLS, 0)

    def trapped(self, tcb: TCB, decide: bool) -> Gen:
        """At a forwarded call or fault: close the user stretch; with `decide`, whether to go home."""
        yield Compute(self.ak.costs.MIGRATION_POLICY)
        kva = self._kva(tcb)
        now = (yield Rdtsc()) & 0xFFFFFFFF
        stretch = (now - (yield Load(kva + W_RESUMED))) & 0xFFFFFFFF
        if stretch >= 1 << 31:  # resumed on a CPU whose time-stamp counter is behind the other's: none
            stretch = 0
        user = ((yield Load(kva + W_USER)) + stretch) & 0xFFFFFFFF
        calls = (yield Load(kva + W_CALLS)) + 1
        if calls < abi.WINDOW_CALLS and user < abi.WINDOW_USER:
            yield Store(kva + W_USER, user)
            yield Store(kva + W_CALLS, calls)
            return False
        yield Store(kva + W_USER, 0)
        yield Store(kva + W_CALLS, 0)
        return decide and user < abi.HOME_USER * calls

    def resumed(self, tcb: TCB) -> Gen:
        """Back from the kernel: user time counts from now."""
        yield Store(self._kva(tcb) + W_RESUMED, (yield Rdtsc()) & 0xFFFFFFFF)

    def go_home(self, cid: int, tcb: TCB, args: tuple[int, ...]) -> Gen:
        """On the AP, at system call `args`: hand the thread to its bootstrap thread; never returns."""
        ak = self.ak
        traps = ak.traps
        yield Compute(self.ak.costs.MIGRATE)  # save the user registers
        if not (yield from traps.write_message(tcb, abi.KIND_MIGRATE, args[0], args[1:])):
            yield from ak.destroy_current(cid, tcb)
            yield from ak.leave_dead(cid, tcb)
        yield from ak.lock.acquire(cid)
        if tcb.state == DEAD:
            yield from ak.lock.release()
            yield from ak.leave_dead(cid, tcb)
        frames = tcb.ctx.frames
        user = frames[:-1]  # beneath this kernel path: the thread's user frames
        user[-1].retry = Trap(vec.SYSCALL, *args)  # the call, issued again at home
        del frames[:-1]
        tcb.home_frames = user
        yield from ak.set_state(tcb, HOME)
        yield from ak._stopped(tcb)  # leaving its CPU, as when it blocks
        yield from ak.post_waiting()
        if not (yield from traps.try_store(tcb.comm + abi.STATE, abi.POSTED)):
            yield from ak.kill(tcb)  # the process broke its own communication area
        else:
            self.home += 1
            ak.mark(cid, "ak_migrate_home", tcb)
        yield from ak.schedule_next(cid, tcb)
        raise AssertionError("a thread that went home was resumed on the AP")
