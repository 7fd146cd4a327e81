"""Cost profiles: loading, their errors, and that a system really runs on the profile it was given.

The oracle: a profile changes how long paths take, never what a program does, so every
program behaves the same on every kernel under any profile; and a changed cost moves a
measured path by exactly the change.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from apkern import profiles
from apkern.appkernel.costs import Costs as AKCosts
from apkern.bootkernel.costs import Costs as BootCosts
from apkern.profiles import DEFAULT, ProfileError, load
from apkern.system import ConfigError, System


def gettid_mean(kernel: str, cpus: int, costs: object = None, calls: int = 50) -> float:
    sim = System(kernel=kernel, cpus=cpus, costs=costs)
    proc = sim.spawn("gettid", ["gettid", str(calls)])
    sim.run()
    assert proc.exit_status == 0
    m = re.fullmatch(r"gettid: \d+ calls, mean ([0-9.]+) instructions\n", sim.console(proc.pid))
    assert m is not None
    return float(m.group(1))


# --- the default profile -----------------------------------------------------------------------------


def test_the_default_profile_is_every_kernel_s_defaults() -> None:
    assert load() is DEFAULT and load("xv6") is DEFAULT
    assert DEFAULT.bootkernel == BootCosts() and DEFAULT.appkernel == AKCosts()
    assert DEFAULT.to_dict() == {"name": "xv6", "file": None, "overrides": {}}
    for key, value, origin in DEFAULT.items():
        assert value >= 1 and origin, key  # every default says where it comes from


def test_the_default_profile_keeps_the_paper_s_calibration() -> None:
    """Section 5.1: gettid takes about 100 instructions on the uniprocessor kernel; the default claims 100."""
    assert DEFAULT.calibration == {"gettid": 100}
    b = DEFAULT.bootkernel
    assert 1 + b.SYSCALL_ENTRY + b.SYSCALL_DISPATCH + b.SYS_GETTID + b.SYSCALL_EXIT == 100
    assert abs(gettid_mean("up", 1) - DEFAULT.calibration["gettid"]) <= 1  # the loop's own compare and branch


@pytest.mark.parametrize("name", [n for n in profiles.BUILTIN if n != "xv6"])
def test_a_built_in_profile_s_calibration_claim_holds(name: str) -> None:
    p = load(name)
    if "gettid" in p.calibration:
        assert abs(gettid_mean("up", 1, p) - p.calibration["gettid"]) <= 1
    assert p.sources and all(len(s) > 40 for s in p.sources.values())  # every value it sets cites its source
    follows = {
        f"{s}.{f.name}": f"bootkernel.{f.metadata['follows']}"
        for s, cls in profiles.SECTIONS.items()
        for f in dataclasses.fields(cls)
        if "follows" in f.metadata
    }
    for section, changed in p.overrides().items():
        for name in changed:  # a value that moved was set, or follows one that was
            key = f"{section}.{name}"
            assert key in p.sources or follows.get(key) in p.sources, key


# --- loading ---------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_file_sets_any_subset_and_the_rest_are_the_defaults(tmp_path: Path) -> None:
    text = '[bootkernel]\nCONTEXT_SWITCH = 900\n[appkernel]\nLIST_OP = { value = 11, source = "me" }\n'
    p = load(write(tmp_path, text))
    assert p.name == "mine" and p.file is not None
    assert p.bootkernel == dataclasses.replace(BootCosts(), CONTEXT_SWITCH=900)
    assert p.appkernel.LIST_OP == 11 and p.sources == {"appkernel.LIST_OP": "me"}
    assert p.overrides() == {  # the application kernel's switch and migration follow the bootstrap kernel's switch
        "bootkernel": {"CONTEXT_SWITCH": 900},
        "appkernel": {"LIST_OP": 11, "CONTEXT_SWITCH": 900, "MIGRATE": 900},
    }


def test_a_port_s_copy_of_a_bootstrap_kernel_path_follows_it_unless_set(tmp_path: Path) -> None:
    p = load(write(tmp_path, "[bootkernel]\nSYSCALL_ENTRY = 60\nTIMER_TICK = 50\n"))
    assert p.appkernel.TRAP_ENTRY == 60 and p.master_slave.STUB_ENTRY == 60
    assert p.smp.SHOOTDOWN_IPI == 50 and p.appkernel.SHOOTDOWN_IPI == 50
    q = load(write(tmp_path, "[bootkernel]\nSYSCALL_ENTRY = 60\n[appkernel]\nTRAP_ENTRY = 20\n", "q.toml"))
    assert q.appkernel.TRAP_ENTRY == 20 and q.master_slave.STUB_ENTRY == 60


BAD = [
    ("[bootkernel]\nSYSCALL_ENTRY = 0\n", "bootkernel.SYSCALL_ENTRY must be a positive whole number"),
    ("[bootkernel]\nSYSCALL_ENTRY = -3\n", "positive whole number"),
    ("[bootkernel]\nSYSCALL_ENTRY = 3.5\n", "positive whole number"),
    ("[bootkernel]\nSYSCALL_ENTRY = true\n", "positive whole number"),
    ('[bootkernel]\nSYSCALL_ENTRY = "34"\n', "positive whole number"),
    ("[bootkernel]\nSYSCALL_ENTRI = 34\n", "unknown cost 'SYSCALL_ENTRI' in [bootkernel]"),
    ("[bootkernal]\nSYSCALL_ENTRY = 34\n", "unknown section or key 'bootkernal'"),
    ("SYSCALL_ENTRY = 34\n", "unknown section or key 'SYSCALL_ENTRY'"),
    ("[appkernel]\nLIST_OP = { value = 3, note = 1 }\n", "appkernel.LIST_OP is a number or"),
    ('[appkernel]\nLIST_OP = { source = "x" }\n', "appkernel.LIST_OP is a number or"),
    ("[appkernel]\nLIST_OP = { value = 3, source = 4 }\n", "the source is a string"),
    ("[calibration]\ngetpid = 74\n", "unknown calibration 'getpid'"),
    ("[calibration]\ngettid = 0\n", "calibration.gettid must be a positive"),
    ("name = 3\n", "name and description are strings"),
    ("bootkernel = 3\n", "[bootkernel] must be a table"),
    ("[bootkernel\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[b[1][:30] for b in BAD])
def test_a_bad_profile_is_a_clear_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as e:
        load(path)
    assert message in str(e.value) and str(path) in str(e.value)
    with pytest.raises(ConfigError, match=re.escape(message)):  # and a system refuses it the same way
        System(kernel="up", costs=path)


def test_an_unknown_profile_name_lists_the_built_ins(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not a built-in .*xv6, linux-2.4"):
        load("linux-9")
    with pytest.raises(ProfileError, match="not a built-in"):
        load(tmp_path / "absent.toml")
    with pytest.raises(ProfileError, match="a name or a TOML file"):
        load(3)  # type: ignore[arg-type]
    assert load(write(tmp_path, "", "empty.toml")).overrides() == {}  # an empty file is the defaults


def test_with_values_and_scaled_check_their_keys_and_values() -> None:
    with pytest.raises(ProfileError, match="unknown cost section"):
        DEFAULT.with_values("x", {"kernel.SYSCALL_ENTRY": 3})
    with pytest.raises(ProfileError, match="unknown cost 'NOPE'"):
        DEFAULT.scaled("bootkernel.NOPE", 2)
    with pytest.raises(ProfileError, match="positive whole number"):
        DEFAULT.with_values("x", {"bootkernel.SYSCALL_ENTRY": 0})
    assert DEFAULT.scaled("appkernel.MASK_UPDATE", 0.1).appkernel.MASK_UPDATE == 1  # never below one instruction
    half = DEFAULT.scaled("bootkernel.SYSCALL_ENTRY", 0.5)
    assert half.bootkernel.SYSCALL_ENTRY == 17 and half.appkernel.TRAP_ENTRY == 34  # one cost at a time
    assert DEFAULT.bootkernel.SYSCALL_ENTRY == 34  # the original is untouched


# --- a system runs on its profile -------------------------------------------------------------------------


def test_a_changed_cost_moves_the_path_by_exactly_the_change() -> None:
    up = gettid_mean("up", 1)
    slower = DEFAULT.with_values("slow entry", {"bootkernel.SYSCALL_ENTRY": 34 + 25})
    assert gettid_mean("up", 1, slower) == pytest.approx(up + 25, abs=1e-9)
    smp = gettid_mean("smp", 2)
    lock = DEFAULT.with_values("slow lock", {"smp.LOCK_ENTRY": 6 + 30})
    assert gettid_mean("smp", 2, lock) == pytest.approx(smp + 30, abs=0.5)
    assert gettid_mean("up", 1, lock) == up  # the port's cost is the port's alone


def test_the_forwarded_call_pays_the_bootstrap_kernel_s_paths_and_its_own() -> None:
    ak = gettid_mean("apkern", 2)
    driver = DEFAULT.with_values("slow ioctl", {"bootkernel.DRIVER_CONTROL": 40 + 100})
    trap = DEFAULT.with_values("slow AP trap", {"appkernel.TRAP_ENTRY": 34 + 100})
    assert gettid_mean("apkern", 2, driver) == pytest.approx(ak + 100, abs=1)  # one ioctl per call: Figure 4's
    # once per call on the AP, and once per timer tick that falls into the measured calls (a few in a hundred)
    assert ak + 100 <= gettid_mean("apkern", 2, trap) <= ak + 100 * 1.2
    assert gettid_mean("up", 1, trap) == gettid_mean("up", 1)


def test_two_systems_with_different_profiles_do_not_share_costs() -> None:
    slow = DEFAULT.with_values("slow", {"bootkernel.SYS_GETTID": 500})
    a, b = System(kernel="up", costs=slow), System(kernel="up")
    pa, pb = a.spawn("gettid", ["gettid", "10"]), b.spawn("gettid", ["gettid", "10"])
    a.run()
    b.run()
    assert a.kernel.costs.SYS_GETTID == 500 and b.kernel.costs.SYS_GETTID == 10
    assert a.stats["time"] > b.stats["time"] + 10 * 400
    assert pa.exit_status == pb.exit_status == 0


def test_the_run_s_counters_name_its_profile() -> None:
    slow = DEFAULT.with_values("slow", {"appkernel.LIST_OP": 9})
    sim = System(kernel="apkern", cpus=2, costs=slow)
    assert sim.stats["costs"] == {"name": "slow", "file": None, "overrides": {"appkernel": {"LIST_OP": 9}}}
    assert System(kernel="up").stats["costs"]["name"] == "xv6"


@pytest.mark.parametrize("kernel,cpus", [("apkern", 3), ("smp", 3), ("master-slave", 3)])
@pytest.mark.parametrize(
    "program,argv", [("pipeline", ["pipeline", "20"]), ("threads", ["threads", "3"]), ("signals", None)]
)
def test_a_program_behaves_the_same_on_every_kernel_under_another_profile(
    kernel: str, cpus: int, program: str, argv: list[str] | None
) -> None:
    """The oracle: costs move time, not behaviour. A profile far from the default (every cost x3)."""
    tripled = DEFAULT
    for key, value, _ in DEFAULT.items():
        tripled = tripled.with_values("x3", {key: value * 3})
    runs, times = [], []
    for k, n in (("up", 1), (kernel, cpus)):
        sim = System(kernel=k, cpus=n, costs=tripled, check_tlb=True)
        proc = sim.spawn(program, argv)
        sim.run()
        runs.append((proc.exit_status, sim.console(), sim.fs.snapshot()))
        times.append(sim.stats["time"])
    assert runs[0] == runs[1]
    plain = System(kernel=kernel, cpus=cpus)  # and the profile was used: the same run takes longer under it
    plain.spawn(program, argv)
    plain.run()
    assert times[1] > plain.stats["time"]


@pytest.mark.parametrize("name", profiles.BUILTIN)
def test_a_recorded_profile_builds_the_same_values(name: str, tmp_path: Path) -> None:
    """What a run's JSON records is enough to rebuild its profile: sweeps send it to their workers."""
    p = load(name)
    assert profiles.from_dict(p.to_dict()) == p
    mine = load(write(tmp_path, "[bootkernel]\nSYSCALL_ENTRY = 60\n[appkernel]\nTRAP_ENTRY = 34\n"))
    assert mine.appkernel.TRAP_ENTRY == 34 and profiles.from_dict(mine.to_dict()) == mine  # set to the default
    with pytest.raises(ProfileError, match="not a recorded cost profile"):
        profiles.from_dict({"name": "x"})
