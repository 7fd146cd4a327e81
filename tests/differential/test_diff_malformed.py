"""A program that yields what no instruction is (a negative or fractional Compute, an address that is not a
number, a value that is not an operation) crashes itself with SIGILL, on both kernels, and nothing else.

Before, such a program took the whole simulation down with a Python error (a negative
delay in the event core, a TypeError in the MMU): a hostile program could stop
everybody's run. Now the CPU raises #UD for it, the kernel kills it, and the machine's
log says what it yielded.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest
from diffkit import assert_same, compare_all

from apkern import libc
from apkern.bootkernel import abi
from apkern.hw import Compute, Load, ReadMem, SpinWhile, Store

BAD: dict[str, Callable[[], Any]] = {
    "negative compute": lambda: Compute(-5),
    "fractional compute": lambda: Compute(1.5),
    "float address": lambda: Load(1.5),
    "str address": lambda: Store("here", 1),
    "a length that is not a number": lambda: ReadMem(0x10000000, "four"),
    "spin on a str": lambda: SpinWhile("x", 0),
    "not an operation": lambda: 42,
}


def _victim(argv: list[str]) -> Generator[Any, Any, int]:
    yield from libc.print("before\n")
    yield BAD[argv[1]]()
    yield from libc.print("not reached\n")
    return 0


def parent(argv: list[str]) -> Generator[Any, Any, int]:
    """Run the malformed child, then go on: the system is intact."""
    pid = yield from libc.spawn(_victim, ["victim", argv[1]])
    status = yield from libc.waitpid(pid)
    yield from libc.compute(10_000)
    yield from libc.print(f"child {status}\n")
    return 0


@pytest.mark.parametrize("case", list(BAD))
def test_a_malformed_operation_crashes_only_its_program(case: str) -> None:
    ref, runs = compare_all(parent, ["parent", case], [2, 4], strict=False)
    assert ref.console == f"before\nchild {-abi.SIGILL}\n"
    for obs in (ref, *runs):
        assert any("raising #UD" in m and "user code yielded" in m for m in obs.messages), obs.messages
    assert_same(ref, runs[0])
