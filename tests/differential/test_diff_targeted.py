"""Hand-written differential programs aimed at the application kernel's hard cases (and run on the SMP port too).

Multithreaded processes whose threads really run at the same time on several
application processors (page faults while siblings run, munmap, signals, fatal
exceptions and exit in a non-main thread, SIGKILL of a process whose threads
are on APs), blocking calls interrupted by signals whose handlers print, and
the descriptor numbers a program sees. Each program is deterministic on a
uniprocessor and written so that its output does not depend on timing; the
application kernel must reproduce it exactly.

Each case once exposed a bug; the diagnosis is kept in its docstring or comment.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest
from diffkit import PORTS, assert_clean, assert_same, observe, perturb_seeds

from apkern import System, libc
from apkern.bootkernel import abi

PAGE = 4096
COUNTER = libc.PROGRAM_DATA + 0x40  # per-process static: handler invocations
ALL_AK_CPUS = [2, 3, 4, 5, 8]
CI_SEEDS = 2  # perturbed runs per comparison in the ordinary run
PERTURBED_LIMIT = 4


def compare(program: Callable[..., Any], argv: list[str], cpus_list: list[int], limit: int = 200_000_000) -> None:
    """UP against each of `PORTS` on each of `cpus_list`, then on perturbed machines (the CPU counts taken in turn).

    A perturbed run may take up to PERTURBED_LIMIT times longer: kernel paths may cost twice
    as much and stall (`apkern.hw.perturb`).
    """
    ref = observe(program, argv, "up", 1, limit=limit)
    seeds = perturb_seeds(CI_SEEDS, f"{program.__name__} {argv} {cpus_list}")
    runs = [(cpus, None) for cpus in cpus_list] + [(cpus_list[k % len(cpus_list)], s) for k, s in enumerate(seeds)]
    for kernel in PORTS:
        for cpus, seed in runs:
            got = observe(
                program, argv, kernel, cpus, limit=limit * (1 if seed is None else PERTURBED_LIMIT), perturb=seed
            )
            assert_same(ref, got)
            assert_clean(got)


def on_signal(sig: int) -> Generator[Any, Any, None]:
    yield from libc.print(f"handler: signal {sig}\n")
    n = yield from libc.load(COUNTER)
    yield from libc.store(COUNTER, n + 1)


def wait_for_handler(tries: int = 2000) -> Generator[Any, Any, bool]:
    for _ in range(tries):
        if (yield from libc.load(COUNTER)):
            return True
        yield from libc.compute(100)
        yield from libc.yield_()
    return False


def spin_until(flag: int) -> Generator[Any, Any, int]:
    """Thread body: spin (no system call) until the word at `flag` is set."""
    while (yield from libc.load(flag)) == 0:
        yield from libc.compute(300)
    return 1


def spin_forever(_arg: int) -> Generator[Any, Any, int]:
    while True:
        yield from libc.compute(1000)


# --- a worker thread signals its own process: the handler runs in the main thread, join gets EINTR ------------


def _signalling_worker(_arg: int) -> Generator[Any, Any, int]:
    yield from libc.compute(50_000)  # main is long asleep in thread_join by then
    me = yield from libc.getpid()
    yield from libc.kill(me, abi.SIGUSR1)
    return 7


def worker_signals_process(argv: list[str]) -> Generator[Any, Any, int]:
    yield from libc.sigaction(abi.SIGUSR1, on_signal)
    tid = yield from libc.thread_create(_signalling_worker, 0)
    try:
        rv = yield from libc.thread_join(tid)
        yield from libc.print(f"join returned {rv}\n")
    except OSError as e:
        yield from libc.print(f"join failed: errno {e.errno}\n")
        rv = yield from libc.thread_join(tid)
        yield from libc.print(f"second join returned {rv}\n")
    yield from libc.print(f"handler ran {(yield from libc.load(COUNTER))} time(s)\n")
    return 0


def test_worker_signals_its_process() -> None:
    compare(worker_signals_process, ["wsp"], ALL_AK_CPUS)


# --- a fatal exception / exit in a non-main thread ends the whole process -----------------------------------


def _segv_worker(_arg: int) -> Generator[Any, Any, int]:
    yield from libc.compute(200_000)  # main has printed and sleeps in join by then
    yield from libc.load(0x10)
    return 0


def worker_segv(argv: list[str]) -> Generator[Any, Any, int]:
    yield from libc.thread_create(spin_forever, 0)
    tid = yield from libc.thread_create(_segv_worker, 0)
    yield from libc.print("main: joining\n")
    yield from libc.thread_join(tid)
    yield from libc.print("main: survived\n")
    return 0


def _exit_worker(_arg: int) -> Generator[Any, Any, int]:
    yield from libc.compute(200_000)
    yield from libc.exit(42)
    return 0


def worker_exit(argv: list[str]) -> Generator[Any, Any, int]:
    yield from libc.thread_create(spin_forever, 0)
    tid = yield from libc.thread_create(_exit_worker, 0)
    yield from libc.print("main: joining\n")
    yield from libc.thread_join(tid)
    yield from libc.print("main: survived\n")
    return 0


@pytest.mark.parametrize("program", [worker_segv, worker_exit], ids=lambda f: f.__name__)
def test_non_main_thread_ends_the_process(program: Callable[..., Any]) -> None:
    compare(program, [program.__name__], ALL_AK_CPUS)


# --- SIGKILL of a process whose threads run on application processors ------------------------------------------


def _busy_child(argv: list[str]) -> Generator[Any, Any, int]:
    for _ in range(int(argv[2])):
        yield from libc.thread_create(spin_forever, 0)
    yield from libc.write_bytes(int(argv[1]), b"r")
    while True:
        yield from libc.compute(1000)


def kill_busy_child(argv: list[str]) -> Generator[Any, Any, int]:
    rfd, wfd = yield from libc.pipe()
    pid = yield from libc.spawn(_busy_child, ["busy", str(wfd), argv[1]])
    yield from libc.close(wfd)
    ready = yield from libc.read_bytes(rfd, 1)
    yield from libc.kill(pid, abi.SIGKILL)
    status = yield from libc.waitpid(pid)
    yield from libc.print(f"ready {ready!r}, child status {status}\n")
    return 0


@pytest.mark.parametrize("cpus", [2, 5, 8])
def test_sigkill_of_a_multithreaded_process_on_aps(cpus: int) -> None:
    compare(kill_busy_child, ["kbc", "2"], [cpus])


# --- blocking calls interrupted by a signal whose handler prints ---------------------------------------------


def _signal_parent(argv: list[str]) -> Generator[Any, Any, int]:
    yield from libc.compute(200_000)  # the parent is long blocked by then
    yield from libc.kill(int(argv[1]), abi.SIGUSR1)
    return 0


def interrupted(argv: list[str]) -> Generator[Any, Any, int]:
    yield from libc.sigaction(abi.SIGUSR1, on_signal)
    me = yield from libc.getpid()
    rfd, wfd = yield from libc.pipe()
    child = yield from libc.spawn(_signal_parent, ["sp", str(me)])
    try:
        if argv[1] == "sleep":
            yield from libc.sleep(50_000_000)
            yield from libc.print("sleep completed\n")
        elif argv[1] == "read":
            data = yield from libc.read_bytes(rfd, 10)
            yield from libc.print(f"read returned {data!r}\n")
        else:
            st = yield from libc.waitpid(-1)
            yield from libc.print(f"waitpid returned {st}\n")
    except OSError as e:
        yield from libc.print(f"{argv[1]}: errno {e.errno}\n")
    status = yield from libc.waitpid(child)
    yield from libc.print(f"child {status}, handler ran {(yield from libc.load(COUNTER))}\n")
    return 0


@pytest.mark.parametrize("call", ["sleep", "read", "waitpid"])
def test_blocking_call_interrupted_by_a_printing_handler(call: str) -> None:
    compare(interrupted, ["int", call], ALL_AK_CPUS)


def epipe(argv: list[str]) -> Generator[Any, Any, int]:
    rfd, wfd = yield from libc.pipe()
    yield from libc.close(rfd)
    if argv[1] == "ignore":
        yield from libc.sigaction(abi.SIGPIPE, abi.SIG_IGN)
    try:
        yield from libc.write_bytes(wfd, b"x")
        yield from libc.print("write succeeded\n")
    except OSError as e:
        yield from libc.print(f"write: errno {e.errno}\n")
    return 0


@pytest.mark.parametrize("mode", ["default", "ignore"])
def test_write_to_a_pipe_without_reader(mode: str) -> None:
    compare(epipe, ["epipe", mode], [2, 4])


# --- BUG: a page fault while sibling threads run can deadlock the process -------------------------------------


def fault_while_siblings_spin(argv: list[str]) -> Generator[Any, Any, int]:
    """k threads spin on APs (no system call) while main touches fresh pages, then releases them."""
    k, pages = int(argv[1]), 8
    flag = yield from libc.mmap(PAGE)
    area = yield from libc.mmap(PAGE * pages)
    tids = []
    for _ in range(k):
        tids.append((yield from libc.thread_create(spin_until, flag)))
    yield from libc.compute(20_000)
    for i in range(pages):
        yield from libc.store(area + PAGE * i, i)  # page faults while the siblings run
    yield from libc.store(flag, 1)
    total = 0
    for tid in tids:
        total += yield from libc.thread_join(tid)
    yield from libc.print(f"{k} spinners joined, sum {total}\n")
    return 0


def test_page_fault_while_siblings_spin_few_threads() -> None:
    """One spinner (never more ready threads than APs): this works on every machine."""
    compare(fault_while_siblings_spin, ["fws", "1"], ALL_AK_CPUS, limit=20_000_000)


def test_page_fault_while_siblings_spin_lost_wakeup() -> None:
    for cpus, k in [(3, 2), (3, 4), (4, 6)]:
        compare(fault_while_siblings_spin, ["fws", str(k)], [cpus], limit=3_000_000)


# --- BUG: munmap leaves stale TLB entries on application processors ------------------------------------------

# shared page: +0 phase, +4 acknowledgement, +8 address of R, +12 what the reader read


def _reader(sh: int) -> Generator[Any, Any, int]:
    while (yield from libc.load(sh)) != 1:
        yield from libc.compute(50)
    r = yield from libc.load(sh + 8)
    yield from libc.load(r)  # a TLB entry for R on this CPU
    yield from libc.store(sh + 4, 1)
    while (yield from libc.load(sh)) != 2:
        yield from libc.compute(50)
    v = yield from libc.load(r)  # R was unmapped before phase 2: SIGSEGV
    yield from libc.store(sh + 12, v)
    yield from libc.store(sh + 4, 2)
    return 0


def use_after_munmap_by_other_thread(argv: list[str]) -> Generator[Any, Any, int]:
    # Print first: the first print faults in the staging buffer, and a page fault (which stops every
    # thread of the process) after munmap would hide the bug by sending the reader's AP through idle.
    yield from libc.print("main: start\n")
    sh = yield from libc.mmap(PAGE)
    r = yield from libc.mmap(PAGE)
    yield from libc.store(r, 0x1234)
    yield from libc.store(sh + 8, r)
    tid = yield from libc.thread_create(_reader, sh)
    yield from libc.store(sh, 1)
    while (yield from libc.load(sh + 4)) != 1:
        yield from libc.compute(50)
        yield from libc.yield_()
    yield from libc.munmap(r, PAGE)
    yield from libc.store(sh, 2)
    while (yield from libc.load(sh + 4)) != 2:
        yield from libc.compute(50)
        yield from libc.yield_()
    yield from libc.print(f"main: the other thread read {(yield from libc.load(sh + 12)):#x} from unmapped R\n")
    yield from libc.thread_join(tid)
    return 0


@pytest.mark.parametrize("cpus", [2, 3, 8])
def test_use_after_munmap_by_another_thread(cpus: int) -> None:
    compare(use_after_munmap_by_other_thread, ["uam"], [cpus])


# --- BUG: after the main thread exits, signals no longer reach the remaining threads ---------------------------


def _lone_worker(_arg: int) -> Generator[Any, Any, int]:
    yield from libc.compute(20_000)  # main has exited by then
    yield from libc.sigaction(abi.SIGUSR1, on_signal)
    me = yield from libc.getpid()
    yield from libc.kill(me, abi.SIGUSR1)
    ran = yield from wait_for_handler()
    yield from libc.print(f"worker: handler ran: {ran}\n")
    return 0


def main_thread_exits_first(argv: list[str]) -> Generator[Any, Any, int]:
    yield from libc.thread_create(_lone_worker, 0)
    yield from libc.print("main: thread_exit\n")
    yield from libc.thread_exit(0)
    return 1


@pytest.mark.parametrize("cpus", [2, 4])
def test_signal_after_main_thread_exit(cpus: int) -> None:
    compare(main_thread_exits_first, ["mte"], [cpus])


# --- descriptor numbers --------------------------------------------------------------------------------------


def first_fd(argv: list[str]) -> Generator[Any, Any, int]:
    fd = yield from libc.open("/bin/hello", abi.O_RDONLY)
    rfd, wfd = yield from libc.pipe()
    yield from libc.print(f"open gave fd {fd}, pipe gave {rfd} {wfd}\n")
    return 0


def test_descriptor_numbers_are_shifted_by_the_driver_descriptor() -> None:
    """The one known difference, inherent in the paper's design: the relinked crt0 holds /dev/apkern
    open (as fd 3, close-on-spawn), so a program's own descriptors start at 4 under the application kernel."""
    up = System(kernel="up", strict=True)
    ak = System(kernel="apkern", cpus=2, strict=True)
    for sim in (up, ak):
        sim.spawn(first_fd, ["fd"])
        sim.run(limit=10**8)
    assert up.console() == "open gave fd 3, pipe gave 4 5\n"
    assert ak.console() == "open gave fd 4, pipe gave 5 6\n"
