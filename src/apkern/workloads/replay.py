"""Replay of a real program: an strace log compiled into a user program that makes the same calls.

Capture the program on a Linux machine (any program, any number of processes and threads):

    strace -f -ttt -T -o TRACE PROGRAM [ARGS...]

`plan(trace)` compiles the log (`strace.parse`) into one timeline per traced thread;
`Plan.program()` is a user program (`main(argv)`, through libc only) that replays
them with the same process and thread structure: a traced fork/clone of a process
is a `spawn` of the replay program for the child's timeline, a clone of a thread
(CLONE_THREAD) a `thread_create`, a wait4 a `waitpid` of that child, exit and
exit_group `thread_exit` and `exit` with the traced status; a process that a signal
killed kills itself with it. `Plan.install(fs)` puts the files and directories the
program read into the simulated file system first, under ROOT (a traced path P is
ROOT + P; a relative one is taken from the working directory the trace's first
getcwd shows, else /cwd).

Time. Each thread's gap between the end of one call and the start of its next
becomes user computation at `ips` instructions per second (DEFAULT_IPS, the
machine's nominal 100 MIPS, the rate the paper's own example uses: one traced
second is one simulated second, so the replay keeps the program's ratio of user
to kernel time and its calls per second). Each call is charged its measured
kernel time (its `<duration>` at the same rate), spun in the kernel in the same
trap as the call (`SYS_SPIN_CALL`) before our kernel does the call's own work, except:

- a call that may wait (a read from a pipe, wait4, a futex wait, poll and
  select that returned ready) is charged FLOOR, the trace's shortest call: strace
  cannot tell its work from its waiting, and the replay reproduces the waiting
  itself (the pipe's data, the child's exit, the futex's wake);
- nanosleep, clock_nanosleep, a poll or select that timed out and a futex wait that
  timed out sleep (`SYS_SLEEP`) for their duration;
- clone, fork, vfork, exit, exit_group and a join are our kernel's own work (`own`).

Calls. Each call becomes its counterpart where our kernel has one (MAPPED): open,
openat and creat; read and readv (from files, pipes, the console); write and
writev (to files, pipes, the console: the bytes strace shows, padded with '.'
to the count); close; pipe and pipe2; dup, dup2, dup3 and fcntl's F_DUPFD; lseek;
getpid, gettid; the stat family and access (a look-up of the path, or of an
open descriptor's path); mkdir; getdents; chdir and fchdir (they move the working
directory the replay resolves paths from, and spin); futex waits and wakes between
the threads of a process (a wait that a wake ended waits, in the replay, until as
many wakes of that address have happened as the trace shows up to it; a wait on a
thread id is a join); clone, fork, vfork, wait4, exit, exit_group. Any other call, and a
mapped call the trace shows failing (but open, mkdir and the look-ups, which fail in
our kernel too), becomes `SYS_SPIN` of its measured time. `Plan.mapping` lists what
was mapped how; `Plan.notes` what was left out.

What a trace cannot show and the replay does not invent: page faults (no memory
is touched beyond the replay's buffers, so anonymous mmap, brk and munmap are
spins), file contents (files hold '.' bytes, as many as the program read, at most
MAX_FILE; a read or write moves at most MAX_TRANSFER bytes: the machine has 32 MiB),
signal handlers (signals are listed, not delivered: a process killed by a signal
kills itself at the end of its timeline), shared memory between processes.
Writes of concurrent processes or threads to one file or console interleave as
their timing lets them, as on a real machine; the shipped traces have one writer
at a time, so their replays behave identically on every kernel.

The replay's own calls, beyond the traced ones (`Plan.setup`): a buffer mmap per
process, SIGPIPE ignored in a process that writes to a pipe, the close-on-exec
closes of an execve, joins of the threads a process still has when it exits,
and what runtime timing adds: another read when a pipe holds less than the trace
read at once, another futex wait when a wake was for someone else.

Shipped traces (`traces/NAME.trace`, `shipped()`), captured on Debian 12 (strace
6.1, Python 3.11, x86-64) in a scratch directory made by

    mkdir -p tree/a/b tree/c
    for i in 1 2 3; do echo "hello world $i" > tree/a/f$i.txt; echo "int main(void) { return $i; }" > tree/c/m$i.c; done
    echo "#define X 1" > tree/a/b/deep.h
    cat /usr/share/common-licenses/* | head -c 200000 > licenses.txt

with count.py (below) beside them, each with

    env -i PATH=/usr/bin:/bin LC_ALL=C strace -f -ttt -T -o NAME.trace COMMAND

- find: `find tree -name '*.c'`
- grep: `grep -r int tree`
- gzip: `gzip -c licenses.txt > licenses.txt.gz`
- findgrep: `sh -c "find tree -name '*.c' | grep m2"` (three processes, a pipe)
- python: `python3 -S -I count.py` (two processes, two threads, futexes), count.py being

      import os, threading
      def count_words(path):
          with open(path) as f:
              return len(f.read().split())
      r, w = os.pipe()
      pid = os.fork()
      if pid == 0:
          os.close(r)
          os.write(w, b"%d\\n" % count_words("tree/a/f1.txt"))
          os._exit(0)
      os.close(w)
      got = os.read(r, 64)
      os.close(r)
      os.waitpid(pid, 0)
      result = []
      t = threading.Thread(target=lambda: result.append(sum(i * i for i in range(20000))))
      t.start()
      t.join()
      print("child words", int(got), "thread sum", result[0])
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import importlib.resources
import math
import os
import posixpath
import re
import signal
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ..hw import NOMINAL_IPS
from ..hw.ops import AtomicAdd, CmpXchg, Load, Op, Store, Xchg
from ..userland import libc
from . import strace

Gen = Generator[Op, Any, Any]

DEFAULT_IPS = NOMINAL_IPS
ROOT = "/trace"
DEFAULT_CWD = "/cwd"
MAX_SPIN = 1 << 30  # the kernel's bound on one spin (bootstrap kernel, sysproc.MAX_SPIN)
MAX_SLEEP = (1 << 31) - 1  # a sleep's length is a signed word
MAX_FD = 1024  # traced descriptors the replay can follow
MAX_TRANSFER = 1 << 18  # bytes one replayed read or write moves at most (the machine has 32 MiB)
MAX_FILE = 16 << 20  # bytes a file of the trace holds at most in the simulated file system
FILL = b"."
PIPE_CAPACITY = 4096  # our pipes' buffer (abi.PIPE_BUF)
NEVER = -1  # a traced descriptor with no counterpart

# Per-process tables in the program's static data (libc.PROGRAM_DATA on), one word each:
FD_TABLE = libc.PROGRAM_DATA  # traced fd -> our fd + 1 (0: none)
BUF_WORD = FD_TABLE + 4 * MAX_FD  # the process's transfer buffer
TASK_TABLE = BUF_WORD + 4  # task index -> our pid or tid + 1, WAITING, JOINED (0: not created yet)
DATA_END = libc.PROGRAM_DATA + 0x10000 - 0x100 - 0x100  # the data segment's end (DATA_SIZE), less a margin
WAITING = 0x7FFFFFFF  # a joiner sleeps on the entry until its creator fills it in (a positive word: futex
JOINED = 0x7FFFFFFE  # values travel as signed words)

WAITS = {"poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait", "epoll_pwait2"}
SLEEPS = {"nanosleep", "clock_nanosleep"}
OPENS = {"open", "openat", "creat"}
LOOKUPS = {"stat", "lstat", "newfstatat", "fstatat64", "statx", "access", "faccessat", "faccessat2", "fstat"}
READS = {"read", "readv"}
WRITES = {"write", "writev"}
DUPS = {"dup", "dup2", "dup3"}
CREATES = {"clone", "clone3", "fork", "vfork"}
EXITS = {"exit", "exit_group"}
WAITPIDS = {"wait4", "waitpid", "waitid"}
_FLAGS = {
    "O_WRONLY": os.O_WRONLY,
    "O_RDWR": os.O_RDWR,
    "O_CREAT": os.O_CREAT,
    "O_TRUNC": os.O_TRUNC,
    "O_APPEND": os.O_APPEND,
    "O_EXCL": os.O_EXCL,
}
_ENTRIES = re.compile(r"/\* (\d+) entries \*/")
_ST_MODE = re.compile(r"st_mode=S_IF(DIR|REG)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"(?:\.\.\.)?')


@dataclass(frozen=True)
class Step:
    """One replayed call (and the user time before it)."""

    op: str  # spin open close read write lseek dup pipe getpid gettid stat mkdir getdents spawn thread
    # wait join futex_wait futex_wake sleep exit thread_exit cloexec
    call: str  # the traced call ("" for the replay's own)
    line: int
    gap: int = 0  # user instructions before the call
    spin: int = 0  # kernel instructions charged (sleep: instructions asleep)
    fd: int = NEVER  # traced descriptor
    fd2: int = NEVER  # a second one: pipe's write end, dup's new descriptor
    count: int = 0  # bytes; lseek's offset; the futex wake a wait waits for; exit status
    whence: int = 0
    flags: int = 0
    path: str = ""
    data: bytes = b""  # write: the bytes strace showed (the rest of `count` is FILL)
    task: int = -1  # the task created, waited for or joined; futex: its word's slot
    pipe: bool = False  # a read from a pipe: read on until the traced count
    fds: tuple[int, ...] = ()  # spawn: the descriptors the child inherits; cloexec: those closed
    signal: int = 0  # exit: the signal that killed the process
    charge: str = ""  # what its kernel time is: measured, floor (it may wait), sleep, own (our kernel's work)


@dataclass
class Task:
    """A traced thread: its timeline, and where it belongs."""

    index: int
    pid: int  # strace's pid (the thread id)
    leader: int  # the task index of its process's first thread
    parent: int | None  # the task that created it
    thread: bool  # created with CLONE_THREAD
    name: str
    steps: list[Step] = field(default_factory=list)
    last_end: float | None = None
    ended: bool = False  # an exit step is in place

    @property
    def is_leader(self) -> bool:
        return self.leader == self.index


@dataclass
class _Desc:
    """An open file description of the traced program (shared by dup and fork, as in Linux)."""

    kind: str  # file dir pipe_r pipe_w console
    path: str = ""  # ours
    pos: int = 0
    entries: int = 0  # dir: entries seen through this description


@dataclass
class _Proc:
    """A traced process's descriptor table and working directory, at the current point of the trace."""

    fds: dict[int, _Desc]
    cloexec: set[int]
    cwd: str
    slots: dict[int, int] = field(default_factory=dict)  # futex address -> slot
    wakes: dict[int, list[float]] = field(default_factory=dict)  # futex address -> end times of its wakes
    threads: list[int] = field(default_factory=list)  # its thread tasks (not the leader)
    children: set[int] = field(default_factory=set)  # its child processes (task indices)
    buffer: int = 4096  # the largest transfer, bytes
    pipe_writer: bool = False


@dataclass
class Plan:
    """A trace compiled for replay: tasks, the file system it needs, and the report of what was mapped how."""

    tasks: list[Task]
    files: dict[str, int]  # our path -> size (bytes of FILL)
    dirs: dict[str, int]  # our path -> entries it must have at least
    ips: float
    floor: float  # seconds: the trace's shortest call
    mapping: dict[tuple[str, str, str], int]  # (traced call, replayed as, charge) -> calls
    setup: dict[str, int]  # the replay's own calls known before the run: what -> count
    notes: list[str]
    buffers: dict[int, int]  # leader task -> its buffer size
    pipe_writers: set[int]  # leader tasks that write to pipes (SIGPIPE ignored)
    traced_calls: int
    span: float  # seconds from the trace's first event to its last
    signals: int
    name: str = "replay"
    _program: Callable[..., Any] | None = field(default=None, repr=False)

    @property
    def processes(self) -> int:
        return sum(t.is_leader for t in self.tasks)

    @property
    def user_instructions(self) -> int:
        return sum(s.gap for t in self.tasks for s in t.steps)

    @property
    def kernel_instructions(self) -> int:
        """Kernel time charged to the calls (spins; not sleeps, not our kernel's own work)."""
        return sum(s.spin for t in self.tasks for s in t.steps if s.op != "sleep")

    @property
    def sleep_instructions(self) -> int:
        return sum(s.spin for t in self.tasks for s in t.steps if s.op == "sleep")

    @property
    def instructions(self) -> int:
        """Everything the timelines charge: an upper bound on the replay's machine time, less our kernel's work."""
        return self.user_instructions + self.kernel_instructions + self.sleep_instructions

    def install(self, fs: Any) -> None:
        """Make the directories and files the replay reads in `fs` (a `FileSystem`)."""
        for path in sorted(self.dirs):
            _makedirs(fs, path)
        for path, size in sorted(self.files.items()):
            if not fs.is_dir(path):
                _makedirs(fs, posixpath.dirname(path))
                with contextlib.suppress(OSError, ValueError):  # a file of the trace in the way: calls on it fail
                    fs.write_file(path, FILL * size)
        for path, need in sorted(self.dirs.items()):
            if fs.is_dir(path):
                for i in range(len(fs.listdir(path)), need):
                    fs.write_file(f"{path}/.entry{i}", b"")

    def program(self) -> Callable[[list[str]], Gen]:
        """The replay: `main(argv)`, a user program (spawn it with argv [name])."""
        if self._program is None:
            self._program = _make_program(self)
        return self._program


def _makedirs(fs: Any, path: str) -> None:
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        p = "/" + "/".join(parts[:i])
        if not fs.is_dir(p):
            try:
                fs.mkdir(p)
            except (OSError, ValueError):
                return  # a file of the trace is in the way: the look-ups below it fail, as they may


# --- compiling a trace ------------------------------------------------------------------------------


def _int(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def _path_arg(text: str) -> str | None:
    got = strace.unquote(text)
    if got is None or got[1]:
        return None
    return got[0].decode("utf-8", "replace")


class _Compiler:
    def __init__(self, trace: strace.Trace, ips: float, stdin_file: bool) -> None:
        if not (ips > 0 and ips < 1e15):
            raise ValueError(f"the instruction rate must be positive and finite, not {ips!r}")
        self.trace = trace
        self.ips = ips
        self.stdin_file = stdin_file
        self.stdin_bytes = 0
        calls = trace.calls
        timed = [c.duration for c in calls if c.duration]
        self.floor = min(timed) if timed else 0.0
        self.notes = list(trace.notes)
        self.mapping: dict[tuple[str, str, str], int] = {}
        self.setup: dict[str, int] = {}
        self.files: dict[str, int] = {}
        self.dirs: dict[str, int] = {}
        self.tasks: list[Task] = []
        self.by_pid: dict[int, int] = {}
        self.procs: dict[int, _Proc] = {}  # leader task -> its table
        self.capped = 0
        self.cut_transfers = 0
        self._wakes: dict[tuple[int, int], list[tuple[float, int, int, int]]] | None = None
        self.creators: dict[int, tuple[strace.Call, bool]] = {}

    # time -----------------------------------------------------------------------------------
    def instr(self, seconds: float | None, cap: int | None = MAX_SPIN) -> int:
        """`seconds` in instructions, at most `cap` (a call's spin or sleep is one kernel argument)."""
        n = round(max(0.0, seconds or 0.0) * self.ips)
        if cap is not None and n > cap:
            self.capped += 1
            return cap
        return n

    # paths ----------------------------------------------------------------------------------
    def ours(self, traced: str) -> str:
        return ROOT + posixpath.normpath("/" + traced).replace("//", "/").rstrip("/")

    def resolve(self, proc: _Proc, dirfd: str | None, path: str) -> str:
        """Our path for `path` (relative to `dirfd`, AT_FDCWD or None: the working directory)."""
        if path.startswith("/"):
            return self.ours(path)
        base = proc.cwd
        if dirfd not in (None, "AT_FDCWD"):
            d = proc.fds.get(_int(dirfd) if dirfd else -1)
            base = d.path if d is not None and d.path else proc.cwd
        return posixpath.normpath(base + "/" + path) if path else base

    # structure --------------------------------------------------------------------------------
    def task_of(self, pid: int) -> Task | None:
        i = self.by_pid.get(pid)
        return None if i is None else self.tasks[i]

    def new_task(self, pid: int, parent: Task | None, thread: bool) -> Task:
        index = len(self.tasks)
        leader = parent.leader if (thread and parent is not None) else index
        name = parent.name if parent is not None else "replay"
        t = Task(index, pid, leader, None if parent is None else parent.index, thread, name)
        self.tasks.append(t)
        self.by_pid[pid] = index
        if parent is None:
            console = _Desc("console")
            fds = {0: _Desc("file", self.ours("/.stdin")) if self.stdin_file else console, 1: console, 2: console}
            cwd = self.ours(self.first_cwd())
            self.procs[index] = _Proc(fds, set(), cwd)
        elif thread:
            self.procs[t.leader].threads.append(index)
        else:
            pp = self.procs[parent.leader]
            self.procs[index] = _Proc(dict(pp.fds), set(pp.cloexec), pp.cwd)
            pp.children.add(index)
        return t

    def first_cwd(self) -> str:
        for c in self.trace.calls:
            if c.name == "getcwd" and c.value and c.value > 0 and (args := c.arg_list()):
                path = _path_arg(args[0])
                if path and path.startswith("/"):
                    return path
        return DEFAULT_CWD

    # the report ---------------------------------------------------------------------------------
    def add(self, task: Task, step: Step, charge: str) -> None:
        task.steps.append(dataclasses.replace(step, charge=charge))
        if step.call:
            key = (step.call, step.op, charge)
            self.mapping[key] = self.mapping.get(key, 0) + 1

    def own(self, what: str, n: int = 1) -> None:
        self.setup[what] = self.setup.get(what, 0) + n

    # compiling ---------------------------------------------------------------------------------------
    def run(self) -> None:
        calls = self.trace.calls
        root_pid = self.trace.pids[0]
        self.creators: dict[int, tuple[strace.Call, bool]] = {}
        for c in calls:
            if c.name in CREATES and c.value is not None and c.value > 0 and c.value != c.pid:
                self.creators.setdefault(c.value, (c, "CLONE_THREAD" in c.args))
        self.first_start: dict[int, float] = {}
        for c in calls:
            self.first_start.setdefault(c.pid, c.start)
        self.new_task(root_pid, None, False)
        for c in calls:
            task = self.ensure(c.pid, c.line)
            if task.ended:
                self.notes.append(f"line {c.line}: {c.name} after its thread's exit: left out")
                continue
            self.compile(task, c)
        for e in self.trace.events:
            if isinstance(e, strace.Exit) and (task := self.task_of(e.pid)) is not None and not task.ended:
                self.finish(task, e)
        for task in self.tasks:
            if not task.ended:
                self.finish(task, None)

    def ensure(self, pid: int, line: int, depth: int = 0) -> Task:
        """The task of `pid`, made (with its creators) the first time one of its calls comes up.

        A child's first calls may complete before its creator's clone returns: the child is made
        then, from the state of its creator's process at that point (the creator is inside clone).
        """
        task = self.task_of(pid)
        if task is not None:
            return task
        made = self.creators.get(pid)
        if made is None or depth > len(self.creators):  # strace attached to it later, or a loop of clones
            self.notes.append(f"line {line}: thread {pid} has no traced creator: the first process starts it")
            task = self.new_task(pid, self.tasks[0], False)
            proc = self.procs[0]
            self.tasks[0].steps.insert(0, Step("spawn", "", 0, task=task.index, fds=tuple(sorted(proc.fds))))
            self.own("spawn of a thread with no traced creator")
            return task
        clone, thread = made
        parent = self.ensure(clone.pid, clone.line, depth + 1)
        task = self.new_task(pid, parent, thread)
        task.last_end = min(clone.end, self.first_start.get(pid, clone.end))
        return task

    def gap(self, task: Task, c: strace.Call) -> int:
        start = c.start
        last = task.last_end if task.last_end is not None else start
        task.last_end = max(last, c.end)
        return self.instr(start - last, None)

    def compile(self, task: Task, c: strace.Call) -> None:
        proc = self.procs[task.leader]
        gap = self.gap(task, c)
        name, args, ok = c.name, c.arg_list(), c.value is not None and c.value >= 0
        measured, floor = self.instr(c.duration), self.instr(self.floor)
        base = {"call": name, "line": c.line, "gap": gap}

        def spin(charge: str = "measured", n: int | None = None) -> None:
            self.add(task, Step("spin", spin=measured if n is None else n, **base), charge)

        if name in OPENS and (step := self.open(proc, c, args, measured, base)) is not None:
            self.add(task, step, "measured")
        elif name == "close" and args and (fd := _int(args[0])) is not None and ok:
            proc.fds.pop(fd, None)
            proc.cloexec.discard(fd)
            self.add(task, Step("close", spin=measured, fd=fd, **base), "measured")
        elif name in READS and ok and args and (fd := _int(args[0])) in proc.fds:
            self.read(task, proc, c, fd, args, measured, floor, base)
        elif name in WRITES and ok and args and (fd := _int(args[0])) in proc.fds:
            self.write(task, proc, c, fd, args, measured, base)
        elif name == "lseek" and ok and len(args) == 3 and (fd := _int(args[0])) in proc.fds:
            d, off = proc.fds[fd], _int(args[1])
            whence = {"SEEK_SET": os.SEEK_SET, "SEEK_CUR": os.SEEK_CUR, "SEEK_END": os.SEEK_END}.get(args[2])
            if d.kind != "file" or off is None or whence is None or not -(1 << 31) <= off < 1 << 31:
                return spin()
            assert c.value is not None
            if whence == os.SEEK_END:
                self.files[d.path] = max(self.files.get(d.path, 0), c.value - off)
            d.pos = c.value
            self.add(task, Step("lseek", spin=measured, fd=fd, count=off, whence=whence, **base), "measured")
        elif (name in DUPS or (name == "fcntl" and len(args) > 1 and args[1].startswith("F_DUPFD"))) and ok:
            fd = _int(args[0]) if args else None
            assert c.value is not None
            if fd not in proc.fds or c.value >= MAX_FD:
                return spin()
            assert fd is not None
            proc.fds[c.value] = proc.fds[fd]
            proc.cloexec.discard(c.value)
            if "CLOEXEC" in c.args:
                proc.cloexec.add(c.value)
            self.add(task, Step("dup", spin=measured, fd=fd, fd2=c.value, **base), "measured")
        elif name in ("pipe", "pipe2") and ok and (m := re.match(r"\[(\d+), (\d+)\]", c.args)):
            r, w = int(m.group(1)), int(m.group(2))
            if max(r, w) >= MAX_FD:
                return spin()
            proc.fds[r], proc.fds[w] = _Desc("pipe_r"), _Desc("pipe_w")
            for fd in (r, w):
                (proc.cloexec.add if "O_CLOEXEC" in c.args else proc.cloexec.discard)(fd)
            self.add(task, Step("pipe", spin=measured, fd=r, fd2=w, **base), "measured")
        elif name in ("getpid", "gettid") and ok:
            self.add(task, Step(name, spin=measured, **base), "measured")
        elif name in LOOKUPS and (path := self.lookup(proc, c, args)) is not None:
            self.add(task, Step("stat", spin=measured, path=path, **base), "measured")
        elif name in ("mkdir", "mkdirat") and args:
            path = _path_arg(args[1 if name == "mkdirat" else 0])
            if path is None:
                return spin()
            ours = self.resolve(proc, args[0] if name == "mkdirat" else None, path)
            self.add(task, Step("mkdir", spin=measured, path=ours, **base), "measured")
        elif name in ("getdents", "getdents64") and ok and args and (fd := _int(args[0])) in proc.fds:
            d = proc.fds[fd]
            if d.kind != "dir":
                return spin()
            m = _ENTRIES.search(c.args)
            d.entries += int(m.group(1)) if m else 0
            self.dirs[d.path] = max(self.dirs.get(d.path, 0), d.entries - 2)  # less "." and ".."
            n = min(_int(args[-1]) or 4096, libc.STAGING_SIZE)
            self.add(task, Step("getdents", spin=measured, fd=fd, count=n, **base), "measured")
        elif name == "fcntl" and ok and len(args) > 2 and args[1] == "F_SETFD" and (fd := _int(args[0])) in proc.fds:
            (proc.cloexec.add if "FD_CLOEXEC" in args[2] else proc.cloexec.discard)(fd)
            spin()
        elif name in ("chdir", "fchdir") and ok and args:
            if name == "chdir" and (path := _path_arg(args[0])) is not None:
                proc.cwd = self.resolve(proc, None, path)
            elif name == "fchdir" and (d := proc.fds.get(_int(args[0]) or -1)) is not None and d.path:
                proc.cwd = d.path
            spin()
        elif name in CREATES and ok and c.value in self.creators and self.creators[c.value][0] is c:
            self.create(task, proc, c, self.creators[c.value][1], base)
        elif name in WAITPIDS and ok and (child := self.task_of(c.value or -1)) is not None:
            if child.index not in proc.children:
                return spin()
            self.add(task, Step("wait", spin=floor, task=child.index, **base), "floor")
        elif name in EXITS:
            self.exit(task, c, args, base)
        elif name == "futex" and len(args) >= 3:
            self.futex(task, proc, c, args, measured, floor, base)
        elif name in SLEEPS:
            self.add(task, Step("sleep", spin=self.instr(c.duration, MAX_SLEEP), **base), "sleep")
        elif name in WAITS:
            if c.value == 0:
                self.add(task, Step("sleep", spin=self.instr(c.duration, MAX_SLEEP), **base), "sleep")
            else:
                spin("floor", floor)
        else:
            spin()
            if name == "execve" and ok:
                self.execve(task, proc, c)

    def open(self, proc: _Proc, c: strace.Call, args: list[str], measured: int, base: dict[str, Any]) -> Step | None:
        at = c.name == "openat"
        if len(args) < (3 if at else 2 if c.name == "open" else 1):
            return None
        path = _path_arg(args[1] if at else args[0])
        if path is None:
            return None
        ours = self.resolve(proc, args[0] if at else None, path)
        text = args[2] if at else args[1] if c.name == "open" else "O_CREAT|O_WRONLY|O_TRUNC"
        flags = 0
        for token in text.split("|"):
            flags |= _FLAGS.get(token.strip(), 0)
        if c.failed:
            return Step("open", spin=measured, path=ours, flags=flags, **base)
        fd = c.value
        if fd is None or fd >= MAX_FD:
            return None
        if "O_DIRECTORY" in text or ours in self.dirs or ours == proc.cwd:
            proc.fds[fd] = _Desc("dir", ours)
            self.dirs.setdefault(ours, 0)
        else:
            proc.fds[fd] = _Desc("file", ours)
            if not flags & os.O_CREAT:
                self.files.setdefault(ours, 0)
        (proc.cloexec.add if "O_CLOEXEC" in text else proc.cloexec.discard)(fd)
        return Step("open", spin=measured, fd=fd, path=ours, flags=flags & ~os.O_EXCL, **base)

    def lookup(self, proc: _Proc, c: strace.Call, args: list[str]) -> str | None:
        """Our path a look-up names (a path, or a descriptor's path), or None: then it is a spin."""
        name = c.name
        if name == "fstat":
            d = proc.fds.get(_int(args[0]) if args else -1)
            return d.path if d is not None and d.path and d.kind in ("file", "dir") else None
        at = name in ("newfstatat", "fstatat64", "statx", "faccessat", "faccessat2")
        if len(args) < (2 if at else 1):
            return None
        path = _path_arg(args[1] if at else args[0])
        if path is None:
            return None
        if path == "":  # AT_EMPTY_PATH: the descriptor itself
            d = proc.fds.get(_int(args[0]) or -1)
            if d is None or not d.path or d.kind not in ("file", "dir"):
                return None
            ours = d.path
        else:
            ours = self.resolve(proc, args[0] if at else None, path)
        if c.failed:
            return ours
        m = _ST_MODE.search(c.args)
        if m and m.group(1) == "DIR":
            self.dirs.setdefault(ours, 0)
        elif m:
            self.files.setdefault(ours, 0)
        return ours

    def read(
        self, task: Task, proc: _Proc, c: strace.Call, fd: int, args: list[str], measured: int, floor: int, base: Any
    ) -> None:
        d = proc.fds[fd]
        got = c.value or 0
        asked = _int(args[-1]) if c.name == "read" else None
        count = min(got, MAX_TRANSFER) if got > 0 else max(1, min(asked or 4096, MAX_TRANSFER))
        self.cut_transfers += got > MAX_TRANSFER
        proc.buffer = max(proc.buffer, count)
        if d.kind == "pipe_r":
            self.add(task, Step("read", spin=floor, fd=fd, count=count, pipe=True, **base), "floor")
            return
        if d.kind == "console" and got > 0 and fd == 0 and not self.stdin_file:
            self.stdin_bytes += got  # replanned with a file for standard input
        if d.kind == "file":
            d.pos += got
            self.files[d.path] = max(self.files.get(d.path, 0), d.pos)
        if d.kind in ("dir", "pipe_w"):
            self.add(task, Step("spin", spin=measured, **base), "measured")
            return
        self.add(task, Step("read", spin=measured, fd=fd, count=count, **base), "measured")

    def write(
        self, task: Task, proc: _Proc, c: strace.Call, fd: int, args: list[str], measured: int, base: Any
    ) -> None:
        d = proc.fds[fd]
        if d.kind in ("dir", "pipe_r"):
            self.add(task, Step("spin", spin=measured, **base), "measured")
            return
        traced = c.value or 0
        count = min(traced, MAX_TRANSFER)
        self.cut_transfers += traced > MAX_TRANSFER
        shown = b"".join(
            got[0] for s in _STRING.findall(args[1] if len(args) > 1 else "") if (got := strace.unquote(s))
        )
        data = shown[:count]  # the rest is FILL, added as the replay writes it
        if d.kind == "file":
            d.pos += traced
        if d.kind == "pipe_w":
            proc.pipe_writer = True
        proc.buffer = max(proc.buffer, count)
        gap = max(0, base["gap"] - (count + 3) // 4)  # staging the bytes is user work the gap already holds
        self.add(task, Step("write", spin=measured, fd=fd, count=count, data=data, **{**base, "gap": gap}), "measured")

    def create(self, task: Task, proc: _Proc, c: strace.Call, thread: bool, base: dict[str, Any]) -> None:
        assert c.value is not None
        child = self.ensure(c.value, c.line)
        if thread:
            self.add(task, Step("thread", task=child.index, **base), "own")
        else:
            self.add(task, Step("spawn", task=child.index, fds=tuple(sorted(proc.fds)), **base), "own")

    def execve(self, task: Task, proc: _Proc, c: strace.Call) -> None:
        args = c.arg_list()
        if len(args) > 1 and (m := _STRING.search(args[1])) and (got := strace.unquote(m.group(0))):
            task.name = posixpath.basename(got[0].decode("utf-8", "replace")) or task.name
        closing = tuple(sorted(fd for fd in proc.cloexec if fd in proc.fds))
        for fd in closing:
            del proc.fds[fd]
        proc.cloexec.clear()
        if closing:
            task.steps.append(Step("cloexec", "", c.line, fds=closing))
            self.own("close (execve's close-on-exec)", len(closing))

    def exit(self, task: Task, c: strace.Call, args: list[str], base: dict[str, Any]) -> None:
        status = (_int(args[0]) if args else 0) or 0
        if c.name == "exit" and not task.is_leader:
            self.add(task, Step("thread_exit", count=status & 0xFF, **base), "own")
        else:
            self.add(task, Step("exit", count=status & 0xFF, **base), "own")
        task.ended = True

    def finish(self, task: Task, e: strace.Exit | None) -> None:
        """The end of a timeline the trace closed without an exit call (or did not close at all)."""
        task.ended = True
        if e is None:
            self.notes.append(f"thread {task.pid}: no end in the trace: it ends after its last call")
        if not task.is_leader:
            return  # returning from the thread's function is its thread_exit (libc)
        sig = signal.Signals.__members__.get(e.signal) if e is not None and e.signal else None
        status = e.status if e is not None and e.status is not None else 0
        step = Step("exit", "", e.line if e else 0, count=status & 0xFF, signal=int(sig) if sig else 0)
        task.steps.append(step)
        if sig:
            self.own(f"kill of itself ({sig.name})")

    def futex(
        self, task: Task, proc: _Proc, c: strace.Call, args: list[str], measured: int, floor: int, base: Any
    ) -> None:
        addr, op, val = _int(args[0]), args[1], _int(args[2])
        if addr is None:
            self.add(task, Step("spin", spin=measured, **base), "measured")
            return
        if op.startswith("FUTEX_WAKE") and not op.startswith("FUTEX_WAKE_OP"):
            slot = proc.slots.setdefault(addr, len(proc.slots))
            proc.wakes.setdefault(addr, []).append(c.end)
            self.add(task, Step("futex_wake", spin=measured, task=slot, **base), "measured")
            return
        if not op.startswith("FUTEX_WAIT") or op.startswith("FUTEX_WAIT_REQUEUE"):
            self.add(task, Step("spin", spin=measured, **base), "measured")
            return
        if c.errno == "ETIMEDOUT":
            self.add(task, Step("sleep", spin=self.instr(c.duration, MAX_SLEEP), **base), "sleep")
            return
        if c.value == 0:
            woken = self.woken_by(c)
            if woken is not None:
                slot = proc.slots.setdefault(addr, len(proc.slots))
                self.add(task, Step("futex_wait", spin=floor, task=slot, count=woken, **base), "floor")
                return
            joined = self.task_of(val) if val is not None else None
            if joined is not None and joined.thread and joined.leader == task.leader and joined is not task:
                self.add(task, Step("join", task=joined.index, **base), "own")
                return
            self.add(task, Step("spin", spin=floor, **base), "floor")
            return
        self.add(task, Step("spin", spin=measured, **base), "measured")

    def leader_pid(self, pid: int) -> int:
        """The pid of the first thread of `pid`'s process, from the trace's clones alone."""
        seen = set()
        while pid in self.creators and self.creators[pid][1] and pid not in seen:
            seen.add(pid)
            pid = self.creators[pid][0].pid
        return pid

    def wake_index(self) -> dict[tuple[int, int], list[tuple[float, int, int, int]]]:
        """(process, futex address) -> its wakes (start, line, pid, threads woken), in the order they began."""
        if self._wakes is None:
            self._wakes = {}
            for c in self.trace.calls:
                a = c.arg_list() if c.name == "futex" else []
                if len(a) >= 3 and a[1].startswith("FUTEX_WAKE") and not a[1].startswith("FUTEX_WAKE_OP"):
                    key = (self.leader_pid(c.pid), _int(a[0]) or 0)
                    self._wakes.setdefault(key, []).append((c.start, c.line, c.pid, c.value or 0))
            for wakes in self._wakes.values():
                wakes.sort()
        return self._wakes

    def woken_by(self, wait: strace.Call) -> int | None:
        """Which wake of the wait's address (1, 2, ...) ended it: the last, by another thread, begun before it returned.

        Worked out from all of the trace's wakes of that address (not only those compiled so far).
        """
        wakes = self.wake_index().get((self.leader_pid(wait.pid), _int(wait.arg_list()[0]) or 0), [])
        i = bisect.bisect_right(wakes, (wait.end, math.inf))  # those that began before the waiter was back
        while i > 0:
            _start, _line, pid, woke = wakes[i - 1]
            if woke > 0 and pid != wait.pid:
                return i
            i -= 1
        return None


def _woken_index_check(plan: Plan) -> None:
    """A futex wait must wait for a wake its process makes: drop any that waits for more wakes than exist."""
    made: dict[tuple[int, int], int] = {}  # (process, slot) -> wakes
    for task in plan.tasks:
        for s in task.steps:
            if s.op == "futex_wake":
                made[task.leader, s.task] = made.get((task.leader, s.task), 0) + 1
    for task in plan.tasks:
        wakes = {slot: n for (leader, slot), n in made.items() if leader == task.leader}
        task.steps = [
            dataclasses.replace(s, op="spin") if s.op == "futex_wait" and s.count > wakes.get(s.task, 0) else s
            for s in task.steps
        ]


def plan(trace: strace.Trace, ips: float = DEFAULT_IPS) -> Plan:
    """Compile `trace` for replay at `ips` instructions per second; ValueError if it cannot be replayed."""
    c = _Compiler(trace, ips, stdin_file=False)
    c.run()
    if c.stdin_bytes:  # the program read its standard input: give it a file of that many bytes
        stdin = c.stdin_bytes
        c = _Compiler(trace, ips, stdin_file=True)
        c.run()
        c.files[c.ours("/.stdin")] = max(c.files.get(c.ours("/.stdin"), 0), stdin)
        c.notes.append(f"standard input: a file of the {stdin} bytes the program read")
    if len(c.tasks) > (DATA_END - TASK_TABLE) // 4 - max((len(p.slots) for p in c.procs.values()), default=0):
        raise ValueError(f"{len(c.tasks)} threads and their futexes do not fit the replay's tables")
    if c.cut_transfers:
        c.notes.append(f"{c.cut_transfers} read(s) or write(s) of more than {MAX_TRANSFER} bytes move that many")
    for path, size in c.files.items():
        if size > MAX_FILE:
            c.files[path] = MAX_FILE
            c.notes.append(f"{path}: {size} bytes read, the replay's file holds {MAX_FILE}")
    if c.capped:
        c.notes.append(f"{c.capped} call(s) longer than the kernel takes in one spin or sleep: cut to that")
    for proc in c.procs.values():
        c.own("mmap (the process's buffer)")
        if proc.pipe_writer:
            c.own("sigaction (SIGPIPE ignored: a write to a closed pipe fails, as timing may have it)")
    if c.stdin_file:
        c.own("open (the file given as standard input)")
    for task in c.tasks:
        if task.is_leader and c.procs[task.leader].threads:
            c.own("thread_join at exit (threads not joined in the trace), at most", len(c.procs[task.leader].threads))
    events = trace.events
    times = [e.start if isinstance(e, strace.Call) else e.time for e in events]
    name = c.tasks[0].name if c.tasks else "replay"
    p = Plan(
        tasks=c.tasks,
        files=c.files,
        dirs=c.dirs,
        ips=ips,
        floor=c.floor,
        mapping=c.mapping,
        setup=c.setup,
        notes=c.notes,
        buffers={i: p.buffer for i, p in c.procs.items()},
        pipe_writers={i for i, p in c.procs.items() if p.pipe_writer},
        traced_calls=len(trace.calls),
        span=max(times) - min(times),
        signals=sum(isinstance(e, strace.Signal) for e in events),
        name=re.sub(r"[^\w.+-]", "_", name)[:32] or "replay",
    )
    _woken_index_check(p)
    return p


# --- the replay program ----------------------------------------------------------------------------------


def _lookup(fd: int) -> Generator[Op, Any, int | None]:
    """Our descriptor for traced `fd`, or None."""
    if not 0 <= fd < MAX_FD:
        return None
    v = yield Load(FD_TABLE + 4 * fd)
    return v - 1 if v else None


def _map(fd: int, ours: int | None) -> Gen:
    if 0 <= fd < MAX_FD:
        yield Store(FD_TABLE + 4 * fd, 0 if ours is None else ours + 1)


def _entry(task: int) -> Generator[Op, Any, int]:
    """Our pid or tid of `task`, once its creator (maybe another thread) has made it; 0 if already joined."""
    word = TASK_TABLE + 4 * task
    while True:
        v = yield Load(word)
        if v == JOINED:
            return 0
        if v not in (0, WAITING):
            return v - 1
        yield CmpXchg(word, 0, WAITING)
        yield from libc.futex_wait(word, WAITING)


def _created(task: int, ours: int) -> Gen:
    """Record `task`'s pid or tid; wake a thread waiting for it."""
    old = yield Xchg(TASK_TABLE + 4 * task, ours + 1)
    if old == WAITING:
        yield from libc.futex_wake(TASK_TABLE + 4 * task, 0x7FFFFFFF)


def _make_program(plan: Plan) -> Callable[[list[str]], Gen]:
    tasks = plan.tasks
    slot_base = TASK_TABLE + 4 * len(tasks)

    def run_task(index: int) -> Gen:
        """Replay task `index`'s timeline; return its exit status (a process's last thread) or 0."""
        task = tasks[index]
        buf = yield Load(BUF_WORD)
        for s in task.steps:
            if s.gap:
                yield from libc.compute(s.gap)
            op = s.op
            if op == "spin":
                yield from libc.spin(s.spin)
            elif op == "sleep":
                yield from libc.sleep(s.spin)
            elif op == "open":
                try:
                    fd = yield from libc.open(s.path, s.flags, spin=s.spin)
                except OSError:
                    continue
                if s.fd == NEVER:
                    continue  # failed in the trace, not here: it stays open, unused
                yield from _map(s.fd, fd)
            elif op in ("getpid", "gettid"):
                yield from (libc.getpid(spin=s.spin) if op == "getpid" else libc.gettid(spin=s.spin))
            elif op == "stat":
                with contextlib.suppress(OSError):
                    yield from libc.stat(s.path, spin=s.spin)
            elif op == "mkdir":
                with contextlib.suppress(OSError):
                    yield from libc.mkdir(s.path, spin=s.spin)
            elif op == "pipe":
                r, w = yield from libc.pipe(spin=s.spin)
                yield from _map(s.fd, r)
                yield from _map(s.fd2, w)
            elif op in ("close", "read", "write", "lseek", "dup", "getdents"):
                yield from fd_call(s, buf)
            elif op == "spawn":
                inherit = []
                for fd in s.fds:
                    ours = yield from _lookup(fd)
                    if ours is not None:
                        inherit.append(f"{fd}:{ours}")
                pid = yield from libc.spawn(main, [tasks[s.task].name, str(s.task), ",".join(inherit)])
                yield from _created(s.task, pid)
            elif op == "thread":
                tid = yield from libc.thread_create(thread_main, s.task)
                yield from _created(s.task, tid)
            elif op == "wait":
                pid = yield from _entry(s.task)
                with contextlib.suppress(OSError):
                    yield from libc.waitpid(pid, spin=s.spin)
            elif op == "join":
                yield from join(s.task)
            elif op == "futex_wake":
                word = slot_base + 4 * s.task
                yield AtomicAdd(word, 1)  # the process's wakes of this address so far
                yield from libc.futex_wake(word, 0x7FFFFFFF, spin=s.spin)
            elif op == "futex_wait":
                word, spin = slot_base + 4 * s.task, s.spin
                while True:  # until the wake the trace shows ending this wait has happened
                    v = yield Load(word)
                    with contextlib.suppress(OSError):
                        yield from libc.futex_wait(word, v if v < s.count else v + 1, spin=spin)
                    spin = 0
                    if v >= s.count or (yield Load(word)) >= s.count:
                        break
            elif op == "cloexec":
                for fd in s.fds:
                    ours = yield from _lookup(fd)
                    if ours is not None:
                        yield from _map(fd, None)
                        with contextlib.suppress(OSError):
                            yield from libc.close(ours)
            elif op == "thread_exit":
                return s.count
            elif op == "exit":
                yield from join_all(task)
                if s.signal:
                    yield from libc.sigaction(s.signal, 0)  # the default action, whatever the setup chose
                    yield from libc.kill((yield from libc.getpid()), s.signal)
                yield from libc.exit(s.count)
        if task.is_leader:
            yield from join_all(task)
        return 0

    def fd_call(s: Step, buf: int) -> Gen:
        ours = yield from _lookup(s.fd)
        if ours is None:  # no counterpart (its open failed here): the call still spends its time
            yield from libc.spin(s.spin)
            return
        try:
            if s.op == "close":
                yield from _map(s.fd, None)
                yield from libc.close(ours, spin=s.spin)
            elif s.op == "read":
                got = yield from libc.read(ours, buf, s.count, spin=s.spin)
                while s.pipe and 0 < got < s.count:  # the writer has not written it all yet
                    n = yield from libc.read(ours, buf + got, s.count - got)
                    if n == 0:
                        break
                    got += n
            elif s.op == "write":
                yield from libc.write_mem(buf, s.data + FILL * (s.count - len(s.data)))
                yield from libc.write(ours, buf, s.count, spin=s.spin)
            elif s.op == "lseek":
                yield from libc.lseek(ours, s.count, s.whence, spin=s.spin)
            elif s.op == "dup":
                new = yield from libc.dup(ours, spin=s.spin)
                yield from _map(s.fd2, new)
            elif s.op == "getdents":
                yield from libc.getdents(ours, s.count, spin=s.spin)
        except OSError:
            pass

    def join(task: int) -> Gen:
        """Join `task`'s thread, unless another thread of the process has claimed the join."""
        tid = yield from _entry(task)
        if tid and (yield CmpXchg(TASK_TABLE + 4 * task, tid + 1, JOINED)) == tid + 1:
            with contextlib.suppress(OSError):
                yield from libc.thread_join(tid)

    def join_all(task: Task) -> Gen:
        """Join every other thread of the process still running (the leader's process ends after them)."""
        for other in tasks:
            if other.thread and other.leader == task.leader and other.index != task.index:
                yield from join(other.index)

    def start(argv: list[str]) -> Gen:
        """A process's start: its descriptor table from argv, its buffer, its signal setting."""
        index = int(argv[1]) if len(argv) > 1 else 0
        if len(argv) > 2 and argv[2]:
            for pair in argv[2].split(","):
                traced, ours = pair.split(":")
                yield from _map(int(traced), int(ours))
        else:
            for fd in (0, 1, 2):
                yield from _map(fd, fd)
        buf = yield from libc.mmap(plan.buffers.get(index, 4096))
        yield Store(BUF_WORD, buf)
        if index in plan.pipe_writers:
            yield from libc.sigaction(signal.SIGPIPE, signal.SIG_IGN)
        return index

    def main(argv: list[str]) -> Gen:
        index = yield from start(argv)
        if index == 0 and plan.files.get(ROOT + "/.stdin"):
            fd = yield from libc.open(ROOT + "/.stdin")
            yield from _map(0, fd)
        return (yield from run_task(index))

    def thread_main(index: int) -> Gen:
        return (yield from run_task(index))

    main.__name__ = plan.name
    main.__qualname__ = plan.name
    return main


# --- the shipped traces ----------------------------------------------------------------------------


def shipped() -> dict[str, str]:
    """The traces that come with apkern: name -> its text (see the module docstring for how each was captured)."""
    folder = importlib.resources.files(__package__) / "traces"
    return {
        p.name[: -len(".trace")]: p.read_text()
        for p in sorted(folder.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".trace") and p.name != "cc1.trace"
    }


@functools.cache
def shipped_plan(name: str, ips: float = DEFAULT_IPS) -> Plan:
    return plan(strace.parse(shipped()[name]), ips)
