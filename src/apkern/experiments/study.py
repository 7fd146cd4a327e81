"""`apkern study`: the Linux version's application benchmarks on every kernel, 1-8 CPUs, beside the journal's figures.

Every workload (`WORKLOADS`: SPLASH-2-style RADIX, LU and FFT with 8 threads; find,
grep -r and find | grep on a generated tree; the gzip- and gcc-like programs; the
multiprogramming mix) runs on every kernel of `apkern.system.KERNELS` on each CPU
count it accepts (the uniprocessor kernel, the baseline, on one CPU only: more would
idle), each run a fresh system. A run's time is the simulated instructions from the
workload's start until its last process has exited; its speedup is the
uniprocessor kernel's time over it, as the journal measured (Simics, 1-8 CPUs).

Before the timed run, the workload's input (the tree, the text) is made by its own
set-up programs (mktree, mktext) on the uniprocessor kernel and copied into the
system's file system, and a program that does nothing runs once, so that the time
counts neither the input nor the kernels' start-up (application processors, driver
initialisation).

Each run is checked twice: the workload's own check (its exit status: RADIX and LU
check their results, find and grep compare with the tree's manifest, gzip inflates
its output, gcc reads its output back, the mix requires every member's; FFT's
output is compared here with a plain recursive FFT of the same input), and the
differential oracle: a digest of everything the run showed (each process's name,
exit status and console text, and the whole file system afterwards) must equal the
uniprocessor kernel's. A failure or a mismatch is flagged in `applications.csv`
(column `check`) and in the report.

The journal's findings (`JOURNAL`) are printed beside ours with the citation. Nothing
is fitted to them: the sizes come from the workloads (`Sizes`), and the comparison
is of shape: which kernel is ahead, and where each curve stops rising, computed from
the data by `compare` and `bend`.

Writes into `out`: `applications.csv`, `study_<workload>.png` (speedup against CPUs,
a curve per kernel), `study.json`, and the section "applications" of `report.md`
(the rest of that file, e.g. `apkern reproduce`'s report, stays).
"""

from __future__ import annotations

import cmath
import csv
import functools
import hashlib
import json
import os
import struct
import time
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import profiles
from .. import system as system_mod
from ..profiles import Profile
from ..system import ConfigError, SimulationLimit, System
from ..workloads import tree
from ..workloads.fft import OUT as FFT_OUT
from ..workloads.fft import points as fft_points
from ..workloads.grep import PATTERN_DEFAULT
from ..workloads.mix import ENTRIES_PER_SCALE, GCC_BYTES_PER_SCALE, GCC_INPUT
from ..workloads.mix import ROOT as MIX_ROOT
from .reproduce import CACHE_DIR, check_output_dir, save_partial
from .tasks import Interrupted, Progress, Task, TaskCache, run_tasks

BASELINE = "up"  # the uniprocessor kernel: every speedup is over its one-CPU time
CPUS = tuple(range(1, 9))
IPS = 100e6  # instructions per second, to print times in seconds (the paper's example rate)
# A difference of speedups smaller than this share is called a tie, and a curve that rises by no more than it
# from some CPU count on is flat from there. A stated yardstick, the same for every workload and kernel.
TIE = 0.02
RUN_LIMIT = 20_000_000_000  # instructions: far above any run here
INPUT_MAKERS = ("mktree", "mktext")  # the registry's programs that make inputs, not workloads

CITATION = (
    'J. Kågström, H. Grahn, L. Lundberg, "The application kernel approach - a novel approach for adding SMP '
    'support to uniprocessor operating systems", Software: Practice and Experience 36(14), 2006 '
    "(the application kernel's Linux version, measured in Simics on 1-8 CPUs against uniprocessor and SMP Linux)"
)
JOURNAL_NAMES = {"apkern": "the application kernel", "smp": "SMP Linux"}  # the journal's kernels, ours by name


# --- the workloads and their sizes ------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How big each workload's input is (scaled down from the journal's: the machine is simulated in Python).

    `threads`: RADIX's, LU's and FFT's thread count (the journal ran SPLASH-2 with 8) and the mix's.
    """

    name: str
    radix_keys: int
    lu_n: int
    lu_block: int
    fft_m: int
    entries: int  # the tree that find, grep and find | grep walk (shaped like /usr/include)
    gzip_bytes: int
    gcc_bytes: int
    mix_scale: int
    threads: int = 8


QUICK = Sizes(
    "quick", radix_keys=16384, lu_n=64, lu_block=8, fft_m=6, entries=250, gzip_bytes=32768, gcc_bytes=1024, mix_scale=1
)
DEFAULT = Sizes(
    "default",
    radix_keys=65536,
    lu_n=128,
    lu_block=8,
    fft_m=7,
    entries=1000,
    gzip_bytes=262144,
    gcc_bytes=4096,
    mix_scale=2,
)


@dataclass(frozen=True)
class Workload:
    """One workload: its command line, the set-up programs that make its input, and a host-time estimate."""

    name: str
    argv: tuple[str, ...]
    inputs: tuple[tuple[str, ...], ...] = ()
    cost: float = 1.0  # rough host seconds of one run on a multiprocessor kernel (to start the big ones first)


def workloads(sizes: Sizes) -> dict[str, Workload]:
    """Every workload of the study at these sizes, in the report's order."""
    t, s = str(sizes.threads), sizes
    root, seed = "/t", "1"
    manifest = tree.manifest_path(root)
    mktree = ("mktree", root, str(s.entries), seed)
    per_entry = s.entries / 250
    scale = s.mix_scale
    return {
        w.name: w
        for w in (
            Workload("radix", ("radix", t, str(s.radix_keys), "8"), cost=0.35 * s.radix_keys / 16384),
            Workload("lu", ("lu", t, str(s.lu_n), str(s.lu_block)), cost=0.2 * (s.lu_n / 64) ** 3),
            Workload("fft", ("fft", t, str(s.fft_m)), cost=0.2 * 4 ** (s.fft_m - 6)),
            Workload("find", ("find", "-verify", manifest, root), (mktree,), 0.25 * per_entry),
            Workload("grep", ("grep", "-r", "-verify", manifest, PATTERN_DEFAULT, root), (mktree,), 3.0 * per_entry),
            Workload("findgrep", ("findgrep", "-verify", root), (mktree,), 0.25 * per_entry),
            Workload(
                "gzip",
                ("gzip", "-verify", "/z"),
                (("mktext", "/z", str(s.gzip_bytes), seed),),
                1.3 * s.gzip_bytes / 32768,
            ),
            Workload(
                "gcc",
                ("gcc", "-verify", "/c.i"),
                (("mktext", "/c.i", str(s.gcc_bytes), seed),),
                2.3 * s.gcc_bytes / 1024,
            ),
            Workload(
                "mix",
                ("mix", str(scale), t),
                (  # what the mix makes itself when they are missing, made beforehand (as it does: seed 1)
                    ("mktree", MIX_ROOT, str(ENTRIES_PER_SCALE * scale), seed),
                    ("mktext", GCC_INPUT, str(GCC_BYTES_PER_SCALE * scale), seed),
                ),
                4.0 * scale**2,
            ),
        )
    }


# --- one run (in a worker process) -------------------------------------------------------------------


def _nothing(argv: list[str]) -> Generator[Any, Any, int]:
    """A program that does nothing: run once before the timed run, so that it counts no start-up."""
    return 0
    yield  # a generator function, as every program is


@functools.lru_cache(maxsize=8)
def _input(inputs: tuple[tuple[str, ...], ...], seed: int) -> tuple[tuple[str, bytes], ...]:
    """The files and directories the set-up programs make, run on the uniprocessor kernel (made once per process)."""
    sim = System(kernel=BASELINE, cpus=1, seed=seed)
    before = sim.fs.snapshot()
    for argv in inputs:
        p = sim.spawn(argv[0], list(argv))
        sim.run(limit=RUN_LIMIT)
        if p.exit_status != 0:
            raise RuntimeError(f"making the input with {' '.join(argv)} failed: {sim.console(p.pid)!r}")
    return tuple((path, data) for path, data in sim.fs.snapshot().items() if before.get(path) != data)


def _install(sim: System, files: tuple[tuple[str, bytes], ...]) -> None:
    for path, _ in files:  # directories ("path/"), parents first: the snapshot is sorted
        if path.endswith("/") and not sim.fs.is_dir(path[:-1]):
            sim.fs.mkdir(path[:-1])
    for path, data in files:
        if not path.endswith("/"):
            sim.fs.write_file(path, data)


def _digest(sim: System, first_pid: int) -> str:
    """What the run showed: every process of the workload (name, exit status, console text), the whole file system."""
    h = hashlib.sha256()
    for pid, proc in sorted(sim.kernel.procs.items()):
        if pid >= first_pid:
            h.update(f"{pid} {proc.name} {proc.exit_status}\n".encode())
            h.update(sim.console(pid).encode() + b"\0")
    for path, data in sim.fs.snapshot().items():
        h.update(path.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def reference_fft(x: list[complex]) -> list[complex]:
    """The discrete Fourier transform by plain recursive radix-2 decimation in time (independent of FFT's six steps)."""
    n = len(x)
    if n == 1:
        return list(x)
    even, odd = reference_fft(x[0::2]), reference_fft(x[1::2])
    tw = [cmath.exp(-2j * cmath.pi * k / n) * odd[k] for k in range(n // 2)]
    return [even[k] + tw[k] for k in range(n // 2)] + [even[k] - tw[k] for k in range(n // 2)]


def _fft_check(sim: System, argv: Sequence[str]) -> str | None:
    """FFT does not check itself: compare /fft.out with `reference_fft` of the same input. None when it agrees."""
    m = int(argv[2])
    seed = int(argv[3]) if len(argv) > 3 else 1
    try:
        data = sim.fs.read_file(FFT_OUT)
    except FileNotFoundError:
        return f"no {FFT_OUT}"
    want = reference_fft(fft_points(m, seed))
    if len(data) != 16 * len(want):
        return f"{FFT_OUT} holds {len(data)} bytes, not {16 * len(want)}"
    f = struct.unpack(f"<{2 * len(want)}d", data)
    err = max(abs(complex(f[2 * i], f[2 * i + 1]) - w) for i, w in enumerate(want))
    return None if err < 1e-9 * len(want) else f"differs from the reference FFT by {err:.3g}"


def _self_check(sim: System, w: Workload, status: int | None) -> str | None:
    """The workload's own verdict: None when it passed, else why not."""
    if status != 0:
        lines = sim.console().strip().splitlines()
        return f"exit status {status}" + (f" ({lines[-1][:80]})" if lines else "")
    if w.argv[0] == "fft":
        return _fft_check(sim, w.argv)
    return None


def run_one(w: Workload, kernel: str, cpus: int, seed: int, costs: Profile | None = None) -> dict[str, Any]:
    """Run workload `w` on a fresh system; its time, counters and checks. `skipped` when the kernel refuses the CPUs."""
    try:
        sim = System(kernel=kernel, cpus=cpus, seed=seed, costs=costs)
    except ConfigError as e:
        return {"workload": w.name, "kernel": kernel, "cpus": cpus, "skipped": str(e)}
    _install(sim, _input(w.inputs, seed))
    sim.spawn(_nothing, ["nothing"])
    sim.run(limit=RUN_LIMIT)
    before = sim.stats
    t0 = sim.now
    proc = sim.spawn(w.argv[0], list(w.argv))
    stopped = None  # why the run did not end by itself, if it did not
    try:
        sim.run(limit=t0 + RUN_LIMIT)
    except SimulationLimit as e:
        stopped = str(e)
    except Exception as e:  # a kernel's crash is this run's failure, flagged, not the end of the study
        stopped = f"crashed: {type(e).__name__}: {e}"
    after = sim.stats
    t = sim.now - t0
    spin = sum(c["spin_instructions"] for c in after["per_cpu"]) - sum(
        c["spin_instructions"] for c in before["per_cpu"]
    )
    busy, passes = (after.get(k, 0) - before.get(k, 0) for k in ("bootstrap_loop_busy_passes", "bootstrap_loop_passes"))
    failure = stopped or _self_check(sim, w, proc.exit_status)
    return {
        "workload": w.name,
        "kernel": kernel,
        "cpus": cpus,
        "instructions": t,
        "syscalls": after["syscalls"] - before["syscalls"],
        "bsp_load": busy / passes if "bootstrap_loop_passes" in after and passes else None,
        "spin_share": spin / (cpus * t) if t else 0.0,
        "exit_status": proc.exit_status,
        "self_check": failure,
        "digest": _digest(sim, proc.pid),
    }


def _not_crashed(result: dict[str, Any]) -> bool:
    """A run the simulator crashed in is run again next time, not served from the cache."""
    return not str(result.get("self_check") or "").startswith("crashed:")


# --- planning and analysis ---------------------------------------------------------------------------


def plan(chosen: Sequence[Workload], kernels: Sequence[str], cpus: Sequence[int], seed: int) -> list[Task]:
    """One task per workload, kernel and CPU count (the baseline on one CPU only), the big ones first."""
    tasks: list[Task] = []
    for w in chosen:
        for k in kernels:
            for n in cpus:
                if k == BASELINE and n != 1:
                    continue
                cost = w.cost * (0.1 if k == BASELINE else 1.0) * (0.6 + 0.05 * n)
                tasks.append(("run", (w, k, n, seed), cost))
    tasks.sort(key=lambda t: -t[2])
    return tasks


def bend(points: dict[int, float]) -> int:
    """The CPU count from which a curve stops rising: no later point is above it by more than TIE."""
    ns = sorted(points)
    for i, n in enumerate(ns):
        if all(points[m] <= points[n] * (1 + TIE) for m in ns[i + 1 :]):
            return n
    return ns[-1]


def _check(r: dict[str, Any], base: dict[str, Any] | None) -> str:
    if r["self_check"]:
        return f"FAILED: {r['self_check']}"
    if base is None:
        return "no baseline"
    if r["digest"] != base["digest"]:
        return f"MISMATCH: output differs from {BASELINE} on 1 CPU"
    return "ok"


def analyse(
    results: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
    names: Sequence[str] | None = None,
    kernels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Rows with speedups and checks, a curve per workload and kernel, and the journal's findings beside ours.

    Rows and curves come in the order of `names` (workloads) and `kernels` (by default, as the results give them).
    """
    runs = [r for _, _, r in results if "skipped" not in r]
    names = list(names or dict.fromkeys(r["workload"] for r in runs))
    kernels = list(kernels or dict.fromkeys(r["kernel"] for r in runs))
    base = {r["workload"]: r for r in runs if r["kernel"] == BASELINE and r["cpus"] == 1}
    order = {(w, k): (names.index(w), kernels.index(k)) for w in names for k in kernels}
    rows = []
    for r in sorted(runs, key=lambda r: (*order[(r["workload"], r["kernel"])], r["cpus"])):
        b = base.get(r["workload"])
        row = dict(r)
        row["seconds"] = r["instructions"] / IPS
        row["speedup"] = b["instructions"] / r["instructions"] if b and r["instructions"] else None
        row["same_output"] = b is not None and r["digest"] == b["digest"]
        row["check"] = _check(r, b)
        rows.append(row)
    curves: dict[str, dict[str, dict[str, Any]]] = {}
    for w in names:
        for k in kernels:
            pts = {r["cpus"]: r["speedup"] for r in rows if (r["workload"], r["kernel"]) == (w, k)}
            if not pts or None in pts.values():
                continue
            peak = max(pts, key=lambda n: (pts[n], -n))
            curves.setdefault(w, {})[k] = {"points": pts, "peak": pts[peak], "peak_cpus": peak, "bend": bend(pts)}
    bad = [r for r in rows if r["check"] != "ok"]
    return {
        "rows": rows,
        "curves": curves,
        "skipped": [
            {k: r[k] for k in ("workload", "kernel", "cpus", "skipped")} for _, _, r in results if "skipped" in r
        ],
        "checks": {"runs": len(rows), "ok": len(rows) - len(bad), "flagged": [_flag(r) for r in bad]},
        "journal": [compare(f, curves) for f in JOURNAL if any(w in curves for w in f.workloads)],
    }


def _flag(r: dict[str, Any]) -> str:
    return f"{r['workload']} on {r['kernel']} ({r['cpus']} CPUs): {r['check']}"


# --- the journal's findings and the comparison of shape ----------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One of the journal's findings, as numbers: the application kernel's figure and SMP Linux's, each lo..hi.

    `measure` says which of our figures it compares with:
    - "range": the speedups on every CPU count from 2 on (single-process workloads: a share of uniprocessor speed);
    - "largest": the speedup on the largest CPU count;
    - "top": the highest speedup on any CPU count (where the curve tops out);
    - "vs_smp": the application kernel's speedup over SMP's on the same CPU count (SMP's figure is 1).
    """

    workloads: tuple[str, ...]
    says: str
    measure: str
    apkern: tuple[float, float]
    smp: tuple[float, float]


JOURNAL = (
    Finding(
        ("gzip", "gcc"), "compute-bound programs lose only 5-10% against SMP Linux", "vs_smp", (0.90, 0.95), (1, 1)
    ),
    Finding(
        ("find",),
        "find reaches 0.78-0.88 of uniprocessor speed, against 0.98 for SMP Linux",
        "range",
        (0.78, 0.88),
        (0.98, 0.98),
    ),
    Finding(
        ("radix",),
        "RADIX with 8 threads on 8 CPUs: 6.09, against 8.00 for SMP Linux",
        "largest",
        (6.09, 6.09),
        (8.00, 8.00),
    ),
    Finding(
        ("mix",),
        "the multiprogramming mix tops out at about 1.2, against 1.68 for SMP Linux, because of the "
        "strain on the bootstrap processor",
        "top",
        (1.2, 1.2),
        (1.68, 1.68),
    ),
)


def _measure(f: Finding, curve: dict[str, Any], smp: dict[str, Any] | None) -> tuple[float, float, str] | None:
    """Our figure for a finding's measure on one curve: (lo, hi, where)."""
    pts = curve["points"]
    multi = {n: s for n, s in pts.items() if n >= 2}
    if f.measure == "range":
        if not multi:
            return None
        return min(multi.values()), max(multi.values()), f"{min(multi)}-{max(multi)} CPUs"
    if f.measure == "largest":
        n = max(pts)
        return pts[n], pts[n], f"{n} CPUs"
    if f.measure == "top":
        return curve["peak"], curve["peak"], f"top at {curve['peak_cpus']} CPUs, flat from {curve['bend']}"
    if smp is None:  # vs_smp
        return None
    ratio = {n: s / smp["points"][n] for n, s in multi.items() if n in smp["points"]}
    if not ratio:
        return None
    return min(ratio.values()), max(ratio.values()), f"{min(ratio)}-{max(ratio)} CPUs"


def _ahead(a: float, b: float) -> str:
    """Which of two figures is ahead ('apkern', 'smp' or 'tie' within TIE)."""
    if a > b * (1 + TIE):
        return "apkern"
    if b > a * (1 + TIE):
        return "smp"
    return "tie"


def _position(lo: float, hi: float, want: tuple[float, float]) -> str:
    """Where our lo..hi lies against the journal's range, within the TIE yardstick."""
    if hi < want[0] * (1 - TIE):
        return "below"
    if lo > want[1] * (1 + TIE):
        return "above"
    if lo >= want[0] * (1 - TIE) and hi <= want[1] * (1 + TIE):
        return "within"
    return "overlaps"


def compare(f: Finding, curves: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """A finding beside our figures, per workload: every kernel's figure, who is ahead, where ours lie."""
    mid = sum(f.apkern) / 2, sum(f.smp) / 2
    journal_ahead = _ahead(*mid)
    out: dict[str, Any] = {**asdict(f), "journal_ahead": journal_ahead, "citation": CITATION, "ours": []}
    for w in f.workloads:
        by_k = curves.get(w)
        if not by_k:
            continue
        figures = {}
        for k, c in by_k.items():
            if k == BASELINE:
                continue
            m = _measure(f, c, by_k.get("smp"))
            if m is not None and not (f.measure == "vs_smp" and k == "smp"):
                figures[k] = {"lo": m[0], "hi": m[1], "where": m[2]}
        entry: dict[str, Any] = {"workload": w, "figures": figures, "bends": {k: c["bend"] for k, c in by_k.items()}}
        ak = figures.get("apkern")
        if f.measure == "vs_smp":
            if ak:
                entry["ahead"] = _ahead((ak["lo"] + ak["hi"]) / 2, 1.0)
        elif ak and "smp" in figures:
            s = figures["smp"]
            entry["ahead"] = _ahead((ak["lo"] + ak["hi"]) / 2, (s["lo"] + s["hi"]) / 2)
        if ak:
            entry["apkern_position"] = _position(ak["lo"], ak["hi"], f.apkern)
        if "smp" in figures and f.measure != "vs_smp":
            entry["smp_position"] = _position(figures["smp"]["lo"], figures["smp"]["hi"], f.smp)
        out["ours"].append(entry)
    return out


# --- output --------------------------------------------------------------------------------------------

CSV_FIELDS = [
    "workload",
    "kernel",
    "cpus",
    "instructions",
    "seconds",
    "speedup",
    "syscalls",
    "bsp_load",
    "spin_share",
    "exit_status",
    "output_digest",
    "same_output_as_up",
    "check",
]


def _cell(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else "" if v is None else v


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for r in rows:
            vals = {**r, "output_digest": r["digest"][:16], "same_output_as_up": r["same_output"]}
            w.writerow([_cell(vals[c]) for c in CSV_FIELDS])


def _fig(lo: float, hi: float) -> str:
    return f"{lo:.2f}" if abs(hi - lo) < 5e-3 else f"{lo:.2f}-{hi:.2f}"


AHEAD_WORDS = {"apkern": "apkern ahead", "smp": "SMP ahead", "tie": "neither ahead"}


def report_lines(summary: dict[str, Any]) -> list[str]:
    """The report's section: the journal's findings beside ours, our speedups, where curves bend, the checks."""
    cfg = summary["config"]
    rows, curves, checks = summary["rows"], summary["curves"], summary["checks"]
    cpus = sorted({r["cpus"] for r in rows})
    lines = [
        "## Applications: the Linux version's benchmarks on every kernel (`apkern study`)",
        "",
        f"Sizes `{cfg['sizes']['name']}`, seed {cfg['seed']}; kernels {', '.join(cfg['kernels'])}; "
        f"{cpus[0]}-{cpus[-1]} CPUs; {checks['runs']} runs. Each workload's time runs from its start until its last "
        f"process has exited; speedup is the time on `{BASELINE}` (the uniprocessor kernel, 1 CPU) over the time on "
        "the kernel and CPU count of the row. A kernel that cannot run on one CPU (the application kernel needs an "
        "application processor) starts its curve from the uniprocessor point, as in Figures 6-8. Data: "
        "`applications.csv`, `study.json`; figures `study_<workload>.png`.",
        "",
        "### The journal's findings beside ours",
        "",
        f"From {CITATION}. The journal's SMP Linux is Linux 2.6 with its fine-grained locks; ours (`smp`) is the "
        "giant-lock port of our bootstrap kernel, so the comparison is of shape: which kernel is ahead (a difference "
        f"within {100 * TIE:g}% is neither) and where each curve stops rising. Nothing here is fitted to the journal's "
        "numbers; ours come from the workloads' sizes below and the kernels' code paths.",
        "",
        "| the journal says | measure | journal: apkern / SMP Linux | workload | ours, by kernel "
        "| ahead: journal / ours | ours against the journal's figure |",
        "|---|---|---|---|---|---|---|",
    ]
    measure_words = {
        "range": "speedup, 2 CPUs on",
        "largest": "speedup on the most CPUs",
        "top": "highest speedup",
        "vs_smp": "apkern's speedup / SMP's",
    }
    for f in summary["journal"]:
        journal = f"{_fig(*f['apkern'])} / {_fig(*f['smp'])}" if f["measure"] != "vs_smp" else _fig(*f["apkern"])
        for e in f["ours"]:
            figs = "; ".join(f"{k}: {_fig(v['lo'], v['hi'])} ({v['where']})" for k, v in e["figures"].items())
            pos = "; ".join(f"{k}: {e[f'{k}_position']}" for k in ("apkern", "smp") if f"{k}_position" in e)
            ahead = f"{AHEAD_WORDS[f['journal_ahead']]} / {AHEAD_WORDS[e['ahead']]}" if "ahead" in e else "-"
            lines.append(
                f"| {f['says']} | {measure_words[f['measure']]} | {journal} | {e['workload']} | {figs} | "
                f"{ahead} | {pos or '-'} |"
            )
    lines += ["", _shape_sentence(summary), ""]
    lines += [
        "### Speedup over the uniprocessor kernel",
        "",
        "| workload | kernel | " + " | ".join(str(n) for n in cpus) + " | peak (CPUs) | flat from | checks |",
        "|---" * (len(cpus) + 5) + "|",
    ]
    for w, by_k in curves.items():
        for k, c in by_k.items():
            mine = [r for r in rows if (r["workload"], r["kernel"]) == (w, k)]
            cells = [f"{c['points'][n]:.2f}" if n in c["points"] else "" for n in cpus]
            bad = [r for r in mine if r["check"] != "ok"]
            verdict = "ok" if not bad else "**" + "; ".join(f"{r['cpus']}: {r['check']}" for r in bad) + "**"
            lines.append(
                f"| {w} | {k} | " + " | ".join(cells) + f" | {c['peak']:.2f} ({c['peak_cpus']}) | "
                f"{c['bend']} | {verdict} |"
            )
    lines += [
        "",
        f'"Flat from": the CPU count from which the curve rises by no more than {100 * TIE:g}%.',
        "",
        "### Checks",
        "",
        "Every run is checked by the workload itself (its exit status; FFT's output against a plain recursive FFT) "
        f"and by the differential oracle: what it showed (processes, exit statuses, console text, the file system "
        f"afterwards) must be what it showed on `{BASELINE}`. "
        + (
            f"All {checks['runs']} runs pass both."
            if not checks["flagged"]
            else f"{checks['ok']} of {checks['runs']} runs pass both; **flagged**: "
            + "; ".join(checks["flagged"])
            + "."
        ),
        "",
        "### Sizes",
        "",
        "| workload | command line | input made by |",
        "|---|---|---|",
    ]
    for w in cfg["workloads"]:
        made = "; ".join(" ".join(a) for a in w["inputs"]) or "-"
        lines.append(f"| {w['name']} | `{' '.join(w['argv'])}` | {made} |")
    return lines


def _shape_sentence(summary: dict[str, Any]) -> str:
    """Where ours and the journal's agree on who is ahead, counted from the table's rows."""
    pairs = [(f, e) for f in summary["journal"] for e in f["ours"] if "ahead" in e]
    if not pairs:
        return "No finding has both kernels' figures in this run."
    same = [e["workload"] for f, e in pairs if e["ahead"] == f["journal_ahead"]]
    other = [f"{e['workload']} ({AHEAD_WORDS[e['ahead']]})" for f, e in pairs if e["ahead"] != f["journal_ahead"]]
    return (
        f"The same kernel is ahead as in the journal for {len(same)} of {len(pairs)} workloads"
        + (f" ({', '.join(same)})" if same else "")
        + (f"; not for {', '.join(other)}" if other else "")
        + "."
    )


def write_outputs(out: Path, summary: dict[str, Any]) -> None:
    from .plots import plot_study
    from .report import write_section

    out.mkdir(parents=True, exist_ok=True)
    write_csv(summary["rows"], out / "applications.csv")
    plot_study(summary, out)
    with open(out / "study.json", "w") as f:
        json.dump(summary, f, indent=1, default=str)
    write_section(out / "report.md", "applications", report_lines(summary))


def study(
    out: str | os.PathLike[str],
    quick: bool = False,
    jobs: int | None = None,
    seed: int = 0,
    workloads_: Sequence[str] | None = None,
    cpus: Sequence[int] = CPUS,
    kernels: Sequence[str] | None = None,
    sizes: Sizes | None = None,
    progress: Progress | None = None,
    costs: Profile | None = None,
    cache: bool = True,
) -> dict[str, Any]:
    """Run the study and write its files into `out`; returns the summary (`costs`: the cost profile).

    `workloads_`, `cpus`, `kernels` choose a subset (by default every workload, 1-8 CPUs and
    every kernel of `apkern.system.KERNELS`); `sizes` overrides the inputs' sizes (else
    QUICK or DEFAULT). The files depend on these and `seed` only, not on `jobs`.
    `out` is made and checked first (`OutputError` if it cannot be written); on Ctrl-C the runs
    finished so far go to `out/partial.json` and `Interrupted` is raised. With `cache`, each run's
    result goes to `out/cache` as it finishes, and a run found there is not run again (as `reproduce`).
    """
    sizes = sizes or (QUICK if quick else DEFAULT)
    costs = profiles.load(costs)
    every = workloads(sizes)
    names = list(every) if workloads_ is None else list(workloads_)
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ValueError(f"unknown workload {unknown[0]!r} (choose from {', '.join(every)})")
    kernels = list(system_mod.KERNELS if kernels is None else kernels)
    if BASELINE not in kernels:
        kernels.insert(0, BASELINE)
    cpus = sorted(set(cpus) | {1})
    jobs = jobs or os.cpu_count() or 1
    check_output_dir(out)
    t0 = time.perf_counter()
    chosen = [every[n] for n in names]
    try:
        run = {"run": functools.partial(run_one, costs=costs)}
        store = TaskCache(Path(out) / CACHE_DIR, {"costs": costs.to_dict()}, _not_crashed) if cache else None
        tasks = plan(chosen, kernels, cpus, seed)
        results = run_tasks(tasks, run, jobs, progress, store)
    except Interrupted as e:
        save_partial(out, e)
        raise
    summary = analyse(results, names, kernels)
    summary["config"] = {
        "sizes": asdict(sizes),
        "seed": seed,
        "kernels": kernels,
        "cpus": cpus,
        "workloads": [{"name": w.name, "argv": list(w.argv), "inputs": [list(a) for a in w.inputs]} for w in chosen],
        "tie": TIE,
        "ips": IPS,
        "costs": costs.to_dict(),
    }
    write_outputs(Path(out), summary)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)  # not in the files: they depend on the options only
    summary["cache"] = {
        "runs": len(tasks),
        "cached": 0 if store is None else store.hits,
        "not_kept": 0 if store is None else store.not_kept,
        "error": None if store is None else store.error,
    }
    return summary


def registry_workloads() -> list[str]:
    """The registry's workloads that the study must cover (every one but the input makers)."""
    from ..workloads.programs import WORKLOADS

    return [n for n in WORKLOADS if n not in INPUT_MAKERS]
