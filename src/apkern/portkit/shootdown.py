"""TLB shoot-down for both ports: removing a mapping other CPUs may have cached (munmap, a joined thread's stack,
eviction).

A TLB is not kept coherent with the page tables. The uniprocessor kernel invalidates
its own CPU's entry; a port must also reach every other CPU that may hold one: those
whose loaded CR3 is that address space (a CPU that loads another CR3 flushes its TLB).
The sender holds the port's lock from `begin` to `end` (`enter`, `leave`: each port says
how), so no CR3 changes meanwhile and only one request is ever in flight:

- `begin(cr3, vaddr)`: publish the request, send IPI_TLB_SHOOTDOWN to each such CPU and
  wait until every one has acknowledged. From then on they are parked in the IPI
  handler, so none touches the pages while their entries are cleared and their frames
  freed (no write is lost, no stale translation is used);
- the caller removes the mappings (and invalidates its own TLB);
- `end()`: mark the request done; each parked CPU invalidates the page (`invlpg`), or
  its whole TLB for a range (`vaddr` ALL), and goes on.

The IPI handler takes no lock (the sender holds it and waits). A CPU spinning for the
lock has interrupts enabled (`owner_lock`), so it parks too.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..hw import CPU, AtomicAdd, Compute, FlushTLB, GuardedBy, InvalidatePage, Load, Op, SendIPI, SpinWhile, Store
from ..hw import traps as vec
from .owner_lock import OwnerLock

Gen = Generator[Op, Any, Any]

ALL = 0xFFFFFFFF  # `vaddr` of a request for a range: the targets flush their whole TLB
# the request, in the port's kernel page (offsets from `base`): written only with the port's lock held
REQ_CR3 = 0
REQ_VADDR = 4
REQ_SEQ = 8  # the sequence number of the latest request
REQ_DONE = 12  # the sequence number of the latest request finished: in flight while SEQ != DONE
REQ_SIZE = 16
PENDING = 16  # acknowledgements still awaited: each target decrements it (lock xadd), no lock


class PortShootdown:
    """The request at kernel address `base`, guarded by `lock`; `kernel` has `sched.cpus_with_cr3`,
    `machine` and `port_costs`."""

    def __init__(self, kernel: Any, base: int, lock: OwnerLock) -> None:
        self.k = kernel
        self.base = base
        self.lock = lock
        self.seq = 0
        self.requests = 0  # shoot-downs that had a target
        self.ipis = 0  # IPIs sent (one per target)
        self.parked = 0  # instructions the targets spent parked
        self._sent = False  # this request had targets: they wait for its end

    def enter(self) -> Gen:
        """At `begin`: see to the lock; returns the sending CPU."""
        raise NotImplementedError
        yield

    def leave(self) -> Gen:
        """At `end`, the request done."""
        return
        yield

    def in_flight(self) -> bool:
        """The stats' `tlb_shootdown_in_flight`: by default while a request with targets is not done."""
        return self._sent

    def annotate(self) -> Gen:
        """At boot: the request words are guarded by the port's lock (the acknowledgement counter is not)."""
        yield GuardedBy(self.base + REQ_CR3, REQ_SIZE, self.lock.kva, "the shoot-down request", self.lock.name)

    def begin(self, cr3: int, vaddr: int = ALL) -> Gen:
        """Park every other CPU that has `cr3` loaded; returns when all are parked."""
        k = self.k
        me = yield from self.enter()
        yield Compute(k.port_costs.SHOOTDOWN_SETUP + k.port_costs.CPU_SCAN * len(k.machine.cpus))
        targets = [c for c in k.sched.cpus_with_cr3(cr3) if c != me]
        if not targets:
            return
        self.seq += 1
        self.requests += 1
        self._sent = True
        yield Store(self.base + REQ_CR3, cr3)
        yield Store(self.base + REQ_VADDR, vaddr)
        yield Store(self.base + PENDING, len(targets))
        yield Store(self.base + REQ_SEQ, self.seq)
        for c in targets:
            yield SendIPI(c, "fixed", vec.IPI_TLB_SHOOTDOWN)
        self.ipis += len(targets)
        pending = yield Load(self.base + PENDING)
        while pending:
            pending = yield SpinWhile(self.base + PENDING, pending, acct="shootdown")

    def end(self) -> Gen:
        """The mappings are gone and the sender's entries invalidated: release the parked CPUs."""
        if self._sent:
            self._sent = False
            yield Store(self.base + REQ_DONE, self.seq)
        yield from self.leave()

    def ipi(self, cpu: CPU, info: Any) -> Gen:
        """IPI_TLB_SHOOTDOWN (no lock): acknowledge, stay parked until the request is done, drop the translations."""
        start = self.k.machine.now
        yield Compute(self.k.port_costs.SHOOTDOWN_IPI)
        seq = yield Load(self.base + REQ_SEQ)
        done = yield Load(self.base + REQ_DONE)
        if seq == done:
            return
        vaddr = yield Load(self.base + REQ_VADDR)
        yield AtomicAdd(self.base + PENDING, -1)
        while done != seq:
            done = yield SpinWhile(self.base + REQ_DONE, done, acct="shootdown")
        yield FlushTLB() if vaddr == ALL else InvalidatePage(vaddr)
        self.parked += self.k.machine.now - start

    def stats(self) -> dict[str, int]:
        return {
            "tlb_shootdowns": self.requests,
            "tlb_shootdown_ipis": self.ipis,
            "tlb_shootdown_target_instructions": self.parked,
            "tlb_shootdown_in_flight": int(self.in_flight()),
        }
