"""The MMU: IA-32 two-level page tables in physical memory, CR3, and a per-CPU TLB.

A page directory is one frame of 1024 PDEs; each present PDE points at a page
table of 1024 PTEs. Entry bits are IA-32's. The TLB caches translations and is
*not* kept coherent with the tables: an entry stays until CR3 is reloaded, the page
is invalidated (`invlpg`), or it is evicted for space. A stale entry therefore
really reads the old frame.
"""

from __future__ import annotations

from .memory import PAGE_SHIFT, PhysicalMemory
from .traps import PF, PF_PRESENT, PF_USER, PF_WRITE, Fault, MachineError

PTE_P = 0x001  # present
PTE_W = 0x002  # writable
PTE_U = 0x004  # user accessible
PTE_A = 0x020  # accessed (set by the MMU)
PTE_D = 0x040  # dirty (set by the MMU)
PTE_ADDR = 0xFFFFF000

TLB_ENTRIES = 64  # Pentium 4 DTLB size; eviction is oldest-first (deterministic)


def pde_index(vaddr: int) -> int:
    return (vaddr >> 22) & 0x3FF


def pte_index(vaddr: int) -> int:
    return (vaddr >> 12) & 0x3FF


class TLB:
    """Translation look-aside buffer: virtual page number -> (frame, writable, user, dirty)."""

    __slots__ = ("entries", "capacity", "hits", "misses", "flushes")

    def __init__(self, capacity: int = TLB_ENTRIES) -> None:
        self.entries: dict[int, tuple[int, bool, bool, bool]] = {}
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self.flushes = 0

    def lookup(self, vpn: int) -> tuple[int, bool, bool, bool] | None:
        return self.entries.get(vpn)

    def fill(self, vpn: int, entry: tuple[int, bool, bool, bool]) -> None:
        entries = self.entries
        if vpn not in entries and len(entries) >= self.capacity:
            del entries[next(iter(entries))]
        entries[vpn] = entry

    def invalidate(self, vpn: int) -> None:
        self.entries.pop(vpn, None)

    def flush(self) -> None:
        self.entries.clear()
        self.flushes += 1


def walk(mem: PhysicalMemory, cr3: int, vaddr: int, write: bool, user: bool) -> tuple[int, bool, bool, bool]:
    """Walk the tables under `cr3` for `vaddr`; set A (and D on write); return the TLB entry.

    Raises a #PF `Fault` with the IA-32 error code when the page is missing or the
    access is forbidden (supervisor writes respect W, as with CR0.WP set).
    """
    err = (PF_WRITE if write else 0) | (PF_USER if user else 0)
    pde_addr = (cr3 & PTE_ADDR) + pde_index(vaddr) * 4
    pde = mem.read_u32(pde_addr)
    if not pde & PTE_P:
        raise Fault(PF, err, vaddr, "page table not present")
    pte_addr = (pde & PTE_ADDR) + pte_index(vaddr) * 4
    pte = mem.read_u32(pte_addr)
    if not pte & PTE_P:
        raise Fault(PF, err, vaddr, "page not present")
    writable = bool(pde & pte & PTE_W)
    user_ok = bool(pde & pte & PTE_U)
    if (user and not user_ok) or (write and not writable):
        raise Fault(PF, err | PF_PRESENT, vaddr, "protection")
    new = pte | PTE_A | (PTE_D if write else 0)
    if new != pte:
        mem.write_u32(pte_addr, new)
    if not pde & PTE_A:
        mem.write_u32(pde_addr, pde | PTE_A)
    return (pte >> PAGE_SHIFT, writable, user_ok, bool(new & PTE_D))


def lookup(mem: PhysicalMemory, cr3: int, vaddr: int) -> tuple[int, bool, bool] | None:
    """What the tables under `cr3` say of `vaddr` now: (frame, writable, user), or None if unmapped.

    A debugger's walk: it sets no accessed or dirty bit and takes no fault.
    """
    pde = mem.read_u32((cr3 & PTE_ADDR) + pde_index(vaddr) * 4)
    if not pde & PTE_P:
        return None
    pte = mem.read_u32((pde & PTE_ADDR) + pte_index(vaddr) * 4)
    if not pte & PTE_P:
        return None
    return (pte >> PAGE_SHIFT, bool(pde & pte & PTE_W), bool(pde & pte & PTE_U))


class StaleTLB(MachineError):
    """A TLB hit disagreed with the page tables: the CPU used a translation its kernel had removed."""


class MMU:
    """One CPU's address translation: CR3, the paging switch, and its TLB."""

    __slots__ = ("mem", "cr3", "paging", "tlb", "cpu_id")

    def __init__(self, mem: PhysicalMemory, cpu_id: int = 0) -> None:
        self.mem = mem
        self.cpu_id = cpu_id
        self.cr3 = 0
        self.paging = False
        self.tlb = TLB()

    def load_cr3(self, cr3: int) -> None:
        self.cr3 = cr3 & PTE_ADDR
        self.tlb.flush()

    def translate(self, vaddr: int, write: bool, user: bool) -> int:
        """Physical address of `vaddr` for this access, or a #PF `Fault`."""
        if not self.paging:
            if user:
                raise Fault(PF, PF_USER, vaddr, "user access with paging off")
            return vaddr
        vpn = vaddr >> PAGE_SHIFT
        tlb = self.tlb
        e = tlb.entries.get(vpn)
        if e is not None:
            pfn, writable, user_ok, dirty = e
            if (user and not user_ok) or (write and not writable):
                tlb.invalidate(vpn)
                err = PF_PRESENT | (PF_WRITE if write else 0) | (PF_USER if user else 0)
                raise Fault(PF, err, vaddr, "protection")
            if write and not dirty:
                e = walk(self.mem, self.cr3, vaddr, write, user)
                tlb.fill(vpn, e)
                pfn = e[0]
            tlb.hits += 1
            return (pfn << PAGE_SHIFT) | (vaddr & 0xFFF)
        tlb.misses += 1
        e = walk(self.mem, self.cr3, vaddr, write, user)
        tlb.fill(vpn, e)
        return (e[0] << PAGE_SHIFT) | (vaddr & 0xFFF)


class CheckingMMU(MMU):
    """An MMU that checks every TLB hit against a walk of the current tables (`Machine(check_tlb=True)`).

    The invariant of section 4.3: no CPU ever uses a translation that its kernels
    have changed or removed. A hit on a stale entry raises `StaleTLB` naming the CPU,
    the page and both frames, instead of silently reading another process's memory.
    """

    __slots__ = ("checked",)

    def __init__(self, mem: PhysicalMemory, cpu_id: int = 0) -> None:
        super().__init__(mem, cpu_id)
        self.checked = 0

    def translate(self, vaddr: int, write: bool, user: bool) -> int:
        if self.paging:
            e = self.tlb.entries.get(vaddr >> PAGE_SHIFT)
            if e is not None:
                self.checked += 1
                now = lookup(self.mem, self.cr3, vaddr)
                # fewer rights than the tables grant is harmless (the access refaults); more is not
                if now is None or now[0] != e[0] or (e[1] and not now[1]) or (e[2] and not now[2]):
                    raise StaleTLB(
                        f"cpu{self.cpu_id}: stale TLB entry for page {vaddr >> PAGE_SHIFT:#x} under CR3 {self.cr3:#x}: "
                        f"cached frame {e[0]:#x} (w={e[1]}, u={e[2]}), tables say "
                        + ("not mapped" if now is None else f"frame {now[0]:#x} (w={now[1]}, u={now[2]})")
                    )
        return super().translate(vaddr, write, user)
