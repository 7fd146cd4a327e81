"""Replays of the shipped traces of real programs run unmodified, and identically, on every kernel."""

from __future__ import annotations

import pytest
from diffkit import compare_all

from apkern.workloads import replay as rp

# trace -> (CPU counts, the console the replay writes: the bytes strace showed, padded with '.' to the count)
CASES = {
    "find": ([2], "tree/c/m2.c\ntree/c/m3.c\ntree/c/m...."),
    "grep": ([3], "tree/c/m2.c:int main(void) { ret" + "." * 91),
    "gzip": ([2], None),
    "findgrep": ([2, 8], "tree/c/m2.c\n"),
    "python": ([3], "child words 3 thread sum 2666466......."),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_replay_behaves_the_same_on_every_kernel(name: str) -> None:
    plan = rp.shipped_plan(name)
    cpus, console = CASES[name]
    ref, runs = compare_all(plan.program(), [plan.name], cpus, setup=lambda sim: plan.install(sim.fs))
    assert ref.top_status == 0
    assert len(ref.procs) == plan.processes and all(status == 0 for _, status in ref.procs.values())
    if console is not None:
        assert ref.console == console
    unmapped = sum(1 for t in plan.tasks for s in t.steps if s.op == "spin")
    for got in [ref, *runs]:
        by = got.stats["syscalls_by_name"]
        assert by.get("thread_create", 0) == len(plan.tasks) - plan.processes
        assert by["spin"] == unmapped  # one trap for every call our kernel has no counterpart of
