"""strace's output, read: what `apkern replay` runs and where the gcc workload's calls come from.

A trace is what

    strace -f -ttt -T -o TRACE PROGRAM [ARGS...]

writes: one line per event, each `PID TIMESTAMP EVENT` (`-f` adds the pid, `-ttt`
the time in seconds since the epoch, `-T` each call's duration):

    123 1700000000.000100 openat(AT_FDCWD, "/etc/x", O_RDONLY) = 3 <0.000011>
    123 1700000000.000200 read(3,  <unfinished ...>        a call another thread's line interrupted
    124 1700000000.000210 getpid()    = 124 <0.000004>
    123 1700000000.000300 <... read resumed>"ab", 2) = 2 <0.000090>
    123 1700000000.000400 --- SIGCHLD {si_signo=SIGCHLD, ...} ---     a signal delivered
    124 1700000000.000500 exit_group(0) = ?
    124 1700000000.000600 +++ exited with 0 +++                       (or +++ killed by SIGKILL +++)

The pid may also be written `[pid 123]` (strace -f without -o), or be missing
(a trace of one process without -f: its pid is taken as 0).

`parse` turns the text into a `Trace`: its calls (an interrupted call joined to
its resumption, timed from its start), signals and exits in the order they
completed, and notes on what it left out. It never raises anything but
`TraceError`, whose message names the line:

- a line that is not strace output (no `-ttt` time stamp, an unbalanced call, a
  result that is no number) is an error;
- so is a trace with no call, or whose calls carry no `<duration>` (captured without -T);
- the last line of a file that ends mid-line (strace killed, a copy cut short:
  strace ends every line it writes) is left out with a note, as is a resumption whose start is not in the file and a
  call a thread never returned from (the thread died inside it; an exit is kept).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

CAPTURE = "strace -f -ttt -T -o TRACE PROGRAM [ARGS...]"


class TraceError(ValueError):
    """The text is not an strace -f -ttt -T log; the message names the line."""


@dataclass(frozen=True)
class Call:
    """One system call: `name(args) = result detail <duration>`."""

    line: int  # where it started (1-based)
    pid: int  # the thread that made it (strace's pid is the thread id)
    start: float  # seconds
    name: str
    args: str  # the text between the parentheses, as strace wrote it
    result: str  # "3", "-1", "0x55d0c000", "?" (the call did not return: exit, execve's old image)
    value: int | None  # the result as a number; None for "?"
    errno: str | None  # "ENOENT" when the call failed
    detail: str  # what follows the result: "(No such file or directory)", "(flags O_RDONLY)", ...
    duration: float | None  # seconds in the call (-T); None when strace gave none

    @property
    def end(self) -> float:
        return self.start + (self.duration or 0.0)

    @property
    def failed(self) -> bool:
        return self.value is not None and self.value < 0

    def arg_list(self) -> list[str]:
        """The arguments, split at the commas between them (not those inside strings, structs or arrays)."""
        return split_args(self.args)


@dataclass(frozen=True)
class Signal:
    """`--- SIGCHLD {...} ---`: a signal delivered to thread `pid`."""

    line: int
    pid: int
    time: float
    name: str
    text: str


@dataclass(frozen=True)
class Exit:
    """`+++ exited with N +++` or `+++ killed by SIG +++`: thread `pid` is gone."""

    line: int
    pid: int
    time: float
    status: int | None  # the exit status, None when a signal killed it
    signal: str | None


Event = Call | Signal | Exit


@dataclass
class Trace:
    events: list[Event]
    notes: list[str] = field(default_factory=list)

    @property
    def calls(self) -> list[Call]:
        return [e for e in self.events if isinstance(e, Call)]

    @property
    def pids(self) -> list[int]:
        """Every thread in the trace, in the order of its first event."""
        seen: dict[int, None] = {}
        for e in sorted(self.events, key=lambda e: e.line):
            seen.setdefault(e.pid, None)
        return list(seen)


_PREFIX = re.compile(r"(?:(\d+)\s+|\[pid\s+(\d+)\]\s+)?(\d+\.\d+)\s+(.*)$")
_EXITED = re.compile(r"\+\+\+ exited with (\d+) \+\+\+$")
_KILLED = re.compile(r"\+\+\+ killed by (SIG\w+)(?: \(core dumped\))? \+\+\+$")
_SIGNAL = re.compile(r"--- (?:stopped by )?(SIG\w+)\s*(.*?)\s*---$")
_RESUMED = re.compile(r"<\.\.\. (\w+) resumed>(.*)$")
_START = re.compile(r"(\w+)\((.*)$")
_UNFINISHED = " <unfinished ...>"
_RESULT = re.compile(r"\s*=\s*(0x[0-9a-fA-F]+|-?\d+|\?)(?:<[^>]*>)?(?![\w.])(.*?)(?:\s+<(\d+\.\d+)>)?\s*$")
_ERRNO = re.compile(r"\s*(E[A-Z0-9]+)\b")
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}


def _close_paren(text: str) -> int:
    """The index of the `)` that closes a call's arguments in `text` (which follows its `(`), or -1."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                return -1
            i = end + 1
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            if depth == 0:
                return i if c == ")" else -1
            depth -= 1
        i += 1
    return -1


def split_args(args: str) -> list[str]:
    """`args` split at its top-level commas, each part stripped; [] for no argument."""
    parts, depth, start, i, n = [], 0, 0, 0, len(args)
    while i < n:
        c = args[i]
        if c == '"':
            i += 1
            while i < n and args[i] != '"':
                i += 2 if args[i] == "\\" else 1
        elif args.startswith("/*", i):
            end = args.find("*/", i + 2)
            i = n if end < 0 else end + 1
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            parts.append(args[start:i].strip())
            start = i + 1
        i += 1
    last = args[start:].strip()
    if parts or last:
        parts.append(last)
    return parts


_ESCAPES = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "e": 27, '"': 34, "\\": 92, "'": 39, "?": 63}


def unquote(arg: str) -> tuple[bytes, bool] | None:
    """The bytes of a string argument as strace printed it ("ab\\n"...), and whether strace cut it short (...).

    None if `arg` is not a string.
    """
    m = re.fullmatch(r'"((?:[^"\\]|\\.)*)"(\.\.\.)?', arg, re.S)
    if m is None:
        return None
    body, out, i = m.group(1), bytearray(), 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8", "replace")
            i += 1
            continue
        e = body[i + 1]
        if e == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2 : i + 4]):
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif e in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1 :])
            assert digits is not None
            out.append(int(digits.group(0), 8) & 0xFF)
            i += 1 + len(digits.group(0))
        else:
            out.append(_ESCAPES.get(e, ord(e) & 0xFF if ord(e) < 256 else 63))
            i += 2
    return bytes(out), m.group(2) is not None


def _number(text: str) -> int | None:
    if text == "?":
        return None
    return int(text, 16) if text.startswith("0x") else int(text)


def _time(text: str, lineno: int) -> float:
    t = float(text)
    if not math.isfinite(t):
        raise TraceError(f"line {lineno}: time {text[:40]!r} is out of range")
    return t


class _Parser:
    def __init__(self) -> None:
        self.events: list[tuple[int, Event]] = []  # (order of completion, event)
        self.notes: list[str] = []
        self.pending: dict[int, tuple[int, float, str, str]] = {}  # pid -> (line, start, name, args so far)

    def emit(self, event: Event) -> None:
        self.events.append((len(self.events), event))

    def call(self, lineno: int, pid: int, start: float, name: str, text: str) -> None:
        """`text`: everything after `name(`."""
        close = _close_paren(text)
        if close < 0:
            raise TraceError(f"line {lineno}: the arguments of {name}() are not closed")
        m = _RESULT.match(text, close + 1)
        if m is None:
            raise TraceError(f"line {lineno}: {name}() has no '= result'")
        result, detail, dur = m.group(1), m.group(2).strip(), m.group(3)
        errno = None
        value = _number(result)
        if value is not None and value < 0 and (e := _ERRNO.match(detail)):
            errno = e.group(1)
        duration = None if dur is None else _time(dur, lineno)
        self.emit(Call(lineno, pid, start, name, text[:close], result, value, errno, detail, duration))

    def line(self, lineno: int, raw: str) -> None:
        line = raw.strip()
        if not line:
            return
        m = _PREFIX.match(line)
        if m is None:
            raise TraceError(f"line {lineno}: not strace -ttt output (no time stamp): {line[:60]!r}")
        pid = int(m.group(1) or m.group(2) or 0)
        t = _time(m.group(3), lineno)
        body = m.group(4)
        if mm := _EXITED.match(body):
            self.emit(Exit(lineno, pid, t, int(mm.group(1)), None))
        elif mm := _KILLED.match(body):
            self.emit(Exit(lineno, pid, t, None, mm.group(1)))
        elif mm := _SIGNAL.match(body):
            self.emit(Signal(lineno, pid, t, mm.group(1), mm.group(2)))
        elif mm := _RESUMED.match(body):
            name, rest = mm.group(1), mm.group(2)
            head = self.pending.pop(pid, None)
            if head is None or head[2] != name:
                if head is not None:
                    self.pending[pid] = head
                self.notes.append(f"line {lineno}: {name} resumed, but its start is not in the trace: left out")
                return
            if rest.lstrip().startswith("<unfinished ...>"):  # strace lost it again: the thread died in it
                rest = rest.lstrip()[len("<unfinished ...>") :]
            self.call(head[0], pid, head[1], name, head[3] + rest)
        elif body.endswith(_UNFINISHED) and (mm := _START.match(body[: -len(_UNFINISHED)])):
            if pid in self.pending:
                self.notes.append(f"line {self.pending[pid][0]}: {self.pending[pid][2]} never resumed: left out")
            self.pending[pid] = (lineno, t, mm.group(1), mm.group(2))
        elif mm := _START.match(body):
            self.call(lineno, pid, t, mm.group(1), mm.group(2))
        else:
            raise TraceError(f"line {lineno}: not strace output: {line[:60]!r}")

    def finish(self) -> None:
        """Calls still unfinished at the end: an exit is kept (it returns nowhere); others are left out."""
        for pid, (lineno, start, name, args) in sorted(self.pending.items(), key=lambda kv: kv[1][0]):
            if name in ("exit", "exit_group"):
                self.emit(Call(lineno, pid, start, name, args.strip(), "?", None, None, "", None))
            else:
                self.notes.append(f"line {lineno}: thread {pid} never returned from {name}: left out")
        self.pending.clear()


def parse(text: str) -> Trace:
    """The events of an `strace -f -ttt -T` log; `TraceError` if it is not one (see the module docstring)."""
    p = _Parser()
    lines = text.split("\n")
    last = lines.pop()  # "" when the file ends with a newline, as strace's always do
    if last.strip():
        p.notes.append(f"line {len(lines) + 1}: cut short (the file ends mid-line): left out")
    for i, raw in enumerate(lines, 1):
        try:
            p.line(i, raw)
        except TraceError:
            raise
        except (ValueError, IndexError) as e:  # a number too long to convert and the like
            raise TraceError(f"line {i}: unreadable: {raw.strip()[:60]!r} ({e})") from None
    p.finish()
    events = [e for _, e in sorted(p.events, key=lambda oe: oe[0])]
    calls = [e for e in events if isinstance(e, Call)]
    if not calls:
        raise TraceError("no system call in the trace: capture it with " + CAPTURE)
    if all(c.duration is None for c in calls):
        raise TraceError("no call has a <duration>: capture the trace with -T, as in " + CAPTURE)
    return Trace(events, p.notes)


def read(path: str | Path) -> Trace:
    """Parse the trace in file `path` (bytes that are not UTF-8 are replaced); OSError if it cannot be read."""
    data = Path(path).read_bytes()
    if b"\0" in data:
        raise TraceError(f"{path}: a binary file, not an strace log")
    return parse(data.decode("utf-8", "replace"))
