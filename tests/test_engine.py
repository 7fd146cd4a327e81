"""The fast engine gives the same runs as the reference engine, bit for bit, and as the engine before it.

Each case runs a kernel and a workload for a fixed time and digests everything a run reports:
the statistics (every counter of every CPU and kernel), the console, the exit statuses, the
machine's log and crashes, and, where tracing is on, every mark, switch and activity slice.
The digests in `engine_digests.json` were recorded with the reference engine (the engine as it
was before run-ahead: first from the commit before it, then again when cost profiles and the
uniprocessor's look for a waiting signal and its wake-ups charged on every path changed the runs); both
engines must still give them.
Regenerate them only for a change meant to alter runs, and check first that the fast engine
gives what the reference one does on every case:
`PYTHONPATH=src python tests/test_engine.py --regenerate` (with the reference engine).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from apkern.system import System

DIGESTS = Path(__file__).with_name("engine_digests.json")

# name -> (System arguments, loops (count, user %), other programs, run until)
CASES: dict[str, tuple[dict[str, Any], tuple[int, float], list[list[str]], int]] = {
    "apkern4": ({"kernel": "apkern", "cpus": 4}, (8, 95.0), [], 400_000),
    "apkern8-contended": ({"kernel": "apkern", "cpus": 8}, (16, 80.0), [], 300_000),
    "apkern16-wide": ({"kernel": "apkern", "cpus": 16}, (20, 99.0), [], 300_000),
    "apkern6-programs": (
        {"kernel": "apkern", "cpus": 6},
        (4, 90.0),
        [["threads", "5"], ["pipeline", "40"], ["signals"], ["pagetouch", "24"], ["segv"], ["illegal"]],
        1_500_000,
    ),
    "apkern4-perturbed": (
        {"kernel": "apkern", "cpus": 4, "perturb": 3},
        (6, 92.5),
        [["threads", "3"], ["pipeline", "20"]],
        800_000,
    ),
    "apkern4-extensions": (
        {"kernel": "apkern", "cpus": 4, "extensions": ("balance", "local_calls", "migration")},
        (6, 95.0),
        [["threads", "3"]],
        600_000,
    ),
    "apkern3-checked-traced": (
        {"kernel": "apkern", "cpus": 3, "check_locks": True, "check_tlb": True, "trace": True},
        (4, 90.0),
        [["pipeline", "10"]],
        400_000,
    ),
    "apkern8-lockchecked": ({"kernel": "apkern", "cpus": 8, "check_locks": True}, (16, 80.0), [], 300_000),
    "smp4": ({"kernel": "smp", "cpus": 4}, (8, 90.0), [["threads", "4"], ["pipeline", "20"]], 600_000),
    "master-slave4": ({"kernel": "master-slave", "cpus": 4}, (8, 90.0), [["threads", "4"], ["signals"]], 600_000),
    "up": ({"kernel": "up", "cpus": 1}, (3, 95.0), [["pipeline", "20"], ["threads", "3"]], 600_000),
}


def run_case(name: str, engine: str) -> str:
    """The digest of case `name` run on `engine`."""
    args, (loops, p), programs, until = CASES[name]
    sim = System(seed=0, engine=engine, **args)
    k = 151
    u = round(k * p / (100 - p))
    for _ in range(loops):
        sim.spawn("loop", ["loop", str(u), str(k), "0", str(sim.random.randrange(u + k + 1))])
    handles = [sim.spawn(argv[0], argv) for argv in programs]
    sim.run(until=until)
    m = sim.machine
    record: dict[str, Any] = {
        "stats": sim.stats,
        "console": sim.console(),
        "exits": [h.exit_status for h in handles],
        "messages": m.messages,
        "crashes": [{**c, "owner": repr(c["owner"])} for c in m.crashes],
    }
    if m.tracer is not None:
        record["marks"] = [(k.time, k.cpu, k.name, repr(k.key), repr(k.args)) for k in m.tracer.marks]
        record["switches"] = m.tracer.switches
        record["slices"] = m.tracer.slices
    text = json.dumps(record, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_engine_gives_the_recorded_runs(name: str) -> None:
    expected = json.loads(DIGESTS.read_text())[name]
    assert run_case(name, "fast") == expected


@pytest.mark.parametrize("name", ["apkern8-contended", "apkern6-programs", "apkern3-checked-traced", "smp4"])
def test_reference_engine_gives_the_recorded_runs(name: str) -> None:
    expected = json.loads(DIGESTS.read_text())[name]
    assert run_case(name, "reference") == expected


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(__doc__)
    DIGESTS.write_text(json.dumps({name: run_case(name, "reference") for name in sorted(CASES)}, indent=1) + "\n")
