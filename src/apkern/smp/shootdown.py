"""TLB shoot-down: removing a mapping that other CPUs may have cached (munmap, a joined thread's stack, eviction).

A TLB is not kept coherent with the page tables. The uniprocessor kernel
invalidates its own CPU's entry; the port must also reach every other CPU that
may hold one: the CPUs whose loaded CR3 is that address space (a CPU that loads
another CR3 flushes its TLB). The CPU that unmaps holds the kernel lock, so no
CR3 changes meanwhile and only one request is ever in flight:

- `begin(cr3, vaddr)`: publish the request, send IPI_TLB_SHOOTDOWN to each such
  CPU and wait until every one has acknowledged. From then on they are parked in
  the IPI handler, so none touches the pages while their entries are cleared and
  their frames freed (no write is lost, no stale translation is used);
- the caller removes the mappings (and invalidates its own TLB);
- `end()`: mark the request done; each parked CPU invalidates the page
  (`invlpg`), or its whole TLB for a range (`vaddr` ALL), and goes on.

The IPI handler takes no lock (the sender holds it and waits). A CPU spinning
for the kernel lock has interrupts enabled, so it parks too.
Exit needs no request: the exiting thread first gets every other thread of its
process off its CPU (`SMPKernel.stop_others`), and a CPU that leaves an address
space loads another CR3, which flushes its TLB.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import (
    CPU,
    AssertHeld,
    AtomicAdd,
    Compute,
    FlushTLB,
    GuardedBy,
    InvalidatePage,
    Load,
    Op,
    SendIPI,
    SpinWhile,
    Store,
)
from ..hw import traps as vec

if TYPE_CHECKING:
    from .kernel import SMPKernel

Gen = Generator[Op, Any, Any]

ALL = 0xFFFFFFFF  # `vaddr` of a request for a range: the targets flush their whole TLB
# the request, in the port's kernel page (offsets from `base`): written only with the kernel lock held
REQ_CR3 = 0
REQ_VADDR = 4
REQ_SEQ = 8  # the sequence number of the latest request
REQ_DONE = 12  # the sequence number of the latest request finished: in flight while SEQ != DONE
REQ_SIZE = 16
PENDING = 16  # acknowledgements still awaited: each target decrements it (lock xadd), no lock


class Shootdown:
    def __init__(self, kernel: SMPKernel, base: int) -> None:
        self.k = kernel
        self.base = base
        self.seq = 0
        self.requests = 0  # shoot-downs that had a target
        self.ipis = 0  # IPIs sent (one per target)
        self.parked = 0  # instructions the targets spent parked
        self._in_flight = False

    def annotate(self) -> Gen:
        """At boot: the request words are guarded by the kernel lock (the acknowledgement counter is not)."""
        lock = self.k.lock
        yield GuardedBy(self.base + REQ_CR3, REQ_SIZE, lock.kva, "the shoot-down request", lock.name)

    def begin(self, cr3: int, vaddr: int = ALL) -> Gen:
        """Lock held: park every other CPU that has `cr3` loaded; returns when all are parked."""
        k = self.k
        yield AssertHeld(k.lock.kva, "the shoot-down request", k.lock.name)
        me = k.lock.holder()
        yield Compute(self.k.port_costs.SHOOTDOWN_SETUP + self.k.port_costs.CPU_SCAN * len(k.machine.cpus))
        targets = [c for c in k.sched.cpus_with_cr3(cr3) if c != me]
        if not targets:
            return
        self.seq += 1
        self.requests += 1
        self._in_flight = True
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
        """The mappings are gone and this CPU's entries invalidated: release the parked CPUs."""
        if not self._in_flight:
            return
        self._in_flight = False
        yield Store(self.base + REQ_DONE, self.seq)

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
            "tlb_shootdown_in_flight": int(self._in_flight),
        }
