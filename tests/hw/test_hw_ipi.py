"""Inter-processor interrupts, AP start-up (INIT + SIPI) and external IRQ routing."""

from __future__ import annotations

import contextlib

import pytest
from hwkit import (
    TRAMPOLINE_PAGE,
    Trapped,
    boot,
    fault_ivt,
    idle_ctx,
    machine,
    park,
    place_startup,
    recorder,
    start_ap,
    user_ctx,
)

from apkern.hw import (
    CODE_PAGE_MAGIC,
    IVT,
    PAGE_SHIFT,
    Compute,
    Context,
    CpuId,
    EnablePaging,
    Gate,
    Load,
    LoadCR3,
    Rdtsc,
    ReadCR3,
    SendIPI,
    SetIVT,
    SetTimer,
    Switch,
)
from apkern.hw.traps import GP, IPI_RESCHEDULE, IRQ_BASE, TIMER

# --- fixed IPIs ----------------------------------------------------------------------------


def test_fixed_ipi_is_taken_at_the_next_boundary_splitting_a_compute() -> None:
    m = machine(cpus=2)
    got: list[tuple[int, int, object]] = []
    span: list[int] = []
    sent: list[int] = []

    def user():
        start = yield Rdtsc()
        yield Compute(10_000)
        end = yield Rdtsc()
        span.extend([start, end])

    def ap(cpu):
        yield SetIVT(IVT({IPI_RESCHEDULE: Gate(recorder(got, cost=50))}))
        yield Switch(user_ctx(user(), "ap-user"))

    def kernel():
        yield from start_ap(m, 1, ap)
        yield Compute(3000)
        sent.append((yield Rdtsc()) + 1)
        yield SendIPI(1, "fixed", IPI_RESCHEDULE)
        yield from park()

    boot(m, kernel())
    m.run(until=20_000)
    start, end = span
    assert got == [(1, sent[0], 0)]  # on CPU 1, at the instant it was sent, from CPU 0
    assert start < sent[0] < start + 10_000  # ...which was in the middle of the compute
    assert end - start == 1 + 10_000 + 50
    c0, c1 = m.stats()["cpus"]
    assert c1["user_instructions"] == 10_000 + 2
    assert c1["kernel_instructions"] == 1 + 50
    assert c1["interrupts"] == 1 and c0["interrupts"] == 0
    assert m.stats()["ipis"] == 3  # INIT, SIPI, fixed


def test_fixed_ipi_waits_while_the_receiver_runs_kernel_code() -> None:
    m = machine(cpus=2)
    got: list[tuple[int, int, object]] = []
    done: list[int] = []

    def ap(cpu):
        yield SetIVT(IVT({IPI_RESCHEDULE: Gate(recorder(got))}))
        yield Compute(5000)  # start-up code runs with interrupts off
        done.append((yield Rdtsc()))
        yield from park()

    def kernel():
        yield from start_ap(m, 1, ap)
        yield Compute(100)
        yield SendIPI(1, "fixed", IPI_RESCHEDULE)
        yield from park()

    boot(m, kernel())
    m.run(until=10_000)
    assert [t for _, t, _ in got] == [done[0] + 1]  # taken at the Halt after the compute


def test_ipi_to_self_is_allowed_only_fixed() -> None:
    m = machine(cpus=2)
    got: list[tuple[int, int, object]] = []
    faults: list = []
    results: list = []

    def kernel():
        yield SetIVT(fault_ivt(faults, {0x50: Gate(recorder(got))}))
        yield SendIPI(0, "fixed", 0x50)
        yield Compute(1)
        for bad in (
            SendIPI(0, "init"),
            SendIPI(5, "fixed", 0x50),
            SendIPI(-1, "fixed", 0x50),
            SendIPI(1, "nmi", 2),
            SendIPI(1, "fixed", 0x100),
        ):
            try:
                yield bad
                results.append("sent")
            except Trapped as t:
                results.append(t.fault.vector)
        yield from park()

    boot(m, kernel())
    m.run(until=1000)
    assert results == [GP] * 5
    assert [c for c, _, _ in got] == [0]  # delivered to itself at the Halt


# --- INIT / SIPI ----------------------------------------------------------------------------


def test_ap_is_held_in_reset_and_sipi_without_init_does_nothing() -> None:
    m = machine(cpus=2)
    ran: list[int] = []

    def ap(cpu):
        ran.append(cpu.id)
        yield from park()

    def kernel():
        place_startup(m, ap)
        yield SendIPI(1, "sipi", TRAMPOLINE_PAGE)
        yield SendIPI(1, "fixed", 0x40)  # an interrupt does not wake a CPU in reset either
        yield Compute(1000)
        yield from park()

    boot(m, kernel())
    m.run(until=5000)
    assert ran == []
    assert m.cpus[1].state == "reset"
    assert m.stats()["cpus"][1]["instructions"] == 0


def test_init_alone_leaves_the_ap_waiting_for_sipi() -> None:
    m = machine(cpus=2)

    def kernel():
        yield SendIPI(1, "init")
        yield from park()

    boot(m, kernel())
    m.run(until=100)
    assert m.cpus[1].state == "wait-for-sipi"
    assert m.stats()["cpus"][1]["instructions"] == 0


def test_init_sipi_starts_the_ap_in_kernel_mode_with_paging_off() -> None:
    m = machine(cpus=3)
    seen: dict[str, object] = {}
    page = TRAMPOLINE_PAGE

    def ap_main(cpu):
        seen["cpu"] = cpu
        seen["id"] = yield CpuId()
        seen["cr3"] = yield ReadCR3()  # privileged: would be #GP (and a shutdown) in user mode
        seen["paging"] = cpu.mmu.paging
        seen["word"] = yield Load(page << PAGE_SHIFT)  # paging off: a physical address
        seen["started"] = (yield Rdtsc()) - 3
        yield from park()

    def kernel():
        # The BSP itself runs with paging on: the AP must still start with it off.
        m.memory.write_u32(0x10000, 0)  # an empty page directory
        yield LoadCR3(0x10000)
        yield EnablePaging()
        place_startup(m, ap_main, page)
        yield SendIPI(1, "init")
        seen["sipi"] = (yield Rdtsc()) + 1
        yield SendIPI(1, "sipi", page)
        yield from park()

    boot(m, kernel())
    m.run(until=1000)
    assert seen["cpu"] is m.cpus[1] and seen["id"] == 1
    assert seen["cr3"] == 0 and seen["paging"] is False
    assert seen["word"] == CODE_PAGE_MAGIC
    assert seen["started"] == seen["sipi"]
    assert [c.state for c in m.cpus] == ["running", "running", "reset"]
    assert m.cpus[0].mmu.paging  # the BSP's own MMU is untouched
    assert m.stats()["cpus"][1]["kernel_instructions"] == 4


def test_sipi_to_a_page_without_startup_code_shuts_the_ap_down() -> None:
    m = machine(cpus=3)
    ran: list[int] = []

    def ap(cpu):
        ran.append(cpu.id)
        yield from park()

    def kernel():
        base = 0x50 << PAGE_SHIFT
        m.memory.write_u32(base + 4, m.code.address_of(ap))  # a code address but no signature
        yield SendIPI(1, "init")
        yield SendIPI(1, "sipi", 0x50)
        m.memory.write_u32(0x51 << PAGE_SHIFT, CODE_PAGE_MAGIC)  # a signature but no registered code
        m.memory.write_u32((0x51 << PAGE_SHIFT) + 4, 0x1234)
        yield SendIPI(2, "init")
        yield SendIPI(2, "sipi", 0x51)
        yield from park()

    boot(m, kernel())
    m.run(until=1000)
    assert ran == []
    assert m.cpus[1].state == m.cpus[2].state == "shutdown"
    assert "no start-up code" in m.cpus[1].shutdown_reason
    # A shut-down CPU stays down: a later INIT + SIPI does not revive it.
    place_startup(m, ap)
    m.intc.send_ipi(0, 1, "init")
    m.intc.send_ipi(0, 1, "sipi", TRAMPOLINE_PAGE)
    m.run(until=2000)
    assert ran == [] and m.cpus[1].state == "shutdown"


def test_sipi_vector_above_ff_raises_gp_at_the_sender() -> None:
    m = machine(cpus=2)
    faults: list = []
    ran: list[int] = []

    def ap(cpu):
        ran.append(cpu.id)
        yield from park()

    def kernel():
        yield SetIVT(fault_ivt(faults))
        place_startup(m, ap, 0x100)  # page 0x100 is at 1 MiB: out of a SIPI's reach
        yield SendIPI(1, "init")
        with contextlib.suppress(Trapped):
            yield SendIPI(1, "sipi", 0x100)
        yield from park()

    boot(m, kernel())
    m.run(until=1000)
    assert [(c, f.vector) for c, f in faults] == [(0, GP)]
    assert ran == []
    assert m.cpus[1].state == "wait-for-sipi"


def test_second_sipi_to_a_running_ap_is_ignored() -> None:
    m = machine(cpus=2)
    ran: list[int] = []

    def ap(cpu):
        ran.append(cpu.env.now)
        yield Switch(idle_ctx("ap-idle"))

    def kernel():
        yield from start_ap(m, 1, ap)
        yield Compute(100)
        yield SendIPI(1, "sipi", TRAMPOLINE_PAGE)
        yield from park()

    boot(m, kernel())
    m.run(until=1000)
    assert ran == [1]
    assert m.cpus[1].ctx.name == "ap-idle"


def test_init_to_the_bsp_is_ignored() -> None:
    m = machine(cpus=2)

    def ap(cpu):
        yield SendIPI(0, "init")
        yield from park()

    def kernel():
        yield from start_ap(m, 1, ap)
        yield Compute(100)
        yield Compute(1)
        yield from park()

    boot(m, kernel())
    m.run(until=1000)
    assert m.cpus[0].state == "running"
    assert m.stats()["cpus"][0]["instructions"] == 2 + 101


# --- external IRQ routing -------------------------------------------------------------------


def test_external_irqs_go_to_cpu0_by_default_and_to_the_routed_cpu_only() -> None:
    m = machine(cpus=3)
    got: list[tuple[int, int, object]] = []
    ivt = IVT({IRQ_BASE + n: Gate(recorder(got)) for n in range(8)})

    def ap(cpu):
        yield SetIVT(ivt)
        yield Switch(idle_ctx(f"idle{cpu.id}"))

    def kernel():
        yield SetIVT(ivt)
        yield from start_ap(m, 1, ap)
        yield from start_ap(m, 2, ap)
        yield Switch(idle_ctx("idle0"))

    def device():
        yield m.env.timeout(1000)
        m.intc.raise_irq(3, "disk")
        yield m.env.timeout(1000)
        m.intc.route(3, 2)
        m.intc.raise_irq(3, "disk again")
        m.intc.raise_irq(4, "net")  # not routed: still CPU 0
        yield m.env.timeout(1000)
        m.intc.route(3, 0)
        m.intc.raise_irq(3, "back")

    boot(m, kernel())
    m.env.process(device())
    m.run(until=5000)
    assert got == [(0, 1000, "disk"), (2, 2000, "disk again"), (0, 2000, "net"), (0, 3000, "back")]
    vectors = {c.id: c.interrupts for c in m.cpus}
    assert vectors == {0: 3, 1: 0, 2: 1}


def test_irq_arrives_on_vector_irq_base_plus_n() -> None:
    m = machine()
    got: list[tuple[str, int]] = []

    def make(vector):
        def handler(cpu, info):
            got.append((info, vector))
            yield Compute(1)

        return handler

    def kernel():
        yield SetIVT(IVT({v: Gate(make(v)) for v in range(0x20, 0x40)}))
        yield from park()

    def device():
        yield m.env.timeout(10)
        m.intc.raise_irq(0, "irq0")
        m.intc.raise_irq(7, "irq7")

    boot(m, kernel())
    m.env.process(device())
    m.run(until=100)
    assert got == [("irq0", IRQ_BASE), ("irq7", IRQ_BASE + 7)]


def test_route_to_a_missing_cpu_is_rejected() -> None:
    m = machine(cpus=2)
    with pytest.raises(ValueError):
        m.intc.route(1, 2)
    with pytest.raises(ValueError):
        m.intc.route(1, -1)


def test_irq_to_a_cpu_without_a_handler_shuts_it_down() -> None:
    m = machine()

    def device():
        yield m.env.timeout(10)
        m.intc.raise_irq(1)

    boot(m, park())
    m.env.process(device())
    m.run(until=100)
    assert m.cpus[0].state == "shutdown"
    assert "no handler" in m.cpus[0].shutdown_reason


def test_init_sipi_restarts_a_running_ap_from_scratch() -> None:
    m = machine(cpus=2)
    starts: list[tuple[bool, object, int]] = []
    ticks: list[tuple[int, int, object]] = []
    first: list[Context] = []

    def ap(cpu):
        starts.append((cpu.mmu.paging, cpu.ivt, cpu.timer.period))
        if len(starts) == 1:
            m.memory.write_u32(0x10000, 0)
            yield LoadCR3(0x10000)
            yield EnablePaging()
            yield SetIVT(IVT({TIMER: Gate(recorder(ticks))}))
            yield SetTimer(50)
            first.append(idle_ctx("first-life"))
            yield Switch(first[0])
        yield from park()

    def kernel():
        yield from start_ap(m, 1, ap)
        yield Compute(500)
        yield from start_ap(m, 1, ap)
        yield from park()

    boot(m, kernel())
    m.run(until=2000)
    assert starts == [(False, None, 0), (False, None, 0)]
    assert first[0].cpu is None  # the old context was let go
    assert 5 <= len(ticks) <= 10 and all(t <= 502 for _, t, _ in ticks)  # its timer stopped at the INIT
