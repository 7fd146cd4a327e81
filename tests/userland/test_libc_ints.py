"""libc's integer arguments: any Python integer goes in, only plain ints reach the machine.

Each integer argument of each libc call is given, in turn, an `IntEnum` member, a
float, a str and a bool. The IntEnum run must yield exactly the operations the
plain-int run yields (same values, every operand an exact `int`, as the kernels
require); a float and a str must raise TypeError naming the call and the argument
before any operation; a bool is refused except where the argument is a value.
The table is checked against libc's signatures, so a new call with an integer
argument that is not listed here fails the test.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import os
import signal
from collections.abc import Callable, Generator
from typing import Any

import pytest
from fakeproc import TLS, Exited, FakeProcess

from apkern.bootkernel import abi
from apkern.hw.ops import Op
from apkern.userland import libc

ADDR = libc.PROGRAM_DATA + 0x10


def _body(arg: int) -> Generator[Op, Any, int]:
    yield from libc.compute(1)
    return arg


# name -> (function, plain arguments, {integer argument: accepts bool}); positions follow the signature
CALLS: dict[str, tuple[Callable[..., Any], dict[str, Any], dict[str, bool]]] = {
    "syscall": (libc.syscall, {"nr": abi.SYS_KILL, "args": (7, abi.SIGTERM)}, {"nr": False, "args": True}),
    "exit": (libc.exit, {"status": 3}, {"status": True}),
    "getpid": (libc.getpid, {"spin": 0}, {"spin": False}),
    "gettid": (libc.gettid, {"spin": 0}, {"spin": False}),
    "waitpid": (libc.waitpid, {"pid": 7, "spin": 0}, {"pid": False, "spin": False}),
    "kill": (libc.kill, {"pid": 7, "sig": abi.SIGTERM}, {"pid": False, "sig": False}),
    "sigaction": (libc.sigaction, {"sig": abi.SIGUSR1, "handler": abi.SIG_IGN}, {"sig": False, "handler": False}),
    "sleep": (libc.sleep, {"n": 100}, {"n": False}),
    "thread_create": (libc.thread_create, {"func": _body, "arg": 5}, {"arg": True}),
    "thread_join": (libc.thread_join, {"tid": 2}, {"tid": False}),
    "thread_exit": (libc.thread_exit, {"value": 4}, {"value": True}),
    "mmap": (libc.mmap, {"length": 8192, "spin": 0}, {"length": False, "spin": False}),
    "munmap": (libc.munmap, {"addr": 0x20000000, "length": 4096}, {"addr": False, "length": False}),
    "lseek": (
        libc.lseek,
        {"fd": 3, "offset": 2, "whence": 0, "spin": 0},
        {"fd": False, "offset": False, "whence": False, "spin": False},
    ),
    "dup": (libc.dup, {"fd": 3, "spin": 0}, {"fd": False, "spin": False}),
    "pipe": (libc.pipe, {"spin": 0}, {"spin": False}),
    "mkdir": (libc.mkdir, {"path": "/d", "spin": 0}, {"spin": False}),
    "stat": (libc.stat, {"path": "/f", "spin": 0}, {"spin": False}),
    "getdents": (libc.getdents, {"fd": 3, "n": 64, "spin": 0}, {"fd": False, "n": False, "spin": False}),
    "futex_wait": (
        libc.futex_wait,
        {"addr": ADDR, "value": 7, "spin": 0},
        {"addr": False, "value": False, "spin": False},
    ),
    "futex_wake": (libc.futex_wake, {"addr": ADDR, "n": 1, "spin": 0}, {"addr": False, "n": False, "spin": False}),
    "mlock": (libc.mlock, {"addr": 0x20000000, "length": 4096}, {"addr": False, "length": False}),
    "munlock": (libc.munlock, {"addr": 0x20000000, "length": 4096}, {"addr": False, "length": False}),
    "load": (libc.load, {"addr": ADDR}, {"addr": False}),
    "store": (libc.store, {"addr": ADDR, "value": 1}, {"addr": False, "value": True}),
    "read_mem": (libc.read_mem, {"addr": ADDR, "n": 8}, {"addr": False, "n": False}),
    "write_mem": (libc.write_mem, {"addr": ADDR, "data": b"abcd"}, {"addr": False}),
    "open": (libc.open, {"path": "/f", "flags": abi.O_RDONLY, "spin": 0}, {"flags": False, "spin": False}),
    "read": (
        libc.read,
        {"fd": 3, "buf_addr": TLS, "n": 2, "spin": 0},
        {"fd": False, "buf_addr": False, "n": False, "spin": False},
    ),
    "write": (
        libc.write,
        {"fd": 1, "buf_addr": TLS, "n": 1, "spin": 0},
        {"fd": False, "buf_addr": False, "n": False, "spin": False},
    ),
    "close": (libc.close, {"fd": 3, "spin": 0}, {"fd": False, "spin": False}),
    "write_bytes": (libc.write_bytes, {"fd": 1, "data": b"hi"}, {"fd": False}),
    "read_bytes": (libc.read_bytes, {"fd": 3, "n": 2}, {"fd": False, "n": False}),
    "compute": (libc.compute, {"n": 10}, {"n": False}),
    "spin": (libc.spin, {"n": 10}, {"n": False}),
}
CASES = [(name, arg) for name, (_, _, ints) in CALLS.items() for arg in ints]


def _recorded(gen: Generator[Op, Any, Any], ops: list[Op]) -> Generator[Op, Any, Any]:
    """`gen`, with every operation it yields appended to `ops`."""
    send = None
    while True:
        try:
            op = gen.send(send)
        except StopIteration as stop:
            return stop.value
        ops.append(op)
        send = yield op


def _operands(op: Op) -> tuple[Any, ...]:
    values = tuple(getattr(op, slot) for slot in type(op).__slots__)
    return (type(op).__name__, *values)


def _flat(values: tuple[Any, ...]) -> list[Any]:
    return [x for v in values for x in (v if isinstance(v, tuple) else (v,))]


def _call(name: str, args: dict[str, Any]) -> Generator[Op, Any, Any]:
    func = CALLS[name][0]
    params = inspect.signature(func).parameters
    keyword = {k: v for k, v in args.items() if params[k].kind is inspect.Parameter.KEYWORD_ONLY}
    positional = [v for k, v in args.items() if k != "args" and k not in keyword]
    return func(*positional, *args.get("args", ()), **keyword)


def _run(name: str, args: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The operations the call yields, as (op name, operands...), on a fake process that lets it succeed."""
    proc = FakeProcess({"/f": b"abc"})
    proc.run(libc.open("/f"))  # fd 3
    for nr in (abi.SYS_KILL, abi.SYS_SIGACTION, abi.SYS_SLEEP, abi.SYS_MUNMAP, abi.SYS_SPIN):
        proc.results[nr] = 0
    for nr in (abi.SYS_MLOCK, abi.SYS_MUNLOCK, abi.SYS_LSEEK, abi.SYS_DUP, abi.SYS_FUTEX, abi.SYS_GETDENTS):
        proc.results[nr] = 0
    for nr in (abi.SYS_MKDIR, abi.SYS_STAT, abi.SYS_GETPID, abi.SYS_GETTID, abi.SYS_PIPE):
        proc.results[nr] = 0
    proc.results[abi.SYS_WAITPID] = lambda pid, ptr: pid
    proc.results[abi.SYS_THREAD_CREATE] = 2
    proc.results[abi.SYS_THREAD_JOIN] = 0
    proc.results[abi.SYS_MMAP] = 0x20000000
    ops: list[Op] = []
    with contextlib.suppress(Exited):  # exit and thread_exit end the fake process
        proc.run(_recorded(_call(name, args), ops))
    return [_operands(op) for op in ops]


def _replaced(name: str, arg: str, value: Any) -> dict[str, Any]:
    args = dict(CALLS[name][1])
    args[arg] = tuple(value for _ in args[arg]) if arg == "args" else value
    return args


def _as_enum(value: int) -> int:
    return enum.IntEnum("Const", {"VALUE": value}).VALUE


def test_the_table_lists_every_integer_argument_of_libc() -> None:
    public = {
        name: f
        for name, f in vars(libc).items()
        if not name.startswith("_") and inspect.isgeneratorfunction(f) and f.__module__ == libc.__name__
    }
    for name, f in public.items():
        ints = {p.name for p in inspect.signature(f).parameters.values() if "int" in str(p.annotation)}
        listed = set(CALLS[name][2]) if name in CALLS else set()
        assert ints == listed, f"libc.{name}: integer arguments {sorted(ints)}, tested {sorted(listed)}"


@pytest.mark.parametrize(("name", "arg"), CASES)
def test_an_int_enum_yields_the_same_plain_ints(name: str, arg: str) -> None:
    plain = _run(name, CALLS[name][1])
    args = dict(CALLS[name][1])
    args[arg] = tuple(_as_enum(v) for v in args[arg]) if arg == "args" else _as_enum(args[arg])
    got = _run(name, args)
    assert got == plain
    for op in got:
        for v in _flat(op[1:]):
            assert not isinstance(v, int) or type(v) is int, f"{op}: {v!r} is {type(v).__name__}, not int"


@pytest.mark.parametrize("bad", [1.0, "1"], ids=["float", "str"])
@pytest.mark.parametrize(("name", "arg"), CASES)
def test_a_non_integer_raises_type_error_naming_the_call_and_argument(name: str, arg: str, bad: Any) -> None:
    ops: list[Op] = []
    with pytest.raises(TypeError) as e:
        FakeProcess().run(_recorded(_call(name, _replaced(name, arg, bad)), ops))
    label = "args[0]" if arg == "args" else arg
    assert f"libc.{name}()" in str(e.value) and repr(label) in str(e.value) and type(bad).__name__ in str(e.value)
    assert ops == []  # refused before the first instruction of the call


@pytest.mark.parametrize(("name", "arg"), CASES)
def test_bool_only_where_the_argument_is_a_value(name: str, arg: str) -> None:
    if CALLS[name][2][arg]:
        assert _run(name, _replaced(name, arg, True)) == _run(name, _replaced(name, arg, 1))
        return
    with pytest.raises(TypeError, match=rf"libc\.{name}\(\): argument '{arg}' must be .*not bool"):
        FakeProcess().run(_call(name, _replaced(name, arg, True)))


def test_python_signal_constants_reach_the_kernel_as_numbers() -> None:
    proc = FakeProcess()
    proc.results[abi.SYS_KILL] = 0
    proc.results[abi.SYS_SIGACTION] = 0

    def handler(sig: int) -> Generator[Op, Any, None]:
        yield from libc.compute(1)

    proc.run(libc.kill(7, signal.SIGKILL))
    proc.run(libc.sigaction(signal.SIGUSR1, handler))
    proc.run(libc.sigaction(signal.SIGTERM, signal.SIG_IGN))
    proc.run(libc.sigaction(signal.SIGTERM, signal.SIG_DFL))
    assert proc.calls == [
        ("kill", (7, 9)),
        ("sigaction", (10, proc.address_of(handler))),
        ("sigaction", (15, 1)),
        ("sigaction", (15, 0)),
    ]
    assert all(type(v) is int for _, args in proc.calls for v in args)


@pytest.mark.parametrize("handler", [True, 1.0, "SIG_IGN", None], ids=["bool", "float", "str", "None"])
def test_sigaction_refuses_a_handler_that_is_neither_code_nor_an_integer(handler: Any) -> None:
    proc = FakeProcess()
    with pytest.raises(TypeError, match=r"libc\.sigaction\(\): argument 'handler' must be a generator function"):
        proc.run(libc.sigaction(signal.SIGUSR1, handler))
    assert proc.calls == []


def test_code_arguments_must_be_callable() -> None:
    """A non-callable would be registered as code, and the machine would fail when it is called."""
    proc = FakeProcess()
    with pytest.raises(TypeError, match=r"libc\.thread_create\(\): argument 'func' must be a generator function"):
        proc.run(libc.thread_create(0x08048000, 0))
    with pytest.raises(TypeError, match=r"libc\.spawn\(\): argument 'program' must be a generator function"):
        proc.run(libc.spawn(42, ["x"]))
    assert proc.calls == []


def test_a_thread_returning_an_enum_or_bool_exits_with_its_number() -> None:
    class Result(enum.IntEnum):
        DONE = 6

    for rv, status in ((Result.DONE, 6), (True, 1), (None, 0)):
        proc = FakeProcess()
        proc.results[abi.SYS_THREAD_CREATE] = 2

        def body(arg: int, rv: Any = rv) -> Generator[Op, Any, Any]:
            yield from libc.compute(arg)
            return rv

        proc.run(libc.thread_create(body, 1))
        entry, func_addr, arg = proc.calls[-1][1]
        with pytest.raises(Exited) as e:
            proc.run(proc.code[entry](func_addr, arg))
        assert e.value.status == status and type(e.value.status) is int


def test_user_built_open_flags() -> None:
    """An IntFlag of the host's os.O_* values (which are libc's: abi takes them from os) opens files."""

    class Open(enum.IntFlag):
        RDONLY = os.O_RDONLY
        WRONLY = os.O_WRONLY
        CREAT = os.O_CREAT

    proc = FakeProcess({"/f": b"abc"})
    proc.run(libc.open("/f", Open.RDONLY))
    proc.run(libc.open("/f", Open.WRONLY | Open.CREAT))
    assert proc.calls == [("open", (TLS, abi.O_RDONLY)), ("open", (TLS, abi.O_WRONLY | abi.O_CREAT))]
    assert all(type(v) is int for _, args in proc.calls for v in args)


def test_compute_refuses_a_negative_count() -> None:
    """Time cannot go back: the machine would fail on it, so the program fails instead."""
    ops: list[Op] = []
    with pytest.raises(ValueError, match=r"libc\.compute\(\): argument 'n' must not be negative"):
        FakeProcess().run(_recorded(libc.compute(-1), ops))
    assert ops == []


def test_a_charged_call_is_one_spin_call_trap_with_its_arguments_padded() -> None:
    """spin=n makes SYS_SPIN_CALL(n, nr, a0, a1, a2): one trap; spin=0 is the plain call."""
    proc = FakeProcess({"/f": b"abc"})
    proc.results[abi.SYS_SPIN_CALL] = 0
    proc.run(libc.open("/f"))  # fd 3
    proc.run(libc.close(3, spin=0))
    proc.run(libc.close(3, spin=1500))
    proc.run(libc.getpid(spin=7))
    proc.run(libc.lseek(3, -2, os.SEEK_END, spin=9))
    assert proc.calls[1:] == [
        ("close", (3,)),
        ("spin_call", (1500, abi.SYS_CLOSE, 3, 0, 0)),
        ("spin_call", (7, abi.SYS_GETPID, 0, 0, 0)),
        ("spin_call", (9, abi.SYS_LSEEK, 3, -2, os.SEEK_END)),
    ]
