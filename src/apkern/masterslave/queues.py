"""The two queues between master and slaves, and the thread table that links them, in kernel memory.

- the *master queue*: threads a slave handed over because they need kernel code
  (a system call, an exception, a signal to act on). Slaves add, the master takes;
- the *user queue*: threads ready to go back to user mode, which any CPU may take
  (slaves first: the master takes one only in its spare time).
The bootstrap kernel's own run queue stays what it was, the master's alone: the
threads its kernel code makes runnable (woken sleepers, new threads) are in it.

Each queue is an intrusive singly-linked list with head, tail and length words;
a thread links to the next through its word in the port's thread table (a slot
per thread, handed out lowest first, a page of slots at a time). A link holds the
next thread's slot + 1 (0: none). The Python deque mirrors the memory, which is
what a debugger sees. A thread is on at most one queue. Queue lock held to change
either (the machine's lock checker watches the words).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from ..bootkernel.proc import Thread
from ..bootkernel.vm import KERNBASE
from ..hw import PAGE_SIZE, Compute, GuardedBy, Load, MachineError, Op, Store

if TYPE_CHECKING:
    from .kernel import MasterSlaveKernel

Gen = Generator[Op, Any, Any]
SLOTS_PER_PAGE = PAGE_SIZE // 4


class ThreadTable:
    """A link word per live thread, in pages of kernel memory added as threads come."""

    def __init__(self, kernel: MasterSlaveKernel) -> None:
        self.k = kernel
        self.pages: list[int] = []  # kernel virtual address of each page of slots
        self._free: list[int] = []
        self.slot: dict[Thread, int] = {}
        self.thread: dict[int, Thread] = {}

    def _grow(self) -> None:
        pa = self.k.heap.kmalloc(PAGE_SIZE)
        base = len(self.pages) * SLOTS_PER_PAGE
        self.pages.append(KERNBASE + pa)
        for s in range(base, base + SLOTS_PER_PAGE):
            heapq.heappush(self._free, s)
        locks = self.k.machine.locks
        if locks is not None and self.k.booted:  # a page added at run time: its annotation (no instruction)
            lock = self.k.qlock
            locks.guard(self.k.machine.bsp, KERNBASE + pa, PAGE_SIZE, lock.kva, "the thread table", lock.name)

    def annotate(self) -> Gen:
        """At boot: the slots are guarded by the queue lock."""
        lock = self.k.qlock
        for kva in self.pages:
            yield GuardedBy(kva, PAGE_SIZE, lock.kva, "the thread table", lock.name)

    def add(self, t: Thread) -> None:
        if not self._free:
            self._grow()
        s = heapq.heappop(self._free)
        self.slot[t] = s
        self.thread[s] = t
        self.k.machine.memory.write_u32(self.link_kva(s) - KERNBASE, 0)  # a fresh slot: no link

    def remove(self, t: Thread) -> None:
        """`t` is gone for good (joined, or its process is dead): its slot is free again."""
        s = self.slot.pop(t, None)
        if s is None:
            return
        if self.k.queue_of(t) is not None:
            raise MachineError(f"{t!r} leaves the thread table while on {self.k.queue_of(t).name}")
        del self.thread[s]
        heapq.heappush(self._free, s)

    def link_kva(self, s: int) -> int:
        return self.pages[s // SLOTS_PER_PAGE] + 4 * (s % SLOTS_PER_PAGE)

    def __len__(self) -> int:
        return len(self.slot)


class ThreadQueue:
    """A FIFO of threads: head, tail and length at kernel address `kva`, linked through the thread table."""

    def __init__(self, table: ThreadTable, kva: int, name: str) -> None:
        self.table = table
        self.head_kva = kva
        self.tail_kva = kva + 4
        self.count_kva = kva + 8
        self.name = name
        self.q: deque[Thread] = deque()
        self.pushes = 0

    def __len__(self) -> int:
        return len(self.q)

    def __iter__(self) -> Iterator[Thread]:
        return iter(self.q)

    def __contains__(self, t: Thread) -> bool:
        return t in self.q

    def annotate(self, lock_kva: int, lock: str) -> Gen:
        yield GuardedBy(self.head_kva, 12, lock_kva, self.name, lock)

    def push(self, t: Thread) -> Gen:
        """Append `t` at the tail."""
        tab = self.table
        me = tab.slot[t] + 1
        yield Compute(self.table.k.port_costs.QUEUE_OP)
        yield Store(tab.link_kva(me - 1), 0)
        if self.q:
            yield Store(tab.link_kva(tab.slot[self.q[-1]]), me)
        else:
            yield Store(self.head_kva, me)
        yield Store(self.tail_kva, me)
        self.q.append(t)
        self.pushes += 1
        yield Store(self.count_kva, len(self.q))

    def pop(self) -> Gen:
        """Take the head (read from memory: the list is what the words say); None when empty."""
        if not self.q:
            return None
        tab = self.table
        yield Compute(self.table.k.port_costs.QUEUE_OP)
        first = yield Load(self.head_kva)
        t = tab.thread.get(first - 1)
        if t is not self.q[0]:
            raise MachineError(f"{self.name}: head word {first} is not {self.q[0]!r}")
        nxt = yield Load(tab.link_kva(first - 1))
        self.q.popleft()
        yield Store(self.head_kva, nxt)
        if not nxt:
            yield Store(self.tail_kva, 0)
        yield Store(self.count_kva, len(self.q))
        return t

    def unlink(self, t: Thread) -> Gen:
        """Take `t` out from wherever it is in the queue (a walk from the head)."""
        tab = self.table
        i = self.q.index(t)
        prev = None
        for j in range(i + 1):
            yield Compute(self.table.k.port_costs.QUEUE_VISIT)
            yield Load(self.head_kva if j == 0 else tab.link_kva(tab.slot[self.q[j - 1]]))
            prev = self.q[j - 1] if j else None
        nxt = yield Load(tab.link_kva(tab.slot[t]))
        yield Store(self.head_kva if prev is None else tab.link_kva(tab.slot[prev]), nxt)
        if t is self.q[-1]:
            yield Store(self.tail_kva, 0 if prev is None else tab.slot[prev] + 1)
        del self.q[i]
        yield Store(self.count_kva, len(self.q))

    def words(self) -> list[Thread]:
        """The list as memory has it, walked from the head word (what a debugger sees)."""
        mem = self.table.k.machine.memory
        out = []
        s = mem.read_u32(self.head_kva - KERNBASE)
        while s:
            out.append(self.table.thread[s - 1])
            s = mem.read_u32(self.table.link_kva(s - 1) - KERNBASE)
        return out
