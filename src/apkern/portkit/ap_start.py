"""Starting the other processors, for both ports: INIT and SIPI through start-up code below 1 MiB (section 3.2's
requirement, as the application kernel meets it), then each with its vector table, paging and its own timer.

The bootstrap processor waits until every other has counted itself in (`lock xadd` on the
started word), then sets the commenced word (Linux 2.2's `smp_commenced`): only then do
they go to their idle loops and schedule.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..bootkernel.vm import KERNBASE
from ..hw import (
    CODE_PAGE_MAGIC,
    CPU,
    IVT,
    PAGE_SHIFT,
    AtomicAdd,
    CodeAddr,
    Compute,
    CpuId,
    EnablePaging,
    LoadCR3,
    Op,
    SendIPI,
    SetIVT,
    SetTimer,
    SpinWhile,
    Store,
    Switch,
)

Gen = Generator[Op, Any, Any]


class APStartup:
    """For a port's kernel (a `BootKernel` with `port_costs`, `page` and `sched.idle_ctxs`): `started_kva` and
    `commenced_kva` are its two words, `ap_ivt()` the vector table the other processors load."""

    started_kva: int
    commenced_kva: int
    aps_started: int

    def ap_ivt(self) -> IVT:
        raise NotImplementedError

    def _start_aps(self: Any) -> Gen:
        """INIT and SIPI to each other CPU, through start-up code on a page below 1 MiB; wait until all are up."""
        n = len(self.machine.cpus)
        if n < 2:
            return
        page = self.frames.alloc_low()
        trampoline = KERNBASE + (page << PAGE_SHIFT)
        yield Store(trampoline, CODE_PAGE_MAGIC)
        yield Store(trampoline + 4, (yield CodeAddr(self.ap_start)))
        for ap in range(1, n):
            yield SendIPI(ap, "init")
            yield SendIPI(ap, "sipi", page)
        started = 0
        while started < n - 1:
            started = yield SpinWhile(self.started_kva, started)
        self.frames.release(page)
        yield Store(self.commenced_kva, 1)

    def ap_start(self: Any, cpu: CPU) -> Gen:
        """Another CPU's first code, reached through the trampoline page in real mode (paging off)."""
        yield Compute(self.port_costs.AP_START)
        cid = yield CpuId()
        yield SetIVT(self.ap_ivt())
        yield LoadCR3(self.kernel_cr3)
        yield EnablePaging()
        yield SetTimer(self.tick)  # its own timer
        yield AtomicAdd(self.started_kva, 1)
        self.aps_started += 1
        yield SpinWhile(self.commenced_kva, 0)  # until every CPU is up
        yield Switch(self.sched.idle_ctxs[cid])
