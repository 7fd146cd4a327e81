"""TLB shoot-down for the bootstrap kernel's asynchronous unmaps (section 4.3, with its patch).

The swapper, on the bootstrap processor, takes a page behind a process's back.
Through the patched kernel's hook the application kernel brackets it:
- `begin`: publish the request (CR3, page, sequence number), send an IPI to
  every AP whose loaded CR3 is that address space, and wait until each has
  acknowledged; from then until `end` those APs are parked in the IPI handler,
  so none reads or writes the page while it is copied out and unmapped;
- `end`: mark the request done; each parked AP invalidates the page (`invlpg`)
  and goes back to what it was doing. The swapper frees the frame only after.

Every CR3 load on an AP goes through `load_cr3`, which publishes the CR3 *before*
it looks for a request in flight (the bootstrap processor publishes its request
before it reads the CR3s): whichever comes second sees the other, so an AP never
starts using an address space in the middle of a shoot-down without parking.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..hw import CPU, Compute, InvalidatePage, Load, LoadCR3, Op, Rdtsc, SendIPI, SpinWhile, Store
from ..hw import traps as vec

if TYPE_CHECKING:
    from ..bootkernel import DriverServices
    from .costs import Costs

Gen = Generator[Op, Any, Any]

# the request page (kernel memory): the request, then one CR3 word and one acknowledgement word per CPU
REQ_CR3 = 0
REQ_VADDR = 4
REQ_SEQ = 8  # the sequence number of the latest request
REQ_DONE = 12  # the sequence number of the latest request finished: in flight while SEQ != DONE
LOADED = 64  # + 4 * cpu: the CR3 that CPU has loaded (or is about to load)
ACKED = 64 + 4 * 64  # + 4 * cpu: the last request that CPU has parked for


class Shootdown:
    """The application kernel's side of the section 4.3 patch."""

    def __init__(self, svc: DriverServices, cpus: int, costs: Costs) -> None:
        self.costs = costs
        self.cpus = cpus
        self.base = svc.kernbase + svc.kmalloc(4096)
        self.seq = 0
        self.enabled = True  # False on a kernel without the patch: nothing is ever shot down, CR3 loads are plain
        self.shootdowns = 0  # requests made (one per page the swapper took from an address space)
        self.targeted = 0  # IPIs sent
        self.bsp_instructions = 0  # on the bootstrap processor, in begin and end
        self.ap_instructions = 0  # on the APs, in the IPI handler and parked in load_cr3

    def _loaded(self, cpu: int) -> int:
        return self.base + LOADED + 4 * cpu

    def _acked(self, cpu: int) -> int:
        return self.base + ACKED + 4 * cpu

    # --- on the bootstrap processor, from the patched swapper --------------------------------------------

    def begin(self, cr3: int, vaddr: int) -> Gen:
        """Park every AP that may hold a translation of `vaddr` under `cr3`; returns when all are parked."""
        start = yield Rdtsc()
        yield Compute(self.costs.SHOOTDOWN_SETUP)
        self.seq += 1
        self.shootdowns += 1
        yield Store(self.base + REQ_CR3, cr3)
        yield Store(self.base + REQ_VADDR, vaddr)
        yield Store(self.base + REQ_SEQ, self.seq)  # published: from now on a CR3 load of `cr3` parks
        targets = []
        for ap in range(1, self.cpus):
            if (yield Load(self._loaded(ap))) == cr3:
                targets.append(ap)
        for ap in targets:
            yield SendIPI(ap, "fixed", vec.IPI_TLB_SHOOTDOWN)
        self.targeted += len(targets)
        for ap in targets:
            acked = yield Load(self._acked(ap))
            while acked != self.seq:
                acked = yield SpinWhile(self._acked(ap), acked)
        self.bsp_instructions += (yield Rdtsc()) - start

    def end(self, cr3: int, vaddr: int) -> Gen:
        """The page is unmapped and invalidated here: let the parked APs invalidate it and go on."""
        yield Store(self.base + REQ_DONE, self.seq)
        self.bsp_instructions += 1

    # --- on an application processor ------------------------------------------------------------------

    def ipi(self, cpu: CPU, info: Any) -> Gen:
        """IPI_TLB_SHOOTDOWN: acknowledge, stay off the page until the request is done, drop its translation."""
        start = yield Rdtsc()
        yield Compute(self.costs.SHOOTDOWN_IPI)
        seq = yield Load(self.base + REQ_SEQ)
        if seq != (yield Load(self.base + REQ_DONE)):
            vaddr = yield Load(self.base + REQ_VADDR)
            yield from self._park(cpu.id, seq)
            yield InvalidatePage(vaddr)
        self.ap_instructions += (yield Rdtsc()) - start

    def load_cr3(self, cid: int, cr3: int) -> Gen:
        """Load CR3 on an AP: publish it first, then park while a request for that address space is in flight."""
        if not self.enabled:
            yield LoadCR3(cr3)
            return
        yield Store(self._loaded(cid), cr3)
        while True:
            seq = yield Load(self.base + REQ_SEQ)
            if seq == (yield Load(self.base + REQ_DONE)) or (yield Load(self.base + REQ_CR3)) != cr3:
                break
            start = yield Rdtsc()
            yield from self._park(cid, seq)
            self.ap_instructions += (yield Rdtsc()) - start
        yield LoadCR3(cr3)  # a whole flush: nothing to invalidate afterwards

    def _park(self, cid: int, seq: int) -> Gen:
        yield Store(self._acked(cid), seq)
        done = yield Load(self.base + REQ_DONE)
        while done != seq:
            done = yield SpinWhile(self.base + REQ_DONE, done)

    def stats(self) -> dict[str, int]:
        return {
            "tlb_shootdowns": self.shootdowns,
            "tlb_shootdown_ipis": self.targeted,
            "tlb_shootdown_bsp_instructions": self.bsp_instructions,
            "tlb_shootdown_ap_instructions": self.ap_instructions,
        }
