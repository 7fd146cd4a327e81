"""Thread control blocks of application threads, stored in kernel memory from the bootstrap kernel.

A TCB's slot (TCB_SIZE bytes of the table `apkern_init` kmallocs) is the truth a
debugger of the machine sees: its identity (id, process, owner, page table,
communication area), ON_CPU (the word the driver spins on: nonzero from the moment
a CPU picks the TCB until that CPU runs another context), its scheduling state and
flags, and its links on the ready queue and on its process's list of threads. The
Python object mirrors those words (read-only attributes here; `AppKernel`'s setters
write slot and mirror together, lock held) and holds what has no C layout: the
saved context.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import Context, Op, WriteMem
from .slots import Grow, SlotTable

if TYPE_CHECKING:
    from .process import AKProcess
    from .tcb_list import TCBList

TCB_SIZE = 64
SLOT_ID = 0  # also the free-list link while the slot is free
SLOT_PID = 4
SLOT_OWNER = 8
SLOT_CR3 = 12
SLOT_COMM = 16
SLOT_ON_CPU = 20  # 1 + the CPU running this context, or 0
SLOT_STATE = 24  # STATE_CODES[state]
SLOT_FLAGS = 28  # WAITING | FAULT | STOP_REQUESTED
SLOT_LINKS = 32  # per list kind k: next at +8k, previous at +8k+4 (TCB ids, 0 for none)
READY_LINKS = 0
SIBLING_LINKS = 1
SLEEP_LINKS = 2  # the sleep list of calls served on the application kernel (section 4.3)
LINK_KINDS = 3
SLOT_WAKE = SLOT_LINKS + 8 * LINK_KINDS  # a sleeper's wake-up time (low word)
SLOT_HOME = SLOT_WAKE + 4  # the AP it last ran on, 0 before it has run (the balance extension's queues)

# states
READY = "ready"
RUNNING = "running"
BLOCKED = "blocked"  # waiting for its bootstrap thread (a forwarded call or exception)
HELD = "held"  # stopped while another thread of its process has a page fault in flight
DEAD = "dead"
SLEEPING = "sleeping"  # in a sleep served on the application kernel (the local_calls extension)
HOME = "home"  # migrated: its bootstrap thread runs its user context (the migration extension)
STATE_CODES = {READY: 1, RUNNING: 2, BLOCKED: 3, HELD: 4, DEAD: 5, SLEEPING: 6, HOME: 7}

# flags
WAITING = 1  # a message is outstanding; activation makes it runnable again
FAULT = 2  # its page-table change (a page fault, an unmap) is in flight: siblings are held
STOP_REQUESTED = 4  # a sibling's page-table change waits for it to leave its CPU


class TCB:
    """An application thread; the scheduling attributes are read-only mirrors of its slot."""

    def __init__(
        self,
        id: int,
        proc: AKProcess,
        owner: int,
        cr3: int,
        comm: int,
        handlers: int,
        ctx: Context,
        slot_kva: int,
        file: object,
    ) -> None:
        self.id = id
        self.proc = proc
        self.pid = proc.pid
        self.owner = owner  # the bootstrap thread (tid) that created it and may activate it
        self.cr3 = cr3  # requirement 3: the creator's page table
        self.comm = comm  # its communication area (user address)
        self.handlers = handlers  # the process's table of application signal handlers (user address)
        self.ctx = ctx
        self.slot_kva = slot_kva
        self.file = file  # the driver file it was created through
        self._state = READY
        self._cpu: int | None = None
        self._flags = 0
        self.lists: list[TCBList | None] = [None] * LINK_KINDS
        self.next: list[TCB | None] = [None] * LINK_KINDS
        self.prev: list[TCB | None] = [None] * LINK_KINDS
        # Python only, lock held (a C kernel would keep them in the slot too):
        self.stop_waiters: list[TCB] = []  # faulting threads waiting for this one to stop
        self.stops_pending = 0  # threads this (faulting) one waits for
        # a hint for this thread's own CPU: set under the lock, cleared by the CPU that reloads CR3
        self.pt_changed = False
        # signals the driver passes on (lock held); the thread's CPU takes them all at once (xchg in C)
        self.pending_signals = 0
        self.ticks = 0  # its CPU's only
        self.wake = 0  # a local sleep's wake-up time, and its result (lock held)
        self.home = 0  # SLOT_HOME's mirror (lock held)
        self.sleep_result = 0
        # the migration extension: whether its crt0 lets it migrate, and its user context while it
        # moves to the bootstrap kernel (frames, thread pointer; lock held) and while there (`saved`)
        self.migratable = False
        self.home_frames: list[Any] | None = None
        self.home_saved: Any = None

    @property
    def state(self) -> str:
        return self._state

    @property
    def cpu(self) -> int | None:
        """The CPU on this context (ON_CPU - 1), or None."""
        return self._cpu

    @property
    def waiting(self) -> bool:
        return bool(self._flags & WAITING)

    @property
    def fault(self) -> bool:
        return bool(self._flags & FAULT)

    @property
    def stop_requested(self) -> bool:
        return bool(self._flags & STOP_REQUESTED)

    @property
    def on_cpu_kva(self) -> int:
        return self.slot_kva + SLOT_ON_CPU

    def link_kva(self, kind: int) -> int:
        return self.slot_kva + SLOT_LINKS + 8 * kind

    def __repr__(self) -> str:
        return f"<TCB {self.id} pid {self.pid} {self.state} cpu={self.cpu}>"


class TCBTable(SlotTable):
    """The TCB slots in kernel memory; ids are slot numbers (0 means none). `live`: id -> TCB in use."""

    def __init__(self, base: int, slots: int, head_kva: int, grow: Grow | None = None) -> None:
        super().__init__(base, TCB_SIZE, slots, head_kva, grow)
        self.live: dict[int, TCB] = {}
        self.created = 0
        self.freed = 0

    def add(self, tcb: TCB) -> Generator[Op, Any, None]:
        """Lock held: fill `tcb`'s slot (a freshly allocated one) and make it live."""
        words = (tcb.id, tcb.pid, tcb.owner, tcb.cr3, tcb.comm, 0, STATE_CODES[tcb.state], tcb._flags)
        yield WriteMem(tcb.slot_kva, struct.pack(f"<{len(words)}I", *words).ljust(TCB_SIZE, b"\0"))
        self.live[tcb.id] = tcb
        self.created += 1

    def remove(self, tcb: TCB) -> Generator[Op, Any, None]:
        """Lock held: clear the slot and put it back on the free list."""
        del self.live[tcb.id]
        tcb._cpu = None
        self.freed += 1
        yield WriteMem(tcb.slot_kva, bytes(TCB_SIZE))  # ON_CPU too: a driver waiting for it goes on
        yield from self.release(tcb.id)
