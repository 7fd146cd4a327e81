"""The CPU: time is instructions, privilege, traps and faults, strictness, determinism."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hwkit import (
    Trapped,
    boot,
    fault_ivt,
    machine,
    park,
    recorder,
    start_ap,
    user_ctx,
)

from apkern.hw import (
    IVT,
    AtomicAdd,
    CodeAddr,
    Compute,
    Context,
    CpuId,
    EnablePaging,
    FlushTLB,
    Frame,
    Gate,
    Halt,
    Illegal,
    InvalidatePage,
    Load,
    LoadCR3,
    Machine,
    MachineError,
    PushFrame,
    Rdtsc,
    ReadCR3,
    SendIPI,
    SetIVT,
    SetTimer,
    Store,
    Switch,
    Trap,
    Xchg,
)
from apkern.hw.traps import GP, TIMER, UD

# --- 1. time is instructions ------------------------------------------------------------


def test_compute_advances_time_by_exactly_n_instructions() -> None:
    m = machine()
    seen: list[int] = []

    def kernel():
        t0 = yield Rdtsc()
        yield Compute(500)
        t1 = yield Rdtsc()
        yield Compute(1)
        t2 = yield Rdtsc()
        seen.extend([t0, t1, t2])
        yield from park()

    boot(m, kernel())
    m.run(until=10_000)
    assert seen == [0, 501, 503]  # each Rdtsc is itself one instruction
    cpu = m.stats()["cpus"][0]
    assert cpu["instructions"] == 504
    assert cpu["kernel_instructions"] == 504
    assert cpu["user_instructions"] == 0
    assert m.stats()["time"] == m.now == 10_000


def test_instructions_are_counted_per_cpu_and_per_mode() -> None:
    m = machine(cpus=2)

    def ap(cpu):
        yield Compute(3000)
        yield Switch(user_ctx(user_work()))

    def user_work():
        yield Compute(700)

    def kernel():
        yield Compute(1000)
        yield from start_ap(m, 1, ap)  # INIT at 1000, SIPI at 1001
        yield from park()

    boot(m, kernel())
    m.run(until=10_000)
    c0, c1 = m.stats()["cpus"]
    assert c0["instructions"] == 1002
    assert c1["instructions"] == 3700  # Switch itself is free: kernels charge their own switch paths
    assert c1["kernel_instructions"] == 3000
    assert c1["user_instructions"] == 700
    assert c0["state"] == c1["state"] == "running"


def test_halted_cpu_counts_halted_ticks_not_instructions() -> None:
    m = machine()
    ticks: list[tuple[int, int, object]] = []

    def kernel():
        yield SetIVT(IVT({TIMER: Gate(recorder(ticks, cost=10))}))
        yield SetTimer(300)  # programmed at t=1: ticks at 301, 601, 901
        while True:
            yield Halt()

    boot(m, kernel())
    m.run(until=1000)
    cpu = m.stats()["cpus"][0]
    assert [t for _, t, _ in ticks] == [301, 601, 901]
    assert cpu["instructions"] == 2 + 3 * 10
    assert cpu["interrupts"] == cpu["timer_interrupts"] == 3
    # Every tick is either an instruction or a halted tick, including the halt in progress at the end.
    assert cpu["halted"] == 1000 - cpu["instructions"]


def test_halt_in_progress_is_counted_in_stats() -> None:
    m = machine(cpus=2)

    def ap(cpu):
        yield Compute(3000)
        yield from park()

    def kernel():
        yield Compute(1000)
        yield from start_ap(m, 1, ap)
        yield from park()

    boot(m, kernel())
    m.run(until=10_000)
    c0, c1 = m.stats()["cpus"]
    assert c0["halted"] == 10_000 - 1002
    assert c1["halted"] == 10_000 - 1001 - 3000  # time held in reset is neither halted nor instructions
    m.run(until=12_000)
    assert m.stats()["cpus"][0]["halted"] == 12_000 - 1002


def _busy_machine() -> tuple[dict, list, str]:
    """Two CPUs, two timers, IPIs both ways and shared counters: a run with many interleavings."""
    m = machine(cpus=2)
    log: list[tuple[int, int, object]] = []
    faults: list = []
    counter = 0x200000
    ivt = fault_ivt(faults, {TIMER: Gate(recorder(log, 7)), 0x40: Gate(recorder(log, 13))})

    def worker(me: int, other: int, period: int):
        yield SetIVT(ivt)
        yield SetTimer(period)
        for i in range(40):
            yield Compute(97 + 31 * me + i)
            yield AtomicAdd(counter, 1)
            if i % 5 == me:
                yield SendIPI(other, "fixed", 0x40)
        yield from park()

    def ap(cpu):
        yield Switch(Context([Frame(worker(1, 0, 211), user=False, intr=True)], "w1"))

    def kernel():
        yield from start_ap(m, 1, ap)
        yield Switch(Context([Frame(worker(0, 1, 173), user=False, intr=True)], "w0"))

    boot(m, kernel())
    m.run(until=30_000)
    assert m.memory.read_u32(counter) == 80
    return m.stats(), log, hashlib.sha256(m.memory.data).hexdigest()


def test_runs_are_deterministic() -> None:
    first = _busy_machine()
    second = _busy_machine()
    assert first == second
    stats, log, _ = first
    assert stats["ipis"] > 10 and len(log) > 100  # the run really interleaved CPUs and interrupts
    assert {c for c, _, _ in log} == {0, 1}


def test_machine_rejects_bad_cpu_counts() -> None:
    for bad in (0, -1, 65, 2.0, "2"):
        with pytest.raises(ValueError):
            Machine(cpus=bad)  # type: ignore[arg-type]
    assert len(Machine(cpus=64, memory=1 << 16).cpus) == 64


def test_only_the_bsp_runs_at_power_on() -> None:
    m = machine(cpus=3)
    boot(m, park())
    m.run(until=100)
    assert [c["state"] for c in m.stats()["cpus"]] == ["running", "reset", "reset"]
    assert m.bsp is m.cpus[0]


# --- 2. privilege ------------------------------------------------------------------------

PRIVILEGED = {
    "LoadCR3": lambda: LoadCR3(0x10000),
    "ReadCR3": lambda: ReadCR3(),
    "EnablePaging": lambda: EnablePaging(),
    "InvalidatePage": lambda: InvalidatePage(0x1000),
    "FlushTLB": lambda: FlushTLB(),
    "SendIPI": lambda: SendIPI(0, "fixed", 0x40),
    "SetTimer": lambda: SetTimer(100),
    "SetIVT": lambda: SetIVT(IVT()),
    "Halt": lambda: Halt(),
    "Switch": lambda: Switch(Context([Frame(park(), user=False)], "elsewhere")),
    "PushFrame": lambda: PushFrame(iter([Compute(1)])),
}


@pytest.mark.parametrize("name", sorted(PRIVILEGED))
def test_privileged_op_from_user_mode_raises_gp(name: str) -> None:
    m = machine()
    faults: list = []
    after: list[str] = []
    ipi_log: list = []
    ivt = fault_ivt(faults, {0x40: Gate(recorder(ipi_log))})
    op = PRIVILEGED[name]()
    assert op.privileged

    def user():
        try:
            yield op
        except Trapped as t:
            after.append(f"trapped {t.fault.vector}")
        yield Compute(5)
        after.append("continued")

    ctx = user_ctx(user(), "user")

    def kernel():
        yield SetIVT(ivt)
        yield Switch(ctx)

    boot(m, kernel())
    m.run(until=1000)
    assert [(c, f.vector) for c, f in faults] == [(0, GP)]
    assert after == [f"trapped {GP}", "continued"]
    cpu = m.cpus[0]
    # ...and the op had no effect.
    assert cpu.ctx is ctx
    assert cpu.ivt is ivt
    assert cpu.mmu.cr3 == 0 and not cpu.mmu.paging and cpu.mmu.tlb.flushes == 0
    assert cpu.timer.period == 0
    assert m.intc.ipis_sent == 0 and ipi_log == []
    assert len(ctx.frames) == 1  # only the parking frame is left: nothing was pushed
    assert m.stats()["cpus"][0]["user_instructions"] == 5


def test_unprivileged_ops_run_in_user_mode() -> None:
    m = machine()
    faults: list = []
    got: list = []

    def main():
        yield Compute(1)

    def user():
        got.append((yield CpuId()))
        got.append((yield Rdtsc()) > 0)
        got.append((yield CodeAddr(main)))
        got.append((yield Trap(0x80, 20, 22)))

    def kernel():
        yield SetIVT(fault_ivt(faults, {0x80: Gate(lambda cpu, args: _add(args), user=True)}))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert faults == []
    assert got[:2] == [0, True]
    assert m.code.resolve(got[2]) is main
    assert got[3] == 42


def _add(args):
    yield Compute(3)
    return sum(args)


def test_privileged_ops_work_in_kernel_mode() -> None:
    m = machine()
    faults: list = []
    got: list = []

    def kernel():
        yield SetIVT(fault_ivt(faults))
        yield LoadCR3(0x10123)
        got.append((yield ReadCR3()))
        yield SetTimer(10_000)
        yield FlushTLB()
        yield InvalidatePage(0)
        yield from park()

    boot(m, kernel())
    m.run(until=100)
    assert faults == []
    assert got == [0x10000]  # CR3 keeps the page-directory frame address
    assert m.cpus[0].timer.period == 10_000


def test_illegal_instruction_raises_ud_in_user_and_kernel_mode() -> None:
    m = machine()
    faults: list = []
    order: list[str] = []

    def user():
        try:
            yield Illegal()
        except Trapped:
            order.append("user resumed")

    def kernel():
        yield SetIVT(fault_ivt(faults))
        try:
            yield Illegal()
        except Trapped:
            order.append("kernel resumed")
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert [f.vector for _, f in faults] == [UD, UD]
    assert order == ["kernel resumed", "user resumed"]


def test_trap_to_kernel_only_gate_from_user_mode_raises_gp() -> None:
    m = machine()
    faults: list = []
    calls: list = []
    results: list = []

    def kernel_only(cpu, args):
        calls.append(args)
        yield Compute(1)
        return "kernel"

    def user():
        for vector in (0x81, 0x99):  # a kernel-only gate, then no gate at all
            try:
                results.append((yield Trap(vector, "x")))
            except Trapped as t:
                results.append(("gp", t.fault.vector, t.fault.error))

    def kernel():
        yield SetIVT(fault_ivt(faults, {0x81: Gate(kernel_only, user=False)}))
        results.append((yield Trap(0x81, "from kernel")))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert results == ["kernel", ("gp", GP, 0x81 << 3), ("gp", GP, 0x99 << 3)]
    assert calls == [("from kernel",)]


def test_trap_gate_return_value_reaches_the_trapping_code() -> None:
    m = machine()
    got: list = []
    seen_by_handler: list = []

    def syscall(cpu, args):
        seen_by_handler.append((args, (yield ReadCR3())))  # the handler runs in kernel mode
        yield Compute(50)
        return args[0] * args[1]

    def user():
        t0 = yield Rdtsc()
        got.append((yield Trap(0x80, 6, 7)))
        t1 = yield Rdtsc()
        got.append((yield Trap(0x80, 3, 3)))
        got.append(t1 - t0)

    def kernel():
        yield SetIVT(IVT({0x80: Gate(syscall, user=True)}))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert got == [42, 9, 1 + 1 + 1 + 50]  # Rdtsc, the int instruction, the handler (ReadCR3 + Compute)
    assert seen_by_handler == [((6, 7), 0), ((3, 3), 0)]


def test_interrupt_return_value_does_not_reach_the_interrupted_code() -> None:
    m = machine()
    ticks: list = []
    values: list[int] = []

    def loop():
        for _ in range(300):
            values.append((yield Load(0x200000)))
            values.append((yield Xchg(0x200004, 5)))

    def kernel():
        m.memory.write_u32(0x200000, 1234)
        m.memory.write_u32(0x200004, 5)
        yield SetIVT(IVT({TIMER: Gate(recorder(ticks, 3))}))
        yield SetTimer(7)
        yield Switch(Context([Frame(park(), user=False), Frame(loop(), user=False, intr=True)], "loop"))

    boot(m, kernel())
    m.run(until=5000)
    assert len(ticks) > 50
    assert values == [1234, 5] * 300


def test_user_memory_access_with_paging_off_faults() -> None:
    m = machine()
    faults: list = []

    def user():
        with contextlib.suppress(Trapped):
            yield Store(0x5000, 1)

    def kernel():
        yield SetIVT(fault_ivt(faults))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=100)
    assert len(faults) == 1 and faults[0][1].vector == 14 and faults[0][1].user and faults[0][1].addr == 0x5000
    assert m.memory.read_u32(0x5000) == 0


# --- user code errors, bad code -----------------------------------------------------------


def test_strict_machine_raises_python_errors_in_user_code() -> None:
    m = machine()

    def user():
        yield Compute(1)
        raise ZeroDivisionError("oops")

    def kernel():
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    with pytest.raises(ZeroDivisionError):
        m.run(until=100)


def test_lenient_machine_turns_user_python_errors_into_ud() -> None:
    m = Machine(cpus=1, memory=1 << 20, strict=False)
    faults: list = []
    resumed: list = []

    def ud(cpu, flt):
        faults.append(flt)
        if len(faults) == 1:
            return None  # retry: the crashed program faults again
        resumed.append(True)
        yield from park()

    def user():
        yield Compute(1)
        raise KeyError("boom")

    def kernel():
        yield SetIVT(IVT({UD: Gate(ud)}))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=100)
    assert [f.vector for f in faults] == [UD, UD]
    assert "KeyError" in faults[0].reason
    assert resumed == [True]
    assert any("raised" in msg for msg in m.messages)


def test_kernel_python_errors_always_raise() -> None:
    m = Machine(cpus=1, memory=1 << 20, strict=False)

    def kernel():
        yield Compute(1)
        raise RuntimeError("kernel bug")

    boot(m, kernel())
    with pytest.raises(RuntimeError, match="kernel bug"):
        m.run(until=100)


def test_yielding_a_non_op_is_a_machine_error() -> None:
    m = machine()

    def kernel():
        yield "mov eax, 1"

    boot(m, kernel())
    with pytest.raises(MachineError, match="not an operation"):
        m.run(until=100)


def test_unhandled_exception_shuts_the_cpu_down() -> None:
    m = machine()

    def kernel():
        yield Illegal()  # no IVT at all: a triple fault
        yield Compute(1)

    boot(m, kernel())
    m.run(until=100)
    cpu = m.stats()["cpus"][0]
    assert cpu["state"] == "shutdown"
    assert cpu["instructions"] == 0
    assert "unhandled" in m.cpus[0].shutdown_reason
