"""find | grep: two processes joined by a pipe, as a shell starts them.

`findgrep [-verify] ROOT [PATTERN]` runs `find ROOT | grep PATTERN` (PATTERN
defaults to grep's PATTERN_DEFAULT): it makes a pipe, starts find with the pipe's
write end as its standard output and grep with the read end as its standard input
(dup and close around spawn, as a shell does between fork and exec), closes its
own ends and waits for both. With -verify both check themselves against
ROOT.manifest (find: the walk; grep: lines read and matched). Its own work is a
shell's: a handful of calls, no user compute worth charging.

As in a shell that forgets to close it, find also inherits the pipe's read end
(spawn has no file actions); it never reads it, and grep sees end of file when
find, the only writer left, exits.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..hw.ops import Op
from ..userland import libc
from . import tree
from .grep import PATTERN_DEFAULT

Gen = Generator[Op, Any, Any]


def spawn_io(
    program: str, argv: list[str], stdin: int | None = None, stdout: int | None = None, stderr: int | None = None
) -> Gen:
    """Spawn `program` with descriptors 0, 1 and 2 replaced by `stdin`, `stdout` and `stderr` (those given)."""
    saved = []
    for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
        if fd is None:
            continue
        keep = yield from libc.dup(target)
        yield from libc.close(target)
        if (yield from libc.dup(fd)) != target:  # the lowest free descriptor is the one just closed
            raise OSError(9, "descriptor shuffle went wrong")
        saved.append((target, keep))
    try:
        pid = yield from libc.spawn(program, argv)
    finally:
        for target, keep in reversed(saved):
            yield from libc.close(target)
            yield from libc.dup(keep)
            yield from libc.close(keep)
    return pid


def findgrep(argv: list[str]) -> Gen:
    """Run find ROOT | grep PATTERN; print both exit statuses."""
    args = argv[1:]
    verify = bool(args) and args[0] == "-verify"
    args = args[1:] if verify else args
    if not 1 <= len(args) <= 2 or args[0].startswith("-"):
        yield from libc.write_bytes(2, b"usage: findgrep [-verify] ROOT [PATTERN]\n")
        return 2
    root = args[0]
    pattern = args[1] if len(args) > 1 else PATTERN_DEFAULT
    check = ["-verify", tree.manifest_path(root)] if verify else []
    r, w = yield from libc.pipe()
    finder = yield from spawn_io("find", ["find", *check, root], stdout=w)
    yield from libc.close(w)  # else grep would inherit it and never see end of file
    grepper = yield from spawn_io("grep", ["grep", *check, pattern], stdin=r)
    yield from libc.close(r)
    fs = yield from libc.waitpid(finder)
    gs = yield from libc.waitpid(grepper)
    yield from libc.print(f"findgrep: find exit {fs}, grep exit {gs}\n")
    return 0 if fs == 0 and gs in (0, 1) else 1
