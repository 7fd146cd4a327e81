"""Temporal decoupling (`System(quantum=Q)`) changes timing, never behaviour.

With a quantum, a CPU may run up to Q instructions ahead of the others before they catch
up (`hw.cpu.CPU._run`): writes are seen early, interrupts taken late. Programs that are
correct on a real multiprocessor must not notice. Every built-in program, on every
multiprocessor kernel and the application kernel's extensions, must still behave exactly
as on the uniprocessor (console, each process's output, exit statuses, files), and each
kernel must leave itself clean, with the TLB and lock checkers on.
"""

from __future__ import annotations

import pytest
from diffkit import PORTS, assert_clean, assert_same, observe
from test_diff_builtin import CASES, FILES, normalize, reference

from apkern.system import MAX_QUANTUM

QUANTA = (10, MAX_QUANTUM)
CPUS = (2, 4, 8)

RUNS = [
    (kernel, case, QUANTA[(i + j) % len(QUANTA)], CPUS[(i + 2 * j) % len(CPUS)])
    for j, kernel in enumerate(PORTS)
    for i, case in enumerate(sorted(CASES))
]


@pytest.mark.parametrize(("kernel", "case", "quantum", "cpus"), RUNS)
def test_builtin_same_on_up_and_decoupled_smp_kernels(kernel: str, case: str, quantum: int, cpus: int) -> None:
    prog, argv = CASES[case]
    got = observe(prog, argv, kernel, cpus, FILES, quantum=quantum)
    assert_same(reference(case), got, normalize)
    assert_clean(got)


EXTENDED = ["threads-9", "pipeline-500", "signals", "pagetouch-24", "segv", "loop"]


@pytest.mark.parametrize("quantum", QUANTA)
@pytest.mark.parametrize("case", EXTENDED)
def test_builtin_same_with_every_extension_decoupled(case: str, quantum: int) -> None:
    prog, argv = CASES[case]
    got = observe(
        prog,
        argv,
        "apkern",
        4,
        FILES,
        quantum=quantum,
        extensions=("balance", "local_calls", "migration"),
        placement="auto",
    )
    assert_same(reference(case), got, normalize)
    assert_clean(got)
