"""The MMU: two-level IA-32 tables in physical memory, #PF error codes, A/D bits, retry and fixup, the TLB."""

from __future__ import annotations

import contextlib
from itertools import pairwise

import pytest
from hwkit import DATA, MEMORY, URW, PageTables, Trapped, boot, fault_ivt, machine, park, start_ap, user_ctx

from apkern.hw import (
    IVT,
    PAGE_SIZE,
    AtomicAdd,
    Compute,
    EnablePaging,
    Fixup,
    FlushTLB,
    Gate,
    Halt,
    InvalidatePage,
    Load,
    LoadCR3,
    Machine,
    ReadCR3,
    ReadMem,
    SendIPI,
    SetIVT,
    Store,
    Switch,
    Trap,
    UserAccessFault,
    WriteMem,
    Xchg,
)
from apkern.hw.mmu import PTE_A, PTE_ADDR, PTE_D, PTE_P, PTE_U, PTE_W, StaleTLB
from apkern.hw.traps import IPI_TLB_SHOOTDOWN, PF, PF_PRESENT, PF_USER, PF_WRITE

UVA = 0x40000000  # user pages
KVA = 0xC0000000  # kernel pages
UNMAPPED_TABLE = 0x80000000  # no page table at all
FRAME_A = DATA
FRAME_B = DATA + 0x5000


def paging_on(pt: PageTables, ivt: IVT | None):
    """Kernel code: install the IVT, load CR3 and switch paging on."""
    if ivt is not None:
        yield SetIVT(ivt)
    yield LoadCR3(pt.pd)
    yield EnablePaging()


# --- translation ------------------------------------------------------------------------------


def test_translation_goes_through_the_tables_in_memory() -> None:
    m = machine()
    pt = PageTables(m)
    pt.map(UVA, FRAME_A)
    pt.map(UVA + PAGE_SIZE, FRAME_B)  # virtually contiguous, physically not
    mem = m.memory
    mem.write_u32(FRAME_A + 8, 0x11111111)
    mem.write(FRAME_A + PAGE_SIZE - 2, b"\x01\x02")
    mem.write(FRAME_B, b"\x03\x04")
    faults: list = []
    got: list = []

    def user():
        got.append((yield Load(UVA + 8)))
        yield Store(UVA + PAGE_SIZE + 12, 0xCAFEBABE)
        got.append((yield Load(UVA + PAGE_SIZE - 2)))  # straddles the two pages
        got.append((yield ReadMem(UVA + PAGE_SIZE - 2, 4)))
        yield WriteMem(UVA + PAGE_SIZE - 1, b"xy")

    def kernel():
        yield from paging_on(pt, fault_ivt(faults))
        got.append((yield ReadCR3()))
        got.append((yield Load(UVA + 8)))  # the kernel may use user pages too
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert faults == []
    assert got == [pt.pd, 0x11111111, 0x11111111, 0x04030201, b"\x01\x02\x03\x04"]
    assert mem.read_u32(FRAME_B + 12) == 0xCAFEBABE
    assert mem.read(FRAME_A + PAGE_SIZE - 1, 1) == b"x" and mem.read(FRAME_B, 1) == b"y"


def test_string_ops_cost_one_instruction_per_word() -> None:
    m = machine()
    pt = PageTables(m)
    for i in range(3):
        pt.map(KVA + i * PAGE_SIZE, FRAME_A + i * PAGE_SIZE)
    times: list[int] = []

    def kernel():
        yield from paging_on(pt, None)
        times.append(m.now)
        yield WriteMem(KVA, b"z" * (2 * PAGE_SIZE))
        times.append(m.now)
        yield ReadMem(KVA + 3, 5)
        times.append(m.now)
        yield ReadMem(KVA, 0)
        times.append(m.now)
        yield from park()

    boot(m, kernel())
    m.run(until=5000)
    assert [b - a for a, b in pairwise(times)] == [2 * PAGE_SIZE // 4, 2, 1]
    assert m.memory.read(FRAME_A + PAGE_SIZE, PAGE_SIZE) == b"z" * PAGE_SIZE


# --- page faults -------------------------------------------------------------------------------


def _access(setup, user: bool, write: bool, va: int) -> tuple[list, object]:
    """Run one access (user or kernel, read or write) at `va` after `setup(pt)`; return faults and the result."""
    m = machine()
    pt = PageTables(m)
    setup(pt)
    m.memory.write_u32(FRAME_A, 0x5A5A5A5A)
    faults: list = []
    result: list = []

    def access():
        try:
            if write:
                yield Store(va, 0x77)
                result.append("stored")
            else:
                result.append((yield Load(va)))
        except Trapped:
            result.append("faulted")

    def kernel():
        yield from paging_on(pt, fault_ivt(faults))
        if user:
            yield Switch(user_ctx(access()))
        else:
            yield from access()
            yield from park()

    boot(m, kernel())
    m.run(until=1000)
    if result[0] == "faulted":
        assert m.memory.read_u32(FRAME_A) == 0x5A5A5A5A  # a faulting store does not store
    return [f for _, f in faults], result[0]


def _user_page(pt):
    pt.map(UVA, FRAME_A, URW)


def _supervisor_page(pt):
    pt.map(UVA, FRAME_A, PTE_P | PTE_W)


def _supervisor_table(pt):
    pt.map(UVA, FRAME_A, URW, pde_flags=PTE_P | PTE_W)


def _read_only_page(pt):
    pt.map(UVA, FRAME_A, PTE_P | PTE_U)


def _read_only_table(pt):
    pt.map(UVA, FRAME_A, URW, pde_flags=PTE_P | PTE_U)


FAULT_CASES = [
    # setup, user, write, address, expected #PF error code
    (_user_page, True, False, UNMAPPED_TABLE + 4, PF_USER),  # no PDE
    (_user_page, False, False, UNMAPPED_TABLE + 4, 0),
    (_user_page, False, True, UNMAPPED_TABLE + 4, PF_WRITE),
    (_user_page, True, True, UNMAPPED_TABLE + 4, PF_WRITE | PF_USER),
    (_user_page, True, False, UVA + 3 * PAGE_SIZE + 8, PF_USER),  # PDE, but no PTE
    (_user_page, True, True, UVA + 3 * PAGE_SIZE + 8, PF_WRITE | PF_USER),
    (_user_page, False, True, UVA + 3 * PAGE_SIZE + 8, PF_WRITE),
    (_supervisor_page, True, False, UVA, PF_PRESENT | PF_USER),
    (_supervisor_page, True, True, UVA, PF_PRESENT | PF_WRITE | PF_USER),
    (_supervisor_table, True, False, UVA, PF_PRESENT | PF_USER),
    (_read_only_page, True, True, UVA, PF_PRESENT | PF_WRITE | PF_USER),
    (_read_only_page, False, True, UVA, PF_PRESENT | PF_WRITE),  # supervisor writes honour W (CR0.WP)
    (_read_only_table, True, True, UVA, PF_PRESENT | PF_WRITE | PF_USER),
]


@pytest.mark.parametrize(("setup", "user", "write", "va", "error"), FAULT_CASES)
def test_page_fault_error_code_and_cr2(setup, user: bool, write: bool, va: int, error: int) -> None:
    faults, result = _access(setup, user, write, va)
    assert result == "faulted"
    assert len(faults) == 1
    flt = faults[0]
    assert flt.vector == PF
    assert flt.addr == va  # CR2
    assert flt.error == error
    assert (flt.present, flt.write, flt.user) == (bool(error & PF_PRESENT), write, user)


ALLOWED_CASES = [
    (_user_page, True, False, "read"),
    (_user_page, True, True, "stored"),
    (_supervisor_page, False, False, "read"),
    (_supervisor_page, False, True, "stored"),
    (_read_only_page, True, False, "read"),
    (_read_only_page, False, False, "read"),
]


@pytest.mark.parametrize(("setup", "user", "write", "expected"), ALLOWED_CASES)
def test_permitted_accesses_do_not_fault(setup, user: bool, write: bool, expected: str) -> None:
    faults, result = _access(setup, user, write, UVA)
    assert faults == []
    assert result == (0x5A5A5A5A if expected == "read" else expected)


def test_walker_sets_accessed_and_dirty_bits() -> None:
    m = machine()
    pt = PageTables(m)
    pt.map(UVA, FRAME_A)
    pt.map(UVA + PAGE_SIZE, FRAME_B)
    pt.map(UVA + 2 * PAGE_SIZE, DATA + 0x9000, PTE_P | PTE_U)  # read-only
    snapshots: list[tuple[int, int, int]] = []
    faults: list = []

    def snap():
        snapshots.append(
            (pt.pde(UVA) & (PTE_A | PTE_D), pt.pte(UVA) & (PTE_A | PTE_D), pt.pte(UVA + PAGE_SIZE) & (PTE_A | PTE_D))
        )

    def user():
        snap()
        yield Load(UVA)
        snap()
        yield Store(UVA + 4, 1)  # TLB hit on a clean entry: the walker must still set D
        snap()
        yield Store(UVA + PAGE_SIZE, 1)  # first touch is a write: A and D at once
        snap()
        with contextlib.suppress(Trapped):
            yield Store(UVA + 2 * PAGE_SIZE, 1)

    def kernel():
        yield from paging_on(pt, fault_ivt(faults))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert snapshots == [
        (0, 0, 0),
        (PTE_A, PTE_A, 0),
        (PTE_A, PTE_A | PTE_D, 0),
        (PTE_A, PTE_A | PTE_D, PTE_A | PTE_D),
    ]
    assert len(faults) == 1
    assert not pt.pte(UVA + 2 * PAGE_SIZE) & (PTE_A | PTE_D)  # a refused access marks nothing
    assert pt.pte(UVA) & PTE_ADDR == FRAME_A  # the walker keeps the frame address


def test_fault_handler_that_maps_the_page_makes_the_op_retry() -> None:
    m = machine()
    pt = PageTables(m)
    pt.table(UVA)
    m.memory.write_u32(FRAME_B + 0x10, 4242)
    handled: list = []
    got: list = []

    def page_fault(cpu, flt):
        handled.append((flt.addr, flt.error))
        yield Compute(200)
        pt.map(flt.addr & ~0xFFF, FRAME_B)
        # returning (nothing) retries the faulting op

    def user():
        got.append((yield Load(UVA + 0x10)))
        got.append((yield Load(UVA + 0x10)))
        yield AtomicAdd(UVA + 0x10, 8)
        got.append((yield Load(UVA + 0x10)))

    def kernel():
        yield from paging_on(pt, IVT({PF: Gate(page_fault)}))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=2000)
    assert handled == [(UVA + 0x10, PF_USER)]
    assert got == [4242, 4242, 4250]
    cpu = m.stats()["cpus"][0]
    assert cpu["user_instructions"] == 4  # the faulting Load counts once, when it succeeds
    assert cpu["kernel_instructions"] == 3 + 200


def test_protection_fault_drops_the_tlb_entry_so_the_retry_sees_the_upgraded_pte() -> None:
    m = machine()
    pt = PageTables(m)
    pt.map(UVA, FRAME_A, PTE_P | PTE_U)  # read-only, as for copy-on-write
    handled: list = []

    def page_fault(cpu, flt):
        handled.append(flt.error)
        pt.set_pte(UVA, pt.pte(UVA) | PTE_W)  # upgrade, with no invlpg
        yield Compute(1)

    def user():
        yield Load(UVA)  # a read-only TLB entry
        yield Store(UVA, 99)

    def kernel():
        yield from paging_on(pt, IVT({PF: Gate(page_fault)}))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert handled == [PF_PRESENT | PF_WRITE | PF_USER]  # one fault, then the retry succeeded
    assert m.memory.read_u32(FRAME_A) == 99


def test_fixup_throws_into_faulting_kernel_code() -> None:
    m = machine()
    pt = PageTables(m)
    pt.map(UVA, FRAME_A)
    m.memory.write(FRAME_A, b"hello, kernel")
    EFAULT = 14
    results: list = []
    pf_log: list = []

    def page_fault(cpu, flt):
        pf_log.append((flt.addr, flt.user))
        yield Compute(10)
        if not flt.user:
            return Fixup(UserAccessFault(flt.addr))  # kernel touching a user address: the exception table
        return None

    def copy_from_user(cpu, args):
        addr, n = args
        try:
            data = yield ReadMem(addr, n)
        except UserAccessFault as e:
            results.append(("caught", e.addr))
            return -EFAULT
        return data

    def user():
        results.append((yield Trap(0x80, UVA, 5)))
        results.append((yield Trap(0x80, UVA + PAGE_SIZE - 2, 8)))  # runs off the mapped page
        results.append((yield Trap(0x80, UVA + 7, 6)))

    def kernel():
        yield from paging_on(pt, IVT({PF: Gate(page_fault), 0x80: Gate(copy_from_user, user=True)}))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=2000)
    assert results == [b"hello", ("caught", UVA + PAGE_SIZE), -EFAULT, b"kernel"]
    assert pf_log == [(UVA + PAGE_SIZE, False)]


def test_write_mem_checks_every_page_before_moving_a_byte() -> None:
    m = machine()
    pt = PageTables(m)
    pt.map(UVA, FRAME_A)
    faults: list = []

    def user():
        with contextlib.suppress(Trapped):
            yield WriteMem(UVA + PAGE_SIZE - 4, b"ABCDEFGH")
        with contextlib.suppress(Trapped):
            yield Store(UVA + PAGE_SIZE - 2, 0xFFFFFFFF)  # unaligned, straddling into the hole

    def kernel():
        yield from paging_on(pt, fault_ivt(faults))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert [(f.vector, f.addr) for _, f in faults] == [(PF, UVA + PAGE_SIZE)] * 2
    assert m.memory.read(FRAME_A + PAGE_SIZE - 4, 4) == bytes(4)


def test_xchg_needs_a_writable_page() -> None:
    faults, result = _access(_read_only_page, True, False, UVA)  # sanity: reading is fine
    assert faults == [] and result == 0x5A5A5A5A
    m = machine()
    pt = PageTables(m)
    _read_only_page(pt)
    log: list = []

    def user():
        with contextlib.suppress(Trapped):
            yield Xchg(UVA, 1)

    def kernel():
        yield from paging_on(pt, fault_ivt(log))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert [(f.vector, f.error) for _, f in log] == [(PF, PF_PRESENT | PF_WRITE | PF_USER)]


# --- the TLB --------------------------------------------------------------------------------------


def _stale_setup(cpus: int = 1):
    m = machine(cpus)
    pt = PageTables(m)
    pt.map(KVA, FRAME_A)
    pt.map(KVA + PAGE_SIZE, DATA + 0x9000)
    m.memory.write_u32(FRAME_A, 0xAAAA)
    m.memory.write_u32(FRAME_B, 0xBBBB)
    return m, pt


@pytest.mark.parametrize("how", ["invlpg", "flush", "cr3"])
def test_stale_tlb_entry_reads_the_old_frame_until_invalidated(how: str) -> None:
    m, pt = _stale_setup()
    got: list = []

    def kernel():
        yield from paging_on(pt, None)
        got.append((yield Load(KVA)))  # fills the TLB
        pt.set_pte(KVA, FRAME_B | URW)  # the kernel remaps the page...
        got.append((yield Load(KVA)))  # ...but this CPU still translates through its TLB
        yield InvalidatePage(KVA + PAGE_SIZE)  # another page: no help
        got.append((yield Load(KVA + 4)))
        yield {"invlpg": InvalidatePage(KVA + 123), "flush": FlushTLB(), "cr3": LoadCR3(pt.pd)}[how]
        got.append((yield Load(KVA)))
        yield from park()

    boot(m, kernel())
    m.run(until=1000)
    assert got == [0xAAAA, 0xAAAA, 0, 0xBBBB]
    tlb = m.stats()["cpus"][0]
    assert tlb["tlb_misses"] == 2 and tlb["tlb_hits"] == 2


def test_stale_entry_survives_unmapping_and_writes_into_the_old_frame() -> None:
    m, pt = _stale_setup()
    faults: list = []
    got: list = []

    def kernel():
        yield from paging_on(pt, fault_ivt(faults))
        yield Load(KVA)
        yield Store(KVA, 1)  # a dirty entry: later writes need no walk
        pt.set_pte(KVA, 0)  # unmapped, and the frame handed to someone else...
        yield Store(KVA, 0xDEAD)  # ...who gets scribbled on
        got.append(m.memory.read_u32(FRAME_A))
        yield InvalidatePage(KVA)
        try:
            yield Load(KVA)
        except Trapped as t:
            got.append(("fault", t.fault.addr, t.fault.present))
        yield from park()

    boot(m, kernel())
    m.run(until=1000)
    assert got == [0xDEAD, ("fault", KVA, False)]


@pytest.mark.parametrize("change", ["remap", "unmap", "write-protect"])
def test_tlb_checker_fails_loudly_on_a_stale_hit(change: str) -> None:
    m = Machine(cpus=1, memory=MEMORY, strict=True, check_tlb=True)
    pt = PageTables(m)
    pt.map(KVA, FRAME_A)
    got: list = []

    def kernel():
        yield from paging_on(pt, None)
        got.append((yield Load(KVA)))  # fills the TLB
        got.append((yield Load(KVA + 8)))  # a hit that agrees with the tables: fine
        pt.set_pte(KVA, {"remap": FRAME_B | URW, "unmap": 0, "write-protect": FRAME_A | PTE_P | PTE_U}[change])
        got.append((yield Load(KVA)))  # the stale hit
        yield from park()

    boot(m, kernel())
    with pytest.raises(StaleTLB, match=r"cpu0: stale TLB entry for page"):
        m.run(until=1000)
    assert len(got) == 2


def test_tlb_checker_accepts_a_hit_with_fewer_rights_and_invalidated_entries() -> None:
    m = Machine(cpus=1, memory=MEMORY, strict=True, check_tlb=True)
    pt = PageTables(m)
    pt.map(KVA, FRAME_A)
    pt.set_pte(KVA, FRAME_A | PTE_P | PTE_U)  # read-only first
    m.memory.write_u32(FRAME_A, 0xAAAA)
    m.memory.write_u32(FRAME_B, 0xBBBB)
    got: list = []

    def kernel():
        yield from paging_on(pt, None)
        got.append((yield Load(KVA)))  # cached read-only
        pt.set_pte(KVA, FRAME_A | URW)  # an upgrade: the cached entry grants less, which is harmless
        got.append((yield Load(KVA)))
        pt.set_pte(KVA, FRAME_B | URW)
        yield InvalidatePage(KVA)  # the kernel did its duty: the next access walks again
        got.append((yield Load(KVA)))
        yield from park()

    boot(m, kernel())
    m.run(until=1000)
    assert got == [0xAAAA, 0xAAAA, 0xBBBB]
    assert m.cpus[0].mmu.checked == 1  # the one hit was checked, and agreed


def test_each_cpu_has_its_own_tlb() -> None:
    m, pt = _stale_setup(cpus=2)
    log: list[tuple[str, int]] = []

    def shootdown(cpu, info):
        yield InvalidatePage(KVA)

    def ap(cpu):
        yield from paging_on(pt, None)
        log.append(("cpu1", (yield Load(KVA))))
        yield SendIPI(0, "fixed", IPI_TLB_SHOOTDOWN)
        yield from park()

    def kernel():
        yield from paging_on(pt, IVT({IPI_TLB_SHOOTDOWN: Gate(shootdown)}))
        log.append(("cpu0", (yield Load(KVA))))
        pt.set_pte(KVA, FRAME_B | URW)
        yield from start_ap(m, 1, ap)
        yield Compute(1000)  # kernel code: the shoot-down waits
        log.append(("cpu0", (yield Load(KVA))))
        yield Halt()  # takes the shoot-down
        log.append(("cpu0", (yield Load(KVA))))
        yield from park()

    boot(m, kernel())
    m.run(until=5000)
    assert log == [("cpu0", 0xAAAA), ("cpu1", 0xBBBB), ("cpu0", 0xAAAA), ("cpu0", 0xBBBB)]


def test_cr3_and_paging_are_per_cpu() -> None:
    m, pt = _stale_setup(cpus=2)
    other = PageTables(m, pool=0x30000)
    other.map(KVA, FRAME_B)
    got: list = []

    def ap(cpu):
        yield from paging_on(other, None)
        got.append(("cpu1", (yield ReadCR3()), (yield Load(KVA))))
        yield from park()

    def kernel():
        yield from paging_on(pt, None)
        got.append(("cpu0", (yield ReadCR3()), (yield Load(KVA))))
        yield from start_ap(m, 1, ap)
        yield Compute(100)
        got.append(("cpu0", (yield ReadCR3()), (yield Load(KVA))))
        yield from park()

    boot(m, kernel())
    m.run(until=1000)
    assert got == [("cpu0", pt.pd, 0xAAAA), ("cpu1", other.pd, 0xBBBB), ("cpu0", pt.pd, 0xAAAA)]


def test_tlb_evicts_oldest_entry_when_full() -> None:
    m = machine()
    pt = PageTables(m)
    capacity = m.cpus[0].mmu.tlb.capacity
    pages = capacity + 2
    for i in range(pages):
        pt.map(KVA + i * PAGE_SIZE, DATA + i * PAGE_SIZE)
        m.memory.write_u32(DATA + i * PAGE_SIZE, i)
    got: list = []

    def kernel():
        yield from paging_on(pt, None)
        for i in range(capacity + 1):  # one more than fits: page 0 is evicted
            yield Load(KVA + i * PAGE_SIZE)
        target = DATA + (pages - 1) * PAGE_SIZE
        pt.set_pte(KVA, target | URW)
        pt.set_pte(KVA + PAGE_SIZE, target | URW)
        got.append((yield Load(KVA + PAGE_SIZE)))  # still cached: stale
        got.append((yield Load(KVA)))  # evicted: walks the new PTE
        yield from park()

    boot(m, kernel())
    m.run(until=10_000)
    assert got == [1, pages - 1]
    assert len(m.cpus[0].mmu.tlb.entries) == capacity


def test_paging_off_means_physical_addresses_for_the_kernel() -> None:
    m = machine()
    m.memory.write_u32(0x3000, 31337)
    got: list = []

    def kernel():
        got.append((yield Load(0x3000)))
        yield Store(0x3004, 7)
        yield from park()

    boot(m, kernel())
    m.run(until=100)
    assert got == [31337]
    assert m.memory.read_u32(0x3004) == 7
    assert m.stats()["cpus"][0]["tlb_misses"] == 0
