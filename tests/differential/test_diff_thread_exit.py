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
from diffkit import assert_ak_clean, assert_same, observe

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
def test_dead_siblings_stack_reads_like_uniprocessor(cpus: int, mode: str) -> None:
    argv = ["rdss", "400", mode]
    ref = observe(reads_dead_siblings_stack, argv, "up", 1)
    assert ref.console == f"values seen: {SEED:#x}; filler 0\njoined: 5\n"
    got = observe(reads_dead_siblings_stack, argv, "apkern", cpus)
    assert_same(ref, got)
    assert_ak_clean(got)
