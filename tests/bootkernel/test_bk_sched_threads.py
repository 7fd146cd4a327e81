"""Scheduling (timer preemption, sleep) and threads within a process."""

from __future__ import annotations

import pytest
from bkkit import errno_of, run

from apkern import libc
from apkern.bootkernel import abi
from apkern.hw import Rdtsc, ReadTP


def test_two_compute_bound_processes_interleave_under_timer_preemption() -> None:
    stamps: list[tuple[int, int]] = []  # (time, pid)
    rounds = 40

    def cruncher(argv):
        me = yield from libc.getpid()
        for _ in range(rounds):
            yield from libc.compute(10_000)  # no system call: only the timer can take the CPU away
            stamps.append(((yield Rdtsc()), me))
        return 0

    def main(argv):
        a = yield from libc.spawn(cruncher, ["a"])
        b = yield from libc.spawn(cruncher, ["b"])
        yield from libc.waitpid(a)
        yield from libc.waitpid(b)
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert len(stamps) == 2 * rounds
    order = [pid for _, pid in sorted(stamps)]
    switches = sum(1 for x, y in zip(order, order[1:], strict=False) if x != y)
    assert switches >= 4  # several time slices each, not one after the other
    first, second = order[0], next(p for p in order if p != order[0])
    # the second process got the CPU before the first one finished, and the first came back
    assert order.index(second) < len(order) - 1 - order[::-1].index(first)
    assert order.index(second) < rounds


def test_yield_alternates_two_ready_processes() -> None:
    order: list[str] = []

    def pinger(argv):
        for _ in range(4):
            order.append(argv[0])
            yield from libc.yield_()
        return 0

    def main(argv):
        a = yield from libc.spawn(pinger, ["a"])
        b = yield from libc.spawn(pinger, ["b"])
        yield from libc.waitpid(a)
        yield from libc.waitpid(b)
        return 0

    run(main)
    assert order == ["a", "b"] * 4


@pytest.mark.parametrize("n", [0, 1, 9_999, 25_000, 123_456])
def test_sleep_returns_after_at_least_n_instructions(n: int) -> None:
    got = []

    def main(argv):
        t0 = yield Rdtsc()
        yield from libc.sleep(n)
        got.append((yield Rdtsc()) - t0)
        return 0

    sim, proc = run(main)
    assert proc.exit_status == 0
    assert got[0] >= n
    assert got[0] <= n + 3 * sim.kernel.tick  # woken at a timer tick soon after


def test_sleeping_process_lets_another_run() -> None:
    stamps = {}

    def sleeper(argv):
        t0 = yield Rdtsc()
        yield from libc.sleep(200_000)
        stamps["sleeper"] = (t0, (yield Rdtsc()))
        return 0

    def worker(argv):
        yield from libc.compute(50_000)
        stamps["worker done"] = yield Rdtsc()
        return 0

    def main(argv):
        a = yield from libc.spawn(sleeper, ["sleeper"])
        b = yield from libc.spawn(worker, ["worker"])
        yield from libc.waitpid(a)
        yield from libc.waitpid(b)
        return 0

    run(main)
    start, end = stamps["sleeper"]
    assert start < stamps["worker done"] < end


# --- threads ---------------------------------------------------------------------------------------


def test_thread_create_and_join_return_values_and_shared_memory() -> None:
    got = []
    shared = libc.PROGRAM_DATA

    def worker(arg):
        tid = yield from libc.gettid()
        pid = yield from libc.getpid()
        yield from libc.store(shared + 4 * arg, arg * 10)
        got.append(("worker", arg, tid, pid))
        return arg * 100 + 1

    def main(argv):
        me = yield from libc.gettid()
        pid = yield from libc.getpid()
        tids = []
        for i in range(1, 4):
            tids.append((yield from libc.thread_create(worker, i)))
        rets = []
        for t in tids:
            rets.append((yield from libc.thread_join(t)))
        words = []
        for i in range(1, 4):
            words.append((yield from libc.load(shared + 4 * i)))
        got.append(("main", me, pid, tids, rets, words))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    *workers, (_, me, pid, tids, rets, words) = got
    assert pid == proc.pid
    assert len(set(tids)) == 3 and me not in tids and all(t > 0 for t in tids)
    assert rets == [101, 201, 301]
    assert words == [10, 20, 30]
    assert sorted((arg, tid, wpid) for _, arg, tid, wpid in workers) == [(i, tids[i - 1], pid) for i in (1, 2, 3)]


def test_thread_returning_a_negative_value() -> None:
    got = []

    def worker(arg):
        return -arg
        yield

    def main(argv):
        tid = yield from libc.thread_create(worker, 7)
        got.append((yield from libc.thread_join(tid)))
        return 0

    run(main)
    assert got == [-7]


def test_join_errors_self_twice_and_other_process_thread() -> None:
    got = []

    def worker(arg):
        return 1
        yield

    def main(argv):
        me = yield from libc.gettid()
        got.append((yield from errno_of(libc.thread_join(me))))
        tid = yield from libc.thread_create(worker, 0)
        got.append((yield from errno_of(libc.thread_join(tid))))
        got.append((yield from errno_of(libc.thread_join(tid))))  # already joined
        return 0

    run(main)
    assert got == [abi.EINVAL, None, abi.ESRCH]


def test_threads_of_a_process_interleave_under_preemption() -> None:
    stamps: list[tuple[int, int]] = []

    def cruncher(arg):
        for _ in range(25):
            yield from libc.compute(10_000)
            stamps.append(((yield Rdtsc()), arg))
        return arg

    def main(argv):
        a = yield from libc.thread_create(cruncher, 1)
        b = yield from libc.thread_create(cruncher, 2)
        got = (yield from libc.thread_join(a)) + (yield from libc.thread_join(b))
        return got

    _, proc = run(main)
    assert proc.exit_status == 3
    order = [who for _, who in sorted(stamps)]
    assert sum(1 for x, y in zip(order, order[1:], strict=False) if x != y) >= 2


def test_exit_from_main_kills_the_other_threads() -> None:
    progress = []

    def forever(arg):
        while True:
            yield from libc.compute(1_000)
            progress.append(arg)

    def main(argv):
        yield from libc.thread_create(forever, 1)
        yield from libc.thread_create(forever, 2)
        yield from libc.sleep(300_000)
        yield from libc.exit(7)

    sim, proc = run(main)
    assert proc.exit_status == 7
    assert set(progress) == {1, 2}  # they ran, and then the process (and the run) ended
    assert sim.stats["time"] < 2_000_000


def test_exit_from_another_thread_kills_the_main_thread_blocked_in_join() -> None:
    after = []

    def quitter(arg):
        yield from libc.compute(5_000)
        yield from libc.exit(arg)

    def main(argv):
        tid = yield from libc.thread_create(quitter, 42)
        yield from libc.thread_join(tid)
        after.append("join returned")
        return 0

    _, proc = run(main)
    assert proc.exit_status == 42
    assert after == []


def test_fatal_fault_in_one_thread_kills_the_process() -> None:
    after = []

    def crasher(arg):
        yield from libc.load(0x10)
        return 0

    def main(argv):
        tid = yield from libc.thread_create(crasher, 0)
        yield from libc.thread_join(tid)
        after.append("join returned")
        return 0

    _, proc = run(main)
    assert proc.exit_status == -abi.SIGSEGV
    assert after == []


def test_main_thread_exit_leaves_the_process_running_until_the_last_thread() -> None:
    got = []

    def worker(arg):
        yield from libc.compute(30_000)
        got.append("worker finished")
        return 0

    def main(argv):
        yield from libc.thread_create(worker, 0)
        yield from libc.thread_exit(0)

    _, proc = run(main)
    assert proc.exit_status == 0
    assert got == ["worker finished"]


def test_threads_have_separate_stacks_and_local_storage() -> None:
    tps = []

    def worker(arg):
        tps.append((yield ReadTP()))
        return 0

    def main(argv):
        tps.append((yield ReadTP()))
        tids = []
        for i in range(3):
            tids.append((yield from libc.thread_create(worker, i)))
        for t in tids:
            yield from libc.thread_join(t)
        return 0

    run(main)
    assert len(set(tps)) == 4
    assert all(abs(a - b) >= abi.STACK_SIZE for i, a in enumerate(tps) for b in tps[i + 1 :])


def _joiner(count: int, record: list, sim_ref: list):
    def worker(arg):
        yield from libc.store((yield ReadTP()), arg)  # touches this thread's local storage, on its stack
        yield from libc.store(libc.PROGRAM_DATA, arg)
        return arg

    def main(argv):
        for i in range(count):
            try:
                tid = yield from libc.thread_create(worker, i)
            except OSError as e:
                record.append(("create failed", i, e.errno))
                return 1
            if (yield from libc.thread_join(tid)) != i:
                return 2
            if sim_ref:
                record.append(sim_ref[0].stats["frames_in_use"])
        return 0

    return main


def test_threads_created_and_joined_one_at_a_time_never_run_out() -> None:
    record: list = []
    _, proc = run(_joiner(100, record, []))
    assert record == []
    assert proc.exit_status == 0


def test_joined_thread_stacks_are_freed() -> None:
    from apkern import System

    record: list = []
    sim = System(kernel="up", strict=True)
    sim.spawn(_joiner(30, record, [sim]))
    sim.run()
    assert len(record) == 30
    assert record[-1] - record[4] <= 1  # steady: no frames kept per joined thread


# --- processes -------------------------------------------------------------------------------------


def test_waitpid_any_child_reaps_each_exactly_once() -> None:
    got = []

    def child(argv):
        yield from libc.compute(1_000 * int(argv[1]))
        return int(argv[1])

    def main(argv):
        pids = []
        for s in (3, 1, 2):
            pids.append((yield from libc.spawn(child, ["child", str(s)])))
        statuses = []
        for _ in pids:
            statuses.append((yield from libc.waitpid(-1)))
        got.append(sorted(statuses))
        got.append((yield from errno_of(libc.waitpid(-1))))
        got.append((yield from errno_of(libc.waitpid(pids[0]))))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert got == [[1, 2, 3], abi.ECHILD, abi.ECHILD]


def test_an_orphan_runs_on_after_its_parent_exits() -> None:
    from apkern import System

    def orphan(argv):
        yield from libc.sleep(50_000)
        yield from libc.print("orphan done\n")
        return 4

    def parent(argv):
        yield from libc.spawn(orphan, ["orphan"])
        return 0

    sim = System(kernel="up", strict=True)
    proc = sim.spawn(parent)
    sim.run()
    assert proc.exit_status == 0
    orphan_pid = next(p for p in sim.kernel.procs if p != proc.pid)
    assert sim.console(orphan_pid) == "orphan done\n"
    assert sim.kernel.procs[orphan_pid].exit_status == 4


def test_killing_a_blocked_writer_gives_the_reader_what_was_written_then_eof() -> None:
    got = []

    def writer(argv):
        yield from libc.close(int(argv[2]))
        buf = yield from libc.mmap(2 * abi.PIPE_BUF)
        yield from libc.write_mem(buf, b"w" * (2 * abi.PIPE_BUF))
        yield from libc.write(int(argv[1]), buf, 2 * abi.PIPE_BUF)  # blocks with the pipe full
        return 0

    def main(argv):
        r, w = yield from libc.pipe()
        pid = yield from libc.spawn(writer, ["writer", str(w), str(r)])
        yield from libc.close(w)
        yield from libc.sleep(30_000)
        yield from libc.kill(pid, abi.SIGKILL)
        got.append((yield from libc.waitpid(pid)))
        data = b""
        while True:
            chunk = yield from libc.read_bytes(r, 1000)
            if not chunk:
                break
            data += chunk
        got.append(data)
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert got == [-abi.SIGKILL, b"w" * abi.PIPE_BUF]
