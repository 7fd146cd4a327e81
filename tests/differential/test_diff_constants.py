"""Programs written with Python's own constants run, and run the same, on both kernels.

A Python user writes `libc.kill(pid, signal.SIGKILL)`, `libc.sigaction(signal.SIGUSR1,
handler)`, `signal.SIG_IGN`, `os.O_WRONLY | os.O_APPEND`, an `IntFlag` or `IntEnum` of
their own, and gets a TypeError for a float or a str. Each program is compared between
the uniprocessor kernel and the application kernel on 2 and 4 CPUs; the reference run
is also checked for what the program must have done, since a program that fails the
same way on both kernels (as these did with EINVAL) would otherwise pass.

ABI note: libc's open flags and signal numbers are the host's (`abi` takes them from
`os` and `signal`), so `os.O_*` and `signal.SIG*` mean the same to libc as to Python;
`signal.SIG_DFL` and `signal.SIG_IGN` are 0 and 1, as `abi.SIG_DFL` and `abi.SIG_IGN`.
"""

from __future__ import annotations

import enum
import os
import signal
from collections.abc import Generator
from typing import Any

import pytest
from diffkit import compare_all

from apkern import libc
from apkern.bootkernel import abi

AK_CPUS = [2, 4]
COUNTER = libc.PROGRAM_DATA + 0x40  # per-process static: handler invocations


class Exit(enum.IntEnum):
    OK = 0
    PARTIAL = 3


class Static(enum.IntEnum):
    """Addresses of this program's static data."""

    COUNTER = COUNTER
    WORD = COUNTER + 4


class Size(enum.IntEnum):
    WORD = 4
    PAGE = 4096


class Fd(enum.IntEnum):
    STDOUT = 1
    STDERR = 2


class Open(enum.IntFlag):
    """Open flags as a user would build them, from the host's os.O_* values."""

    RDONLY = os.O_RDONLY
    WRONLY = os.O_WRONLY
    CREAT = os.O_CREAT
    TRUNC = os.O_TRUNC


def test_signal_values_are_the_hosts() -> None:
    """The claim above, checked against the values the kernel's signal code was written for."""
    for name in ("SIGHUP", "SIGINT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGCHLD"):
        assert getattr(abi, name) == getattr(signal, name)
    assert (int(signal.SIG_DFL), int(signal.SIG_IGN)) == (abi.SIG_DFL, abi.SIG_IGN)


# --- signals: kill, sigaction with a handler, SIG_IGN and SIG_DFL, SIGKILL of a child ---------------------


def on_signal(sig: int) -> Generator[Any, Any, None]:
    yield from libc.print(f"handler: {signal.Signals(sig).name}\n")
    n = yield from libc.load(Static.COUNTER)
    yield from libc.store(Static.COUNTER, n + 1)


def wait_for_handler(count: int) -> Generator[Any, Any, None]:
    for _ in range(2000):
        if (yield from libc.load(Static.COUNTER)) >= count:
            return
        yield from libc.compute(100)
        yield from libc.yield_()
    yield from libc.print("handler never ran\n")


def ignoring_child(argv: list[str]) -> Generator[Any, Any, int]:
    """Ignores SIGTERM, says so, then answers one message and waits to be killed."""
    rfd, wfd = int(argv[1]), int(argv[2])
    yield from libc.sigaction(signal.SIGTERM, signal.SIG_IGN)
    yield from libc.write_bytes(wfd, b"r")
    yield from libc.read_bytes(rfd, 1)  # the parent has sent SIGTERM by now
    yield from libc.print("child: still here after SIGTERM\n")
    yield from libc.write_bytes(wfd, b"a")
    while True:
        yield from libc.sleep(10_000)


def signals_by_name(argv: list[str]) -> Generator[Any, Any, int]:
    me = yield from libc.getpid()
    prev = yield from libc.sigaction(signal.SIGUSR1, on_signal)
    yield from libc.print(f"previous SIGUSR1 handler is SIG_DFL: {prev == signal.SIG_DFL}\n")
    yield from libc.kill(me, signal.SIGUSR1)
    yield from wait_for_handler(1)
    prev = yield from libc.sigaction(signal.SIGUSR1, signal.SIG_IGN)
    yield from libc.print(f"previous SIGUSR1 handler is code: {prev not in (signal.SIG_DFL, signal.SIG_IGN)}\n")
    yield from libc.kill(me, signal.SIGUSR1)  # ignored
    yield from libc.sigaction(signal.SIGUSR2, on_signal)
    yield from libc.kill(me, signal.SIGUSR2)
    yield from wait_for_handler(2)
    prev = yield from libc.sigaction(signal.SIGUSR2, signal.SIG_DFL)
    yield from libc.print(f"handlers ran: {(yield from libc.load(Static.COUNTER))}\n")

    to_child, from_parent = yield from libc.pipe()
    to_parent, from_child = yield from libc.pipe()
    child = yield from libc.spawn(ignoring_child, ["child", str(to_child), str(from_child)])
    yield from libc.read_bytes(to_parent, 1)
    yield from libc.kill(child, signal.SIGTERM)
    yield from libc.write_bytes(from_parent, b"t")
    yield from libc.read_bytes(to_parent, 1)
    yield from libc.kill(child, signal.SIGKILL)
    status = yield from libc.waitpid(child)
    yield from libc.print(f"child ended by {signal.Signals(-status).name}\n")
    return Exit.PARTIAL


def test_signals_by_name() -> None:
    ref, _ = compare_all(signals_by_name, ["signals_by_name"], AK_CPUS)
    assert ref.top_status == Exit.PARTIAL
    assert ref.per_pid[ref.top_pid][1] == (
        "previous SIGUSR1 handler is SIG_DFL: True\n"
        "handler: SIGUSR1\n"
        "previous SIGUSR1 handler is code: True\n"
        "handler: SIGUSR2\n"
        "handlers ran: 2\n"
        "child ended by SIGKILL\n"
    )
    assert [text[1] for pid, text in ref.per_pid.items() if pid != ref.top_pid] == ["child: still here after SIGTERM\n"]
    assert sorted(status for _name, status in ref.procs.values()) == [-signal.SIGKILL, Exit.PARTIAL]


# --- open flags: the host's os.O_* and an IntFlag built from them ---------------------------------------------


def open_flags(argv: list[str]) -> Generator[Any, Any, int]:
    fd = yield from libc.open("/out.txt", Open.WRONLY | Open.CREAT | Open.TRUNC)
    yield from libc.write_bytes(fd, b"first\n")
    yield from libc.close(fd)
    fd = yield from libc.open("/out.txt", os.O_WRONLY | os.O_APPEND)
    yield from libc.write_bytes(fd, b"second\n")
    yield from libc.close(fd)
    try:
        yield from libc.open("/out.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except OSError as e:
        yield from libc.print(f"O_EXCL: {os.strerror(e.errno)}\n")
    fd = yield from libc.open("/out.txt", Open.RDONLY)
    data = yield from libc.read_bytes(fd, Size.PAGE)
    yield from libc.close(fd)
    yield from libc.write_bytes(Fd.STDOUT, data)
    return Exit.OK


def test_open_flags() -> None:
    files = {"/out.txt": b"an older and longer content\n"}
    ref, _ = compare_all(open_flags, ["open_flags"], AK_CPUS, files=files)
    assert ref.top_status == 0
    assert ref.files["/out.txt"] == b"first\nsecond\n"  # truncated, then appended to
    assert ref.console == "O_EXCL: File exists\nfirst\nsecond\n"


# --- sizes, descriptors, addresses, thread arguments and statuses from the program's own IntEnums ----------------


class Job(enum.IntEnum):
    FIRST = 20
    SECOND = 21


def worker(job: int) -> Generator[Any, Any, int]:
    yield from libc.compute(Size.PAGE)
    yield from libc.print(f"worker: job {Job(job).name}\n")
    return Job(job) if job == Job.SECOND else True


def own_enums(argv: list[str]) -> Generator[Any, Any, int]:
    base = yield from libc.mmap(Size.PAGE)
    yield from libc.store(base, Size.PAGE)
    yield from libc.store(Static.WORD, Exit.PARTIAL)
    yield from libc.write_mem(base + Size.WORD, b"mem\n")
    yield from libc.write(Fd.STDOUT, base + Size.WORD, Size.WORD)
    got = yield from libc.read_mem(base + Size.WORD, Size.WORD)
    yield from libc.write_bytes(Fd.STDERR, got)
    yield from libc.munmap(base, Size.PAGE)
    for job in Job:
        tid = yield from libc.thread_create(worker, job)
        rv = yield from libc.thread_join(tid)
        yield from libc.print(f"joined {Job(job).name}: {rv}\n")
    yield from libc.sleep(Size.PAGE)
    yield from libc.spin(Size.WORD)
    yield from libc.exit((yield from libc.load(Static.WORD)))
    return Exit.OK  # not reached


def test_own_enums() -> None:
    ref, _ = compare_all(own_enums, ["own_enums"], AK_CPUS)
    assert ref.top_status == Exit.PARTIAL
    out = ref.per_pid[ref.top_pid][1]
    assert out == "mem\nworker: job FIRST\njoined FIRST: 1\nworker: job SECOND\njoined SECOND: 21\n"
    assert ref.per_pid[ref.top_pid][2] == "mem\n"


def echo(arg: int) -> Generator[Any, Any, int]:
    yield from libc.print(f"thread got {arg}\n")
    return arg


def thread_words(argv: list[str]) -> Generator[Any, Any, int]:
    for arg in (Job.FIRST, -5, 0xFFFFFFFF, -(1 << 31), (1 << 31) - 1):
        tid = yield from libc.thread_create(echo, arg)
        yield from libc.print(f"joined {(yield from libc.thread_join(tid))}\n")
    return 0


def test_a_thread_argument_is_the_same_signed_word_on_both_kernels() -> None:
    """The uniprocessor kernel hands the register over as it is, the application kernel as an unsigned message word."""
    ref, _ = compare_all(thread_words, ["thread_words"], AK_CPUS)
    values = [20, -5, -1, -(1 << 31), (1 << 31) - 1]
    assert ref.console == "".join(f"thread got {v}\njoined {v}\n" for v in values)


# --- wrong types: a TypeError in the program, before the kernel sees the call ---------------------------------------


def wrong_types(argv: list[str]) -> Generator[Any, Any, int]:
    me = yield from libc.getpid()
    attempts = [
        lambda: libc.kill(me, 9.0),
        lambda: libc.kill(me, "SIGKILL"),
        lambda: libc.kill(True, signal.SIGTERM),
        lambda: libc.sigaction(signal.SIGUSR1, True),
        lambda: libc.sigaction(signal.SIGUSR1, "SIG_IGN"),
        lambda: libc.open("/out.txt", True),
        lambda: libc.sleep(1.5),
        lambda: libc.mmap(str(Size.PAGE)),
    ]
    for attempt in attempts:
        try:
            yield from attempt()
            yield from libc.print("accepted\n")
        except TypeError as e:
            yield from libc.print(f"{e}\n")
    return 0


def test_wrong_types_raise_type_error_in_the_program() -> None:
    ref, runs = compare_all(wrong_types, ["wrong_types"], AK_CPUS)
    assert ref.top_status == 0
    assert ref.console == (
        "libc.kill(): argument 'sig' must be an integer, not float\n"
        "libc.kill(): argument 'sig' must be an integer, not str\n"
        "libc.kill(): argument 'pid' must be an integer, not bool\n"
        "libc.sigaction(): argument 'handler' must be a generator function or an integer, not bool\n"
        "libc.sigaction(): argument 'handler' must be a generator function or an integer, not str\n"
        "libc.open(): argument 'flags' must be an integer, not bool\n"
        "libc.sleep(): argument 'n' must be an integer, not float\n"
        "libc.mmap(): argument 'length' must be an integer, not str\n"
    )
    for obs in (ref, *runs):  # refused in the program: no kernel saw any of these calls
        called = obs.stats["syscalls_by_name"]
        assert not {"kill", "sigaction", "sleep"} & set(called), f"{obs.label}: {called}"


# --- an uncaught error is the program's crash: #UD, killed by SIGILL, the log says why ------------------------------

UNCAUGHT = {
    "float-signal": (
        lambda me: libc.kill(me, float(signal.SIGKILL)),
        "TypeError(\"libc.kill(): argument 'sig' must be an integer, not float\")",
    ),
    "negative-compute": (  # the machine itself would fail on a negative delay
        lambda me: libc.compute(-5),
        "ValueError(\"libc.compute(): argument 'n' must not be negative, not -5\")",
    ),
}


@pytest.mark.parametrize("ignore_sigill", [False, True], ids=["default", "sigill-ignored"])
@pytest.mark.parametrize("case", list(UNCAUGHT))
def test_an_uncaught_error_crashes_the_program(case: str, ignore_sigill: bool) -> None:
    call, logged = UNCAUGHT[case]

    def program(argv: list[str]) -> Generator[Any, Any, int]:
        if ignore_sigill:  # a fault's SIGILL is not a signal a program can ignore
            yield from libc.sigaction(signal.SIGILL, signal.SIG_IGN)
        me = yield from libc.getpid()
        yield from libc.print("about to fail\n")
        yield from call(me)
        yield from libc.print("not reached\n")
        return 0

    ref, runs = compare_all(program, ["uncaught"], AK_CPUS, strict=False)
    assert ref.top_status == -signal.SIGILL
    assert ref.console == "about to fail\n"
    for obs in (ref, *runs):
        crashes = [m for m in obs.messages if "user code raised" in m]
        assert len(crashes) == 1, f"{obs.label}: {obs.messages}"
        assert logged in crashes[0]


@pytest.mark.parametrize("value", [2.5, "3"], ids=["float", "str"])
def test_main_returning_a_non_integer_crashes_it(value: Any) -> None:
    """crt0 hands main's return value to exit, which takes integers only (it used to truncate or parse it)."""

    def program(argv: list[str]) -> Generator[Any, Any, Any]:
        yield from libc.print("returning\n")
        return value

    ref, runs = compare_all(program, ["ret"], AK_CPUS, strict=False)
    assert ref.top_status == -signal.SIGILL and ref.console == "returning\n"
    for obs in (ref, *runs):
        assert any("libc.exit(): argument 'status' must be an integer" in m for m in obs.messages), obs.messages
