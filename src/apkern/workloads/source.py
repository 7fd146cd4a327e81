"""Where a program comes from: a built-in's name, a user's Python file, or a TOML workload.

`resolve("hello", args)`, `resolve("prog.py", args)`, `resolve("prog.py:other", args)` and
`resolve("work.toml")` each give a `Program`: the generator function (or built-in name)
to spawn, its argv, and the files the file system must hold before it starts. The
command line's `run` and `compare` take any of the three the same way.

A user's file is loaded as a module of its own (the file's directory is importable while
it loads, as for `python FILE.py`); a missing file or function, a syntax error, an
exception while the module loads, or a function that is not a generator function taking
argv is a `ProgramError`: one line that says which and where.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .programs import PROGRAMS


class ProgramError(ValueError):
    """A program the user named cannot be run: the message is one line, for stderr."""


@dataclass(frozen=True)
class Program:
    """A program ready to spawn: `main` (a generator function or a built-in's name) with `argv`."""

    name: str  # as the user named it (reports show it)
    main: Callable[..., Any] | str
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)  # path -> content, written before the run
    kind: str = "builtin"  # "builtin", "file" or "toml"


def split_file_spec(spec: str) -> tuple[str, str] | None:
    """("prog.py", "main") for "prog.py", ("prog.py", "f") for "prog.py:f"; None when it names no .py file."""
    if spec.endswith(".py"):
        return spec, "main"
    head, sep, func = spec.rpartition(":")
    if sep and head.endswith(".py"):
        return head, func
    return None


def resolve(spec: str, args: Sequence[str] = ()) -> Program:
    """The program `spec` names (see the module's docstring), with arguments `args`."""
    if spec in PROGRAMS:
        return Program(spec, spec, [spec, *args])
    if spec.endswith(".toml"):
        from .declarative import load_workload

        if args:
            raise ProgramError(f"{spec}: a workload file takes no arguments (got {' '.join(args)!r})")
        w = load_workload(spec)
        return Program(spec, w.main, [w.name], dict(w.files), kind="toml")
    parts = split_file_spec(spec)
    if parts is None:
        raise ProgramError(f"unknown program {spec!r} (see `apkern programs`; a file of your own ends in .py or .toml)")
    path, func = parts
    return Program(spec, load_function(path, func), [spec, *args], kind="file")


def _read_source(path: str) -> bytes:
    if os.path.isdir(path):
        raise ProgramError(f"cannot read {path}: it is a directory")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ProgramError(f"cannot read {path}: {e.strerror or e}") from None


def _where(exc: BaseException, path: str) -> str:
    """ "path:line" of the deepest frame of `exc`'s traceback in `path` (or just `path`)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == os.path.abspath(path):
            line = frame.lineno
    return f"{path}:{line}" if line else path


def load_module(path: str) -> types.ModuleType:
    """Execute the Python file `path` as a fresh module; ProgramError on any failure to load it."""
    source = _read_source(path)
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        where = f"{path}:{e.lineno}" if e.lineno else path
        raise ProgramError(f"{where}: syntax error: {e.msg}") from None
    except ValueError as e:  # e.g. a NUL byte in the source
        raise ProgramError(f"{path}: cannot compile: {e}") from None
    stem = os.path.splitext(os.path.basename(path))[0]
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
    name = f"apkern_user_{''.join(c if c.isalnum() else '_' for c in stem)}_{digest}"
    module = types.ModuleType(name)
    module.__file__ = os.path.abspath(path)
    sys.modules[name] = module  # dataclasses and typing look the module up while it loads
    here = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, here)
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as e:  # whatever the module raises becomes one line
        del sys.modules[name]
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise ProgramError(f"{_where(e, path)}: loading the module raised {what}") from None
    finally:
        if here in sys.path:
            sys.path.remove(here)
    return module


def check_main(func: Any, label: str) -> Callable[..., Any]:
    """`func` if it is a generator function that takes argv; ProgramError saying what is wrong otherwise."""
    if not callable(func):
        raise ProgramError(f"{label} is not a function (it is {type(func).__name__} {func!r:.40})")
    if not inspect.isgeneratorfunction(func):
        raise ProgramError(
            f"{label} is not a generator function: a program yields machine operations (`yield from libc.print(...)`)"
        )
    try:
        inspect.signature(func).bind(["argv0"])
    except TypeError:
        raise ProgramError(f"{label} must take one argument, argv (a list of str)") from None
    except ValueError:
        pass  # no signature to check (a builtin-backed callable): let it run
    return func


def load_function(path: str, func: str = "main") -> Callable[..., Any]:
    """The generator function `func` of the Python file `path`, checked (see `check_main`)."""
    if not func.isidentifier():
        raise ProgramError(f"{path}:{func}: {func!r} is not a function name")
    module = load_module(path)
    if not hasattr(module, func):
        raise ProgramError(f"{path} has no function {func!r}")
    return check_main(getattr(module, func), f"{path}:{func}")
