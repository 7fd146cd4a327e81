"""Tiny kernels for the machine-level tests: vector tables, contexts, page tables, start-up pages.

Everything here is what a (very small) kernel would do on the simulated machine;
nothing reaches into the CPU's private state.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from apkern.hw import (
    CODE_PAGE_MAGIC,
    IVT,
    PAGE_SHIFT,
    PAGE_SIZE,
    Compute,
    Context,
    Fixup,
    Frame,
    Gate,
    Halt,
    Machine,
    SendIPI,
)
from apkern.hw.mmu import PTE_ADDR, PTE_P, PTE_U, PTE_W, pde_index, pte_index
from apkern.hw.traps import GP, PF, UD

MEMORY = 4 << 20  # small and quick to allocate; plenty for these kernels
TRAMPOLINE_PAGE = 0x9F  # physical 0x9F000: below 1 MiB, as an AP start-up page must be
PT_POOL = 0x10000  # physical frames for page directories and tables
DATA = 0x100000  # physical frames for data pages (above 1 MiB)

Gen = Generator[Any, Any, Any]


class Trapped(Exception):
    """Thrown into the faulting code by the recording fault handlers (via `Fixup`)."""

    def __init__(self, fault: Any) -> None:
        super().__init__(fault)
        self.fault = fault


def machine(cpus: int = 1, memory: int = MEMORY) -> Machine:
    return Machine(cpus=cpus, memory=memory, strict=True)


def boot(m: Machine, gen: Gen, name: str = "boot") -> Context:
    ctx = Context([Frame(gen, user=False)], name)
    m.power_on(ctx)
    return ctx


def park() -> Gen:
    """Kernel tail: halt for ever (interrupts are taken while halted)."""
    while True:
        yield Halt()


def user_ctx(gen: Gen, name: str = "user") -> Context:
    """A context that runs `gen` in user mode and parks the CPU when it returns."""
    return Context([Frame(park(), user=False), Frame(gen, user=True)], name)


def idle_ctx(name: str = "idle") -> Context:
    """A kernel context that halts with interrupts enabled (an idle loop)."""
    return Context([Frame(park(), user=False, intr=True)], name)


def fault_gate(log: list[tuple[int, Any]], cost: int = 1) -> Gate:
    """A fault handler that records (cpu, fault) and throws `Trapped` into the faulting code."""

    def handler(cpu: Any, flt: Any) -> Gen:
        log.append((cpu.id, flt))
        yield Compute(cost)
        return Fixup(Trapped(flt))

    return Gate(handler)


def fault_ivt(log: list[tuple[int, Any]], extra: dict[int, Gate] | None = None) -> IVT:
    """An IVT whose #UD, #GP and #PF handlers record and throw `Trapped`, plus the `extra` gates."""
    ivt = IVT({UD: fault_gate(log), GP: fault_gate(log), PF: fault_gate(log)})
    ivt.update(extra or {})
    return ivt


def recorder(log: list[tuple[int, int, Any]], cost: int = 0) -> Callable[[Any, Any], Gen]:
    """An interrupt handler that records (cpu, time, info), then computes `cost` instructions."""

    def handler(cpu: Any, info: Any) -> Gen:
        log.append((cpu.id, cpu.env.now, info))
        yield Compute(cost)  # Compute(0) costs nothing
        return "an interrupt's value is dropped"

    return handler


def place_startup(m: Machine, func: Callable[..., Gen], page: int = TRAMPOLINE_PAGE) -> None:
    """Write a code page (signature word, then code address of `func`) at physical page `page`."""
    base = page << PAGE_SHIFT
    m.memory.write_u32(base, CODE_PAGE_MAGIC)
    m.memory.write_u32(base + 4, m.code.address_of(func))


def start_ap(m: Machine, cpu: int, func: Callable[..., Gen], page: int = TRAMPOLINE_PAGE) -> Gen:
    """Kernel code: start AP `cpu` in `func` by INIT + SIPI to a trampoline page."""
    place_startup(m, func, page)
    yield SendIPI(cpu, "init")
    yield SendIPI(cpu, "sipi", page)


URW = PTE_P | PTE_W | PTE_U


class PageTables:
    """An IA-32 two-level address space written straight into physical memory."""

    def __init__(self, m: Machine, pool: int = PT_POOL) -> None:
        self.mem = m.memory
        self.pd = pool
        self._next = pool + PAGE_SIZE
        self.mem.zero_frame(self.pd >> PAGE_SHIFT)

    def pde_addr(self, va: int) -> int:
        return self.pd + pde_index(va) * 4

    def pte_addr(self, va: int) -> int:
        pde = self.mem.read_u32(self.pde_addr(va))
        assert pde & PTE_P, f"no page table for {va:#x}"
        return (pde & PTE_ADDR) + pte_index(va) * 4

    def table(self, va: int, pde_flags: int = URW) -> None:
        """Make sure a page table covers `va` (with no pages mapped in it yet)."""
        if not self.mem.read_u32(self.pde_addr(va)) & PTE_P:
            pt = self._next
            self._next += PAGE_SIZE
            self.mem.zero_frame(pt >> PAGE_SHIFT)
            self.mem.write_u32(self.pde_addr(va), pt | pde_flags)

    def map(self, va: int, pa: int, flags: int = URW, pde_flags: int = URW) -> None:
        self.table(va, pde_flags)
        self.mem.write_u32(self.pte_addr(va), (pa & PTE_ADDR) | flags)

    def pte(self, va: int) -> int:
        return self.mem.read_u32(self.pte_addr(va))

    def pde(self, va: int) -> int:
        return self.mem.read_u32(self.pde_addr(va))

    def set_pte(self, va: int, value: int) -> None:
        self.mem.write_u32(self.pte_addr(va), value)
