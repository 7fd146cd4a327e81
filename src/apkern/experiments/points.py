"""One point of a sweep, measured; and the fingerprint of the code whose numbers a sweep caches.

`run_point(config)` builds a fresh `System` for the point's kernel, CPUs, extensions
and seed and measures its workload (`grid.py` says what a config holds):

- a program: its setup programs run to completion first (not measured), then the
  program runs until every process has exited, or `limit` instructions later;
- the throughput loop (paper section 5.2, as `throughput.measure` runs it): `procs`
  loop processes, a warm-up, then a window of `window` instructions; every
  counter is taken over the window.

What it returns is plain JSON (numbers, strings, None, lists, dicts), so that a
result read back from the cache is the very value the run returned: `row` holds the
table's measured columns (`METRICS`), `extra` the full counters for whoever wants more,
and `code` the fingerprint of the code that measured it. A point the system refuses
(`ConfigError`: no memory for it, ...) or that reaches its limit is a result like any
other (status "error" or "limit"); an exception from the simulator itself is a
failure (status "failed"), which the sweep reports and does not cache.

The fingerprint (`code_fingerprint`) is the SHA-256 of apkern's version, the Python
version (major.minor) and the bytes of every file of the package whose change can
move a point's numbers: every module and data file of the machine, the kernels, the
user land and the workloads (with the straces the gcc workload replays), `system.py`,
and of the experiments the modules that measure a point (this one, `throughput.py`
and `attribution.py`, which it imports). The version alone would not do: it does not
change while the code does, and a stale cache would then give old numbers for new
code. `cli.py` and the rest of `experiments/` (the runner, the table writer, reports,
plots) are left out on purpose: they decide how points are run and shown, not what a
point measures, and the table is rebuilt from the cache on every run, so a change
there shows without simulating again.
"""

from __future__ import annotations

import hashlib
import traceback
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import profiles
from ..system import ConfigError, SimulationLimit, System
from . import throughput
from .tasks import package_fingerprint

MEASURING = ("experiments/points.py", "experiments/throughput.py", "experiments/attribution.py")
SHARES = ("user", "kernel", "spin", "idle")
METRICS = (
    "status",  # ok | limit (stopped at the limit: counters as reached) | error (not buildable) | failed
    "error",
    "exit_status",
    "crash",
    "time",
    "instructions",
    "console_sha256",
    "console_bytes",
    "syscalls",
    "forwarded_calls",
    "forwarded_exceptions",
    "bsp_load",
    "bsp_busy",
    *(f"{s}_share" for s in SHARES),
    "per_cpu",
    "context_switches",
    "page_faults",
    "ipis",
    "loops",
)


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 (hex, 32 digits) of the code a point's numbers depend on (see the module)."""
    return package_fingerprint(lambda rel: rel == "cli.py" or (rel.startswith("experiments/") and rel not in MEASURING))


def run_point(config: dict[str, Any]) -> dict[str, Any]:
    """Measure one point: {"code", "row", "extra"} (see the module); never raises for the point's own sake."""
    out: dict[str, Any] = {"code": code_fingerprint()}
    try:
        if config["kind"] == "throughput":
            row, extra = _loop_point(config)
        else:
            row, extra = _program_point(config)
    except ConfigError as e:
        row, extra = _empty("error", str(e)), {}
    except Exception as e:  # the simulator's own failure: reported, not cached
        tb = traceback.extract_tb(e.__traceback__)
        where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        row, extra = _empty("failed", f"{type(e).__name__}: {e}{where}"), {}
    out["row"] = {m: row.get(m) for m in METRICS}
    out["extra"] = extra
    return out


def _empty(status: str, error: str) -> dict[str, Any]:
    return {"status": status, "error": error.splitlines()[0] if error else error}


def _system(config: dict[str, Any]) -> System:
    return System(
        kernel=config["kernel"],
        cpus=config["cpus"],
        seed=config["seed"],
        extensions=tuple(config["extensions"]),
        costs=profiles.from_dict(config["costs"]) if "costs" in config else None,
    )


def _counters(sim: System) -> dict[str, Any]:
    st = sim.stats
    return {
        "now": sim.now,
        "per_cpu": [{"": c["instructions"], **{k: c[f"{k}_instructions"] for k in SHARES}} for c in st["per_cpu"]],
        "syscalls": st.get("syscalls", 0),
        "loops": st["syscalls_by_name"].get("spin", 0),
        "forwarded_calls": st.get("forwarded_calls"),
        "forwarded_exceptions": st.get("forwarded_page_faults", 0) + st.get("forwarded_exceptions", 0)
        if "forwarded_calls" in st
        else None,
        "passes": st.get("bootstrap_loop_passes"),
        "busy": st.get("bootstrap_loop_busy_passes"),
        "context_switches": st.get("context_switches", 0),
        "page_faults": st.get("page_faults", 0),
        "ipis": st.get("ipis", 0),
    }


def _measured(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The measured columns between two snapshots of the counters."""
    span = b["now"] - a["now"]
    per_cpu = []
    totals = dict.fromkeys(SHARES, 0)
    for ca, cb in zip(a["per_cpu"], b["per_cpu"], strict=True):
        d = {k: cb[k] - ca[k] for k in ca}
        # halted: time passed, no instruction counted (an operation is charged whole, so a CPU's count
        # may run a few instructions past the window's end: no negative halt)
        d["idle"] += max(0, span - d[""])
        for k in SHARES:
            totals[k] += d[k]
        per_cpu.append([round(d[k] / span, 4) if span else 0.0 for k in SHARES])

    def diff(key: str) -> int | None:
        return None if b[key] is None else b[key] - (a[key] or 0)  # a counter may appear with the first process

    passes, busy = diff("passes"), diff("busy")
    row: dict[str, Any] = {
        "time": span,
        "instructions": sum(cb[""] - ca[""] for ca, cb in zip(a["per_cpu"], b["per_cpu"], strict=True)),
        "syscalls": diff("syscalls"),
        "forwarded_calls": diff("forwarded_calls"),
        "forwarded_exceptions": diff("forwarded_exceptions"),
        "bsp_load": busy / passes if passes else None,
        "bsp_busy": 1 - _bsp_idle(a, b, span) if span else None,
        "per_cpu": per_cpu,
        "context_switches": diff("context_switches"),
        "page_faults": diff("page_faults"),
        "ipis": diff("ipis"),
        "loops": diff("loops"),
    }
    for k in SHARES:
        row[f"{k}_share"] = totals[k] / (span * len(per_cpu)) if span else None
    return row


def _bsp_idle(a: dict[str, Any], b: dict[str, Any], span: int) -> float:
    """The bootstrap processor's idle share of the span, unrounded."""
    ca, cb = a["per_cpu"][0], b["per_cpu"][0]
    return (cb["idle"] - ca["idle"] + max(0, span - (cb[""] - ca[""]))) / span


def _console(records: list[tuple[int, int, bytes]]) -> tuple[str, int]:
    """SHA-256 (16 hex digits) of each process's fd 1 and fd 2 output, process by process, and the bytes written.

    By process, not in the order of the writes: how the processes' writes interleave is timing,
    which differs between kernels; what each process wrote is the program's behaviour.
    """
    by_pid: dict[int, dict[int, list[bytes]]] = {}
    for pid, fd, data in records:
        by_pid.setdefault(pid, {1: [], 2: []}).setdefault(fd, []).append(data)
    h = hashlib.sha256()
    for pid in sorted(by_pid):
        for fd in sorted(by_pid[pid]):
            text = b"".join(by_pid[pid][fd])
            h.update(f"{pid}\0{fd}\0{len(text)}\0".encode())
            h.update(text)
    return h.hexdigest()[:16], sum(len(d) for _, _, d in records)


def _program_point(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sim = _system(config)
    for path, text in config["files"].items():
        sim.fs.write_file(path, text.encode())
    limit = config["limit"]
    for argv in config["setup"]:
        p = sim.spawn(argv[0], argv)
        try:
            sim.run(limit=sim.now + limit)
        except SimulationLimit:
            return _empty("error", f"setup {' '.join(argv)!r} still ran after {limit} instructions"), {}
        if p.exit_status != 0:
            return _empty("error", f"setup {' '.join(argv)!r} exited with status {p.exit_status}"), {}
    first = len(sim.kernel.console.records)
    before, stats_before = _counters(sim), sim.stats
    argv = [config["program"], *config["args"]]
    proc = sim.spawn(config["program"], argv)
    status = "ok"
    try:
        sim.run(limit=sim.now + limit)
    except SimulationLimit:
        status = "limit"
    row = _measured(before, _counters(sim))
    digest, size = _console(sim.kernel.console.records[first:])
    crash = proc.crash
    row.update(
        status=status,
        exit_status=proc.exit_status,
        crash=crash["signal"] if crash else None,
        console_sha256=digest,
        console_bytes=size,
    )
    return row, {"stats": sim.stats, "stats_before": stats_before, "crash": crash}


def _loop_point(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    sim = _system(config)
    throughput.spawn_loops(sim, config["syscall_instr"], config["user_pct"], config["procs"], config["getpids"])
    warmup, window = config["warmup"], config["window"]
    sim.run(until=warmup)
    first = len(sim.kernel.console.records)
    before, stats_before = _counters(sim), sim.stats
    sim.run(until=warmup + window)
    row = _measured(before, _counters(sim))
    digest, size = _console(sim.kernel.console.records[first:])
    row.update(status="ok", console_sha256=digest, console_bytes=size)
    return row, {"stats": sim.stats, "stats_before": stats_before}
