"""Process, thread, signal, memory and clock system calls."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import PAGE_SHIFT, Compute, InvalidatePage, Load, Op, ReadMem, Store
from . import abi, costs
from .proc import ALIVE, EXITED, ZOMBIE
from .vm import page_round_up

if TYPE_CHECKING:
    from .kernel import BootKernel

Gen = Generator[Op, Any, Any]
MAX_SPAWN_BLOCK = 16 * 1024
MAX_SPIN = 1 << 30


def sys_exit(k: BootKernel, status: int) -> Gen:
    yield from k.exit_process(k.sched.current, status & 0xFF)


def sys_getpid(k: BootKernel) -> Gen:
    yield Compute(k.costs.SYS_TRIVIAL)
    return k.sched.current.proc.pid


def sys_gettid(k: BootKernel) -> Gen:
    yield Compute(k.costs.SYS_GETTID)
    return k.sched.current.tid


def sys_yield(k: BootKernel) -> Gen:
    yield Compute(k.costs.SYS_TRIVIAL)
    yield from k.sched.yield_()
    return 0


def sys_spin(k: BootKernel, n: int) -> Gen:
    if not 0 <= n <= MAX_SPIN:
        return -abi.EINVAL
    if n:
        yield Compute(n)
    return 0


def sys_spin_call(k: BootKernel, n: int, nr: int, a0: int, a1: int, a2: int) -> Gen:
    """Spin n instructions, then make call nr(a0, a1, a2): one of `abi.SPIN_CALL_TARGETS`, never itself."""
    if not 0 <= n <= MAX_SPIN or nr not in abi.SPIN_CALL_TARGETS:
        return -abi.EINVAL
    if n:
        yield Compute(n)
    return (yield from k.syscalls.dispatch((nr, a0, a1, a2)))


def sys_sleep(k: BootKernel, n: int) -> Gen:
    if n < 0:
        return -abi.EINVAL
    t = k.sched.current
    if (yield from k.sched.sleep(("sleep", t), interruptible=True, until=k.machine.now + n)):
        return -abi.EINTR
    return 0


def sys_spawn(k: BootKernel, entry: int, block: int, length: int) -> Gen:
    if not 0 <= length <= MAX_SPAWN_BLOCK:
        return -abi.EINVAL
    k.check_user_range(block, length)
    data = (yield ReadMem(block, length)) if length else b""
    yield Compute(k.costs.SPAWN)
    parent = k.sched.current.proc
    child = k.create_process(entry, data, parent.name, parent=parent)
    return -abi.ENOMEM if child is None else child.pid


def sys_waitpid(k: BootKernel, pid: int, status_ptr: int) -> Gen:
    p = k.sched.current.proc
    k.check_user_range(status_ptr, 4)
    while True:
        yield Compute(k.costs.WAIT)
        kids = [c for c in p.children if pid in (-1, c.pid)]
        if not kids:
            return -abi.ECHILD
        done = next((c for c in kids if c.state == EXITED), None)
        if done is not None:
            yield Store(status_ptr, done.exit_status)
            k.reap(done)
            return done.pid
        if (yield from k.sched.sleep(("wait", p), interruptible=True)):
            return -abi.EINTR


def sys_kill(k: BootKernel, pid: int, sig: int) -> Gen:
    yield Compute(k.costs.SYS_KILL)
    if not 0 <= sig < abi.NSIG:
        return -abi.EINVAL
    target = k.procs.get(pid)
    if target is None or target.state != ALIVE:
        return -abi.ESRCH
    k.signals.send(target, sig)
    return 0


def sys_sigaction(k: BootKernel, sig: int, handler: int) -> Gen:
    yield Compute(k.costs.SYS_SIGACTION)
    if not 0 < sig < abi.NSIG or sig == abi.SIGKILL:
        return -abi.EINVAL
    p = k.sched.current.proc
    old = p.disposition(sig)
    p.handlers[sig] = handler
    if handler == abi.SIG_IGN:
        p.pending = [s for s in p.pending if s != sig]
    return old


def sys_thread_create(k: BootKernel, entry: int, arg0: int, arg1: int) -> Gen:
    yield Compute(k.costs.THREAD_CREATE)
    t = k.create_thread(k.sched.current.proc, entry, (arg0, arg1))
    return -abi.EAGAIN if t is None else t.tid


def sys_thread_join(k: BootKernel, tid: int, retval_ptr: int) -> Gen:
    me = k.sched.current
    k.check_user_range(retval_ptr, 4)
    target = next((t for t in me.proc.threads if t.tid == tid), None)
    if target is None or target.state == "dead":
        return -abi.ESRCH
    if target is me:
        return -abi.EINVAL
    while target.state != ZOMBIE:
        if (yield from k.sched.sleep(("join", target), interruptible=True)):
            return -abi.EINTR
    yield Store(retval_ptr, target.retval)
    yield from k.free_thread(target)
    return 0


def sys_thread_exit(k: BootKernel, value: int) -> Gen:
    t = k.sched.current
    if len(t.proc.live_threads) == 1:
        yield from k.exit_process(t, 0)
    yield Compute(k.costs.EXIT // 4)
    t.retval = value
    t.state = ZOMBIE
    yield from k.sched.wake(("join", t))
    yield from k.sched.schedule()


def sys_mmap(k: BootKernel, length: int) -> Gen:
    yield Compute(k.costs.MAP_REGION)
    if not 0 < length <= 1 << 28:
        return -abi.EINVAL
    addr = k.sched.current.proc.aspace.mmap(length)
    return -abi.ENOMEM if addr is None else addr


def sys_munmap(k: BootKernel, addr: int, length: int) -> Gen:
    aspace = k.sched.current.proc.aspace
    r = aspace.find(addr)
    if r is None or r.kind != "mmap" or r.start != addr or r.end != addr + page_round_up(length):
        return -abi.EINVAL
    for vpn in aspace.remove_region(r):
        yield Compute(k.costs.UNMAP_PAGE)
        yield InvalidatePage(vpn << PAGE_SHIFT)
    return 0


def _locked_range(k: BootKernel, addr: int, length: int) -> range | None:
    """The pages of [addr, addr+length) if every one lies in a region of the caller, else None."""
    if length <= 0 or addr < 0 or addr + length > abi.USER_TOP:
        return None
    aspace = k.sched.current.proc.aspace
    pages = range(addr >> PAGE_SHIFT, (addr + length + 4095) >> PAGE_SHIFT)
    if any(aspace.find(vpn << PAGE_SHIFT) is None for vpn in pages):
        return None
    return pages


def sys_mlock(k: BootKernel, addr: int, length: int) -> Gen:
    t = k.sched.current
    aspace = t.proc.aspace
    pages = _locked_range(k, addr, length)
    if pages is None or len(aspace.pinned | set(pages)) > costs.MLOCK_LIMIT:
        return -abi.ENOMEM
    for vpn in pages:
        yield Compute(k.costs.MLOCK_PAGE)
        if vpn not in aspace.resident:
            r = aspace.find(vpn << PAGE_SHIFT)
            if (yield from k.traps.resolve(t, vpn << PAGE_SHIFT, r.writable)) == "oom":
                return -abi.ENOMEM
        aspace.pinned.add(vpn)
    return 0


def sys_munlock(k: BootKernel, addr: int, length: int) -> Gen:
    pages = _locked_range(k, addr, length)
    if pages is None:
        return -abi.ENOMEM
    aspace = k.sched.current.proc.aspace
    for vpn in pages:
        yield Compute(k.costs.MLOCK_PAGE)
        aspace.pinned.discard(vpn)
    return 0


def sys_futex(k: BootKernel, addr: int, op: int, value: int) -> Gen:
    """A futex-style wait/wake on a word of the caller's memory (the process's own wait queues)."""
    yield Compute(k.costs.FUTEX)
    if addr & 3 or not 0 < addr < abi.USER_TOP - 4:
        return -abi.EINVAL
    p = k.sched.current.proc
    chan = ("futex", p.pid, addr)
    if op == abi.FUTEX_WAIT:
        if (yield Load(addr)) != value & 0xFFFFFFFF:  # checked and queued with no switch in between
            return -abi.EAGAIN
        if (yield from k.sched.sleep(chan, interruptible=True)):
            return -abi.EINTR
        return 0
    if op == abi.FUTEX_WAKE:
        if value < 0:
            return -abi.EINVAL
        return (yield from k.sched.wake(chan, value))
    return -abi.ENOSYS
