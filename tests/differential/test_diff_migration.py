"""Threads moving between the two kernels (section 4.3's `migration`) change nothing a program can see.

Processes are spawned with placement "auto". Three policies: the real one (a thread
goes home when its user work per call falls below the forwarding work, and back
above twice that), "ping-pong" (every window ends in a move: a thread crosses every
two calls, both ways) and "sticky" (home after two calls, back only when it must).
Every run must match the uniprocessor kernel, and the moves must really have
happened (counted by the application kernel).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from diffkit import assert_ak_clean, assert_same, observe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from randprog import REGISTRY, Prog, argv_for, register, rp_main
from test_diff_builtin import CASES, FILES, normalize, reference
from test_diff_random import KITCHEN_SINK, programs
from test_diff_targeted import (
    interrupted,
    kill_busy_child,
    main_thread_exits_first,
    use_after_munmap_by_other_thread,
    worker_signals_process,
)

from apkern import libc
from apkern.appkernel import abi as ak

MIG = ("migration",)
POLICIES = {
    "ping-pong": {"WINDOW_CALLS": 2, "HOME_USER": 10**9, "AWAY_USER": 0},
    "sticky": {"WINDOW_CALLS": 2, "HOME_USER": 10**9, "AWAY_USER": 10**9},
}


@pytest.fixture(params=sorted(POLICIES))
def policy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in POLICIES[request.param].items():
        monkeypatch.setattr(ak, name, value)
    return request.param


def run_auto(program: Any, argv: list[str], cpus: int, **kw: Any) -> Any:
    return observe(program, argv, "apkern", cpus, extensions=MIG, placement="auto", **kw)


def moved(obs: Any) -> tuple[int, int]:
    return obs.stats["migrations_home"], obs.stats["migrations_away"]


# --- the real policy: a program whose phases change ------------------------------------------------------


def phases(argv: list[str]) -> Generator[Any, Any, int]:
    """Kernel-bound, compute-bound, kernel-bound again: home, back, home."""
    n = int(argv[1])
    for phase in range(3):
        for _ in range(n):
            if phase == 1:
                yield from libc.compute(5000)
            yield from libc.getpid()
        yield from libc.print(f"phase {phase}: tid {(yield from libc.gettid())}\n")
    return 3


@pytest.mark.parametrize("cpus", [2, 4, 8])
def test_phases_move_home_and_back_under_the_real_policy(cpus: int) -> None:
    ref = observe(phases, ["phases", "60"], "up", 1)
    got = run_auto(phases, ["phases", "60"], cpus)
    assert_same(ref, got)
    assert_ak_clean(got)
    home, away = moved(got)
    assert home == 2 and away == 1, (home, away)
    # placement "ap" (the default) never moves, with the extension on or off
    still = observe(phases, ["phases", "60"], "apkern", cpus, extensions=MIG)
    assert moved(still) == (0, 0)
    assert_same(ref, still)


def test_compute_bound_threads_stay_on_the_aps() -> None:
    got = run_auto("loop", ["loop", "20000", "151", "40"], 4)
    assert_same(observe("loop", ["loop", "20000", "151", "40"], "up", 1), got)
    assert moved(got) == (0, 0)


def test_kernel_bound_threads_go_home_and_stay() -> None:
    got = run_auto("loop", ["loop", "10", "151", "200"], 4)
    assert_same(observe("loop", ["loop", "10", "151", "200"], "up", 1), got)
    assert moved(got) == (1, 0)
    assert got.stats["forwarded_calls"] < 30  # the first window's, then none


# --- forced moves: every program, every way ---------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_same_with_migration(case: str, policy: str) -> None:
    prog, argv = CASES[case]
    got = run_auto(prog, argv, 3, files=FILES)
    assert_same(reference(case), got, normalize)
    assert_ak_clean(got, require_calls=False)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(prog=programs(), cpus=st.integers(2, 8))
def test_random_program_same_with_migration(prog: Prog, cpus: int, policy: str) -> None:
    REGISTRY.clear()
    argv = argv_for(register(prog))
    assert_same(observe(rp_main, argv, "up", 1), run_auto(rp_main, argv, cpus))


@pytest.mark.parametrize("cpus", [2, 5, 8])
def test_kitchen_sink_moves_both_ways(cpus: int, policy: str) -> None:
    REGISTRY.clear()
    argv = argv_for(register(Prog(KITCHEN_SINK, ("return", 3))))
    got = run_auto(rp_main, argv, cpus)
    assert_same(observe(rp_main, argv, "up", 1), got)
    assert_ak_clean(got)
    home, away = moved(got)
    assert home >= 3 and (away >= 3 if policy == "ping-pong" else away >= 1), (home, away)


TARGETED = {
    "worker signals its process": (worker_signals_process, ["wsp"]),
    "signal interrupts read": (interrupted, ["int", "read"]),
    "signal interrupts sleep": (interrupted, ["int", "sleep"]),
    "kill a busy child": (kill_busy_child, ["kbc", "2"]),
    "main thread exits first": (main_thread_exits_first, ["mte"]),
    "use after munmap by another thread": (use_after_munmap_by_other_thread, ["uam"]),
}


TARGETED_LIMIT = 20_000_000  # each takes at most 250,000 instructions: a hang fails in seconds


@pytest.mark.parametrize("case", sorted(TARGETED))
@pytest.mark.parametrize("cpus", [2, 4])
def test_targeted_cases_with_migration(case: str, cpus: int, policy: str) -> None:
    prog, argv = TARGETED[case]
    got = run_auto(prog, argv, cpus, limit=TARGETED_LIMIT)
    assert_same(observe(prog, argv, "up", 1), got)
    assert_ak_clean(got)
    assert moved(got)[0] >= 1


@pytest.mark.parametrize(("seed", "cpus"), [(1, 2), (2, 3), (3, 5), (4, 8)])
def test_migration_on_a_perturbed_machine(seed: int, cpus: int, policy: str) -> None:
    REGISTRY.clear()
    argv = argv_for(register(Prog(KITCHEN_SINK, ("return", 3))))
    got = run_auto(rp_main, argv, cpus, perturb=seed, limit=800_000_000)
    assert_same(observe(rp_main, argv, "up", 1), got)
    assert_ak_clean(got)
    assert moved(got)[0] >= 1


# --- a signal handler at home that makes calls of its own ------------------------------------------------


def _chatty_handler(sig: int) -> Generator[Any, Any, None]:
    for _ in range(2):  # with the print and the kill, five calls a round: the windows' phase moves
        yield from libc.getpid()
    yield from libc.print(f"handler {sig}\n")


def handler_calls_at_home(argv: list[str]) -> Generator[Any, Any, int]:
    """Each kill is delivered on the way out of the kill call, whose entry (crt0's, at home) the handler
    interrupts; the handler's own calls end policy windows. Going back from inside it would carry the
    interrupted entry to the AP, where it would go on as if at home: the driver refuses (EAGAIN)."""
    from apkern.bootkernel import abi as sysabi

    yield from libc.sigaction(sysabi.SIGUSR1, _chatty_handler)
    me = yield from libc.getpid()
    for i in range(6):
        yield from libc.kill(me, sysabi.SIGUSR1)
        yield from libc.print(f"after kill {i}\n")
    return 0


@pytest.mark.parametrize("cpus", [2, 4])
def test_no_move_back_from_inside_a_handler_that_interrupted_an_entry(
    cpus: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in POLICIES["ping-pong"].items():
        monkeypatch.setattr(ak, name, value)
    got = run_auto(handler_calls_at_home, ["hcah"], cpus, limit=TARGETED_LIMIT)
    assert_same(observe(handler_calls_at_home, ["hcah"], "up", 1), got)
    assert_ak_clean(got)
    assert got.stats["migrations_refused"] >= 3 and got.stats["migrations_away"] >= 3
