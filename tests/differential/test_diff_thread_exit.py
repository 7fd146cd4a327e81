"""A thread exits while a sibling reads its stack and another process takes fresh memory (issue: stale TLB).

On the uniprocessor kernel a thread's stack lives until the thread is joined,
so a sibling that keeps reading a word of a dead thread's stack keeps seeing that
word. Under the application kernel the sibling runs on an application processor
whose TLB may hold the stack's translation; if the bootstrap side freed the stack
at thread exit without the section 4.3 unmap protocol, the sibling would go on
reading a frame the bootstrap kernel has since given to the other process (it once
printed the value, then 0, then the other process's pattern). The machine's TLB
checker is on, so any stale translation used fails the run loudly.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from diffkit import PORTS, assert_ak_clean, assert_clean, assert_same, observe

from apkern import libc
from apkern.hw import ReadTP

WORD_ADDR = libc.PROGRAM_DATA + 0x80  # where the worker publishes the address of its stack word
SEEN = libc.PROGRAM_DATA + 0x84  # main has read the word once: the worker may exit
SEED = 0x5EED1234
PATTERN = 0xBADC0DE5
FILL_PAGES = 96


def _worker(_arg: int) -> Generator[Any, Any, int]:
    word = (yield ReadTP()) - 512  # a word of this thread's own stack, below its local storage
    yield from libc.store(word, SEED)
    yield from libc.store(WORD_ADDR, word)
    while not (yield from libc.load(SEEN)):
        yield from libc.compute(100)
    return 5


def _filler(argv: list[str]) -> Generator[Any, Any, int]:
    """Another process: a while later, take fresh pages and fill them with a pattern."""
    yield from libc.compute(int(argv[1]))
    base = yield from libc.mmap(FILL_PAGES * 4096)
    for i in range(FILL_PAGES):
        for off in range(0, 4096, 512):
            yield from libc.store(base + i * 4096 + off, PATTERN)
    return 0


def reads_dead_siblings_stack(argv: list[str]) -> Generator[Any, Any, int]:
    rounds, yields = int(argv[1]), argv[2] == "yield"  # without yields only the timer lets the others run
    child = yield from libc.spawn(_filler, ["filler", str(rounds * 150)])
    tid = yield from libc.thread_create(_worker, 0)
    while (yield from libc.load(WORD_ADDR)) == 0:
        yield from libc.compute(200)
        yield from libc.yield_()
    word = yield from libc.load(WORD_ADDR)
    seen = [(yield from libc.load(word))]  # from now on this CPU may cache the word's translation
    yield from libc.store(SEEN, 1)
    for i in range(rounds):
        yield from libc.compute(500)
        v = yield from libc.load(word)
        if v != seen[-1]:
            seen.append(v)
        if yields and i % 8 == 0:
            yield from libc.yield_()
    status = yield from libc.waitpid(child)
    for _ in range(rounds // 4):
        v = yield from libc.load(word)
        if v != seen[-1]:
            seen.append(v)
        yield from libc.compute(500)
    yield from libc.print("values seen: " + ", ".join(f"{v:#x}" for v in seen) + f"; filler {status}\n")
    rv = yield from libc.thread_join(tid)
    yield from libc.print(f"joined: {rv}\n")
    return 0


@pytest.mark.parametrize("mode", ["yield", "spin"])
@pytest.mark.parametrize("cpus", [2, 3, 4, 8])
@pytest.mark.parametrize("kernel", PORTS)
def test_dead_siblings_stack_reads_like_uniprocessor(kernel: str, cpus: int, mode: str) -> None:
    argv = ["rdss", "400", mode]
    ref = observe(reads_dead_siblings_stack, argv, "up", 1)
    assert ref.console == f"values seen: {SEED:#x}; filler 0\njoined: 5\n"
    got = observe(reads_dead_siblings_stack, argv, kernel, cpus)
    assert_same(ref, got)
    assert_clean(got)


# --- join frees the stack on both kernels, and every kind of join answers as on the uniprocessor ---------------


def _publish_and_return(arg: int) -> Generator[Any, Any, int]:
    word = (yield ReadTP()) - 512
    yield from libc.store(word, arg)
    yield from libc.store(WORD_ADDR, word)
    return arg + 1


def reads_joined_stack(argv: list[str]) -> Generator[Any, Any, int]:
    """After the join the stack is gone: the read is a segmentation fault on both kernels."""
    tid = yield from libc.thread_create(_publish_and_return, 41)
    rv = yield from libc.thread_join(tid)
    word = yield from libc.load(WORD_ADDR)
    yield from libc.print(f"joined {rv}; reading the dead stack\n")
    v = yield from libc.load(word)
    yield from libc.print(f"read {v:#x}\n")
    return 0


def _join_main(main_tid: int) -> Generator[Any, Any, int]:
    rv = yield from libc.thread_join(main_tid)
    yield from libc.print(f"worker joined main: {rv}\n")
    return 0


def odd_joins(argv: list[str]) -> Generator[Any, Any, int]:
    """Joining oneself, a bad id, a thread twice, and the main thread from a worker."""
    me = yield from libc.gettid()
    for name, tid in (("self", me), ("bad", 9999), ("zero", 0)):
        try:
            yield from libc.thread_join(tid)
            yield from libc.print(f"{name}: joined?\n")
        except OSError as e:
            yield from libc.print(f"{name}: errno {e.errno}\n")
    tid = yield from libc.thread_create(_publish_and_return, 7)
    yield from libc.print(f"first join: {(yield from libc.thread_join(tid))}\n")
    try:
        yield from libc.thread_join(tid)
    except OSError as e:
        yield from libc.print(f"second join: errno {e.errno}\n")
    yield from libc.thread_create(_join_main, me)
    yield from libc.thread_exit(3)
    return 0


def churn(argv: list[str]) -> Generator[Any, Any, int]:
    """Create and join threads that touch their stacks: memory use must not grow with the count."""
    total = 0
    for i in range(int(argv[1])):
        tid = yield from libc.thread_create(_publish_and_return, i)
        total += yield from libc.thread_join(tid)
    yield from libc.print(f"sum {total}\n")
    return 0


@pytest.mark.parametrize("program", [reads_joined_stack, odd_joins], ids=lambda f: f.__name__)
@pytest.mark.parametrize("cpus", [2, 4])
@pytest.mark.parametrize("kernel", PORTS)
def test_joins_behave_like_uniprocessor(kernel: str, program: Any, cpus: int) -> None:
    ref = observe(program, [program.__name__], "up", 1)
    got = observe(program, [program.__name__], kernel, cpus)
    assert_same(ref, got)
    assert_clean(got)


def test_reading_a_joined_stack_faults() -> None:
    ref = observe(reads_joined_stack, ["rjs"], "up", 1)
    assert ref.top_status == -11 and ref.console == "joined 42; reading the dead stack\n"


@pytest.mark.parametrize("kernel,cpus", [("up", 1), ("apkern", 3), ("smp", 3), ("master-slave", 3)])
def test_joined_threads_give_their_memory_back(kernel: str, cpus: int) -> None:
    few = observe(churn, ["churn", "3"], kernel, cpus)
    many = observe(churn, ["churn", "30"], kernel, cpus)
    assert many.console == f"sum {sum(range(1, 31))}\n"
    peaks = (few.stats["frames_peak"], many.stats["frames_peak"])
    assert peaks[1] <= peaks[0] + 2, peaks


# --- the join's unmap protocol: a sibling reading the joined stack during the join ------------------------------

READS = libc.PROGRAM_DATA + 0x88


def _reader(_arg: int) -> Generator[Any, Any, int]:
    word = yield from libc.load(WORD_ADDR)
    while True:
        yield from libc.load(word)
        yield from libc.store(READS, (yield from libc.load(READS)) + 1)
        yield from libc.compute(50)


def _wait_then_return(arg: int) -> Generator[Any, Any, int]:
    word = (yield ReadTP()) - 512
    yield from libc.store(word, SEED)
    yield from libc.store(WORD_ADDR, word)
    while not (yield from libc.load(SEEN)):
        yield from libc.compute(100)
    return arg


def join_under_a_reader(argv: list[str]) -> Generator[Any, Any, int]:
    tid = yield from libc.thread_create(_wait_then_return, 9)
    while not (yield from libc.load(WORD_ADDR)):
        yield from libc.compute(200)
        yield from libc.yield_()
    yield from libc.thread_create(_reader, 0)
    while not (yield from libc.load(READS)):
        yield from libc.compute(200)
        yield from libc.yield_()
    yield from libc.store(SEEN, 1)
    rv = yield from libc.thread_join(tid)
    yield from libc.exit(rv)  # the reader may or may not have touched the dead stack again by now
    return 0


@pytest.mark.parametrize("cpus", [3, 4, 8])
def test_join_stops_a_sibling_that_reads_the_joined_stack(cpus: int) -> None:
    """Without APKERN_STOP_THREADS around the join the reader's CPU keeps the stack's translation
    while the frame goes back to the allocator: the TLB checker fails the run."""
    got = observe(join_under_a_reader, ["jur"], "apkern", cpus)
    assert got.top_status in (9, -11), got.top_status  # exit, or the reader's fault on the unmapped stack
    assert got.stats["forwarded_page_faults"] > 0
    assert_ak_clean(got)


@pytest.mark.parametrize("kernel", ["smp", "master-slave"])
@pytest.mark.parametrize("cpus", [3, 4, 8])
def test_the_ports_shoot_a_joined_stack_down_on_the_readers_cpu(cpus: int, kernel: str) -> None:
    """The ports free a joined thread's stack between a shoot-down's begin and end: the reader's CPU
    is parked meanwhile and drops the translation. Without it the TLB checker fails the run."""
    got = observe(join_under_a_reader, ["jur"], kernel, cpus)
    assert got.top_status in (9, -11), got.top_status
    assert got.stats["tlb_shootdown_ipis"] > 0  # the reader really ran elsewhere with the stack mapped
    assert_clean(got)
