"""Hostile processes under the master-slave port: whatever one does on a slave, it never stops the others or the master.

Malformed traps, privileged instructions and kernel vectors from user mode on a slave
(the slave's stub queues them for the master, which answers as the uniprocessor kernel
does: EINVAL, ENOSYS, #GP and death), and a page unmapped under a sibling that keeps
writing it on a slave (the munmap shoot-down: the write after the unmap must fault, as on
one CPU, and never land in a frame given to another process). Each runs beside an
innocent program whose output must be intact; nothing is left queued or on a slave.
"""

from __future__ import annotations

from typing import Any

import pytest

from apkern import System, libc
from apkern.bootkernel import abi
from apkern.hw import LoadCR3, SendIPI, Store, Trap
from apkern.hw import traps as vec

PAGE = 4096
LIMIT = 60_000_000


def _beside(cpus: int, innocent: tuple[str, list[str]], prog: Any) -> tuple[System, Any, Any]:
    sim = System(kernel="master-slave", cpus=cpus, strict=True, check_tlb=True, check_locks=True)
    inno = sim.spawn(*innocent)
    proc = sim.spawn(prog, ["prog"])
    sim.run(limit=LIMIT)
    assert inno.exit_status == 0, sim.console(inno.pid)
    st = sim.stats
    assert not st["cpus_on_dead_processes"] and not st["thread_table_slots"] and not st["queued_for_master"]
    assert st["handoffs"] > 0
    return sim, inno, proc


@pytest.mark.parametrize("cpus", [2, 4])
def test_raw_traps_get_the_uniprocessor_answers(cpus: int) -> None:
    got: dict[str, int] = {}

    def prog(argv: list[str]) -> Any:
        got["junk"] = yield Trap(vec.SYSCALL, "junk")
        got["empty"] = yield Trap(vec.SYSCALL)
        got["huge arg"] = yield Trap(vec.SYSCALL, abi.SYS_GETPID, 1 << 40)
        got["float arg"] = yield Trap(vec.SYSCALL, abi.SYS_GETPID, 1.5)
        got["negative nr"] = yield Trap(vec.SYSCALL, -1)
        got["unknown nr"] = yield Trap(vec.SYSCALL, 999)
        got["pid"] = yield Trap(vec.SYSCALL, abi.SYS_GETPID)
        return 0

    _, _, proc = _beside(cpus, ("pipeline", ["pipeline", "12"]), prog)
    assert proc.exit_status == 0
    for k in ("junk", "empty", "huge arg", "float arg"):
        assert got[k] == -abi.EINVAL, k
    assert got["negative nr"] == got["unknown nr"] == -abi.ENOSYS
    assert got["pid"] == proc.pid


@pytest.mark.parametrize(
    "op",
    [LoadCR3(0), SendIPI(0, "fixed", vec.IPI_RESCHEDULE), Trap(vec.IPI_TLB_SHOOTDOWN), Trap(vec.TIMER)],
    ids=["mov-cr3", "send-ipi", "int-shootdown", "int-timer"],
)
def test_privileged_operations_and_kernel_vectors_kill_only_the_offender(op: Any) -> None:
    def prog(argv: list[str]) -> Any:
        yield op
        return 0

    _, _, proc = _beside(3, ("pagetouch", ["pagetouch", "24"]), prog)
    assert proc.exit_status == -abi.SIGSEGV  # #GP


def _scribbler(base: int) -> Any:
    while True:
        yield Store(base, 0xBADBAD)
        yield Store(base + PAGE - 4, 0xBADBAD)
        yield from libc.compute(30)


def unmap_under_sibling(argv: list[str]) -> Any:
    """One thread keeps writing a page (its CPU caches the translation) while another unmaps it."""
    base = yield from libc.mmap(PAGE)
    yield Store(base, 1)
    yield from libc.thread_create(_scribbler, base)
    yield from libc.compute(20000)
    yield from libc.munmap(base, PAGE)
    yield from libc.sleep(400_000)
    yield from libc.exit(3)


@pytest.mark.parametrize("cpus", [3, 4])
def test_unmap_under_a_writing_sibling_faults_and_leaks_nothing(cpus: int) -> None:
    sim, inno, proc = _beside(cpus, ("pagetouch", ["pagetouch", "64"]), unmap_under_sibling)
    assert proc.exit_status == -abi.SIGSEGV  # as on one CPU: the scribbler's next write faults
    assert sim.console(inno.pid) == "pagetouch: 64 pages ok\n"
    assert sim.stats["tlb_shootdown_ipis"] > 0
