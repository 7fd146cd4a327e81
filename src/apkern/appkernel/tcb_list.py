"""An intrusive doubly-linked list of TCBs in kernel memory (Linux's list_head, with a length).

The list's head, tail and length are three words of kernel memory; each member
links to its neighbours through two words of its own slot (their TCB ids, 0 for
none). The Python references mirror those words; memory is what a debugger sees.
A TCB is on at most one list of each kind: the ready queue, its process's threads.
Lock held to change a list. Adding or removing costs LIST_OP plus its stores.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from ..hw import Compute, Op, Store

if TYPE_CHECKING:
    from .costs import Costs
    from .tcb import TCB

LIST_WORDS = 3  # head, tail, length


class TCBList:
    """A list at kernel address `kva` (head, tail, length), linked through the TCB slot words of link `kind`."""

    def __init__(self, kva: int, kind: int, costs: Costs) -> None:
        self.costs = costs
        self.head_kva = kva
        self.tail_kva = kva + 4
        self.count_kva = kva + 8
        self.kind = kind
        self.head: TCB | None = None
        self.tail: TCB | None = None
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def __contains__(self, tcb: TCB) -> bool:
        return tcb.lists[self.kind] is self

    def __iter__(self) -> Iterator[TCB]:
        """The members, first to last (a walk: the caller charges its iterations)."""
        t, k = self.head, self.kind
        while t is not None:
            nxt = t.next[k]
            yield t
            t = nxt

    def push(self, tcb: TCB) -> Generator[Op, Any, None]:
        """Append `tcb` at the tail."""
        k = self.kind
        assert tcb.lists[k] is None, f"{tcb!r} is already on a list"
        yield Compute(self.costs.LIST_OP)
        tail = self.tail
        self.tail = tcb
        yield Store(self.tail_kva, tcb.id)
        if tail is None:
            self.head = tcb
            yield Store(self.head_kva, tcb.id)
        else:
            tail.next[k] = tcb
            yield Store(tail.link_kva(k), tcb.id)
        tcb.lists[k], tcb.next[k], tcb.prev[k] = self, None, tail
        yield Store(tcb.link_kva(k), 0)
        yield Store(tcb.link_kva(k) + 4, 0 if tail is None else tail.id)
        self.n += 1
        yield Store(self.count_kva, self.n)

    def remove(self, tcb: TCB) -> Generator[Op, Any, None]:
        """Unlink `tcb` (a member)."""
        k = self.kind
        assert tcb.lists[k] is self, f"{tcb!r} is not on this list"
        yield Compute(self.costs.LIST_OP)
        prev, nxt = tcb.prev[k], tcb.next[k]
        if prev is None:
            self.head = nxt
            yield Store(self.head_kva, 0 if nxt is None else nxt.id)
        else:
            prev.next[k] = nxt
            yield Store(prev.link_kva(k), 0 if nxt is None else nxt.id)
        if nxt is None:
            self.tail = prev
            yield Store(self.tail_kva, 0 if prev is None else prev.id)
        else:
            nxt.prev[k] = prev
            yield Store(nxt.link_kva(k) + 4, 0 if prev is None else prev.id)
        tcb.lists[k], tcb.next[k], tcb.prev[k] = None, None, None
        self.n -= 1
        yield Store(self.count_kva, self.n)

    def pop(self) -> Generator[Op, Any, TCB | None]:
        """Unlink and return the first member, or None."""
        tcb = self.head
        if tcb is None:
            yield Compute(self.costs.LIST_OP)  # looked, found it empty
            return None
        yield from self.remove(tcb)
        return tcb
