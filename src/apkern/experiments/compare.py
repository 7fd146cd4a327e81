"""Compare kernels on one program: what it costs on each, and whether it behaves the same.

`compare(program, cpus)` runs a `Program` (a built-in, a user's file or a TOML workload,
see `apkern.workloads.source`) on the uniprocessor kernel with one CPU, the baseline, and
on every other kernel of `apkern.system.KERNELS` with each CPU count. Each run records:

- simulated time (instructions until the last process exited) and the speedup against
  the baseline (its time divided by this run's);
- forwarded system calls and exceptions (page faults among them), where the kernel
  forwards any ("-" where it has no such counter);
- the bootstrap processor's load: its busy share (time not idle), on every kernel, and for
  the application kernel also the paper's bootstrap load (the share of the bootstrap
  loop's passes that handled a message);
- each CPU's user / kernel / spin / idle shares of the run's time (spin: busy-waiting on a
  lock or a shoot-down; idle: the idle loop and halted time).

It also checks the promise of the approach: the program's output (the whole console
and each process's fd 1 and fd 2), the exit status of every process and the files it
left are those of the baseline on every kernel. `differences` lists what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..system import EXTENSIONS, KERNELS, ConfigError, SimulationLimit, System
from ..workloads.source import Program

BASELINE = ("up", 1)
SHARES = ("user", "kernel", "spin", "idle")
DEFAULT_LIMIT = 10_000_000_000


@dataclass
class Run:
    """One run of the program: what a user sees of it, and what it cost."""

    kernel: str
    cpus: int
    time: int
    exit_status: int | None
    console: str
    per_pid: dict[int, tuple[str, str]]  # pid -> (fd 1 text, fd 2 text)
    procs: dict[int, tuple[str, int | None]]  # pid -> (name, exit status)
    files: dict[str, bytes]
    stats: dict[str, Any] = field(repr=False)
    speedup: float | None = None
    differences: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kernel}/{self.cpus}cpu"

    def _counter(self, *names: str) -> int | None:
        present = [self.stats[n] for n in names if n in self.stats]
        return sum(present) if present else None

    @property
    def forwarded_calls(self) -> int | None:
        return self._counter("forwarded_calls")

    @property
    def forwarded_exceptions(self) -> int | None:
        """Forwarded exceptions, page faults included (None: this kernel forwards none)."""
        return self._counter("forwarded_page_faults", "forwarded_exceptions")

    @property
    def per_cpu_shares(self) -> list[dict[str, float]]:
        """Each CPU's user, kernel, spin and idle share of the run's time (they add up to 1; a little more
        on a decoupled machine, whose CPUs may stop up to a quantum past the run's end)."""
        out = []
        for c in self.stats["per_cpu"]:
            user, kernel, idle = (c.get(f"{k}_instructions", 0) for k in ("user", "kernel", "idle"))
            spin = c.get("instructions", 0) - user - kernel - idle  # lock spinning, shoot-down waits
            idle += max(0, self.time - c.get("instructions", 0))  # halted
            t = self.time or 1
            out.append({"id": c["id"], "user": user / t, "kernel": kernel / t, "spin": spin / t, "idle": idle / t})
        return out

    @property
    def bsp_busy(self) -> float:
        """The share of the run's time the bootstrap processor was not idle."""
        return 1.0 - self.per_cpu_shares[0]["idle"]

    @property
    def bootstrap_load(self) -> float | None:
        """The paper's bootstrap load: bootstrap-loop passes that handled a message / all passes."""
        passes = self.stats.get("bootstrap_loop_passes")
        if not passes:
            return None
        return self.stats.get("bootstrap_loop_busy_passes", 0) / passes

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "cpus": self.cpus,
            "time": self.time,
            "speedup": self.speedup,
            "exit_status": self.exit_status,
            "forwarded_calls": self.forwarded_calls,
            "forwarded_exceptions": self.forwarded_exceptions,
            "forwarded_page_faults": self.stats.get("forwarded_page_faults"),
            "bsp_busy": self.bsp_busy,
            "bootstrap_load": self.bootstrap_load,
            "per_cpu": self.per_cpu_shares,
            "same": not self.differences,
            "differences": self.differences,
            "stats": self.stats,
        }


@dataclass
class Comparison:
    program: Program
    cpus: list[int]
    runs: list[Run]
    skipped: list[tuple[str, int, str]]  # kernel, cpus, why
    unfinished: str | None = None  # the run that hit the limit or the timeout (no run after it was made)

    @property
    def baseline(self) -> Run:
        return self.runs[0]

    @property
    def differences(self) -> list[str]:
        return [d for r in self.runs for d in r.differences]

    @property
    def same(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "program": self.program.name,
            "argv": self.program.argv,
            "kernels": list(dict.fromkeys(r.kernel for r in self.runs)),
            "cpus": self.cpus,
            "baseline": {"kernel": BASELINE[0], "cpus": BASELINE[1]},
            "same": self.same,
            "differences": self.differences,
            "runs": [r.to_dict() for r in self.runs],
            "skipped": [{"kernel": k, "cpus": n, "reason": why} for k, n, why in self.skipped],
            **({"unfinished": self.unfinished} if self.unfinished else {}),
        }


def run_once(
    program: Program,
    kernel: str,
    cpus: int,
    extensions: tuple[str, ...] = (),
    files: dict[str, bytes] | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout: float | None = None,
    **system: Any,
) -> Run:
    """Run `program` alone on a fresh system (`system`: further `System` settings, e.g. memory).

    ConfigError if the system cannot be built; SimulationLimit (naming the kernel and CPU
    count) past `limit` instructions or `timeout` seconds of wall time.
    """
    sim = System(kernel=kernel, cpus=cpus, extensions=extensions if kernel == "apkern" else (), **system)
    for path, data in {**program.files, **(files or {})}.items():
        sim.fs.write_file(path, data)
    proc = sim.spawn(program.main, program.argv)
    try:
        sim.run(limit=limit, timeout=timeout)
    except SimulationLimit as e:
        raise type(e)(f"{kernel} on {cpus} CPU{'s' if cpus != 1 else ''}: {e}") from None
    console = sim.kernel.console
    pids = sorted({pid for pid, _fd, _data in console.records} | {proc.pid})
    return Run(
        kernel=kernel,
        cpus=cpus,
        time=sim.now,
        exit_status=proc.exit_status,
        console=sim.console(),
        per_pid={pid: (console.text(pid, 1), console.text(pid, 2)) for pid in pids},
        procs={pid: (p.name, p.exit_status) for pid, p in sorted(sim.kernel.procs.items())},
        files=sim.fs.snapshot(),
        stats=sim.stats,
    )


def _first_difference(a: str, b: str) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            lo = max(0, i - 20)
            return f"at offset {i}: {a[lo : i + 30]!r} vs {b[lo : i + 30]!r}"
    return f"in length ({len(a)} vs {len(b)} characters)"


def differences(ref: Run, got: Run) -> list[str]:
    """Every way `got` differs from `ref` that a user can see: output, exit statuses, files."""
    tag = f"{got.label} vs {ref.label}"
    out: list[str] = []
    if ref.exit_status != got.exit_status:
        out.append(f"{tag}: exit status {got.exit_status} vs {ref.exit_status}")
    if ref.console != got.console:
        out.append(f"{tag}: output differs {_first_difference(got.console, ref.console)}")
    else:
        for pid in sorted(set(ref.per_pid) | set(got.per_pid)):
            for fd, (a, b) in enumerate(
                zip(ref.per_pid.get(pid, ("", "")), got.per_pid.get(pid, ("", "")), strict=True), 1
            ):
                if a != b:
                    out.append(f"{tag}: process {pid}'s fd {fd} differs {_first_difference(b, a)}")
    if ref.procs != got.procs:
        changed = [
            f"{pid} {got.procs.get(pid)} vs {ref.procs.get(pid)}"
            for pid in sorted(set(ref.procs) | set(got.procs))
            if ref.procs.get(pid) != got.procs.get(pid)
        ]
        out.append(f"{tag}: processes (pid (name, status)) differ: {'; '.join(changed[:3])}")
    if ref.files != got.files:
        names = [n for n in sorted(set(ref.files) | set(got.files)) if ref.files.get(n) != got.files.get(n)]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        out.append(f"{tag}: files differ: {shown}")
    return out


def compare(
    program: Program,
    cpus: Sequence[int],
    kernels: Sequence[str] = KERNELS,
    extensions: tuple[str, ...] = (),
    files: dict[str, bytes] | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout: float | None = None,
    **system: Any,
) -> Comparison:
    """Run `program` on the baseline and on each other kernel with each CPU count; compare every run.

    A run that reaches `limit` instructions or `timeout` seconds ends the comparison: what
    finished is kept, and `unfinished` says which run stopped and where.
    """
    cpus = list(dict.fromkeys(cpus))
    unknown = [e for e in extensions if e not in EXTENSIONS]
    if unknown:  # else every run of the application kernel would be skipped for it
        raise ConfigError(f"unknown extension {unknown[0]!r} (choose from {', '.join(EXTENSIONS)})")
    try:
        ref = run_once(program, *BASELINE, files=files, limit=limit, timeout=timeout, **system)
    except SimulationLimit as e:
        return Comparison(program, cpus, [], [], unfinished=str(e))
    ref.speedup = 1.0
    runs, skipped = [ref], []
    for kernel in kernels:
        for n in cpus:
            if (kernel, n) == BASELINE:
                continue
            if kernel == BASELINE[0]:
                skipped.append((kernel, n, "the uniprocessor kernel uses one CPU: its run on 1 is the baseline"))
                continue
            try:
                run = run_once(program, kernel, n, extensions, files, limit, timeout, **system)
            except ConfigError as e:
                skipped.append((kernel, n, str(e)))
                continue
            except SimulationLimit as e:
                return Comparison(program, cpus, runs, skipped, unfinished=str(e))
            run.speedup = ref.time / run.time if run.time else None
            run.differences = differences(ref, run)
            runs.append(run)
    return Comparison(program, cpus, runs, skipped)


def _num(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def format_comparison(c: Comparison) -> str:
    """The tables: one line per run, then each run's per-CPU shares, then the verdict ("" if no run finished)."""
    if not c.runs:
        return ""
    kernels = ", ".join(dict.fromkeys(r.kernel for r in c.runs))
    lines = [
        f"{' '.join(c.program.argv) if c.program.kind != 'toml' else c.program.name} on {kernels}; "
        f"CPUs {', '.join(map(str, c.cpus))}",
        "time in instructions (ms at 100 MIPS); speedup against up on 1 CPU; "
        "BSP busy: its share of the time not idle; loop load: share of bootstrap-loop passes that handled a message",
        "",
    ]
    head = ("kernel", "cpus", "time", "ms", "speedup", "fwd calls", "fwd exceptions", "BSP busy", "loop load", "status")
    rows = [
        (
            r.kernel,
            str(r.cpus),
            f"{r.time:,}",
            f"{r.time / 100_000:.2f}",
            "-" if r.speedup is None else f"{r.speedup:.2f}",
            _num(r.forwarded_calls),
            _num(r.forwarded_exceptions),
            _pct(r.bsp_busy),
            _pct(r.bootstrap_load),
            str(r.exit_status) + ("" if not r.differences else " *"),
        )
        for r in c.runs
    ]
    lines += _table(head, rows)
    for kernel, n, why in c.skipped:
        if kernel != BASELINE[0]:
            lines.append(f"not run: {kernel} on {n} CPU{'s' if n != 1 else ''}: {why}")
    for r in c.runs:
        lines += ["", f"{r.kernel}, {r.cpus} CPU{'s' if r.cpus != 1 else ''}: per-CPU shares of the time"]
        share_rows = [
            (str(s["id"]) + (" (BSP)" if s["id"] == 0 else ""), *(_pct(s[k]) for k in SHARES)) for s in r.per_cpu_shares
        ]
        lines += ["  " + line for line in _table(("cpu", *SHARES), share_rows)]
    lines.append("")
    if c.same:
        tail = " that finished" if c.unfinished else ""
        lines.append(f"same output, exit status and files on every kernel{tail} ({len(c.runs)} runs)")
    else:
        bad = sum(1 for r in c.runs if r.differences)
        lines.append(f"DIFFERENT: {bad} of {len(c.runs) - 1} runs differ from up on 1 CPU (marked *):")
        lines += [f"  {d}" for d in c.differences]
    return "\n".join(lines)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths, strict=True)))

    return [fmt(head), *(fmt(r) for r in rows)]
