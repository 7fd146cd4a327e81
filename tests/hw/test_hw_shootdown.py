"""The TLB shoot-down's protocol on a bare machine: between `begin` and `end` no AP uses the page.

Two CPUs share one address space. The bootstrap processor runs `begin` for a page,
then (as the swapper does) takes its time, clears the PTE and runs `end`. The AP
loads that address space's CR3 *after* `begin` has looked at which APs to
interrupt, and at once reads the page: `load_cr3` must park it until `end` (it
publishes its CR3, then looks for a request in flight), so its read walks the
tables after the PTE is gone and faults. Without that check it fills its TLB from
the old PTE and keeps the translation: the TLB checker stops the run.
"""

from __future__ import annotations

from typing import Any

import pytest
from hwkit import DATA, PageTables, Trapped, boot, fault_ivt, park, start_ap

from apkern.appkernel.costs import Costs
from apkern.appkernel.shootdown import Shootdown
from apkern.hw import Compute, EnablePaging, Load, LoadCR3, Machine, SetIVT, SpinWhile, Store
from apkern.hw.mmu import PTE_P, PTE_W

KVA = 0xC0000000  # the request page, kernel-only
UVA = 0x20000000  # the page being taken away
SD_PA = DATA + 0x10000
PAGE_PA = DATA + 0x20000
FLAG = KVA + 0x800  # in the request page's spare words: "begin has returned"


class _Services:
    kernbase = KVA - SD_PA

    @staticmethod
    def kmalloc(size: int) -> int:
        return SD_PA


def _run(delay_cr3_load: int) -> tuple[list[Any], Shootdown]:
    m = Machine(cpus=2, memory=4 << 20, strict=True, check_tlb=True)
    pt = PageTables(m)
    pt.map(KVA, SD_PA, PTE_P | PTE_W)
    pt.map(UVA, PAGE_PA)
    m.memory.write_u32(PAGE_PA, 0xAAAA)
    sd = Shootdown(_Services(), cpus=2, costs=Costs())
    faults: list = []
    seen: list[Any] = []

    def ap(cpu: Any) -> Any:
        yield SetIVT(fault_ivt(faults))
        yield LoadCR3(pt.pd)  # paging on, LOADED[1] still 0: not a target of the request to come
        yield EnablePaging()
        yield SpinWhile(FLAG, 0)
        yield Compute(delay_cr3_load)
        yield from sd.load_cr3(1, pt.pd)
        for _ in range(3):
            try:
                seen.append((yield Load(UVA)))
            except Trapped as t:
                seen.append(("fault", t.fault.addr))
            yield Compute(300)
        yield from park()

    def bsp() -> Any:
        yield SetIVT(fault_ivt(faults))
        yield LoadCR3(pt.pd)
        yield EnablePaging()
        yield from start_ap(m, 1, ap)
        yield Compute(5000)  # the AP is up and waiting
        yield from sd.begin(pt.pd, UVA)
        yield Store(FLAG, 1)
        yield Compute(1000)  # the swapper copies the page out...
        pt.set_pte(UVA, 0)  # ...and unmaps it
        yield Compute(30)
        yield from sd.end(pt.pd, UVA)
        yield from park()

    boot(m, bsp())
    m.run(until=20_000)
    return seen, sd


@pytest.mark.parametrize("delay", [0, 200, 900])
def test_an_ap_that_loads_the_cr3_during_a_shootdown_parks_until_its_end(delay: int) -> None:
    seen, sd = _run(delay)
    assert seen == [("fault", UVA)] * 3  # it never read the page through the old PTE
    assert sd.shootdowns == 1 and sd.targeted == 0  # it was not interrupted: it parked by itself
    assert sd.ap_instructions > 0
