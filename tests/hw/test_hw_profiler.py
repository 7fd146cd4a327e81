"""The profiler hook: told of every charge, with the frame; trap frames record what the hardware saw."""

from __future__ import annotations

import pytest
from hwkit import boot, machine, park, recorder, start_ap, user_ctx

from apkern.hw import IVT, Compute, Frame, Gate, Halt, Machine, MachineError, SetIVT, SetTimer, SpinWhile, Store, Switch
from apkern.hw import Trap as TrapOp
from apkern.hw.traps import TIMER

SYSCALL = 0x80


class Log:
    def __init__(self) -> None:
        self.charges: list[tuple[int, Frame, str, int]] = []

    def charge(self, cpu, frame, account, n) -> None:
        self.charges.append((cpu.id, frame, account, n))


def _program(m: Machine) -> None:
    """CPU 0: a user thread that computes, traps (eax=7, ebx=42) and is interrupted by its timer.

    CPU 1 spins on a word until CPU 0's system call writes it.
    """

    def syscall(cpu, args):
        yield Compute(30)
        yield Store(0x2000, 1)
        return args[0] + args[1]

    def user():
        yield Compute(5000)
        yield TrapOp(SYSCALL, 7, 42)
        yield Compute(100)

    def ap(cpu):
        yield SetIVT(IVT())
        yield SpinWhile(0x2000, 0)  # paging off: a physical word
        yield from park()

    def kernel():
        yield SetIVT(IVT({SYSCALL: Gate(syscall, user=True), TIMER: Gate(recorder([], cost=3))}))
        yield SetTimer(1000)
        yield from start_ap(m, 1, ap)
        yield Switch(user_ctx(user()))

    boot(m, kernel())


def _run(profiled: bool) -> tuple[Machine, Log]:
    m = machine(cpus=2)
    log = Log()
    if profiled:
        m.profile(log)
    _program(m)
    m.run(until=20_000)
    return m, log


def test_charges_add_up_to_every_cpus_accounts() -> None:
    m, log = _run(True)
    for c in m.cpus:
        by_account: dict[str, int] = {}
        for cid, _, account, n in log.charges:
            if cid == c.id:
                by_account[account] = by_account.get(account, 0) + n
        assert {a: v for a, v in by_account.items() if v} == {a: v for a, v in c.acct.items() if v}
    assert any(a == "spin" and cid == 1 and n > 1000 for cid, _, a, n in log.charges)  # the spin-wait too


def test_a_profiler_changes_nothing_the_machine_does() -> None:
    plain, _ = _run(False)
    profiled, _ = _run(True)
    assert plain.stats() == profiled.stats()


def test_trap_and_interrupt_frames_record_their_vector_and_registers() -> None:
    _, log = _run(True)
    trap = [f for cid, f, _, _ in log.charges if cid == 0 and f.kind == "trap"]
    assert trap and all(f.vector == SYSCALL and f.regs == (7, 42) and f.caller.user for f in trap)
    irq = [f for cid, f, _, _ in log.charges if f.kind == "irq"]
    assert irq and all(f.vector == TIMER and f.caller is None for f in irq)
    user = [f for cid, f, a, _ in log.charges if a == "user"]
    assert user and all(f.user and f.vector is None for f in user)


def _ops(*ops):
    yield from ops


def test_a_profiler_attaches_only_before_the_first_run() -> None:
    m = machine()
    boot(m, _ops(Compute(10), Halt()))
    m.run(until=5)
    with pytest.raises(MachineError):
        m.profile(Log())
