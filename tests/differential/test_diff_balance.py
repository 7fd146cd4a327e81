"""Per-AP ready queues with hand-off and stealing (section 4.3's `balance`) change nothing a program can see.

The scheduler decides only where and when a thread runs, never what it computes:
every program must still behave exactly as on the uniprocessor kernel, on 2, 3, 4
and 8 CPUs and on perturbed machines (other interleavings of hand-offs, steals and
pulls). The multithreaded programs matter most: their page faults and unmaps take
ready siblings off whatever queue they wait on (`stop_siblings`), their kills end
threads handed to an idle AP before it ran them, and more threads than APs make
the quantum's pull and the stealing happen. The lock checker and the TLB checker
are on in every run (`diffkit.observe`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from diffkit import assert_ak_clean, assert_same, observe, perturb_seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from randprog import REGISTRY, Prog, argv_for, register, rp_main
from test_diff_builtin import AK_CPUS, CASES, FILES, normalize, reference
from test_diff_files_sync import EXPECTED as SYNC_EXPECTED
from test_diff_files_sync import PROGRAMS as SYNC
from test_diff_local_calls import ids_and_sleeps
from test_diff_random import ALL_ENDINGS, KITCHEN_SINK, programs
from test_diff_targeted import fault_while_siblings_spin, interrupted, kill_busy_child, use_after_munmap_by_other_thread
from test_diff_thread_exit import join_under_a_reader, odd_joins, reads_dead_siblings_stack

from apkern.workloads import fft, lu, radix

BAL = ("balance",)
CI_SEEDS = 2  # perturbed runs per comparison in the ordinary run
PERTURBED_LIMIT = 4  # a perturbed run's kernel paths may cost up to twice as much and stall


def compare(
    program: Callable[..., Any], argv: list[str], cpus_list: list[int], limit: int = 200_000_000, **kw: Any
) -> list[Any]:
    """UP against balanced apkern on each of `cpus_list`, then on perturbed machines (the CPU counts in turn)."""
    ref = observe(program, argv, "up", 1, limit=limit)
    seeds = perturb_seeds(CI_SEEDS, f"balance {getattr(program, '__name__', program)} {argv} {cpus_list}")
    runs = [(cpus, None) for cpus in cpus_list] + [(cpus_list[k % len(cpus_list)], s) for k, s in enumerate(seeds)]
    out = []
    for cpus, seed in runs:
        got = observe(
            program,
            argv,
            "apkern",
            cpus,
            limit=limit * (1 if seed is None else PERTURBED_LIMIT),
            perturb=seed,
            extensions=kw.get("extensions", BAL),
        )
        assert_same(ref, got)
        assert_ak_clean(got)
        out.append(got)
    return out


# --- the built-in programs, plain and perturbed -------------------------------------------------------------


@pytest.mark.parametrize("cpus", AK_CPUS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_same_with_balance(case: str, cpus: int) -> None:
    prog, argv = CASES[case]
    got = observe(prog, argv, "apkern", cpus, FILES, extensions=BAL)
    assert_same(reference(case), got, normalize)
    assert_ak_clean(got)
    assert got.stats["balance_handoffs"] > 0  # its threads really went through the per-AP queues


PERTURBED = [
    (case, seed, AK_CPUS[(i + k) % len(AK_CPUS)])
    for i, case in enumerate(sorted(CASES))
    for k, seed in enumerate(perturb_seeds(1, "balance " + case))
]


@pytest.mark.parametrize(("case", "seed", "cpus"), PERTURBED)
def test_builtin_same_with_balance_perturbed(case: str, seed: int, cpus: int) -> None:
    prog, argv = CASES[case]
    got = observe(prog, argv, "apkern", cpus, FILES, perturb=seed, extensions=BAL)
    assert_same(reference(case), got, normalize)
    assert_ak_clean(got)


# --- random programs and the kitchen sink -------------------------------------------------------------------


def _random_run(prog: Prog, cpus: int, perturb: int | None = None) -> None:
    REGISTRY.clear()
    argv = argv_for(register(prog))
    got = observe(rp_main, argv, "apkern", cpus, perturb=perturb, extensions=BAL)
    assert_same(observe(rp_main, argv, "up", 1), got)
    calls = any(act[0] != "compute" for act in prog.actions) or prog.end[0] not in ("segv", "illegal", "gp")
    assert_ak_clean(got, require_calls=calls)


_SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@settings(max_examples=30, **_SETTINGS)
@given(prog=programs(), cpus=st.integers(2, 8))
def test_random_program_same_with_balance(prog: Prog, cpus: int) -> None:
    _random_run(prog, cpus)


@settings(max_examples=20, **_SETTINGS)
@given(prog=programs(), cpus=st.integers(2, 8), seed=st.integers(0, 2**32 - 1))
def test_random_program_same_with_balance_perturbed(prog: Prog, cpus: int, seed: int) -> None:
    _random_run(prog, cpus, perturb=seed)


@pytest.mark.parametrize("cpus", [2, 3, 4, 8])
@pytest.mark.parametrize("end", ALL_ENDINGS[:3], ids=lambda e: e[0])
def test_kitchen_sink_with_balance(end: tuple, cpus: int) -> None:
    _random_run(Prog(KITCHEN_SINK, end), cpus)


@pytest.mark.parametrize(("end", "seed"), [(end, s) for end in ALL_ENDINGS for s in perturb_seeds(1, f"bal {end}")])
def test_kitchen_sink_with_balance_perturbed(end: tuple, seed: int) -> None:
    _random_run(Prog(KITCHEN_SINK, end), 2 + seed % 7, perturb=seed)


# --- multithreaded programs: workloads, synchronisation, faults, kills, joins ---------------------------------


@pytest.mark.parametrize(
    ("program", "argv"),
    [
        (radix, ["radix", "4", "2000", "8"]),
        (lu, ["lu", "4", "32", "8"]),
        (fft, ["fft", "4", "3"]),
        ("threads", ["threads", "9"]),  # more threads than any machine here has APs
    ],
    ids=lambda x: x if isinstance(x, str) else getattr(x, "__name__", None),
)
def test_workloads_same_with_balance(program: Any, argv: list[str]) -> None:
    runs = compare(program, argv, [2, 3, 4, 8], limit=600_000_000)
    assert all(r.stats["balance_handoffs"] > 0 for r in runs)


def test_more_threads_than_aps_are_stolen_and_pulled() -> None:
    """Four LU threads and their main thread on two APs: some wait on a busy AP's queue and are stolen from it."""
    got = compare(lu, ["lu", "4", "32", "8"], [3])[0]
    st = got.stats
    assert st["balance_queued_on_busy"] > 0 and st["balance_steals"] > 0, st


@pytest.mark.parametrize("name", ["mutex_counter", "barrier_phases", "producer_consumer"])
def test_synchronisation_same_with_balance(name: str) -> None:
    prog, argv = SYNC[name]
    runs = compare(prog, argv, [2, 3, 4, 8])
    assert runs[0].console == SYNC_EXPECTED[name]


def test_page_faults_while_siblings_spin_with_balance() -> None:
    for cpus, k in [(2, 1), (3, 2), (3, 4), (4, 6), (8, 3)]:
        compare(fault_while_siblings_spin, ["fws", str(k)], [cpus], limit=20_000_000)


@pytest.mark.parametrize("cpus", [2, 3, 8])
def test_use_after_munmap_by_another_thread_with_balance(cpus: int) -> None:
    compare(use_after_munmap_by_other_thread, ["uam"], [cpus])


@pytest.mark.parametrize("cpus", [2, 5, 8])
def test_sigkill_of_a_multithreaded_process_with_balance(cpus: int) -> None:
    compare(kill_busy_child, ["kbc", "2"], [cpus])


@pytest.mark.parametrize("cpus", [2, 3, 4, 8])
def test_threads_reading_and_joining_with_balance(cpus: int) -> None:
    compare(reads_dead_siblings_stack, ["rdss", "400", "yield"], [cpus])
    compare(odd_joins, ["odd_joins"], [cpus])


@pytest.mark.parametrize("cpus", [3, 4, 8])
def test_join_stops_a_sibling_that_reads_the_joined_stack_with_balance(cpus: int) -> None:
    got = observe(join_under_a_reader, ["jur"], "apkern", cpus, extensions=BAL)
    assert got.top_status in (9, -11), got.top_status
    assert_ak_clean(got)


# --- together with calls served on the application kernel (yield and sleep requeue through the queues) --------


@pytest.mark.parametrize("cpus", [2, 3, 4, 8])
def test_balance_with_local_calls(cpus: int) -> None:
    both = ("local_calls", "balance")
    compare(ids_and_sleeps, ["ids"], [cpus], extensions=both)
    compare(interrupted, ["int", "sleep"], [cpus], extensions=both)
