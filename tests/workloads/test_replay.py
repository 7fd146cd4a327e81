"""Replay of strace logs: what each call becomes, what it is charged, the structure kept, and damaged logs."""

from __future__ import annotations

import collections
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apkern import System
from apkern.experiments import replay as rx
from apkern.system import SimulationLimit
from apkern.workloads import replay as rp
from apkern.workloads import strace

IPS = rp.DEFAULT_IPS


def trace(*lines: str) -> str:
    """Lines `PID CALL...` given times 1 ms apart (so every gap is 1 ms less the previous call's duration)."""
    return "".join(f"{ln.split(' ', 1)[0]} {1000 + i / 1000:.6f} {ln.split(' ', 1)[1]}\n" for i, ln in enumerate(lines))


def compiled(*lines: str) -> rp.Plan:
    return rp.plan(strace.parse(trace(*lines)))


def replayed(plan: rp.Plan, kernel: str = "up", cpus: int = 1) -> rx.ReplayRun:
    return rx.run(plan, kernel, cpus, strict=True, check_tlb=True)


def steps(plan: rp.Plan, task: int = 0) -> list[tuple[str, str]]:
    return [(s.op, s.call) for s in plan.tasks[task].steps]


def test_every_traced_call_is_listed_once_in_the_mapping() -> None:
    for name in rp.shipped():
        p = rp.shipped_plan(name)
        assert sum(p.mapping.values()) == p.traced_calls, name
        assert sum(1 for t in p.tasks for s in t.steps if s.call) == p.traced_calls, name
    find = rp.shipped_plan("find").mapping
    assert find[("openat", "open", "measured")] == 11
    assert find[("close", "close", "measured")] == 24
    assert find[("getdents64", "getdents", "measured")] == 8
    assert find[("fcntl", "dup", "measured")] == 11  # F_DUPFD_CLOEXEC
    assert find[("mmap", "spin", "measured")] == 21
    assert find[("exit_group", "exit", "own")] == 1


def test_time_gaps_become_user_work_and_calls_their_measured_kernel_time() -> None:
    p = compiled(
        '5 openat(AT_FDCWD, "/etc/f", O_RDONLY) = 3 <0.000020>',
        '5 read(3, "abcdef"..., 100) = 100 <0.000050>',
        "5 mprotect(0x1000, 4096, PROT_READ) = 0 <0.000300>",
        "5 exit_group(0) = ?",
    )
    got = [(s.op, s.gap, s.spin, s.charge) for s in p.tasks[0].steps]
    assert got == [
        ("open", 0, 2_000, "measured"),
        ("read", 98_000, 5_000, "measured"),  # 1 ms - 20 us between the calls, at 100 MIPS
        ("spin", 95_000, 30_000, "measured"),
        ("exit", 70_000, 0, "own"),  # exit_group ends the timeline: no end of the replay's own
    ]
    assert p.files == {"/trace/etc/f": 100}
    twice = rp.plan(strace.parse(trace("5 getpid() = 5 <0.000010>", "5 getpid() = 5 <0.000010>")), 2 * IPS)
    assert [(s.op, s.gap, s.spin) for s in twice.tasks[0].steps] == [
        ("getpid", 0, 2_000),
        ("getpid", 198_000, 2_000),
        ("exit", 0, 0),  # no exit in the trace: the timeline ends after its last call, with a note
    ]
    assert twice.notes == ["thread 5: no end in the trace: it ends after its last call"]


def test_the_replay_spends_what_the_trace_charges() -> None:
    """On the uniprocessor the run lasts the timelines' charges, plus our kernel's own work (a few % here)."""
    p = rp.shipped_plan("gzip")
    run = replayed(p)
    assert run.exit_status == 0
    assert p.instructions <= run.time <= 1.1 * p.instructions
    assert run.user_instructions >= p.user_instructions
    assert run.kernel_instructions >= p.kernel_instructions
    written = b"".join(s.data + rp.FILL * (s.count - len(s.data)) for s in p.tasks[0].steps if s.op == "write")
    assert len(written) == 46_633 and run.console == written.decode("utf-8", "replace")  # the .gz, as far as shown


def test_a_pipe_between_a_fork_and_an_exec_with_close_on_exec() -> None:
    """sh: pipe2 (close-on-exec), fork a writer that execs, read in the parent until end of file, wait, exit 3."""
    p = compiled(
        "10 pipe2([3, 4], O_CLOEXEC) = 0 <0.000010>",
        "10 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD) = 11 <0.000100>",
        "11 dup2(4, 1) = 1 <0.000005>",
        '11 execve("/usr/bin/echo", ["echo", "hello"], 0x1 /* 3 vars */) = 0 <0.000200>',
        '11 write(1, "hello\\n", 6) = 6 <0.000010>',
        "11 exit_group(0) = ?",
        "11 +++ exited with 0 +++",
        "10 close(4) = 0 <0.000005>",
        '10 read(3, "hello\\n", 128) = 6 <0.000500>',
        '10 read(3, "", 128) = 0 <0.000200>',
        "10 wait4(11, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 11 <0.000100>",
        '10 write(1, "got it\\n", 7) = 7 <0.000010>',
        "10 exit_group(3) = ?",
    )
    assert [t.name for t in p.tasks] == ["replay", "echo"] and p.processes == 2
    assert steps(p, 1) == [
        ("dup", "dup2"),
        ("spin", "execve"),
        ("cloexec", ""),
        ("write", "write"),
        ("exit", "exit_group"),
    ]
    assert p.tasks[1].steps[2].fds == (3, 4)  # close-on-exec: both pipe ends; 1 (the dup) stays
    reads = [s for s in p.tasks[0].steps if s.op == "read"]
    assert [(s.pipe, s.charge, s.spin) for s in reads] == [(True, "floor", 500)] * 2  # the shortest call: 5 us
    run = replayed(p)
    assert run.exit_status == 3 and run.console == "got it\n"
    assert run.processes == {1: ("replay", 3), 2: ("replay", 0)}
    assert run.syscalls_by_name["spawn"] == 1 and run.syscalls_by_name["waitpid"] == 1


def test_threads_futexes_and_joins() -> None:
    p = compiled(
        "20 clone3({flags=CLONE_VM|CLONE_THREAD|CLONE_CHILD_CLEARTID} => {parent_tid=[21]}, 88) = 21 <0.000050>",
        "20 futex(0x10, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>",
        "21 futex(0x10, FUTEX_WAKE_PRIVATE, 1) = 1 <0.000005>",
        "20 <... futex resumed>) = 0 <0.002000>",
        "20 clone3({flags=CLONE_VM|CLONE_THREAD} => {parent_tid=[22]}, 88) = 22 <0.000050>",
        "21 exit(0) = ?",
        "20 futex(0x20, FUTEX_WAIT_BITSET_PRIVATE, 22, NULL) = 0 <0.000300>",  # pthread_join of 22
        "22 gettid() = 22 <0.000002>",
        "20 exit_group(0) = ?",
    )
    assert [(t.leader, t.thread) for t in p.tasks] == [(0, False), (0, True), (0, True)]
    assert steps(p, 0) == [
        ("thread", "clone3"),
        ("futex_wait", "futex"),
        ("thread", "clone3"),
        ("join", "futex"),
        ("exit", "exit_group"),
    ]
    wait = p.tasks[0].steps[1]
    assert (wait.task, wait.count) == (0, 1)  # slot 0, until its first wake
    run = replayed(p)
    assert run.exit_status == 0
    by = run.syscalls_by_name
    assert by["thread_create"] == 2 and by["thread_join"] == 2 and by["thread_exit"] == 2
    for kernel, cpus in (("apkern", 3), ("smp", 2)):
        other = replayed(p, kernel, cpus)
        assert other.exit_status == 0 and other.syscalls_by_name["thread_join"] == 2


def test_a_process_killed_by_a_signal_and_standard_input() -> None:
    p = compiled(
        '30 read(0, "abc", 3) = 3 <0.000004>',
        '30 read(0, "", 3) = 0 <0.000004>',
        "30 --- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=NULL} ---",
        "30 +++ killed by SIGSEGV (core dumped) +++",
    )
    assert p.files["/trace/.stdin"] == 3 and p.signals == 1
    assert p.tasks[0].steps[-1].signal == 11
    run = replayed(p)
    assert run.exit_status == -11
    assert run.syscalls_by_name["read"] == 2 and run.syscalls_by_name["kill"] == 1


def test_lookups_directories_and_the_working_directory() -> None:
    p = compiled(
        '40 getcwd("/home/u", 4096) = 8 <0.000003>',
        '40 newfstatat(AT_FDCWD, "src", {st_mode=S_IFDIR|0755, st_size=4096, ...}, 0) = 0 <0.000004>',
        '40 openat(AT_FDCWD, "src", O_RDONLY|O_DIRECTORY) = 3 <0.000004>',
        "40 getdents64(3, 0x1 /* 5 entries */, 32768) = 120 <0.000010>",
        "40 getdents64(3, 0x1 /* 0 entries */, 32768) = 0 <0.000003>",
        '40 newfstatat(3, "a.c", {st_mode=S_IFREG|0644, st_size=10, ...}, 0) = 0 <0.000004>',
        "40 fchdir(3) = 0 <0.000003>",
        '40 openat(AT_FDCWD, "b.c", O_RDONLY) = 4 <0.000004>',
        "40 lseek(4, -2, SEEK_END) = 8 <0.000002>",
        '40 mkdir("out", 0777) = 0 <0.000010>',
        '40 openat(AT_FDCWD, "out/x", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 5 <0.000010>',
        '40 write(5, "0123456789", 10) = 10 <0.000010>',
        '40 access("/etc/none", F_OK) = -1 ENOENT (No such file or directory) <0.000003>',
        "40 exit_group(0) = ?",
    )
    assert p.dirs == {"/trace/home/u/src": 3}
    assert p.files == {"/trace/home/u/src/a.c": 0, "/trace/home/u/src/b.c": 10}  # SEEK_END at 8 - -2
    assert [s.path for s in p.tasks[0].steps if s.op == "stat"][-1] == "/trace/etc/none"
    run = replayed(p)
    assert run.exit_status == 0
    sim = System()
    p.install(sim.fs)
    assert sorted(sim.fs.listdir("/trace/home/u/src")) == [".entry2", "a.c", "b.c"]


def test_a_thread_without_a_traced_creator_and_calls_after_an_exit() -> None:
    p = compiled(
        "50 getpid() = 50 <0.000002>",
        "51 getpid() = 51 <0.000002>",  # strace attached to it: no clone in the trace
        "50 exit_group(0) = ?",
        "50 getpid() = 50 <0.000002>",
    )
    assert p.processes == 2 and steps(p, 0)[0] == ("spawn", "")
    assert any("no traced creator" in n for n in p.notes) and any("after its thread's exit" in n for n in p.notes)
    run = replayed(p)
    assert run.exit_status == 0 and len(run.processes) == 2


def test_vfork_unknown_calls_and_a_wait_for_any_child() -> None:
    p = compiled(
        "70 vfork() = 71 <0.000100>",
        '71 execve("/bin/true", ["true"], 0x1 /* 1 var */) = 0 <0.000200>',
        "71 frobnicate(1, 2) = 0 <0.000040>",  # a call strace knows and we do not
        "71 syscall_0x1c8(0x1, 0x2) = -1 ENOSYS (Function not implemented) <0.000003>",
        "71 exit_group(2) = ?",
        "71 +++ exited with 2 +++",
        "70 wait4(-1, [{WIFEXITED(s) && WEXITSTATUS(s) == 2}], 0, NULL) = 71 <0.000050>",
        "70 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=71, si_status=2} ---",
        "70 exit_group(0) = ?",
    )
    assert p.processes == 2 and steps(p, 0) == [("spawn", "vfork"), ("wait", "wait4"), ("exit", "exit_group")]
    assert [(s.op, s.spin) for s in p.tasks[1].steps][1:3] == [("spin", 4_000), ("spin", 300)]
    assert p.mapping[("frobnicate", "spin", "measured")] == 1 and p.signals == 1
    run = replayed(p)
    assert run.exit_status == 0 and run.processes == {1: ("replay", 0), 2: ("replay", 2)}


def test_transfers_and_files_are_bounded_by_what_the_machine_holds() -> None:
    big = 20 << 20
    p = compiled(
        '60 openat(AT_FDCWD, "/big", O_RDONLY) = 3 <0.000010>',
        f'60 read(3, "x"..., {big}) = {big} <0.010000>',
        f'60 write(1, "y"..., {big}) = {big} <0.010000>',
        "60 exit_group(0) = ?",
    )
    assert [s.count for s in p.tasks[0].steps if s.op in ("read", "write")] == [rp.MAX_TRANSFER] * 2
    assert p.files == {"/trace/big": rp.MAX_FILE}
    assert p.notes == [
        f"2 read(s) or write(s) of more than {rp.MAX_TRANSFER} bytes move that many",
        f"/trace/big: {big} bytes read, the replay's file holds {rp.MAX_FILE}",
    ]
    run = replayed(p)
    assert run.exit_status == 0 and run.console == "y" + "." * (rp.MAX_TRANSFER - 1)


def test_bad_rates_and_limits_are_refused() -> None:
    t = strace.parse(trace("1 getpid() = 1 <0.000002>"))
    for ips in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            rp.plan(t, ips)
    sleeps = ["1 nanosleep({tv_sec=20, tv_nsec=0}, NULL) = 0 <20.000000>"] * 6
    long = rp.plan(strace.parse(trace(*sleeps)))
    assert long.sleep_instructions == 6 * 2_000_000_000  # 2 s at 100 MIPS each
    with pytest.raises(SimulationLimit, match="lower --ips or raise --limit"):
        rx.run(long)  # 120 s asleep is past the default limit, 100 s
    with pytest.raises(SimulationLimit, match="lower --ips or raise --limit"):
        rx.run(rp.plan(strace.parse(trace(*sleeps[:1]))), limit=1_000_000)


def test_a_trace_edited_into_a_deadlock_stops_with_a_clear_error() -> None:
    """Without the shell's close of the pipe's write end, grep waits for an end of file that never comes."""
    lines = rp.shipped()["findgrep"].splitlines(keepends=True)
    kept = [ln for ln in lines if not (ln.startswith("24366 ") and "close(4" in ln)]
    assert len(kept) == len(lines) - 1
    p = rp.plan(strace.parse("".join(kept)))
    with pytest.raises(SimulationLimit, match=f"did not finish within {rx.default_limit(p):,} instructions"):
        rx.run(p)


STRUCTURE = re.compile(r"clone|pipe|close\(|exit|wait4|resumed|unfinished|futex|dup2|\+\+\+")


@settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["findgrep", "python"]),
    dropped=st.lists(st.integers(0, 10_000), min_size=1, max_size=6),
    cut=st.integers(0, 100),
)
def test_a_trace_with_lines_lost_still_replays_or_says_why(name: str, dropped: list[int], cut: int) -> None:
    """Lose lines that shape the run (a clone, a resumption, a close, an exit) and cut the end: it runs or says why."""
    lines = rp.shipped()[name].splitlines(keepends=True)
    shaping = [i for i, ln in enumerate(lines) if STRUCTURE.search(ln)]
    lost = {shaping[d % len(shaping)] for d in dropped}
    keep = len(lines) - cut * len(lines) // 400
    lines = [ln for i, ln in enumerate(lines[:keep]) if i not in lost]
    try:
        p = rp.plan(strace.parse("".join(lines)))
    except ValueError as e:
        assert str(e)
        return
    try:
        run = rx.run(p, "up", 1, strict=True)
    except SimulationLimit as e:  # the damage left processes waiting for each other
        assert "did not finish" in str(e)
        return
    assert run.exit_status is not None
    counts = collections.Counter(s.op for t in p.tasks for s in t.steps)
    assert counts["spawn"] + counts["thread"] == len(p.tasks) - 1
