"""Workloads written in TOML: processes, threads, compute between calls, the call mix, files and pipes.

The format is documented in docs/workloads.md; `examples/*.toml` use it. In short:

    [workload]                      # optional
    name = "pipeline"               # default: the file's name

    [files]                         # the file system before the run
    "/data/in.txt" = "text"         # or { text = "..", repeat = N } or { size = N, seed = S }

    [[pipe]]
    name = "jobs"

    [[process]]
    name = "producer"
    count = 1                       # copies started together
    threads = 2                     # threads per copy, each runs the loop
    iterations = 100                # passes of the loop per thread
    compute = 5000                  # user instructions before each call
    [process.calls]                 # one pass: each call, in order, `count` times
    getpid = 1
    write = { pipe = "jobs", bytes = 256 }

`load_workload(path)` parses and checks a file (every mistake is a `ProgramError`, one
line naming the file, the place and what is wrong) and gives a `Workload`, whose `main`
is an ordinary program: a launcher that makes the pipes, starts every copy of every
process, waits for them in order and prints each one's report. A copy's threads run the
loop; the copy's main thread then joins them, closes its pipe write ends, reads its pipes
to the end, and writes its report (counts and byte sums: nothing that depends on timing,
so the output is the same on every kernel). The launcher exits 0 when every copy did.

Everything a process counts lives in its own simulated memory (a slot of static data
per thread), so the workload is a real program of the user land, not a host script.
"""

from __future__ import annotations

import errno
import os
import random
import re
import signal
import string
import tomllib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..hw.ops import Op
from ..userland import libc
from .source import ProgramError

Gen = Generator[Op, Any, Any]

# --- the vocabulary --------------------------------------------------------------------

# call -> the parameters it takes (besides `count`)
CALLS: dict[str, tuple[str, ...]] = {
    "getpid": (),
    "gettid": (),
    "yield": (),
    "sleep": ("instructions",),
    "spin": ("instructions",),
    "write": ("bytes", "file", "pipe"),
    "read": ("bytes", "file", "pipe"),
    "open": ("file",),
    "stat": ("file",),
    "mmap": ("bytes",),
    "mutex": (),
}
DEFAULTS: dict[str, Any] = {"count": 1, "instructions": 1000, "bytes": 64}
DEFAULT_WRITE_FILE = "/tmp/{process}-{copy}-{thread}.out"
PLACEHOLDERS = ("process", "copy", "thread")

MAX_COPIES = 32  # processes in all (copies of every [[process]])
MAX_THREADS = 16  # per process
MAX_CALL_ENTRIES = 16  # entries of one process's call mix
MAX_PIPES = 16
MAX_COUNT = 10_000  # times one call is made per pass
MAX_ITERATIONS = 1_000_000
MAX_INSTRUCTIONS = 1_000_000_000
MAX_BYTES = 1 << 20  # per read, write or mmap
MAX_FILE = 16 << 20  # per file of [files]
MAX_FDS = 60  # what a process may hold (the kernel allows 64)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")

REPORT_DIR = "/tmp/.workload"  # each copy's report, read and removed by the launcher

# static data of every process of a workload
MUTEX = libc.PROGRAM_DATA
COUNTER = libc.PROGRAM_DATA + 4  # incremented under MUTEX by the `mutex` call
SLOTS = libc.PROGRAM_DATA + 64  # one per thread: its counts, written when it finishes
_SLOT_HEAD = ("calls", "written", "written_sum", "read", "read_sum")
SLOT_WORDS = len(_SLOT_HEAD) + 2 * MAX_CALL_ENTRIES  # + per call entry: errors, first errno
SLOT_SIZE = 4 * SLOT_WORDS


# --- the parsed workload ---------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    name: str
    count: int = 1
    instructions: int = DEFAULTS["instructions"]
    bytes: int = DEFAULTS["bytes"]
    file: str | None = None  # a path template ({process}, {copy}, {thread})
    pipe: str | None = None

    @property
    def label(self) -> str:
        target = f" {self.pipe}" if self.pipe else ""
        return f"{self.name}{target}"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    count: int = 1
    threads: int = 1
    iterations: int = 1
    compute: int = 0
    calls: tuple[Call, ...] = ()

    def pipes(self, name: str) -> set[str]:
        """The pipes this process reads (`name` "read") or writes ("write")."""
        return {c.pipe for c in self.calls if c.name == name and c.pipe is not None}


@dataclass(frozen=True)
class Workload:
    name: str
    processes: tuple[ProcessSpec, ...]
    pipes: tuple[str, ...] = ()
    files: dict[str, bytes] = field(default_factory=dict)
    description: str = ""

    @cached_property
    def main(self) -> Callable[..., Gen]:
        """The launcher: a program `main(argv)` that runs the whole workload (one function per Workload)."""
        return _build(self)


# --- checking what the file says --------------------------------------------------------


class _Check:
    """Checks of one file: every failure is a ProgramError naming the file and the place."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def fail(self, where: str, message: str) -> ProgramError:
        return ProgramError(f"{self.filename}: {where}: {message}" if where else f"{self.filename}: {message}")

    def table(self, value: Any, where: str, known: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a table, not {_kind(value)}")
        for key in value:
            if key not in known:
                raise self.fail(where, f"unknown key {key!r} (known: {', '.join(known)})")
        for key in required:
            if key not in value:
                raise self.fail(where, f"{key!r} is missing")
        return value

    def int(self, value: Any, where: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"must be a whole number, not {_kind(value)} {value!r}")
        if not lo <= value <= hi:
            raise self.fail(where, f"must be between {lo:,} and {hi:,}, not {value:,}")
        return value

    def str(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, not {_kind(value)}")
        return value

    def name(self, value: Any, where: str) -> str:
        s = self.str(value, where)
        if not NAME.match(s):
            raise self.fail(where, f"{s!r} is not a name (a letter or _, then letters, digits, _ . -; 32 at most)")
        return s

    def path(self, value: Any, where: str, template: bool = False) -> str:
        s = self.str(value, where)
        if not s.startswith("/"):
            raise self.fail(where, f"{s!r} is not an absolute path")
        if "\0" in s:
            raise self.fail(where, "a path cannot hold a NUL character")
        if s == "/dev" or s.startswith("/dev/"):
            raise self.fail(where, f"{s!r}: /dev names devices, which differ from kernel to kernel")
        widest = s
        if template:
            try:
                fields = [f for _, f, spec, conv in string.Formatter().parse(s) if f is not None or spec or conv]
            except ValueError as e:
                raise self.fail(where, f"{s!r}: {e} (write {{{{ and }}}} for braces)") from None
            bad = [f for f in fields if f not in PLACEHOLDERS]
            if bad:
                known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                raise self.fail(where, f"{s!r}: unknown placeholder {{{bad[0]}}} (known: {known})")
            widest = s.format(process="x" * 32, copy=MAX_COPIES, thread=MAX_THREADS)
        if len(os.fsencode(widest)) >= libc.PATH_MAX:
            raise self.fail(where, f"path longer than {libc.PATH_MAX - 1} bytes")
        return s


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "a table" if isinstance(value, dict) else type(value).__name__
    )


def load_workload(path: str) -> Workload:
    """Read and check the TOML workload `path`; ProgramError (one line) on any mistake."""
    if os.path.isdir(path):
        raise ProgramError(f"cannot read {path}: it is a directory")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ProgramError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProgramError(f"{path}: not UTF-8 text") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProgramError(f"{path}: not valid TOML: {str(e).splitlines()[0]}") from None
    default_name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(os.path.basename(path))[0])[:32] or "workload"
    if not default_name[0].isalpha() and default_name[0] != "_":
        default_name = "w" + default_name[:31]
    return parse_workload(doc, path, default_name)


def parse_workload(doc: dict[str, Any], path: str = "<workload>", default_name: str = "workload") -> Workload:
    """Check a parsed TOML document; see `load_workload`."""
    ck = _Check(path)
    ck.table(doc, "", ("workload", "files", "pipe", "process"))
    if "process" not in doc:
        raise ck.fail("", "no [[process]]: a workload needs at least one")
    meta = ck.table(doc.get("workload", {}), "[workload]", ("name", "description"))
    name = ck.name(meta["name"], "[workload] name") if "name" in meta else default_name
    description = ck.str(meta.get("description", ""), "[workload] description")
    files = _files(ck, doc.get("files", {}))

    raw_pipes = doc.get("pipe", [])
    if not isinstance(raw_pipes, list):
        raise ck.fail("pipe", "write each pipe as [[pipe]] (an array of tables)")
    pipes: list[str] = []
    for i, raw in enumerate(raw_pipes):
        where = f"pipe #{i + 1}"
        ck.table(raw, where, ("name",), required=("name",))
        pname = ck.name(raw["name"], f"{where} name")
        if pname in pipes:
            raise ck.fail(where, f"a second pipe named {pname!r}")
        pipes.append(pname)
    if len(pipes) > MAX_PIPES:
        raise ck.fail("pipe", f"at most {MAX_PIPES} pipes, not {len(pipes)}")

    raw_procs = doc["process"]
    if not isinstance(raw_procs, list):
        raise ck.fail("process", "write each process as [[process]] (an array of tables)")
    if not raw_procs:
        raise ck.fail("process", "a workload needs at least one [[process]]")
    procs: list[ProcessSpec] = []
    for i, raw in enumerate(raw_procs):
        p = _process(ck, raw, i, pipes)
        if any(q.name == p.name for q in procs):
            raise ck.fail(f"process {p.name!r}", "a second process of that name")
        procs.append(p)
    copies = sum(p.count for p in procs)
    if copies > MAX_COPIES:
        raise ck.fail("process", f"{copies} processes in all (counts added up); at most {MAX_COPIES}")
    _check_pipes(ck, procs, pipes)
    _check_sharing(ck, procs, files)
    for p in procs:
        file_entries = sum(1 for c in p.calls if c.name in ("read", "write") and c.pipe is None)
        fds = 3 + 2 * len(pipes) + p.threads * file_entries + 1
        if fds > MAX_FDS:
            raise ck.fail(
                f"process {p.name!r}",
                f"needs {fds} descriptors ({p.threads} threads x {file_entries} files, {len(pipes)} pipes); "
                f"at most {MAX_FDS}",
            )
    return Workload(name, tuple(procs), tuple(pipes), files, description)


def _files(ck: _Check, raw: Any) -> dict[str, bytes]:
    ck.table(raw, "[files]", tuple(raw) if isinstance(raw, dict) else ())
    out: dict[str, bytes] = {}
    for path, spec in raw.items():
        where = f"[files] {path!r}"
        ck.path(path, where)
        if path.rstrip("/") != path or "//" in path or "/./" in path + "/" or "/../" in path + "/":
            raise ck.fail(where, "write the path plainly (no trailing /, //, . or ..)")
        if isinstance(spec, str):
            data = spec.encode()
        elif isinstance(spec, dict) and "text" in spec:
            ck.table(spec, where, ("text", "repeat"))
            text = ck.str(spec["text"], f"{where} text").encode()
            repeat = ck.int(spec.get("repeat", 1), f"{where} repeat", 0, MAX_FILE)
            if len(text) * repeat > MAX_FILE:
                raise ck.fail(where, f"{len(text) * repeat:,} bytes; a file holds at most {MAX_FILE:,}")
            data = text * repeat
        elif isinstance(spec, dict):
            ck.table(spec, where, ("size", "seed"), required=("size",))
            size = ck.int(spec["size"], f"{where} size", 0, MAX_FILE)
            seed = ck.int(spec.get("seed", 0), f"{where} seed", 0, 2**63 - 1)
            data = random.Random(seed).randbytes(size)
        else:
            raise ck.fail(
                where, f"must be a string, {{ text = .., repeat = N }} or {{ size = N, seed = S }}, not {_kind(spec)}"
            )
        out[path] = data
    paths = sorted(out)
    for a, b in zip(paths, paths[1:], strict=False):
        if b.startswith(a + "/"):
            raise ck.fail(f"[files] {b!r}", f"{a!r} is a file, so it cannot be a directory too")
    return out


def _process(ck: _Check, raw: Any, i: int, pipes: list[str]) -> ProcessSpec:
    where = f"process #{i + 1}"
    keys = ("name", "count", "threads", "iterations", "compute", "calls")
    ck.table(raw, where, keys, required=("name",))
    name = ck.name(raw["name"], f"{where} name")
    where = f"process {name!r}"
    count = ck.int(raw.get("count", 1), f"{where} count", 1, MAX_COPIES)
    threads = ck.int(raw.get("threads", 1), f"{where} threads", 1, MAX_THREADS)
    iterations = ck.int(raw.get("iterations", 1), f"{where} iterations", 0, MAX_ITERATIONS)
    compute = ck.int(raw.get("compute", 0), f"{where} compute", 0, MAX_INSTRUCTIONS)
    raw_calls = raw.get("calls", {})
    entries: list[tuple[str, Any, str]] = []
    if isinstance(raw_calls, dict):  # call = count, or call = { count = .., ... }
        entries = [(c, v, f"{where} calls.{c}") for c, v in raw_calls.items()]
    elif isinstance(raw_calls, list):  # [[process.calls]] call = "..", ...: the same call more than once
        for j, item in enumerate(raw_calls):
            w = f"{where} calls #{j + 1}"
            if not isinstance(item, dict):
                raise ck.fail(w, f"must be a table, not {_kind(item)}")
            if "call" not in item:
                raise ck.fail(w, "'call' is missing (which call: " + ", ".join(CALLS) + ")")
            c = ck.str(item["call"], f"{w} call")
            entries.append((c, {k: v for k, v in item.items() if k != "call"}, f"{w} ({c})"))
    else:
        raise ck.fail(f"{where} calls", f"must be a table (call = count) or an array of tables, not {_kind(raw_calls)}")
    if len(entries) > MAX_CALL_ENTRIES:
        raise ck.fail(f"{where} calls", f"at most {MAX_CALL_ENTRIES} entries, not {len(entries)}")
    calls = tuple(_call(ck, c, v, w, pipes) for c, v, w in entries)
    return ProcessSpec(name, count, threads, iterations, compute, calls)


def _call(ck: _Check, name: str, value: Any, where: str, pipes: list[str]) -> Call:
    if name not in CALLS:
        raise ck.fail(where, f"unknown call {name!r} (known: {', '.join(CALLS)})")
    params = CALLS[name]
    if not isinstance(value, dict):
        value = {"count": value}
    ck.table(value, where, ("count", *params))
    kw: dict[str, Any] = {"count": ck.int(value.get("count", 1), f"{where} count", 0, MAX_COUNT)}
    if "instructions" in params:
        kw["instructions"] = ck.int(
            value.get("instructions", DEFAULTS["instructions"]), f"{where} instructions", 0, MAX_INSTRUCTIONS
        )
    if "bytes" in params:
        default = 4096 if name == "mmap" else DEFAULTS["bytes"]
        kw["bytes"] = ck.int(value.get("bytes", default), f"{where} bytes", 1, MAX_BYTES)
    if "pipe" in value:
        if "file" in value:
            raise ck.fail(where, "a call goes to a file or to a pipe, not both")
        pipe = ck.str(value["pipe"], f"{where} pipe")
        if pipe not in pipes:
            known = ", ".join(pipes) if pipes else "none: declare it with [[pipe]] name = .."
            raise ck.fail(where, f"no pipe named {pipe!r} (pipes: {known})")
        kw["pipe"] = pipe
    elif "file" in params:
        if "file" in value:
            kw["file"] = ck.path(value["file"], f"{where} file", template=True)
        elif name == "write":
            kw["file"] = DEFAULT_WRITE_FILE
        elif name == "stat":
            kw["file"] = "/"
        else:
            raise ck.fail(where, 'which file? give file = "/path"' + (' or pipe = "name"' if name == "read" else ""))
    return Call(name, **kw)


def _check_pipes(ck: _Check, procs: list[ProcessSpec], pipes: list[str]) -> None:
    """Every pipe has writers and exactly one reader process, and no cycle can deadlock."""
    for pipe in pipes:
        writers = [p for p in procs if pipe in p.pipes("write")]
        readers = [p for p in procs if pipe in p.pipes("read")]
        where = f"pipe {pipe!r}"
        if not writers:
            raise ck.fail(where, "no process writes it (give a process a write call with pipe = ..)")
        if not readers:
            raise ck.fail(where, "no process reads it: its writers would block when it fills")
        if len(readers) > 1 or readers[0].count > 1:
            names = ", ".join(f"{p.name} (count {p.count})" for p in readers)
            raise ck.fail(
                where,
                f"is read by more than one process ({names}): which one gets which bytes would "
                "depend on timing; give it one reader process (it may have several threads)",
            )
        both = [p.name for p in writers if p in readers]
        if both:
            raise ck.fail(where, f"process {both[0]!r} both writes and reads it: it would never see its end")
    # writer -> reader edges; a cycle can block every member on a full or an empty pipe
    edges = {p.name: {r.name for r in procs for pipe in p.pipes("write") if pipe in r.pipes("read")} for p in procs}
    state: dict[str, int] = {}

    def visit(n: str, trail: list[str]) -> None:
        state[n] = 1
        for m in sorted(edges[n]):
            if state.get(m) == 1:
                cycle = trail[trail.index(m) :] + [n, m] if m in trail else [n, m]
                raise ck.fail("pipe", f"pipes join processes in a cycle ({' -> '.join(cycle)}), which can deadlock")
            if m not in state:
                visit(m, [*trail, n])
        state[n] = 2

    for p in procs:
        if p.name not in state:
            visit(p.name, [])


def _check_sharing(ck: _Check, procs: list[ProcessSpec], files: dict[str, bytes]) -> None:
    """No thread touches a file (or a directory that only another's writes make) another thread writes.

    What one thread reads, finds or appends would depend on how far another has got: on
    timing, which differs from kernel to kernel.
    """
    writers: dict[str, tuple[str, int, int]] = {}  # path -> the one thread that writes it
    below: dict[str, set[tuple[str, int, int]]] = {}  # a directory -> threads writing under it
    given_dirs = {path[:i] for path in files for i in range(1, len(path)) if path[i] == "/"}
    touches: list[tuple[tuple[str, int, int], str, str]] = []  # thread, path, where
    for p in procs:
        for i, c in enumerate(p.calls):
            if c.file is None:
                continue
            where = f"process {p.name!r} calls #{i + 1} ({c.name}) file"
            for copy in range(p.count):
                for t in range(p.threads):
                    who = (p.name, copy, t)
                    path = c.file.format(process=p.name, copy=copy, thread=t)
                    if path.startswith(REPORT_DIR + "/") or path == REPORT_DIR:
                        raise ck.fail(where, f"{REPORT_DIR} holds the workload's own reports")
                    touches.append((who, path, where))
                    if c.name != "write":
                        continue
                    other = writers.setdefault(path, who)
                    if other != who:
                        raise ck.fail(
                            where,
                            f"{path!r} is written by {_who(other)} and by {_who(who)}: the order of "
                            "their writes would depend on timing; put {thread} and {copy} in the path",
                        )
                    for k in range(1, len(path)):
                        if path[k] == "/":
                            below.setdefault(path[:k], set()).add(who)
    for who, path, where in touches:
        other = writers.get(path)
        if other is not None and other != who:
            raise ck.fail(
                where,
                f"{path!r} is written by {_who(other)} while {_who(who)} uses it: what it finds would depend on timing",
            )
        if path not in given_dirs and path not in files:
            others = below.get(path, set()) - {who}
            if others:
                raise ck.fail(
                    where,
                    f"{path!r} exists only once {_who(min(others))} has written below it: "
                    "whether it is there would depend on timing",
                )


def _who(thread: tuple[str, int, int]) -> str:
    return f"{thread[0]}[{thread[1]}] thread {thread[2]}"


# --- the program ---------------------------------------------------------------------------


def _pattern(tag: str, size: int) -> bytes:
    """`size` bytes of a write: `tag` repeated (its process, copy, thread and pass)."""
    raw = tag.encode()
    return (raw * (size // len(raw) + 1))[:size]


def _report_path(name: str, copy: int) -> str:
    return f"{REPORT_DIR}/{name}.{copy}"


def _build(w: Workload) -> Callable[..., Gen]:
    children = {p.name: _process_main(w, p) for p in w.processes}

    def launcher(argv: list[str]) -> Gen:
        fds: list[int] = []
        for _ in w.pipes:
            r, wr = yield from libc.pipe()
            fds += [r, wr]
        started: list[tuple[ProcessSpec, int, int]] = []
        failed = False
        for p in w.processes:
            for copy in range(p.count):
                try:
                    pid = yield from libc.spawn(children[p.name], [p.name, str(copy), *map(str, fds)])
                except OSError as e:
                    yield from libc.write_bytes(2, f"{w.name}: cannot start {p.name}[{copy}]: {e.strerror}\n".encode())
                    failed = True
                    continue
                started.append((p, copy, pid))
        for fd in fds:  # the copies hold the pipes now: their readers see the end when their writers finish
            yield from libc.close(fd)
        ok = 0
        for p, copy, pid in started:
            status = yield from libc.waitpid(pid)
            report = yield from _take_report(_report_path(p.name, copy))
            if report:
                yield from libc.print(report)
            if status == 0:
                ok += 1
            elif status < 0:
                yield from libc.print(f"{p.name}[{copy}]: killed by {_signame(-status)}\n")
            else:
                yield from libc.print(f"{p.name}[{copy}]: exit status {status}\n")
        total = sum(p.count for p in w.processes)
        yield from libc.print(f"{w.name}: {ok} of {total} processes succeeded\n")
        return 0 if ok == total and not failed else 1

    launcher.__name__ = launcher.__qualname__ = w.name
    return launcher


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _take_report(path: str) -> Gen:
    """The text of a copy's report file, which is then removed ("" if the copy wrote none)."""
    try:
        fd = yield from libc.open(path)
    except OSError:
        return ""
    try:
        data = yield from libc.read_bytes(fd, 4096)
    finally:
        yield from libc.close(fd)
    yield from libc.unlink(path)
    return data.decode(errors="replace")


def _process_main(w: Workload, p: ProcessSpec) -> Callable[..., Gen]:
    reads, writes = p.pipes("read"), p.pipes("write")

    def run_thread(thread: int, copy: int, ends: dict[str, tuple[int, int]]) -> Gen:
        """The loop of one thread; its counts go to its slot of static data."""
        counts = dict.fromkeys(_SLOT_HEAD, 0)
        errors = [0] * len(p.calls)
        first = [0] * len(p.calls)
        fds: dict[int, int | OSError] = {}
        names = {"process": p.name, "copy": copy, "thread": thread}
        for i, c in enumerate(p.calls):
            if c.pipe is not None:
                fds[i] = ends[c.pipe][0 if c.name == "read" else 1]
            elif c.name in ("read", "write"):
                flags = libc.O_RDONLY if c.name == "read" else libc.O_WRONLY | libc.O_CREAT | libc.O_APPEND
                try:
                    fds[i] = yield from libc.open(c.file.format(**names), flags)  # type: ignore[union-attr]
                except OSError as e:
                    fds[i] = e  # every call of this entry fails the same way
        mutex = libc.mutex(MUTEX)
        for it in range(p.iterations):
            if not p.calls and p.compute:
                yield from libc.compute(p.compute)
            for i, c in enumerate(p.calls):
                for _ in range(c.count):
                    if p.compute:
                        yield from libc.compute(p.compute)
                    counts["calls"] += 1
                    try:
                        yield from _do(c, fds.get(i), names, it, counts, mutex)
                    except OSError as e:
                        errors[i] += 1
                        first[i] = first[i] or e.errno or 0
        for i, c in enumerate(p.calls):
            fd = fds.get(i)
            if c.pipe is None and isinstance(fd, int):
                yield from libc.close(fd)
        words = [counts[k] & 0xFFFFFFFF for k in _SLOT_HEAD]
        for e, f in zip(errors, first, strict=True):
            words += [e, f]
        for k, word in enumerate(words):
            yield from libc.store(SLOTS + thread * SLOT_SIZE + 4 * k, word)

    def child(argv: list[str]) -> Gen:
        copy = int(argv[1])
        fds = [int(a) for a in argv[2:]]
        ends: dict[str, tuple[int, int]] = {}
        for k, pipe in enumerate(w.pipes):
            r, wr = fds[2 * k], fds[2 * k + 1]
            ends[pipe] = (r, wr)
            if pipe not in reads:
                yield from libc.close(r)
            if pipe not in writes:
                yield from libc.close(wr)

        def worker(thread: int) -> Gen:
            yield from run_thread(thread, copy, ends)
            return 0

        tids = []
        slots = [0]  # the threads that ran, by slot
        for t in range(1, p.threads):
            try:
                tids.append((yield from libc.thread_create(worker, t)))
                slots.append(t)
            except OSError:
                pass
        yield from run_thread(0, copy, ends)
        for tid in tids:
            yield from libc.thread_join(tid)
        for pipe in sorted(writes):
            yield from libc.close(ends[pipe][1])
        drained = drained_sum = 0
        for pipe in sorted(reads):  # the rest of what the writers wrote
            while chunk := (yield from libc.read_bytes(ends[pipe][0], libc.PIPE_BUF)):
                drained += len(chunk)
                drained_sum += sum(chunk)
            yield from libc.close(ends[pipe][0])
        report, failed = yield from _report(p, copy, drained, drained_sum, slots)
        try:
            fd = yield from libc.open(_report_path(p.name, copy), libc.O_WRONLY | libc.O_CREAT | libc.O_TRUNC)
            yield from libc.write_bytes(fd, report.encode())
            yield from libc.close(fd)
        except OSError as e:
            yield from libc.write_bytes(2, f"{p.name}[{copy}]: cannot write the report: {e.strerror}\n".encode())
            return 1
        return 1 if failed else 0

    child.__name__ = child.__qualname__ = p.name
    return child


def _do(c: Call, fd: int | OSError | None, names: dict[str, Any], it: int, counts: dict[str, int], mutex: Any) -> Gen:
    """One call of the mix."""
    if isinstance(fd, OSError):
        raise fd
    n = c.name
    if n == "getpid":
        yield from libc.getpid()
    elif n == "gettid":
        yield from libc.gettid()
    elif n == "yield":
        yield from libc.yield_()
    elif n == "sleep":
        yield from libc.sleep(c.instructions)
    elif n == "spin":
        yield from libc.spin(c.instructions)
    elif n == "write":
        data = _pattern(f"{names['process']}.{names['copy']}.{names['thread']}.{it};", c.bytes)
        assert fd is not None
        yield from libc.write_bytes(fd, data)
        counts["written"] += len(data)
        counts["written_sum"] += sum(data)
    elif n == "read":
        assert fd is not None
        data = yield from libc.read_bytes(fd, c.bytes)
        if not data and c.pipe is None:  # a file: start again from its beginning
            yield from libc.lseek(fd, 0)
            data = yield from libc.read_bytes(fd, c.bytes)
        counts["read"] += len(data)
        counts["read_sum"] += sum(data)
    elif n == "open":
        opened = yield from libc.open(c.file.format(**names))  # type: ignore[union-attr]
        yield from libc.close(opened)
    elif n == "stat":
        yield from libc.stat(c.file.format(**names))  # type: ignore[union-attr]
    elif n == "mmap":
        addr = yield from libc.mmap(c.bytes)
        for off in range(0, c.bytes, 4096):
            yield from libc.store(addr + off, off)
        yield from libc.munmap(addr, c.bytes)
    elif n == "mutex":
        yield from mutex.lock()
        value = yield from libc.load(COUNTER)
        yield from libc.store(COUNTER, value + 1)
        yield from mutex.unlock()
    else:  # pragma: no cover - the parser admits only CALLS
        raise AssertionError(n)


def _report(p: ProcessSpec, copy: int, drained: int, drained_sum: int, slots: list[int]) -> Gen:
    """(the report line of one copy, whether any call failed), from every thread's slot."""
    totals = dict.fromkeys(_SLOT_HEAD, 0)
    errors = [0] * len(p.calls)
    first = [0] * len(p.calls)
    for t in slots:
        raw = yield from libc.read_mem(SLOTS + t * SLOT_SIZE, SLOT_SIZE)
        words = [int.from_bytes(raw[4 * k : 4 * k + 4], "little") for k in range(SLOT_WORDS)]
        for k, key in enumerate(_SLOT_HEAD):
            totals[key] += words[k]
        for i in range(len(p.calls)):
            e, f = words[len(_SLOT_HEAD) + 2 * i : len(_SLOT_HEAD) + 2 * i + 2]
            errors[i] += e
            first[i] = first[i] or f
    totals["read"] += drained
    totals["read_sum"] += drained_sum
    threads = len(slots)
    text = f"{p.name}[{copy}]: {threads} thread{'s' if threads != 1 else ''} x {p.iterations} iterations, "
    text += f"{totals['calls']} calls"
    if any(c.name == "write" for c in p.calls):
        text += f", wrote {totals['written']} bytes (sum {totals['written_sum'] & 0xFFFFFFFF:#x})"
    if any(c.name == "read" for c in p.calls):
        text += f", read {totals['read']} bytes (sum {totals['read_sum'] & 0xFFFFFFFF:#x})"
    if any(c.name == "mutex" for c in p.calls):
        text += f", counter {(yield from libc.load(COUNTER))}"
    problems = [
        f"{c.label} {errno.errorcode.get(f, f'errno {f}')} x{e}"
        for c, e, f in zip(p.calls, errors, first, strict=True)
        if e
    ]
    if len(slots) < p.threads:
        problems.append(f"thread_create x{p.threads - len(slots)}")
    if problems:
        text += "; errors: " + ", ".join(problems)
    return text + "\n", bool(problems)
