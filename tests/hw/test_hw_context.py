"""Contexts: Switch resumes where a context left off; a context runs on one CPU at a time; PushFrame."""

from __future__ import annotations

import pytest
from hwkit import boot, idle_ctx, machine, park, recorder, start_ap, user_ctx

from apkern.hw import (
    IVT,
    Compute,
    Context,
    CpuId,
    Frame,
    Gate,
    Machine,
    MachineError,
    PushFrame,
    Rdtsc,
    SetIVT,
    SetTimer,
    Switch,
    Trap,
)
from apkern.hw.traps import TIMER


def test_switch_resumes_each_context_where_it_left_off() -> None:
    m = machine()
    order: list[str] = []
    ctxs: dict[str, Context] = {}

    def body(name: str, other: str):
        for count in range(1, 4):  # a local that must survive the switches
            order.append(f"{name}{count}")
            yield Compute(10)
            yield Switch(ctxs[other])
        order.append(f"{name} done")
        yield from park()

    ctxs["a"] = Context([Frame(body("a", "b"), user=False)], "a")
    ctxs["b"] = Context([Frame(body("b", "a"), user=False)], "b")
    m.power_on(ctxs["a"])
    m.run(until=1000)
    assert order == ["a1", "b1", "a2", "b2", "a3", "b3", "a done"]
    assert m.cpus[0].ctx is ctxs["a"] and ctxs["a"].cpu is m.cpus[0]
    assert ctxs["b"].cpu is None  # switched away from: not running anywhere
    assert m.stats()["cpus"][0]["instructions"] == 60


def test_switch_to_the_current_context_is_a_no_op() -> None:
    m = machine()
    order: list[int] = []
    me: list[Context] = []

    def kernel():
        order.append(1)
        yield Switch(me[0])
        order.append(2)
        yield from park()

    me.append(boot(m, kernel()))
    m.run(until=100)
    assert order == [1, 2]


def test_preempted_user_computations_resume_with_their_remainder() -> None:
    m = machine()
    spans: dict[int, tuple[int, int]] = {}
    ctxs: list[Context] = []

    def worker(i: int):
        start = yield Rdtsc()
        yield Compute(5000)
        spans[i] = (start, (yield Rdtsc()))

    def tick(cpu, info):
        yield Compute(20)
        other = ctxs[1 - ctxs.index(cpu.ctx)]
        if len(other.frames) > 1:  # its user frame has not finished yet
            yield Switch(other)  # this irq frame stays on the preempted context's stack

    ctxs.extend([user_ctx(worker(0), "w0"), user_ctx(worker(1), "w1")])

    def kernel():
        yield SetIVT(IVT({TIMER: Gate(tick)}))
        yield SetTimer(1000)
        yield Switch(ctxs[0])

    boot(m, kernel())
    m.run(until=30_000)
    assert set(spans) == {0, 1}
    (s0, e0), (s1, e1) = spans[0], spans[1]
    assert s0 < s1 < e0  # the two really interleaved
    assert e0 - s0 > 5001 and e1 - s1 > 5001
    cpu = m.stats()["cpus"][0]
    assert cpu["user_instructions"] == 2 * (5000 + 2)  # not one instruction of user work lost or repeated


def test_switching_to_a_context_running_on_another_cpu_is_a_machine_error() -> None:
    m = machine(cpus=2)
    shared = idle_ctx("shared")

    def ap(cpu):
        yield Switch(shared)

    def kernel():
        yield from start_ap(m, 1, ap)
        yield Compute(100)
        assert shared.cpu is m.cpus[1]
        yield Switch(shared)

    boot(m, kernel())
    with pytest.raises(MachineError, match="already running on cpu1"):
        m.run(until=1000)


def test_a_context_released_by_one_cpu_resumes_on_another() -> None:
    m = machine(cpus=2)
    where: list[int] = []
    ctxs: dict[str, Context] = {}

    def job():
        where.append((yield CpuId()))
        yield Compute(100)
        yield Switch(ctxs["boot"])  # CPU 0 goes back to its boot context and lets go of this one
        where.append((yield CpuId()))
        yield from park()

    def ap(cpu):
        yield Compute(300)
        yield Switch(ctxs["job"])

    def kernel():
        yield from start_ap(m, 1, ap)
        yield Switch(ctxs["job"])
        yield from park()

    ctxs["job"] = Context([Frame(job(), user=False)], "job")
    ctxs["boot"] = boot(m, kernel())
    m.run(until=2000)
    assert where == [0, 1]
    assert ctxs["job"].cpu is m.cpus[1] and m.cpus[1].ctx is ctxs["job"]
    assert ctxs["boot"].cpu is m.cpus[0]


def test_switch_to_an_empty_context_is_a_machine_error() -> None:
    m = machine()

    def kernel():
        yield Switch(Context([], "empty"))

    boot(m, kernel())
    with pytest.raises(MachineError, match="empty"):
        m.run(until=100)


def test_returning_from_the_last_frame_is_a_machine_error() -> None:
    m = machine()

    def kernel():
        yield Compute(5)

    boot(m, kernel())
    with pytest.raises(MachineError, match="returned from its last frame"):
        m.run(until=100)


def test_push_frame_runs_user_code_before_returning_to_the_trapping_code() -> None:
    m = machine()
    order: list[object] = []

    def signal_handler(signo: int):
        order.append(("handler", signo, (yield Rdtsc()) > 0))
        yield Compute(10)

    def kill(cpu, args):
        yield PushFrame(signal_handler(args[0]))
        yield Compute(30)
        order.append("kernel returns")
        return 0

    def user():
        order.append("before")
        order.append(("trap returned", (yield Trap(0x80, 9))))
        order.append("after")

    def kernel():
        yield SetIVT(IVT({0x80: Gate(kill, user=True)}))
        yield Switch(user_ctx(user()))

    boot(m, kernel())
    m.run(until=1000)
    assert order == ["before", "kernel returns", ("handler", 9, True), ("trap returned", 0), "after"]
    assert m.stats()["cpus"][0]["user_instructions"] == 1 + 1 + 10  # int, Rdtsc, handler work


def test_tracer_records_switches() -> None:
    m = Machine(cpus=1, memory=1 << 20, strict=True, trace=True)
    ticks: list = []
    other = idle_ctx("other")

    def kernel():
        yield SetIVT(IVT({TIMER: Gate(recorder(ticks))}))
        yield Compute(10)
        yield Switch(other)

    boot(m, kernel(), name="boot")
    m.run(until=100)
    assert m.tracer is not None
    assert m.tracer.switches == [(0, 0, "", "boot"), (11, 0, "boot", "other")]
