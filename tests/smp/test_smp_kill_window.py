"""A signal sent while its target's blocking call waits for the kernel lock at the call's entry.

The window: the victim, running on its CPU, has made an interruptible blocking call (pipe
read, waitpid, futex wait, sleep) and spins for the lock at the entry, while another CPU
holds the lock and sends it SIGKILL or a signal. The sender finds the thread RUNNING, not
asleep, so `Signals.send` has no sleep to end; the reschedule IPI it sends the victim's CPU
interrupts kernel code, not user code, and does nothing. Once the victim gets the lock its
call goes to sleep with the kill or signal pending, and nothing wakes it: the process never
exits. The bootstrap kernel's interruptible sleep looks for a waiting signal first (on one
CPU a call's loop that sleeps twice needs it), and under the port's lock the look and the
going to sleep are one stretch, so a signal is sent either before the look, which sees it,
or after the thread is on its channel, where `Signals.send` wakes it. These tests fail (the
runs hang until their instruction limit) without that look.

Each victim tells its killer it is ready, computes `pre` instructions and blocks; the killer
kills it as soon as it wakes. Sweeping `pre` in small steps moves the call's entry across the
kill; each sweep must land some kills in the window (`early_wakeups`: sleeps the look ended).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from apkern import System, libc
from apkern.bootkernel import abi

LIMIT = 3_000_000  # a run takes about 30,000 instructions; a victim left asleep ends the run here
WORD = libc.PROGRAM_DATA + 0x100  # the futex word (0)
CAUGHT = 5  # the victim's status when its SIGUSR1 handler ran
SWEEP = range(100, 600, 25)  # victim's compute before the call: 2-4 kills in the window on 2, 3 and 4 CPUs


def _reader(argv: list[str]) -> Any:
    """The waitpid victim's child: ends when the victim, the only writer of its pipe, has gone."""
    yield from libc.close(int(argv[2]))
    yield from libc.read(int(argv[1]), libc.PROGRAM_DATA, 16)
    return 0


def _on_usr1(sig: int) -> Any:
    """Ends the victim whenever it runs: in user code, or when the call the signal interrupted returns."""
    yield from libc.exit(CAUGHT)


def _victim(kind: str) -> Any:
    def victim(argv: list[str]) -> Any:
        ready, rfd, pre = int(argv[1]), int(argv[2]), int(argv[3])
        yield from libc.sigaction(abi.SIGUSR1, _on_usr1)
        if kind == "waitpid":
            crfd, cwfd = yield from libc.pipe()
            yield from libc.spawn(_reader, ["reader", str(crfd), str(cwfd)])
            yield from libc.close(crfd)
        yield from libc.write_bytes(ready, b"r")
        yield from libc.compute(pre)
        if kind == "read":  # an empty pipe whose write end the killer keeps
            yield from libc.read(rfd, libc.PROGRAM_DATA, 16)
        elif kind == "waitpid":
            yield from libc.waitpid(-1)
        elif kind == "futex":
            yield from libc.futex_wait(WORD, 0)
        else:
            yield from libc.sleep(10**9)
        return 3

    victim.__name__ = f"v_{kind}"
    return victim


def _killer(kind: str, sig: int, pre: int) -> Any:
    def killer(argv: list[str]) -> Any:
        rfd, wfd = yield from libc.pipe()
        ready_r, ready_w = yield from libc.pipe()
        pid = yield from libc.spawn(_victim(kind), [f"v_{kind}", str(ready_w), str(rfd), str(pre)])
        yield from libc.read_bytes(ready_r, 1)
        yield from libc.kill(pid, sig)
        yield from libc.print(f"victim {(yield from libc.waitpid(pid))}\n")
        return 0

    return killer


def once(kind: str, sig: int, pre: int, cpus: int, kernel: str = "smp", perturb: int | None = None) -> tuple[str, int]:
    """One run to its end (a hang raises SimulationLimit): the killer's output and the sleeps the look ended."""
    sim = System(kernel=kernel, cpus=cpus, strict=True, check_tlb=True, check_locks=True, perturb=perturb)
    killer = sim.spawn(_killer(kind, sig, pre), ["killer"])
    sim.run(limit=LIMIT)
    assert killer.exit_status == 0
    if kernel != "smp":
        return sim.console(killer.pid), 0
    k, stats = sim.kernel, sim.stats
    assert not k.sched.sleepers and not k.sched.timed and not k.sched.runq  # nobody left asleep or queued
    assert not k.kick_cpus and not stats["cpus_on_dead_processes"]
    return sim.console(killer.pid), stats["early_wakeups"]


@functools.cache
def oracle(kind: str, sig: int) -> str:
    """The uniprocessor kernel's answer: there the victim is always asleep when the signal comes."""
    return once(kind, sig, SWEEP[0], 1, kernel="up")[0]


def sweep(kind: str, sig: int, cpus: int, pres: range = SWEEP, perturb: int | None = None) -> int:
    want = oracle(kind, sig)
    early = 0
    for pre in pres:
        out, n = once(kind, sig, pre, cpus, perturb=perturb)
        assert out == want, (kind, sig, cpus, pre, perturb)
        early += n
    return early


KINDS = ("read", "waitpid", "futex", "sleep")


def test_the_oracle() -> None:
    for kind in KINDS:
        assert oracle(kind, abi.SIGKILL) == f"victim {-abi.SIGKILL}\n"
    assert oracle("read", abi.SIGTERM) == f"victim {-abi.SIGTERM}\n"
    assert oracle("read", abi.SIGUSR1) == f"victim {CAUGHT}\n"


@pytest.mark.parametrize("cpus", (2, 3, 4))
@pytest.mark.parametrize("kind", KINDS)
def test_a_kill_sent_while_the_call_waits_for_the_lock_ends_it(cpus: int, kind: str) -> None:
    assert sweep(kind, abi.SIGKILL, cpus) > 0, "no kill landed in the window"


@pytest.mark.parametrize(
    "kind,sig,cpus",
    [("read", abi.SIGTERM, 2), ("futex", abi.SIGTERM, 4), ("read", abi.SIGUSR1, 3), ("waitpid", abi.SIGUSR1, 2)],
)
def test_a_signal_sent_while_the_call_waits_for_the_lock_is_not_lost(kind: str, sig: int, cpus: int) -> None:
    """A default action (SIGTERM ends the process) or a handler (it runs as the interrupted call returns)."""
    assert sweep(kind, sig, cpus) > 0, "no signal landed in the window"


def test_kills_on_a_perturbed_machine() -> None:
    """Stretched and stalled kernel paths, late IPIs: the window moves, no kill is lost."""
    early = 0
    for seed in range(1, 7):
        early += sweep(KINDS[seed % 4], abi.SIGKILL, (2, 3, 4)[seed % 3], range(100, 600, 50), perturb=seed)
    assert early > 0, "no kill landed in the window"


def _one_byte(argv: list[str]) -> Any:
    yield from libc.read(int(argv[1]), libc.PROGRAM_DATA, 1)
    return 0


def test_a_kill_between_a_wakeup_and_the_next_sleep_of_a_calls_loop() -> None:
    """Two readers sleep on an empty pipe; one byte wakes both, and the second is killed while runnable.

    No sleep to end then either: the first takes the byte, the second's read loops and sleeps
    again with the kill pending. The bootstrap kernel's look ends that sleep, on one CPU as here.
    """

    def writer(argv: list[str]) -> Any:
        rfd, wfd = yield from libc.pipe()
        a = yield from libc.spawn(_one_byte, ["r1", str(rfd)])
        b = yield from libc.spawn(_one_byte, ["r2", str(rfd)])
        yield from libc.sleep(50_000)  # both asleep on the empty pipe
        yield from libc.write_bytes(wfd, b"x")
        yield from libc.kill(b, abi.SIGKILL)
        yield from libc.print(f"{(yield from libc.waitpid(a))} {(yield from libc.waitpid(b))}\n")
        return 0

    sim = System(kernel="smp", cpus=2, strict=True, check_tlb=True, check_locks=True)
    w = sim.spawn(writer, ["writer"])
    sim.run(limit=LIMIT)
    assert sim.console(w.pid) == f"0 {-abi.SIGKILL}\n"
    assert sim.stats["early_wakeups"] == 1
