"""Races the fixed costs hide: an activation before the thread has blocked, a CR3 reload the same CR3 seems to spare.

After an application processor posts a message it releases the lock and only then
blocks the thread (`AppKernel.block`); the bootstrap side may activate it in
between. On the plain machine that window is about twenty instructions, far
shorter than any bootstrap-side call, so no test ever reaches it. Two guards live
in it:

- the activation of a thread that has not blocked yet only clears `waiting`, and
  `block` then lets the thread go on (else the activation is lost and the thread
  sleeps for ever);
- a thread resumed after its process's page tables changed reloads CR3 even when
  the CPU already holds the same CR3: on `block`'s fast path, and in `switch` to a
  sibling thread (else the CPU's TLB still translates an unmapped page).

The windows are reached two ways: by the machine's perturbation (`System(perturb=...)`:
random kernel-path stalls, here frequent), and by a constructed interleaving, a
slow `block` (a fixed delay inserted where the AP is about to block, as KCSAN
inserts delays at a chosen access). Each test asserts that its window was really
reached, so it cannot pass by missing it. The machine's TLB and lock checkers are on.

Seen failing with each guard removed: the activation ignoring a thread still RUNNING
(or `block` ignoring `waiting`) hangs the activation tests and the unmap and join
tests; `block`'s fast path without its reload fails the unmap and join tests (stale
TLB); the join without `pt_changed` fails the join test; `switch` without the
`pt_changed` term fails the slow-sibling test only together with stopping forwarding
siblings (`stop_siblings`), which alone now closes that window.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest
from akkit import assert_clean

from apkern import System, libc
from apkern.appkernel.kernel import AppKernel
from apkern.bootkernel import abi
from apkern.hw import Compute, Load, Perturbation, ReadTP

Gen = Generator[Any, Any, Any]
PAGE = 4096
LIMIT = 40_000_000  # instructions: every program here ends in a few million; a lost activation never does
STALLS = 0.5  # per-CPU stall probability bound: some runs get one very noisy CPU (`apkern.hw.perturb`)
MAGIC = 0x5EC12E7


def ak(cpus: int, perturb: Any = None) -> System:
    return System(
        kernel="apkern", cpus=cpus, strict=True, trace=True, check_tlb=True, check_locks=True, perturb=perturb
    )


def activations_before_block(sim: System) -> int:
    """Forwarded calls whose thread was activated before its CPU blocked it (it never left its CPU).

    From the trace: an "ak_posted" of a thread followed by its "ak_resumed" with no
    context switch away from the thread in between.
    """
    tr = sim.machine.tracer
    events = [(m.time, 0, m.name, m.key) for m in tr.marks if m.name in ("ak_posted", "ak_resumed")]
    events += [(t, 1, "switch", old) for t, _cpu, old, _new in tr.switches]
    events.sort(key=lambda e: (e[0], e[1]))
    stayed: dict[int, bool] = {}
    n = 0
    for _t, _o, name, key in events:
        if name == "ak_posted":
            stayed[key] = True
        elif name == "ak_resumed":
            n += stayed.pop(key, False)
        else:
            for tid in stayed:
                if key.endswith(f":app{tid}"):
                    stayed[tid] = False
    return n


def slow_block(monkeypatch: pytest.MonkeyPatch, delay: int, which: Callable[[Any], bool]) -> list[int]:
    """Make `block` take `delay` more instructions for the threads `which` picks; returns the TCB ids delayed."""
    original = AppKernel.block
    delayed: list[int] = []

    def block(self: AppKernel, cid: int, tcb: Any) -> Gen:
        if which(tcb):
            delayed.append(tcb.id)
            yield Compute(delay)  # the AP is slow between posting the message and blocking the thread
        return (yield from original(self, cid, tcb))

    monkeypatch.setattr(AppKernel, "block", block)
    return delayed


# --- 1. an activation that arrives before the AP has finished blocking the thread -----------------------------


def call_loop(argv: list[str]) -> Gen:
    """`k` threads and main each make `n` quick system calls (getpid)."""
    n, k = int(argv[1]), int(argv[2])
    tids = []
    for _ in range(k):
        tids.append((yield from libc.thread_create(_caller, n)))
    for _ in range(n):
        yield from libc.getpid()
    total = 0
    for tid in tids:
        total += yield from libc.thread_join(tid)
    yield from libc.print(f"{k} threads made {total} calls\n")
    return 0


def _caller(n: int) -> Gen:
    for _ in range(n):
        yield from libc.getpid()
    return n


SEEDS = range(12)


def test_activation_before_block_reached_by_perturbation() -> None:
    """With frequent kernel stalls some activations overtake the AP; every thread must still go on."""
    reached = 0
    for seed in SEEDS:
        sim = ak(2, Perturbation(seed, stall=STALLS))
        proc = sim.spawn(call_loop, ["call_loop", "30", "2"])
        sim.run(limit=LIMIT)
        assert (proc.exit_status, sim.console(proc.pid)) == (0, "2 threads made 60 calls\n"), seed
        assert_clean(sim)
        reached += activations_before_block(sim)
    assert reached >= 10  # measured: 23 over these seeds; never one on the plain machine


def test_activation_before_block_never_on_the_plain_machine() -> None:
    """Why the perturbation is needed: with fixed costs the window is never reached."""
    sim = ak(3)
    sim.spawn(call_loop, ["call_loop", "30", "2"])
    sim.run(limit=LIMIT)
    assert sim.stats["forwarded_calls"] > 90 and activations_before_block(sim) == 0


def test_every_activation_before_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constructed: every AP is slow to block, so every quick call's activation comes first."""
    delayed = slow_block(monkeypatch, 5000, lambda tcb: True)
    sim = ak(3)
    proc = sim.spawn(call_loop, ["call_loop", "20", "2"])
    sim.run(limit=LIMIT)
    assert (proc.exit_status, sim.console(proc.pid)) == (0, "2 threads made 40 calls\n")
    assert_clean(sim)
    assert len(delayed) > 60 and activations_before_block(sim) > 60


# --- 2. a page-table reload skipped because the CPU already holds the same CR3 ----------------------------------


def unmap_then_touch(argv: list[str]) -> Gen:
    """Touch a page, unmap it, touch it again: SIGSEGV, as on the uniprocessor kernel."""
    r = yield from libc.mmap(PAGE)
    yield from libc.store(r, MAGIC)  # this CPU's TLB now holds R
    yield from libc.munmap(r, PAGE)
    v = yield Load(r)
    yield from libc.print(f"stale read {v:#x}\n")
    return 98


def unmap_children(argv: list[str]) -> Gen:
    """`n` children in turn run `unmap_then_touch`; print how each ended."""
    ends: dict[int, int] = {}
    for _ in range(int(argv[1])):
        pid = yield from libc.spawn(unmap_then_touch, ["unmap_then_touch"])
        status = yield from libc.waitpid(pid)
        ends[status] = ends.get(status, 0) + 1
    yield from libc.print(f"{sorted(ends.items())}\n")
    return 0


def test_unmap_on_the_fast_path_reloads_cr3(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constructed: the munmap's activation comes before the AP blocks; the thread's next touch must fault."""
    slow_block(monkeypatch, 5000, lambda tcb: True)
    for cpus in (2, 4):
        sim = ak(cpus)
        proc = sim.spawn(unmap_then_touch, ["unmap_then_touch"])
        sim.run(limit=LIMIT)
        assert (proc.exit_status, sim.console(proc.pid)) == (-abi.SIGSEGV, "")
        assert activations_before_block(sim) >= 3  # mmap's fault, munmap, ... all took the fast path
        assert_clean(sim)


def test_unmap_on_the_fast_path_reached_by_perturbation() -> None:
    """Children that unmap and touch, under frequent stalls: every one dies of SIGSEGV."""
    reached = 0
    for seed in range(4):
        sim = ak(2, Perturbation(seed, stall=STALLS))
        proc = sim.spawn(unmap_children, ["unmap_children", "30"])
        sim.run(limit=LIMIT)
        assert (proc.exit_status, sim.console(proc.pid)) == (0, f"[({-abi.SIGSEGV}, 30)]\n"), seed
        assert_clean(sim)
        reached += activations_before_block(sim)
    assert reached >= 10


# main unmaps R while its sibling, whose CPU holds R in its TLB, is slow to block.
# shared page: +0 the sibling has touched R, +4 R's address


def _toucher(sh: int) -> Gen:
    r = yield from libc.load(sh + 4)
    yield from libc.load(r)  # this CPU's TLB now holds R
    yield from libc.store(sh, 1)
    yield from libc.sleep(200_000)  # outstanding while its CPU blocks it (slowly): the CPU picks a sibling
    return 0


def _spinner(sh: int) -> Gen:
    while (yield from libc.load(sh + 8)) == 0:
        yield from libc.compute(200)
    return 0


def unmap_while_sibling_blocks(argv: list[str]) -> Gen:
    sh = yield from libc.mmap(PAGE)
    r = yield from libc.mmap(PAGE)
    yield from libc.store(r, MAGIC)
    yield from libc.store(sh + 4, r)
    yield from libc.thread_create(_toucher, sh)
    yield from libc.thread_create(_spinner, sh)  # held by the unmap, then ready before main: keeps the other AP
    while (yield from libc.load(sh)) == 0:
        yield from libc.compute(200)
    yield from libc.munmap(r, PAGE)
    v = yield Load(r)
    yield from libc.print(f"main: stale read {v:#x}\n")
    return 98


def test_sibling_slow_to_block_during_an_unmap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constructed: the toucher's CPU is slow to block it while main unmaps R; main's touch must fault.

    Two defences, and removing either alone keeps this passing: the unmap waits for a sibling
    that is still forwarding to leave its CPU (`stop_siblings`), and a CPU that switches to a
    thread whose tables changed reloads CR3 even when it holds the same one (`switch`). Without
    the first, the toucher's CPU goes straight from the toucher to main, same CR3, R in its TLB.
    """
    delayed = slow_block(monkeypatch, 20_000, lambda tcb: tcb.id == 2)  # the toucher: main is 1, the spinner 3
    sim = ak(3)
    proc = sim.spawn(unmap_while_sibling_blocks, ["unmap_while_sibling_blocks"])
    sim.run(limit=LIMIT)
    assert (proc.exit_status, sim.console(proc.pid)) == (-abi.SIGSEGV, "")
    assert_clean(sim)
    assert delayed == [2]


# the joining thread's activation overtakes its CPU; the join has unmapped the joined thread's stack

WORD_ADDR = libc.PROGRAM_DATA + 0x80  # where the worker publishes the address of a word of its stack


def _publish(arg: int) -> Gen:
    word = (yield ReadTP()) - 512
    yield from libc.store(word, arg)
    yield from libc.store(WORD_ADDR, word)
    return arg + 1


def reads_stack_across_join(argv: list[str]) -> Gen:
    tid = yield from libc.thread_create(_publish, 41)
    while (yield from libc.load(WORD_ADDR)) == 0:
        yield from libc.compute(200)
    word = yield from libc.load(WORD_ADDR)
    v = yield from libc.load(word)  # this CPU's TLB now holds the worker's stack
    rv = yield from libc.thread_join(tid)
    yield from libc.print(f"read {v:#x}, joined {rv}\n")
    v = yield Load(word)  # the stack went at the join: SIGSEGV, as on the uniprocessor kernel
    yield from libc.print(f"stale read {v:#x}\n")
    return 98


@pytest.mark.parametrize("cpus", [2, 3])
def test_join_on_the_fast_path_reloads_cr3(monkeypatch: pytest.MonkeyPatch, cpus: int) -> None:
    """Constructed: the join's activation comes before the joiner's CPU blocks it; the stack it read is gone."""
    up = System(kernel="up", strict=True)
    up_proc = up.spawn(reads_stack_across_join, ["reads_stack_across_join"])
    up.run(limit=LIMIT)
    assert (up_proc.exit_status, up.console()) == (-abi.SIGSEGV, "read 0x29, joined 42\n")
    slow_block(monkeypatch, 5000, lambda tcb: True)
    sim = ak(cpus)
    proc = sim.spawn(reads_stack_across_join, ["reads_stack_across_join"])
    sim.run(limit=LIMIT)
    assert (proc.exit_status, sim.console(proc.pid)) == (up_proc.exit_status, up.console())
    assert activations_before_block(sim) >= 2  # the join's among them
    assert_clean(sim)
