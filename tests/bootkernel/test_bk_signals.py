"""Signals: handlers, ignoring, default actions, EINTR, SIGKILL."""

from __future__ import annotations

from bkkit import errno_of, run

from apkern import libc
from apkern.bootkernel import abi
from apkern.hw import Rdtsc


def _recorder(log: list):
    def handler(sig):
        log.append(("handler", sig, (yield from libc.getpid()), (yield from libc.gettid())))

    return handler


def _signaller(delay: int, sig: int):
    def child(argv):
        yield from libc.compute(delay)
        yield from libc.kill(int(argv[1]), sig)
        return 0

    return child


def test_handler_runs_in_the_process_thread_and_code_resumes() -> None:
    log: list = []

    def main(argv):
        prev = yield from libc.sigaction(abi.SIGUSR1, _recorder(log))
        log.append(("prev", prev))
        me = yield from libc.getpid()
        tid = yield from libc.gettid()
        log.append(("main", me, tid))
        yield from libc.kill(me, abi.SIGUSR1)  # delivered on the way back from this very call
        log.append(("after kill",))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    main_pid, main_tid = log[1][1], log[1][2]
    assert log == [
        ("prev", abi.SIG_DFL),
        ("main", proc.pid, main_tid),
        ("handler", abi.SIGUSR1, main_pid, main_tid),
        ("after kill",),
    ]


def test_handler_for_a_signal_from_another_process() -> None:
    log: list = []

    def main(argv):
        yield from libc.sigaction(abi.SIGUSR2, _recorder(log))
        me = yield from libc.getpid()
        pid = yield from libc.spawn(_signaller(5_000, abi.SIGUSR2), ["child", str(me)])
        yield from libc.compute(200_000)  # the child gets the CPU at a timer preemption
        log.append(("child", (yield from libc.waitpid(pid))))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert log[0][:3] == ("handler", abi.SIGUSR2, proc.pid)
    assert log[1] == ("child", 0)


def test_sigaction_returns_the_previous_disposition() -> None:
    got = []

    def handler(sig):
        return
        yield

    def main(argv):
        got.append((yield from libc.sigaction(abi.SIGUSR1, abi.SIG_IGN)))
        got.append((yield from libc.sigaction(abi.SIGUSR1, handler)))
        got.append((yield from libc.sigaction(abi.SIGUSR1, abi.SIG_DFL)))
        got.append((yield from libc.sigaction(abi.SIGUSR1, abi.SIG_DFL)))
        return 0

    run(main)
    assert got[0] == abi.SIG_DFL and got[1] == abi.SIG_IGN and got[3] == abi.SIG_DFL
    assert got[2] not in (abi.SIG_DFL, abi.SIG_IGN)  # the handler's code address


def test_sig_ign_ignores() -> None:
    after = []

    def main(argv):
        yield from libc.sigaction(abi.SIGTERM, abi.SIG_IGN)
        me = yield from libc.getpid()
        yield from libc.kill(me, abi.SIGTERM)
        yield from libc.yield_()
        after.append("alive")
        return 3

    _, proc = run(main)
    assert proc.exit_status == 3
    assert after == ["alive"]


def test_ignored_signal_does_not_interrupt_a_sleep() -> None:
    got = []

    def main(argv):
        yield from libc.sigaction(abi.SIGUSR1, abi.SIG_IGN)
        me = yield from libc.getpid()
        pid = yield from libc.spawn(_signaller(1_000, abi.SIGUSR1), ["child", str(me)])
        t0 = yield Rdtsc()
        got.append((yield from errno_of(libc.sleep(100_000))))
        got.append((yield Rdtsc()) - t0)
        yield from libc.waitpid(pid)
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert got[0] is None and got[1] >= 100_000


def test_default_action_terminates_with_minus_the_signal() -> None:
    for sig in (abi.SIGTERM, abi.SIGUSR1, abi.SIGHUP, abi.SIGINT, abi.SIGALRM):
        after = []

        def main(argv, sig=sig, after=after):
            me = yield from libc.getpid()
            yield from libc.kill(me, sig)
            after.append("survived")
            return 0

        _, proc = run(main)
        assert proc.exit_status == -sig, sig
        assert after == []


def test_sigchld_is_ignored_by_default() -> None:
    def child(argv):
        return 0
        yield

    def main(argv):
        pid = yield from libc.spawn(child, ["child"])
        yield from libc.sleep(20_000)
        return (yield from libc.waitpid(pid)) + 5

    sim, proc = run(main)
    assert proc.exit_status == 5
    assert sim.stats["signals_sent"] >= 1  # SIGCHLD was sent, and did nothing


def test_kill_with_signal_zero_only_checks_existence() -> None:
    got = []

    def main(argv):
        me = yield from libc.getpid()
        got.append((yield from errno_of(libc.kill(me, 0))))
        got.append((yield from errno_of(libc.kill(me + 100, 0))))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0 and got == [None, abi.ESRCH]


def test_blocking_read_interrupted_by_a_handled_signal_is_eintr() -> None:
    log: list = []

    def main(argv):
        yield from libc.sigaction(abi.SIGUSR1, _recorder(log))
        r, w = yield from libc.pipe()
        me = yield from libc.getpid()
        pid = yield from libc.spawn(_signaller(10_000, abi.SIGUSR1), ["child", str(me)])
        log.append(("read", (yield from errno_of(libc.read(r, libc.PROGRAM_DATA, 4)))))
        log.append(("child", (yield from libc.waitpid(pid))))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert [e[0] for e in log] == ["handler", "read", "child"]
    assert log[1:] == [("read", abi.EINTR), ("child", 0)]


def test_waitpid_interrupted_by_a_handled_signal_is_eintr() -> None:
    log: list = []

    def sleeper(argv):
        yield from libc.sleep(200_000)
        return 0

    def main(argv):
        yield from libc.sigaction(abi.SIGUSR1, _recorder(log))
        me = yield from libc.getpid()
        slow = yield from libc.spawn(sleeper, ["sleeper"])
        yield from libc.spawn(_signaller(10_000, abi.SIGUSR1), ["child", str(me)])
        log.append(("wait", (yield from errno_of(libc.waitpid(slow)))))
        log.append(("wait again", (yield from libc.waitpid(slow))))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert [e[0] for e in log] == ["handler", "wait", "wait again"]
    assert log[1:] == [("wait", abi.EINTR), ("wait again", 0)]


def test_sleep_interrupted_by_a_handled_signal_is_eintr() -> None:
    log: list = []

    def main(argv):
        yield from libc.sigaction(abi.SIGUSR1, _recorder(log))
        me = yield from libc.getpid()
        pid = yield from libc.spawn(_signaller(10_000, abi.SIGUSR1), ["child", str(me)])
        t0 = yield Rdtsc()
        log.append(("sleep", (yield from errno_of(libc.sleep(10_000_000)))))
        log.append(("slept", (yield Rdtsc()) - t0))
        yield from libc.waitpid(pid)
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert [e[0] for e in log] == ["handler", "sleep", "slept"]
    assert log[1] == ("sleep", abi.EINTR)
    assert log[2][1] < 1_000_000  # cut short, long before the 10M instructions asked for


def test_unhandled_terminating_signal_kills_a_blocked_reader() -> None:
    def reader(argv):
        yield from libc.read(int(argv[1]), libc.PROGRAM_DATA, 4)
        return 0

    got = []

    def main(argv):
        r, w = yield from libc.pipe()
        pid = yield from libc.spawn(reader, ["reader", str(r)])
        yield from libc.sleep(20_000)
        yield from libc.kill(pid, abi.SIGTERM)
        got.append((yield from libc.waitpid(pid)))
        return 0

    run(main)
    assert got == [-abi.SIGTERM]


def test_sigkill_of_a_child_blocked_in_a_pipe_read() -> None:
    got = []

    def reader(argv):
        yield from libc.sigaction(abi.SIGTERM, abi.SIG_IGN)  # would not help against SIGKILL
        got.append("reading")
        yield from libc.read(int(argv[1]), libc.PROGRAM_DATA, 4)
        got.append("read returned")
        return 0

    def main(argv):
        r, w = yield from libc.pipe()
        pid = yield from libc.spawn(reader, ["reader", str(r)])
        yield from libc.sleep(20_000)
        yield from libc.kill(pid, abi.SIGKILL)
        got.append((yield from libc.waitpid(pid)))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert got == ["reading", -abi.SIGKILL]


def test_sigkill_of_a_running_child_and_of_oneself() -> None:
    got = []

    def spinner(argv):
        while True:
            yield from libc.compute(1_000)

    def suicide(argv):
        me = yield from libc.getpid()
        yield from libc.kill(me, abi.SIGKILL)
        got.append("survived")
        return 0

    def main(argv):
        a = yield from libc.spawn(spinner, ["spinner"])
        b = yield from libc.spawn(suicide, ["suicide"])
        yield from libc.sleep(30_000)
        yield from libc.kill(a, abi.SIGKILL)
        got.append((yield from libc.waitpid(a)))
        got.append((yield from libc.waitpid(b)))
        return 0

    run(main)
    assert got == [-abi.SIGKILL, -abi.SIGKILL]


def test_sigkill_cannot_be_caught_or_ignored() -> None:
    got = []

    def handler(sig):
        return
        yield

    def main(argv):
        got.append((yield from errno_of(libc.sigaction(abi.SIGKILL, handler))))
        got.append((yield from errno_of(libc.sigaction(abi.SIGKILL, abi.SIG_IGN))))
        got.append((yield from errno_of(libc.sigaction(abi.SIGKILL, abi.SIG_DFL))))
        return 0

    run(main)
    assert got == [abi.EINVAL] * 3


def test_signal_in_a_thread_process_is_handled_by_a_thread_of_that_process() -> None:
    log: list = []

    def worker(arg):
        yield from libc.compute(50_000)
        return 0

    def main(argv):
        yield from libc.sigaction(abi.SIGUSR1, _recorder(log))
        tid = yield from libc.thread_create(worker, 0)
        me = yield from libc.getpid()
        main_tid = yield from libc.gettid()
        yield from libc.kill(me, abi.SIGUSR1)
        yield from libc.thread_join(tid)
        log.append(("tids", main_tid, tid))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    (_, sig, pid, handler_tid), (_, main_tid, other_tid) = log
    assert (sig, pid) == (abi.SIGUSR1, proc.pid)
    assert handler_tid in (main_tid, other_tid)


def _one_byte(argv):
    yield from libc.read(int(argv[1]), libc.PROGRAM_DATA, 1)
    return 0


def _two_readers_one_byte(argv):
    """Two readers asleep on an empty pipe; one byte wakes both, and the second is killed while runnable."""
    rfd, wfd = yield from libc.pipe()
    a = yield from libc.spawn(_one_byte, ["r1", str(rfd)])
    b = yield from libc.spawn(_one_byte, ["r2", str(rfd)])
    yield from libc.sleep(50_000)  # both asleep on the empty pipe
    yield from libc.write_bytes(wfd, b"x")
    yield from libc.kill(b, abi.SIGKILL)  # b is runnable: no sleep to end
    yield from libc.print(f"{(yield from libc.waitpid(a))} {(yield from libc.waitpid(b))}\n")
    return 0


def test_a_kill_between_two_sleeps_of_a_call_s_loop_is_not_lost() -> None:
    """The first reader takes the byte; the second's read loops and would sleep again with the kill
    pending, for ever: an interruptible sleep looks for a waiting signal first, as Unix's does."""
    sim, proc = run(_two_readers_one_byte)
    assert proc.exit_status == 0
    assert sim.console(proc.pid) == f"0 {-abi.SIGKILL}\n"
    assert sim.stats["early_wakeups"] == 1
