"""Processes and threads.

A process owns an address space, a file table and signal dispositions; its
threads share them. A thread is a machine context (its kernel and user stacks)
plus scheduling state. Thread ids and process ids are handed out in order, so
runs are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..hw import Context
from . import abi

if TYPE_CHECKING:
    from .file import FileTable
    from .vm import AddressSpace

# thread states
RUNNABLE = "runnable"
RUNNING = "running"
SLEEPING = "sleeping"
ZOMBIE = "zombie"  # exited, waiting for thread_join
DEAD = "dead"

# process states
ALIVE = "alive"
EXITED = "exited"  # a zombie until its parent waits for it
REAPED = "reaped"


@dataclass(eq=False)
class Thread:
    tid: int
    proc: Process
    ctx: Context
    stack_top: int
    state: str = RUNNABLE
    chan: Any = None  # what it sleeps on
    interruptible: bool = False
    interrupted: bool = False
    wake_time: int | None = None
    retval: int = 0
    ticks: int = 0  # timer ticks used in the current time slice

    def __repr__(self) -> str:
        return f"<Thread {self.tid} of pid {self.proc.pid} {self.state}>"


@dataclass(eq=False)
class Process:
    pid: int
    name: str
    parent: Process | None
    aspace: AddressSpace
    files: FileTable
    threads: list[Thread] = field(default_factory=list)
    children: list[Process] = field(default_factory=list)
    handlers: dict[int, int] = field(default_factory=dict)  # signal -> code address | SIG_DFL | SIG_IGN
    pending: list[int] = field(default_factory=list)
    killed: bool = False
    state: str = ALIVE
    exit_status: int | None = None
    created_at: int = 0
    exited_at: int | None = None
    death: str = ""  # why the kernel ended it on its own (out of memory), for its parent's shell to say

    @property
    def live_threads(self) -> list[Thread]:
        return [t for t in self.threads if t.state not in (ZOMBIE, DEAD)]

    def disposition(self, sig: int) -> int:
        return self.handlers.get(sig, abi.SIG_DFL)

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.name} {self.state}>"
