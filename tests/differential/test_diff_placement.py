"""Placement (section 4.3): a process spawned with placement="bsp" runs on the bootstrap kernel alone.

It uses the plain crt0, forwards nothing and never runs on an application processor,
beside processes that do. Each must behave as it does alone on the uniprocessor
kernel, whichever side it runs on, and the bootstrap-placed one must see the
uniprocessor's descriptor numbers (no /dev/apkern held open).
"""

from __future__ import annotations

import pytest
from test_diff_builtin import FILES

from apkern import ConfigError, System

MIX = [
    ("pipeline", ["pipeline", "40"]),
    ("threads", ["threads", "3"]),
    ("wc", ["wc", "/words.txt"]),
    ("signals", ["signals"]),
]


def _alone(prog: str, argv: list[str]) -> tuple[int | None, str]:
    sim = System(kernel="up", strict=True)
    for path, data in FILES.items():
        sim.fs.write_file(path, data)
    p = sim.spawn(prog, argv)
    sim.run()
    return p.exit_status, sim.console(p.pid)


@pytest.mark.parametrize("cpus", [2, 4])
def test_bsp_and_ap_processes_side_by_side_behave_as_alone(cpus: int) -> None:
    sim = System(kernel="apkern", cpus=cpus, strict=True, check_tlb=True, check_locks=True)
    for path, data in FILES.items():
        sim.fs.write_file(path, data)
    procs = [
        (prog, argv, where, sim.spawn(prog, argv, placement=where)) for prog, argv in MIX for where in ("bsp", "ap")
    ]
    sim.run()
    for prog, argv, where, p in procs:
        assert (p.exit_status, sim.console(p.pid)) == _alone(prog, argv), (prog, where)
    only_ap = System(kernel="apkern", cpus=cpus, strict=True)
    for path, data in FILES.items():
        only_ap.fs.write_file(path, data)
    for prog, argv in MIX:
        only_ap.spawn(prog, argv)
    only_ap.run()
    assert sim.stats["tcbs_created"] == only_ap.stats["tcbs_created"]  # the bootstrap-placed half made none
    assert sim.stats["tcbs_live"] == 0


def test_a_bsp_placed_process_never_runs_on_an_ap_and_sees_the_uniprocessors_descriptors() -> None:
    seen_on: set[int] = set()
    fds: list[int] = []

    def prog(argv: list[str]):
        from apkern import libc
        from apkern.hw import CpuId

        for _ in range(50):
            seen_on.add((yield CpuId()))
            yield from libc.compute(2000)
        r, w = yield from libc.pipe()
        fds.extend([r, w])
        return 0

    sim = System(kernel="apkern", cpus=4, strict=True)
    sim.spawn(prog, ["p"], placement="bsp")
    sim.run()
    assert seen_on == {0} and fds == [3, 4]
    assert sim.stats["forwarded_calls"] == 0


def test_placement_is_checked() -> None:
    ak = System(kernel="apkern", cpus=2)
    up = System(kernel="up")
    with pytest.raises(ConfigError, match="unknown placement"):
        ak.spawn("hello", placement="gpu")
    with pytest.raises(ConfigError, match="migration"):
        ak.spawn("hello", placement="auto")
    with pytest.raises(ConfigError, match="application processors"):
        up.spawn("hello", placement="ap")
    up.spawn("hello", placement="bsp")  # everything is on the bootstrap processor there
