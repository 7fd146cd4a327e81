"""The public `System` API: argument validation, running, limits, the console."""

from __future__ import annotations

import pytest

import apkern
from apkern import ConfigError, SimulationLimit, System, libc
from apkern.hw import MAX_CPUS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel": "linux"},
        {"kernel": ""},
        {"kernel": None},
        {"cpus": 0},
        {"cpus": -1},
        {"cpus": MAX_CPUS + 1},
        {"cpus": 65},
        {"cpus": "4"},
        {"cpus": 2.0},
        {"cpus": True},
        {"cpus": False},
        {"kernel": "apkern", "cpus": 1},
        {"memory": 1 << 20},
        {"memory": (8 << 20) + 1},
    ],
)
def test_impossible_systems_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        System(**kwargs)


def test_config_error_is_a_value_error_and_exported() -> None:
    assert issubclass(ConfigError, ValueError)
    assert apkern.ConfigError is ConfigError and apkern.System is System
    assert apkern.libc is libc


def test_largest_and_smallest_valid_up_machines_build() -> None:
    assert System(kernel="up", cpus=1).stats["cpus"] == 1
    assert System(kernel="up", cpus=MAX_CPUS).stats["cpus"] == MAX_CPUS


def test_unknown_program_and_non_program_raise_config_error() -> None:
    sim = System()
    with pytest.raises(ConfigError, match="nosuch"):
        sim.spawn("nosuch")
    with pytest.raises(ConfigError):
        sim.spawn(42)  # type: ignore[arg-type]
    assert sim.stats["processes"] == 0


def test_run_with_nothing_spawned_returns() -> None:
    sim = System()
    sim.run()
    assert sim.stats["processes"] == 0
    sim.run()  # and again
    assert sim.stats["syscalls"] == 0


def test_simulation_limit_when_a_program_never_ends() -> None:
    sim = System(kernel="up")
    proc = sim.spawn("loop", ["loop", "1000", "100", "0"])  # N=0: forever
    with pytest.raises(SimulationLimit, match="1 process"):
        sim.run(limit=300_000)
    assert not proc.exited and proc.exit_status is None
    assert sim.now >= 300_000
    assert sim.stats["syscalls_by_name"]["spin"] > 10


def test_simulation_limit_is_a_runtime_error() -> None:
    assert issubclass(SimulationLimit, RuntimeError)


def test_run_until_stops_at_that_time_and_can_resume() -> None:
    def slow(argv):
        yield from libc.compute(400_000)
        yield from libc.print("done\n")
        return 0

    sim = System(kernel="up", strict=True)
    proc = sim.spawn(slow)
    sim.run(until=100_000)
    assert sim.now == 100_000
    assert not proc.exited and sim.console() == ""
    sim.run()
    assert proc.exit_status == 0 and sim.console(proc.pid) == "done\n"
    assert sim.now > 400_000


def test_console_separates_processes() -> None:
    def speaker(word: str):
        def main(argv):
            for _ in range(3):
                yield from libc.print(word)
                yield from libc.yield_()
            return 0

        return main

    sim = System(kernel="up", strict=True)
    a = sim.spawn(speaker("a"), ["a"])
    b = sim.spawn(speaker("b"), ["b"])
    sim.run()
    assert (sim.console(a.pid), sim.console(b.pid)) == ("aaa", "bbb")
    everything = sim.console()
    assert sorted(everything) == sorted("aaabbb")
    assert everything != "aaabbb"  # they took turns: the log keeps the order of the writes
    assert sim.console(9999) == ""


def test_console_attributes_a_child_s_output_to_the_child() -> None:
    def child(argv):
        yield from libc.print("from child\n")
        return 0

    def parent(argv):
        pid = yield from libc.spawn(child, ["child"])
        yield from libc.waitpid(pid)
        yield from libc.print(f"from parent {pid}\n")
        return 0

    sim = System(kernel="up", strict=True)
    proc = sim.spawn(parent)
    sim.run()
    child_pid = int(sim.console(proc.pid).split()[-1])
    assert child_pid != proc.pid
    assert sim.console(proc.pid) == f"from parent {child_pid}\n"
    assert sim.console(child_pid) == "from child\n"


def test_console_includes_standard_error() -> None:
    sim = System()
    proc = sim.spawn("cat", ["cat", "/missing"])
    sim.run()
    assert proc.exit_status == 1
    assert "No such file or directory" in sim.console(proc.pid)


def test_spawn_passes_argv_and_defaults_to_the_program_name() -> None:
    seen = []

    def echo_args(argv):
        seen.append(list(argv))
        return len(argv)
        yield

    sim = System(strict=True)
    p1 = sim.spawn(echo_args)
    p2 = sim.spawn(echo_args, ["x", 1, "ü"])  # items become strings
    sim.run()
    assert seen == [["echo_args"], ["x", "1", "ü"]]
    assert (p1.exit_status, p2.exit_status) == (1, 3)
    assert p1.name == "echo_args" and p1.pid != p2.pid


def test_process_handle_before_and_after_the_run() -> None:
    sim = System()
    proc = sim.spawn("hello")
    assert (proc.exited, proc.exit_status, proc.name) == (False, None, "hello")
    assert "hello" in repr(proc)
    sim.run()
    assert (proc.exited, proc.exit_status) == (True, 0)


def test_spawning_again_after_a_run_completes() -> None:
    sim = System()
    first = sim.spawn("hello")
    sim.run()
    t1 = sim.now
    second = sim.spawn("hello")
    sim.run()
    assert (first.exit_status, second.exit_status) == (0, 0)
    assert sim.console(second.pid) == "hello, world\n"
    assert sim.now > t1
    assert sim.stats["processes"] == 2


def test_exit_status_is_truncated_to_a_byte() -> None:
    def big(argv):
        return 300
        yield

    def neg(argv):
        return -1
        yield

    sim = System(strict=True)
    a, b = sim.spawn(big), sim.spawn(neg)
    sim.run()
    assert (a.exit_status, b.exit_status) == (300 & 0xFF, 255)


def test_stats_counts_and_per_cpu() -> None:
    sim = System()
    sim.spawn("hello")
    sim.run()
    s = sim.stats
    assert s["kernel"] == "up" and s["cpus"] == 1 and len(s["per_cpu"]) == 1
    assert s["instructions"] == sum(c["instructions"] for c in s["per_cpu"])
    assert 0 < s["instructions"] <= s["time"]
    assert s["syscalls"] == sum(s["syscalls_by_name"].values()) and s["syscalls_by_name"]["write"] >= 1
    assert s["processes"] == 1


def test_seed_is_recorded_and_runs_do_not_depend_on_it_for_up() -> None:
    stats = []
    for seed in (0, 1):
        sim = System(seed=seed)
        assert sim.seed == seed
        sim.spawn("pipeline", ["pipeline", "5"])
        sim.run()
        stats.append(sim.stats["time"])
    assert stats[0] == stats[1]


def test_file_system_before_and_after() -> None:
    sim = System()
    sim.fs.write_file("/in.txt", "text\n")
    assert sim.fs.exists("/in.txt") and "in.txt" in sim.fs.listdir("/")
    assert "hello" in sim.fs.listdir("/bin")
    proc = sim.spawn("cat", ["cat", "/in.txt"])
    sim.run()
    assert sim.console(proc.pid) == "text\n"
    with pytest.raises(FileNotFoundError):
        sim.fs.read_file("/nope")


def test_up_kernel_on_a_multiprocessor_machine_uses_only_the_first_cpu() -> None:
    sim = System(kernel="up", cpus=4)
    proc = sim.spawn("threads", ["threads", "3"])
    sim.run()
    assert proc.exit_status == 0
    per_cpu = sim.stats["per_cpu"]
    assert len(per_cpu) == 4
    assert per_cpu[0]["instructions"] > 0
    assert [c["instructions"] for c in per_cpu[1:]] == [0, 0, 0]


@pytest.mark.parametrize("memory", ["32M", None, float(8 << 20)])
def test_non_integer_memory_is_a_config_error(memory: object) -> None:
    with pytest.raises(ConfigError):
        System(memory=memory)  # type: ignore[arg-type]


def test_apkern_with_the_swapper_builds_the_patched_kernel_and_registers_the_shootdown() -> None:
    patched = System(kernel="apkern", cpus=2, swapper=True)
    unpatched = System(kernel="apkern", cpus=2, swapper=True, tlb_patch=False)
    plain = System(kernel="apkern", cpus=2)
    for sim in (patched, unpatched, plain):
        sim.run(until=2_000_000)  # the driver is initialised at boot
    assert [s.kernel.tlb_patch.enabled for s in (patched, unpatched, plain)] == [True, False, False]
    assert [s.appkernel.ak.tlb_hook for s in (patched, unpatched, plain)] == [True, False, False]


def test_the_smp_port_is_a_kernel_choice() -> None:
    one = System(kernel="smp", cpus=1)  # the port on one CPU: the lock is taken, never contended
    proc = one.spawn("hello")
    one.run()
    assert proc.exit_status == 0 and one.console() == "hello, world\n"
    assert one.stats["kernel"] == "smp" and one.stats["lock_contended"] == 0
    with pytest.raises(ConfigError, match="extensions"):
        System(kernel="smp", cpus=2, extensions=("local_calls",))
    with pytest.raises(ConfigError, match="application processors"):
        System(kernel="smp", cpus=2).spawn("hello", placement="ap")


def test_the_master_slave_port_is_a_kernel_choice() -> None:
    with pytest.raises(ConfigError, match="extensions"):
        System(kernel="master-slave", cpus=2, extensions=("local_calls",))
    with pytest.raises(ConfigError, match="application processors"):
        System(kernel="master-slave", cpus=2).spawn("hello", placement="ap")


@pytest.mark.parametrize(("kernel", "cpus"), [("smp", 2), ("smp", 4), ("master-slave", 1), ("master-slave", 4)])
def test_spawning_again_and_resuming_under_the_ports(kernel: str, cpus: int) -> None:
    """The run stops inside the last exit, on a CPU holding the port's lock; the next run goes on from there."""
    sim = System(kernel=kernel, cpus=cpus, check_tlb=True, check_locks=True)
    first = sim.spawn("threads", ["threads", "3"])
    sim.run()
    second = sim.spawn("pipeline", ["pipeline", "4"])
    sim.run(until=sim.now + 3_000)
    assert second.exit_status is None
    sim.run()
    assert (first.exit_status, second.exit_status) == (0, 0)
    assert "received 4 lines" in sim.console(second.pid)
