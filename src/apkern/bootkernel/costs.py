"""Instruction costs of the bootstrap kernel's paths: the `Costs` a kernel is built with.

Each value is the instruction count of a path that the simulation does not spell
out op by op. Only the system-call path is calibrated: the paper's uniprocessor
kernel takes "about 100 instructions" for `gettid` (section 5.1), and
SYSCALL_ENTRY + SYSCALL_DISPATCH + SYS_GETTID + SYSCALL_EXIT plus the one
`int 0x80` instruction make exactly 100 (`CALIBRATION`). Every other default is an
estimate from the instruction counts of the matching xv6 (x86) paths, stated
beside it; none is tuned to any result. Memory copies are not here: they cost
what their `ReadMem`/`WriteMem` ops cost (one instruction per word, like `rep movsd`).

A kernel takes its `Costs` when it is built (`BootKernel(..., costs=...)`), so two
systems in one process may run different profiles (`apkern.profiles`). The clock and
the limits at the end are kernel parameters, not path costs: no profile sets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def cost(value: int, origin: str, follows: str | None = None) -> Any:
    """A path cost's default `value` and where it comes from; `follows` names the bootstrap
    kernel's cost this one equals unless a profile sets it (a port's copy of the same path)."""
    meta = {"origin": origin} if follows is None else {"origin": origin, "follows": follows}
    return field(default=value, metadata=meta)


@dataclass(frozen=True)
class Costs:
    """The bootstrap kernel's path costs, in instructions (the defaults: the "xv6" profile)."""

    # --- system call path (calibrated: 1 + 34 + 15 + 10 + 40 = 100, section 5.1) -------
    SYSCALL_ENTRY: int = cost(34, "vector through the IDT, pushal, segment loads, build the trap frame")
    SYSCALL_DISPATCH: int = cost(15, "bounds-check the number, fetch arguments, call through the table")
    SYS_GETTID: int = cost(10, "read the current thread's id into the return register")
    SYSCALL_EXIT: int = cost(40, "pending-signal check, popal, iret")
    # --- simple calls: a few loads and stores each (xv6 sys_getpid/sys_kill bodies) -------------
    SYS_TRIVIAL: int = cost(10, "getpid, yield's bookkeeping")
    SYS_KILL: int = cost(40, "find the process, set the pending bit, maybe wake it")
    SYS_SIGACTION: int = cost(25, "range checks and one table store")
    # --- scheduling (xv6 sched/swtch/scheduler: ~25 + ~40 instructions) -----------------------
    CONTEXT_SWITCH: int = cost(70, "save callee-saved registers, pick the next thread, restore")
    SLEEP: int = cost(20, "mark sleeping, link on the channel list")
    SIGNAL_CHECK: int = cost(4, "an interruptible sleep's look for a waiting signal: load pending and killed, test")
    WAKEUP: int = cost(15, "per thread woken")
    TIMER_TICK: int = cost(40, "acknowledge the APIC, bump ticks, scan the sleep list head")
    # --- memory -----------------------------------------------------------------------------
    PAGE_FAULT: int = cost(120, "read CR2, find the region, allocate a frame, install the PTE (xv6 + region lookup)")
    ZERO_PAGE: int = cost(1024, "zero-fill a 4 KiB frame: 1024 stosd")
    COPY_PAGE: int = cost(1024, "copy a 4 KiB frame (swap in/out): 1024 movsd")
    MAP_REGION: int = cost(60, "create a region descriptor")
    UNMAP_PAGE: int = cost(30, "clear one PTE, free its frame, invlpg")
    CLOCK_STEP: int = cost(12, "the swapper's clock: read a PTE, test and clear its accessed bit, advance the hand")
    MLOCK_PAGE: int = cost(20, "look a page up, set its locked flag (after faulting it in if it is not resident)")
    # --- processes and threads -------------------------------------------------------------------
    SPAWN: int = cost(900, "allocate process, page directory, regions, file table, first thread (xv6 fork/exec setup)")
    THREAD_CREATE: int = cost(300, "allocate thread, stack region, context")
    EXIT: int = cost(400, "tear down threads, close files, free the address space, wake the parent")
    WAIT: int = cost(40, "scan the children")
    SIGNAL_DELIVER: int = cost(60, "build the signal frame, switch to the handler")
    # --- files ---------------------------------------------------------------------------------
    FD_LOOKUP: int = cost(15, "bounds check and table load")
    OPEN: int = cost(150, "path lookup in the in-memory file system, allocate a file")
    CLOSE: int = cost(40, "drop the reference, maybe free the file")
    FILE_RW: int = cost(40, "dispatch on the file type, offset bookkeeping")
    PIPE_CREATE: int = cost(120, "allocate the pipe buffer and two files")
    MKDIR: int = cost(60, "path lookup, make the directory entry")
    STAT: int = cost(40, "path lookup, fill the stat block")
    UNLINK: int = cost(50, "path lookup, remove the directory entry (open files keep the inode)")
    GETDENTS: int = cost(30, "check the descriptor, start the copy-out")
    DIRENT: int = cost(12, "per directory entry copied out")
    LSEEK: int = cost(20, "check the whence, compute and store the new offset")
    DUP: int = cost(25, "find the lowest free slot, take a reference")
    FUTEX: int = cost(45, "hash the address to its wait queue, check the word, queue or wake (Linux futex_wait/wake)")
    DRIVER_CONTROL: int = cost(40, "look up the driver, check permissions, call its control entry")


# The uniprocessor calibration the default profile keeps (section 5.1): gettid, int 0x80 to iret.
CALIBRATION = {"gettid": 100}

# --- the clock and the limits: kernel parameters, the same under every profile ---------------------
TICK = 10_000  # timer period in instructions (100 microseconds at the nominal 100 MIPS)
QUANTUM_TICKS = 10  # round-robin time slice: 1 ms at 100 MIPS
MLOCK_LIMIT = 256  # pages a process may lock (1 MiB; Linux's default RLIMIT_MEMLOCK is 64 KiB, or 8 MiB lately)
RECLAIM_BATCH = 8  # pages a fault short of frames evicts before it retries (Linux's SWAP_CLUSTER_MAX is 32)
