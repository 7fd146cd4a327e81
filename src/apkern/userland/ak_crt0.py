"""crt0 for the application kernel: the "relinked" start-up code and the bootstrap-thread loop.

Section 4.2: crt0 opens the application kernel's driver, creates the application
thread (which runs the unmodified `main` on an application processor) and turns
the process's first thread into its bootstrap thread, which runs the loop of
Figure 4 as ordinary user code on the bootstrap kernel: take a message from the
communication area, re-issue the call with the same arguments (or force the page
fault by referencing the address, or re-raise the exception), store the result,
activate the application thread; `reschedule()` when there is no message.

Three calls need translating rather than re-issuing (section 4.3 and 4.1):
`thread_create` starts a new bootstrap thread, which creates its own application
thread; `sigaction` installs this file's handler in the bootstrap kernel and keeps
the program's handler for the application kernel to run; `exit` and
`thread_exit` are re-issued as they are (the application kernel already freed
the application thread). With no application kernel (no driver), crt0 runs main
in this thread, like the plain crt0.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from typing import Any

from ..appkernel import abi as ak
from ..bootkernel import abi
from ..hw.ops import (
    AtomicAdd,
    Call,
    CodeAddr,
    Compute,
    Halt,
    Illegal,
    Load,
    Op,
    Rdtsc,
    ReadMem,
    ReadSysinfo,
    ReadTP,
    Store,
    Trap,
    WriteMem,
)
from . import libc
from .crt0 import read_spawn_block
from .libc import CRT0_WORD

Gen = Generator[Op, Any, Any]

MAIN_COMM_WORD = abi.DATA_BASE + 0x40  # the main thread pair's communication area
# Each bootstrap thread keeps its own pair's communication area in the last word of its local
# storage (bootstrap threads never stage large buffers through libc, which would reach it).
OWN_COMM = abi.TLS_SIZE - 4
SIGNALS_SEEN = abi.TLS_SIZE - 8  # signals this bootstrap thread's handler passed on (a join's EINTR)
PAGE = 0x1000
START_INFO = ak.COMM_SIZE  # in a new bootstrap thread's page: fd, entry, arg0, arg1, main comm
LOOP_STEP = 6  # the loop's own compare-and-branch instructions per pass
HOME_POLICY_STEP = 15  # a migrated thread's window at each call: loads, subtraction, compares, branches
# The main pair's page holds, after its area, the table of further pairs: (bootstrap tid, area) words.
PAIRS = 0x200
MAX_PAIRS = 64  # the bootstrap kernel's threads per process


def _raw(nr: int, *args: int) -> Gen:
    """A system call whose raw result (-errno on failure) is what the application thread gets."""
    return (yield Trap(abi.SYSCALL, nr, *args))


def ak_crt0(block_addr: int) -> Gen:
    """Process start-up under the application kernel (the process's first, bootstrap, thread)."""
    return (yield from _start(block_addr, ak_crt0, False))


def ak_crt0_auto(block_addr: int) -> Gen:
    """Start-up for placement "auto": the same, with threads that may migrate (section 4.3)."""
    return (yield from _start(block_addr, ak_crt0_auto, True))


def _start(block_addr: int, me: Any, migratable: bool) -> Gen:
    yield Store(CRT0_WORD, (yield CodeAddr(me)))
    try:
        fd = yield from libc.open(ak.DEVICE, abi.O_RDWR | abi.O_CLOEXEC)
    except OSError:  # no application kernel: run on the bootstrap kernel alone
        main_addr, argv = yield from read_spawn_block(block_addr)
        status = yield Call(main_addr, argv)
        yield from libc.exit(0 if status is None else status)  # libc checks it is an integer
    main_addr = yield Load(block_addr)
    comm = yield from libc.mmap(PAGE)
    yield from libc.mlock(comm, PAGE)  # the application kernel writes it from kernel mode: keep it resident
    yield Store(MAIN_COMM_WORD, comm)
    entry = yield CodeAddr(ak_app_start)
    yield WriteMem(comm + PAIRS, struct.pack("<2I", (yield from _raw(abi.SYS_GETTID)), comm))
    tcb = yield from _pair(fd, comm, comm, entry, main_addr, block_addr, migratable)
    yield from bootstrap_loop(fd, comm, comm, tcb, migratable)


def _pair(fd: int, comm: int, main_comm: int, entry: int, arg0: int, arg1: int, migratable: bool) -> Gen:
    """Set up a communication area and an application stack; create the application thread."""
    yield Store((yield ReadTP()) + OWN_COMM, comm)
    yield Store(comm + ak.FD, fd)
    if migratable:  # the entry its calls take at home; the driver reads it when it creates the thread
        yield Store(comm + ak.MIG_ENTRY, (yield CodeAddr(home_syscall)))
    stack = yield from libc.mmap(abi.STACK_SIZE)
    yield Store(comm + ak.STACK, stack)
    tls = stack + abi.STACK_SIZE - abi.TLS_SIZE
    create = struct.pack("<6I", comm, entry, arg0, arg1, tls, main_comm + ak.HANDLERS)
    buf = (yield ReadTP()) + 64
    yield WriteMem(buf, create)
    tcb = yield from libc.syscall(abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_CREATE_THREAD, buf)
    yield Store(comm + ak.TCB, tcb)
    return tcb


def ak_app_start(main_addr: int, block_addr: int) -> Gen:
    """The application thread's entry, on an application processor: main(argv), then exit."""
    _, argv = yield from read_spawn_block(block_addr)
    status = yield Call(main_addr, argv)
    yield from libc.exit(0 if status is None else status)  # libc checks it is an integer


def ak_bootstrap_thread(comm: int, migratable: int) -> Gen:
    """A further bootstrap thread (section 4.3): one per application thread the program starts."""
    fd, entry, arg0, arg1, main_comm = struct.unpack("<5I", (yield ReadMem(comm + START_INFO, 20)))
    tcb = yield from _pair(fd, comm, main_comm, entry, arg0, arg1, bool(migratable))
    yield from bootstrap_loop(fd, comm, main_comm, tcb, bool(migratable))


def bt_signal_handler(sig: int) -> Gen:
    """Installed in the bootstrap kernel for every signal the program handles (asynchronous activation).

    It runs in whichever bootstrap thread the bootstrap kernel picked, and passes the signal
    to that thread's own application thread.
    """
    tp = yield ReadTP()
    comm = yield Load(tp + OWN_COMM)
    yield AtomicAdd(tp + SIGNALS_SEEN, 1)
    pending = yield Load(comm + ak.SIGNALS)
    yield Store(comm + ak.SIGNALS, pending | (1 << sig))
    fd = yield Load(comm + ak.FD)
    tcb = yield Load(comm + ak.TCB)
    yield Trap(abi.SYSCALL, abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_ACTIVATE_THREAD, tcb)


def bt_signal_handler_auto(sig: int) -> Gen:
    """`bt_signal_handler` for threads that may migrate: at home (section 4.3), this thread runs
    its application thread's code, so the program's handler runs here and now."""
    if not (yield ReadSysinfo()):
        return (yield from bt_signal_handler(sig))
    handler = yield Load((yield Load(MAIN_COMM_WORD)) + ak.HANDLERS + 4 * sig)
    if handler not in (abi.SIG_DFL, abi.SIG_IGN):
        yield Call(handler, sig)


# --- Figure 4 --------------------------------------------------------------------------------


def bootstrap_loop(fd: int, comm: int, main_comm: int, tcb: int, migratable: bool = False) -> Gen:
    while True:
        yield Compute(LOOP_STEP)
        yield AtomicAdd(comm + ak.PASSES, 1)
        if (yield Load(comm + ak.STATE)) != ak.POSTED:
            yield Trap(abi.SYSCALL, abi.SYS_YIELD)  # reschedule()
            continue
        yield AtomicAdd(comm + ak.BUSY_PASSES, 1)
        result = yield from handle_message(fd, comm, main_comm, migratable)
        if result is _MIGRATE:  # section 4.3: run the thread here until it goes back
            yield Store(comm + ak.STATE, ak.EMPTY)
            yield WriteMem(comm + ak.MIG_USER, struct.pack("<2I", 0, (yield Rdtsc()) & 0xFFFFFFFF) + bytes(4))
            yield Trap(abi.SYSCALL, abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_MIGRATE_HOME, tcb)
            continue
        yield Store(comm + ak.RESULT, result & 0xFFFFFFFF)
        yield Store(comm + ak.STATE, ak.EMPTY)
        if (yield Trap(abi.SYSCALL, abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_ACTIVATE_THREAD, tcb)) < 0:
            # the application thread is gone: the process closed its application kernel's device
            # (or broke its communication area); it cannot go on, so it dies like a killed one
            pid = yield Trap(abi.SYSCALL, abi.SYS_GETPID)
            yield Trap(abi.SYSCALL, abi.SYS_KILL, pid, abi.SIGKILL)


_MIGRATE = object()  # handle_message's answer to a KIND_MIGRATE message


def handle_message(fd: int, comm: int, main_comm: int, migratable: bool = False) -> Gen:
    kind, nr, *rest = struct.unpack("<10I", (yield ReadMem(comm + ak.KIND, 40)))
    args, addr, error = rest[: ak.MAX_ARGS], rest[ak.MAX_ARGS], rest[ak.MAX_ARGS + 1]
    if kind == ak.KIND_MIGRATE and migratable:
        return _MIGRATE
    if kind == ak.KIND_PAGE_FAULT:  # force the page fault by referencing the address
        if error & ak.FAULT_WRITE:
            yield AtomicAdd(addr, 0)
        else:
            yield Load(addr)
        return 0
    if kind == ak.KIND_EXCEPTION:  # cause the same exception
        if nr == 13:
            yield Halt()  # a privileged instruction in user mode: #GP
        yield Illegal()
        return 0
    if kind != ak.KIND_SYSCALL:
        return -abi.EINVAL
    return (yield from _translate(fd, comm, main_comm, nr, args, migratable))


def _translate(fd: int, comm: int, main_comm: int, nr: int, args: list[int], migratable: bool) -> Gen:
    """Issue system call `nr` (argument words `args`) for the thread pair of `comm`."""
    signed = [a - (1 << 32) if a & 0x80000000 else a for a in args]
    if nr == abi.SYS_SIGACTION:
        return (yield from _sigaction(main_comm, *signed[:2], migratable))
    if nr == abi.SYS_THREAD_EXIT:  # its stack stays until a join; a joiner may now go ahead
        yield Store(comm + ak.EXITED, 1)
    if nr == abi.SYS_THREAD_CREATE:
        return (yield from _thread_create(fd, main_comm, *signed[:3], migratable))
    if nr == abi.SYS_THREAD_JOIN:
        return (yield from _thread_join(fd, comm, main_comm, *args[:2]))
    return (yield from _raw(nr, *signed))


# --- section 4.3: a migrated thread's system calls at home -----------------------------------------

# never issued at home: they remove mappings behind the APs' backs, or end the application thread
GO_BACK_FOR = frozenset({abi.SYS_MUNMAP, abi.SYS_THREAD_JOIN, abi.SYS_THREAD_EXIT})


def home_syscall(comm: int, *regs: Any) -> Gen:
    """The system-call entry of a thread migrated to the bootstrap kernel (`Context.sysinfo`).

    Its calls take the bootstrap loop's translations, issued natively. Before a call it may
    go back to the APs (the driver then issues the call there instead): for the calls in
    GO_BACK_FOR always, else when over a window its user instructions per call exceed the
    policy's threshold (appkernel/migration.py); the window's words are in `comm`.
    """
    if not regs or not all(type(a) is int and -(1 << 31) <= a < (1 << 32) for a in regs):
        return (yield Trap(abi.SYSCALL, *regs))  # malformed: the bootstrap kernel answers it
    nr, *args = regs
    now = yield Rdtsc()
    user = (yield Load(comm + ak.MIG_USER)) + ((now - (yield Load(comm + ak.MIG_RESUMED))) & 0xFFFFFFFF)
    calls = (yield Load(comm + ak.MIG_CALLS)) + 1
    yield Compute(HOME_POLICY_STEP)
    away = nr in GO_BACK_FOR
    if calls >= ak.WINDOW_CALLS or user >= ak.WINDOW_USER:
        away = away or user > ak.AWAY_USER * calls
        user = calls = 0
    if away:
        fd = yield Load(comm + ak.FD)
        tcb = yield Load(comm + ak.TCB)
        yield Trap(abi.SYSCALL, abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_MIGRATE_AWAY, tcb)  # no return if it went
    yield Store(comm + ak.MIG_USER, user & 0xFFFFFFFF)
    yield Store(comm + ak.MIG_CALLS, calls)
    fd = yield Load(comm + ak.FD)
    main_comm = yield Load(MAIN_COMM_WORD)
    result = yield from _translate(fd, comm, main_comm, nr, [a & 0xFFFFFFFF for a in args], True)
    yield Store(comm + ak.MIG_RESUMED, (yield Rdtsc()) & 0xFFFFFFFF)
    return result


def _sigaction(main_comm: int, sig: int, handler: int, migratable: bool = False) -> Gen:
    """The bootstrap kernel gets our handler; the application's stays in the handler table."""
    mine = yield CodeAddr(bt_signal_handler_auto if migratable else bt_signal_handler)
    installed = handler if handler in (abi.SIG_DFL, abi.SIG_IGN) else mine
    prev = yield from _raw(abi.SYS_SIGACTION, sig, installed)
    if prev < 0:
        return prev
    slot = main_comm + ak.HANDLERS + 4 * sig
    app_prev = yield Load(slot)
    yield Store(slot, handler)
    return app_prev if prev == mine else prev


def _thread_create(fd: int, main_comm: int, entry: int, arg0: int, arg1: int, migratable: bool = False) -> Gen:
    """Start a new bootstrap thread; it creates the application thread the program asked for."""
    comm = yield from _raw(abi.SYS_MMAP, PAGE)
    if comm < 0:
        return comm
    if (locked := (yield from _raw(abi.SYS_MLOCK, comm, PAGE))) < 0:
        yield from _unmap_unused(fd, comm)
        return locked
    yield WriteMem(comm + START_INFO, struct.pack("<5I", fd, entry, arg0 & 0xFFFFFFFF, arg1 & 0xFFFFFFFF, main_comm))
    start = yield CodeAddr(ak_bootstrap_thread)
    tid = yield from _raw(abi.SYS_THREAD_CREATE, start, comm, int(migratable))
    if tid < 0:
        yield from _unmap_unused(fd, comm)
        return tid
    slot = yield from _pair_slot(main_comm, 0)
    if slot:
        yield WriteMem(slot, struct.pack("<2I", tid, comm))
    return tid


def _unmap_unused(fd: int, area: int) -> Gen:
    """Give back a further pair's page that no thread was started for (under the unmap protocol)."""
    if (yield from _stop_others(fd, (yield Load((yield ReadTP()) + OWN_COMM)))) == 0:
        yield from _raw(abi.SYS_MUNMAP, area, PAGE)  # else it stays mapped, unused


def _stop_others(fd: int, comm: int) -> Gen:
    """Stop this process's other application threads until ours is activated (section 4.3)."""
    return (yield from _raw(abi.SYS_DRIVER_CONTROL, fd, ak.APKERN_STOP_THREADS, (yield Load(comm + ak.TCB))))


def _pair_slot(main_comm: int, tid: int) -> Gen:
    """The address of the pair table's entry for bootstrap thread `tid` (0: a free one), or 0."""
    table = yield ReadMem(main_comm + PAIRS, 8 * MAX_PAIRS)
    for i, (t, _) in enumerate(struct.iter_unpack("<2I", table)):
        if t == tid:
            return main_comm + PAIRS + 8 * i
    return 0


def _thread_join(fd: int, comm: int, main_comm: int, tid: int, retval_ptr: int) -> Gen:
    """Join under section 4.3's unmap protocol (see the module's docstring).

    The kernel's join frees the joined bootstrap thread's stack, so every join re-issued with
    a thread named runs with the other application threads stopped; first, while they still
    run, wait until the joined pair's application thread has exited (else stopping them could
    hold that very thread). A pair missing from the table (a bad id, or a table the program
    overwrote) is joined stopped all the same: a broken program may hang itself, nobody else.
    """
    slot = (yield from _pair_slot(main_comm, tid)) if tid else 0
    pair = (yield Load(slot + 4)) if slot else 0
    if pair == comm:  # joining itself: the kernel refuses at once
        return (yield from _raw(abi.SYS_THREAD_JOIN, tid, retval_ptr))
    if pair:
        seen = yield Load((yield ReadTP()) + SIGNALS_SEEN)
        while not (yield Load(pair + ak.EXITED)):  # wait like Figure 4's loop, interruptibly
            yield Trap(abi.SYSCALL, abi.SYS_YIELD)
            if (yield Load((yield ReadTP()) + SIGNALS_SEEN)) != seen:
                return -abi.EINTR  # as the uniprocessor kernel's join, cut short by a handled signal
    stopped = yield from _stop_others(fd, comm)
    if stopped < 0:
        return stopped
    result = yield from _raw(abi.SYS_THREAD_JOIN, tid, retval_ptr)
    if result == 0 and pair:
        yield from _raw(abi.SYS_MUNMAP, (yield Load(pair + ak.STACK)), abi.STACK_SIZE)
        if pair != main_comm:  # the main area holds the table and the handlers: it stays
            yield from _raw(abi.SYS_MUNMAP, pair, PAGE)
        yield WriteMem(slot, bytes(8))
    return result
