"""Error numbers of the bootstrap kernel's system calls, seen from user programs."""

from __future__ import annotations

import errno
import os
from typing import Any

from bkkit import errno_of, run

from apkern import libc
from apkern.bootkernel import abi
from apkern.hw import Trap
from apkern.userland.libc import PROGRAM_DATA

SYSCALL = abi.SYSCALL


def check(*calls):
    """Run each (label, libc call factory) in one process; return {label: errno or None}."""
    seen: dict[str, int | None] = {}

    def main(argv):
        for label, make in calls:
            seen[label] = yield from errno_of(make())
        return 0

    sim, proc = run(main)
    assert proc.exit_status == 0, sim.console()
    return seen


def test_open_missing_file_is_enoent() -> None:
    seen = check(
        ("missing", lambda: libc.open("/no/such/file")),
        ("relative", lambda: libc.open("relative.txt")),
        ("dev", lambda: libc.open("/dev/nosuch")),
        ("dev_creat", lambda: libc.open("/dev/nosuch", os.O_WRONLY | os.O_CREAT)),
    )
    assert seen == {"missing": abi.ENOENT, "relative": abi.ENOENT, "dev": abi.ENOENT, "dev_creat": abi.ENOENT}


def test_open_directory_and_bad_access_mode() -> None:
    seen = check(
        ("root", lambda: libc.open("/")),  # a directory opens read-only (for getdents)...
        ("bin", lambda: libc.open("/bin", os.O_WRONLY)),  # ...but not for writing
        ("bin rw", lambda: libc.open("/bin", os.O_RDWR)),
        ("mode3", lambda: libc.open("/bin/hello", 3)),
        ("ok", lambda: libc.open("/bin/hello")),
    )
    assert seen == {"root": None, "bin": abi.EISDIR, "bin rw": abi.EISDIR, "mode3": abi.EINVAL, "ok": None}


def test_read_and_write_on_bad_descriptors_are_ebadf() -> None:
    buf = PROGRAM_DATA

    def wrong_way_fds():
        fd = yield from libc.open("/bin/hello", os.O_RDONLY)
        return (yield from errno_of(libc.write(fd, buf, 1)))

    seen = check(
        ("read99", lambda: libc.read(99, buf, 4)),
        ("write99", lambda: libc.write(99, buf, 4)),
        ("read_neg", lambda: libc.read(-1, buf, 4)),
        ("close99", lambda: libc.close(99)),
        ("read_stdout", lambda: libc.read(1, buf, 4)),  # the console's output side is not readable
        ("write_stdin", lambda: libc.write(0, buf, 4)),
    )
    assert seen == dict.fromkeys(seen, abi.EBADF)
    assert len(seen) == 6
    results = []

    def main(argv):
        results.append((yield from wrong_way_fds()))
        return 0

    run(main)
    assert results == [abi.EBADF]


def test_stdin_reads_end_of_file() -> None:
    got = []

    def main(argv):
        got.append((yield from libc.read(0, PROGRAM_DATA, 16)))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0 and got == [0]


def test_bad_user_buffers_are_efault() -> None:
    seen = check(
        ("write_unmapped", lambda: libc.write(1, 0x10, 4)),
        ("write_kernel", lambda: libc.write(1, 0xC0001000, 4)),
        ("write_straddles_top", lambda: libc.write(1, abi.USER_TOP - 2, 4)),
        ("pipe_kernel", lambda: _raw(abi.SYS_PIPE, 0xC0001000)),
        ("waitpid_kernel", lambda: _raw(abi.SYS_WAITPID, -1, 0xC0001000)),
        ("open_unmapped_path", lambda: _raw(abi.SYS_OPEN, 0x10, 0)),
    )
    assert seen == dict.fromkeys(seen, abi.EFAULT)
    assert len(seen) == 6


def test_read_into_a_bad_buffer_is_efault_and_loses_no_data() -> None:
    got = []

    def main(argv):
        fd = yield from libc.open("/data")
        got.append((yield from errno_of(libc.read(fd, 0x10, 4))))
        got.append((yield from errno_of(libc.read(fd, 0xC0000000, 4))))
        got.append((yield from libc.read_bytes(fd, 100)))
        return 0

    sim = _sim_with({"/data": b"payload"})
    proc = sim.spawn(main)
    sim.run()
    assert proc.exit_status == 0
    assert got == [abi.EFAULT, abi.EFAULT, b"payload"]


def test_process_calls_errors() -> None:
    seen = check(
        ("waitpid_no_children", lambda: libc.waitpid(-1)),
        ("waitpid_not_child", lambda: libc.waitpid(1)),  # pid 1 is this very process
        ("kill_nonexistent", lambda: libc.kill(4242, abi.SIGTERM)),
        ("kill_bad_signal", lambda: libc.kill(1, abi.NSIG)),
        ("sigaction_sigkill", lambda: libc.sigaction(abi.SIGKILL, abi.SIG_IGN)),
        ("sigaction_zero", lambda: libc.sigaction(0, abi.SIG_IGN)),
        ("join_unknown", lambda: libc.thread_join(999)),
        ("sleep_negative", lambda: libc.sleep(-1)),
        ("spin_negative", lambda: libc.spin(-1)),
        ("mmap_zero", lambda: libc.mmap(0)),
        ("munmap_unmapped", lambda: libc.munmap(abi.MMAP_BASE, 4096)),
    )
    assert seen == {
        "waitpid_no_children": abi.ECHILD,
        "waitpid_not_child": abi.ECHILD,
        "kill_nonexistent": abi.ESRCH,
        "kill_bad_signal": abi.EINVAL,
        "sigaction_sigkill": abi.EINVAL,
        "sigaction_zero": abi.EINVAL,
        "join_unknown": abi.ESRCH,
        "sleep_negative": abi.EINVAL,
        "spin_negative": abi.EINVAL,
        "mmap_zero": abi.EINVAL,
        "munmap_unmapped": abi.EINVAL,
    }


def test_kill_of_an_exited_child_is_esrch() -> None:
    seen = []

    def child(argv):
        return 0
        yield

    def main(argv):
        pid = yield from libc.spawn(child, ["child"])
        yield from libc.waitpid(pid)
        seen.append((yield from errno_of(libc.kill(pid, abi.SIGTERM))))
        return 0

    run(main)
    assert seen == [abi.ESRCH]


def _raw(nr, *args):
    return (yield from libc.syscall(nr, *args))


def test_raw_traps_unknown_number_and_non_integer_arguments() -> None:
    got = []

    def main(argv):
        got.append((yield Trap(SYSCALL, 999)))
        got.append((yield Trap(SYSCALL, -5)))
        got.append((yield Trap(SYSCALL)))  # no number at all
        got.append((yield Trap(SYSCALL, abi.SYS_WRITE, 1, "buf", 3)))
        got.append((yield Trap(SYSCALL, abi.SYS_WRITE, 1, 1.5, 3)))
        got.append((yield Trap(SYSCALL, abi.SYS_KILL, True, 0)))
        got.append((yield Trap(SYSCALL, abi.SYS_SLEEP, 1 << 40)))
        got.append((yield Trap(SYSCALL, abi.SYS_KILL, 1)))  # too few arguments
        got.append((yield Trap(SYSCALL, abi.SYS_GETPID)))  # and one that works
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert got == [-abi.ENOSYS, -abi.ENOSYS] + [-abi.EINVAL] * 6 + [proc.pid]


def test_driver_control_errors_without_a_driver() -> None:
    seen = check(
        ("console", lambda: _raw(abi.SYS_DRIVER_CONTROL, 1, 0, 0)),
        ("badfd", lambda: _raw(abi.SYS_DRIVER_CONTROL, 77, 0, 0)),
    )
    assert seen == {"console": abi.ENOTTY, "badfd": abi.EBADF}


def test_driver_control_on_a_file_and_a_pipe_is_enotty() -> None:
    seen = []

    def main(argv):
        fd = yield from libc.open("/bin/hello")
        r, w = yield from libc.pipe()
        for x in (fd, r, w):
            seen.append((yield from errno_of(_raw(abi.SYS_DRIVER_CONTROL, x, 1, 2))))
        return 0

    run(main)
    assert seen == [abi.ENOTTY] * 3


def test_too_many_open_files_is_emfile_and_close_frees_a_slot() -> None:
    from apkern.bootkernel.file import MAX_FDS

    got = []

    def main(argv):
        fds = []
        while True:
            try:
                fds.append((yield from libc.open("/bin/hello")))
            except OSError as e:
                got.append(e.errno)
                break
        got.append(fds)
        yield from libc.close(fds[5])
        got.append((yield from libc.open("/bin/hello")))
        return 0

    run(main)
    err, fds, reused = got
    assert err == abi.EMFILE
    assert fds == list(range(3, MAX_FDS))  # 0, 1, 2 are the console; lowest free first
    assert reused == 8


def _sim_with(files):
    from apkern import System

    sim = System(kernel="up", strict=True)
    for path, data in files.items():
        sim.fs.write_file(path, data)
    return sim


def test_spin_call_spins_then_makes_the_call_and_wraps_no_other() -> None:
    """SYS_SPIN_CALL(n, nr, ...) costs n more than the call alone; it refuses calls outside its targets."""

    def timed(spin: int) -> int:
        def main(argv: list[str]) -> Any:
            yield from libc.getpid(spin=spin)
            return 0

        sim, proc = run(main)
        assert proc.exit_status == 0
        return sim.now

    assert timed(5000) - timed(0) == 5000
    seen = check(
        *[(nr, lambda nr=nr: libc.syscall(abi.SYS_SPIN_CALL, 1, nr, 0, 0, 0)) for nr in (1, 10, 14, 30, 999)],
        ("negative", lambda: libc.syscall(abi.SYS_SPIN_CALL, -1, abi.SYS_GETPID, 0, 0, 0)),
        ("wrapped close", lambda: libc.close(77, spin=10)),  # the wrapped call's own error
    )
    assert list(seen.values()) == [errno.EINVAL] * 6 + [errno.EBADF]
    assert {abi.SYS_EXIT, abi.SYS_THREAD_CREATE, abi.SYS_MUNMAP, abi.SYS_SPIN_CALL} == {1, 10, 14, 30}
