"""Thread control blocks of application threads, stored in kernel memory from the bootstrap kernel.

A TCB's slot (TCB_SIZE bytes of the table `apkern_init` kmallocs) holds its
identity (id, process, owner, page table, communication area: what a debugger of
the machine sees) and ON_CPU, the word the driver spins on: nonzero from the
moment a CPU picks the TCB until that CPU runs another context. The Python object
holds the rest: the saved context and the scheduling state, changed only under
the lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hw import Context, PhysicalMemory

TCB_SIZE = 32
SLOT_ID = 0
SLOT_PID = 4
SLOT_OWNER = 8
SLOT_CR3 = 12
SLOT_COMM = 16
SLOT_ON_CPU = 20  # 1 + the CPU running this context, or 0

# states
READY = "ready"
RUNNING = "running"
BLOCKED = "blocked"  # waiting for its bootstrap thread (a forwarded call or exception)
HELD = "held"  # stopped while another thread of its process has a page fault in flight
DEAD = "dead"


@dataclass(eq=False)
class TCB:
    id: int
    pid: int
    owner: int  # the bootstrap thread (tid) that created it and may activate it
    cr3: int  # requirement 3: the creator's page table
    comm: int  # its communication area (user address)
    handlers: int  # the process's table of application signal handlers (user address)
    ctx: Context
    slot_kva: int
    file: object  # the driver file it was created through
    state: str = READY
    cpu: int | None = None
    waiting: bool = False  # a message is outstanding; activation makes it runnable again
    pending_signals: int = 0
    fault: bool = False  # its page-table change (a page fault, an unmap) is in flight: siblings are held
    pt_changed: bool = False  # a page fault or unmap of its process changed the tables: reload CR3
    stop_requested: bool = False
    stop_waiters: list[TCB] = field(default_factory=list)  # faulting threads waiting for this one to stop
    stops_pending: int = 0  # threads this (faulting) one waits for
    ticks: int = 0

    @property
    def on_cpu_kva(self) -> int:
        return self.slot_kva + SLOT_ON_CPU

    def __repr__(self) -> str:
        return f"<TCB {self.id} pid {self.pid} {self.state} cpu={self.cpu}>"


class TCBTable:
    """Fixed slots in kernel memory; ids are slot numbers + 1 (0 means none)."""

    def __init__(self, mem: PhysicalMemory, base_pa: int, kernbase: int, slots: int) -> None:
        self.mem = mem
        self.base_pa = base_pa
        self.kernbase = kernbase
        self.slots = slots
        self.live: dict[int, TCB] = {}
        self.created = 0
        self.freed = 0

    def free_id(self) -> int | None:
        for i in range(1, self.slots + 1):
            if i not in self.live:
                return i
        return None

    def slot_pa(self, tid: int) -> int:
        return self.base_pa + (tid - 1) * TCB_SIZE

    def slot_kva(self, tid: int) -> int:
        return self.kernbase + self.slot_pa(tid)

    def add(self, tcb: TCB) -> None:
        pa = self.slot_pa(tcb.id)
        for off, v in (
            (SLOT_ID, tcb.id),
            (SLOT_PID, tcb.pid),
            (SLOT_OWNER, tcb.owner),
            (SLOT_CR3, tcb.cr3),
            (SLOT_COMM, tcb.comm),
            (SLOT_ON_CPU, 0),
        ):
            self.mem.write_u32(pa + off, v)
        self.live[tcb.id] = tcb
        self.created += 1

    def remove(self, tcb: TCB) -> None:
        del self.live[tcb.id]
        self.mem.write(self.slot_pa(tcb.id), bytes(TCB_SIZE))
        self.freed += 1
