"""Helpers for the application-kernel tests: strict apkern systems, innocent baselines, clean-up checks.

Programs are generator functions `main(argv)`; closures may append what they see
to a list of the test (they run inside the simulation, on an application
processor, but they are still Python). Every system here is strict and checks
lock discipline, so a Python error in a program or a `MachineError` (e.g. an AP
still running in a freed address space, `Machine.frame_released`, or a guarded
write without the lock, `LockViolation`) propagates out of `run`.
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable, Generator
from typing import Any

from apkern import System, libc

Gen = Generator[Any, Any, Any]
LIMIT = 60_000_000  # instructions; every finite test program ends long before


def long_sleeper(argv: list[str]) -> Gen:
    """An innocent whose application thread stays alive (blocked in sleep) for a while."""
    yield from libc.sleep(300_000)
    yield from libc.print("long_sleeper: done\n")
    return 0


# programs that must not notice anything another process does: built-ins, and one that lives long
INNOCENTS: dict[str, tuple[Any, list[str]]] = {
    "pipeline": ("pipeline", ["pipeline", "12"]),
    "pagetouch": ("pagetouch", ["pagetouch", "24"]),
    "long_sleeper": (long_sleeper, ["long_sleeper"]),
}


def ak_system(cpus: int, **kw: Any) -> System:
    """A strict application-kernel system whose machine checks every TLB hit and the lock discipline."""
    kw.setdefault("check_tlb", True)
    kw.setdefault("check_locks", True)
    return System(kernel="apkern", cpus=cpus, strict=True, **kw)


def errno_of(gen: Gen) -> Gen:
    """Run one libc call: its result, or -errno if it raised OSError."""
    try:
        return (yield from gen)
    except OSError as e:
        return -e.errno


def assert_clean(sim: System) -> None:
    """No application thread outlives its process; every TCB created was freed."""
    s = sim.stats
    assert s["tcbs_live"] == 0, s["tcbs_live"]
    assert s["tcbs_created"] == s["tcbs_freed"], (s["tcbs_created"], s["tcbs_freed"])
    assert not sim.appkernel.ak.tcbs.live


@functools.cache
def alone(cpus: int, innocent: str) -> tuple[int | None, str]:
    """(exit status, console text) of an innocent program run alone on `cpus` CPUs."""
    sim = ak_system(cpus)
    name, argv = INNOCENTS[innocent]
    p = sim.spawn(name, argv)
    sim.run(limit=LIMIT)
    assert_clean(sim)
    return p.exit_status, sim.console(p.pid)


def run_beside(
    cpus: int, innocent: str, program: Callable[..., Gen], argv: list[str] | None = None, limit: int = LIMIT, **kw: Any
) -> tuple[System, Any, Any]:
    """Run `program` beside an innocent built-in (spawned first); check the innocent saw nothing."""
    sim = ak_system(cpus, **kw)
    name, iargv = INNOCENTS[innocent]
    inno = sim.spawn(name, iargv)
    proc = sim.spawn(program, argv)
    sim.run(limit=limit)
    assert (inno.exit_status, sim.console(inno.pid)) == alone(cpus, innocent)
    assert_clean(sim)
    return sim, inno, proc


def _collect_quietly() -> None:
    """Finalise the generators of an aborted simulation now, not at some random later moment.

    A run that raised leaves its code (generators) suspended; some of them yield in
    `finally` (libc closing a descriptor), which CPython reports as unraisable when
    the garbage collector closes them, and doing that in the middle of pytest's own
    work has crashed pytest's reporting.
    """
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _info: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


def run_isolated(build: Callable[..., tuple[System, Callable[[], None]]], *args: Any, limit: int = LIMIT) -> None:
    """`build(*args)` gives (system, check); run it and check. A failure is re-raised with a short traceback."""
    failure: tuple[type[BaseException], str] | None = None
    sim, check = build(*args)
    try:
        sim.run(limit=limit)
        check()
    except Exception as e:  # noqa: BLE001 - any failure is re-raised below, as the same type
        failure = (type(e), f"{type(e).__name__}: {e}")
    del sim, check
    if failure is not None:
        _collect_quietly()
        raise failure[0](failure[1])
