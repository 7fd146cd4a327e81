"""`apkern sweep GRID.toml`: a user's grid of points, run anywhere, cached by content, one table.

The grid file says which workloads to run on which kernels, CPU counts, extensions
and seeds (`grid.py`, docs/sweep.md); each point is measured by `points.run_point`
on the sweep's machinery (`runner.run_calls`): in this process, in local worker
processes, or on a Dask cluster.

Every finished point goes at once into a content-addressed cache,
`OUT/cache/KE/KEY.json`, KEY being the SHA-256 of the point's full configuration
(workload, argv or loop parameters, setup, files, kernel, CPUs, extensions, seed,
limit) and of the code fingerprint (`points.code_fingerprint`: apkern's version and
the bytes of the code a point's numbers depend on). A file is written whole or not
at all (written aside, then renamed), so a sweep killed at any moment leaves only
whole results. A sweep run again does only the points the cache lacks.

The table, `OUT/sweep.csv` (and `OUT/sweep.parquet` when pyarrow is installed), has
one row per point in grid order, always rebuilt from the cache's values: while the
sweep runs (every few seconds, the points finished so far), when it is interrupted,
and at the end. Nothing in it depends on when, where or in what order the points ran,
so an interrupted sweep, resumed, gives the same bytes as one run straight through.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import profiles
from . import grid as grid_mod
from . import runner
from .points import METRICS, code_fingerprint, run_point
from .reproduce import CACHE_DIR, check_output_dir
from .tasks import write_atomically

CSV_NAME = "sweep.csv"
PARQUET_NAME = "sweep.parquet"
ID_COLUMNS = ("point", "key", "workload", "kind", "program", "args")
AXIS_COLUMNS = ("kernel", "cpus", "extensions", "seed", "costs")
DERIVED = ("speedup",)
RESERVED = (*ID_COLUMNS, *AXIS_COLUMNS, *METRICS, *DERIVED)
TABLE_EVERY = 5.0  # seconds between two writes of the CSV while the sweep runs


class SweepError(ValueError):
    """A sweep that cannot go on: one line (a worker with other code, ...)."""


class SweepFailed(RuntimeError):
    """The machinery stopped (a worker process killed, a cluster's worker without apkern, ...): one line;
    the points finished before are kept, in the cache and the table."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C: `finished` of `total` points are in the cache and in the table written at `out`."""

    def __init__(self, finished: int, total: int, out: Path) -> None:
        super().__init__(f"{finished} of {total} points finished")
        self.finished = finished
        self.total = total
        self.out = out


@dataclass
class SweepResult:
    out: Path
    points: int
    cached: int
    ran: int
    left_out: int
    files: list[Path]
    seconds: float
    failed: list[dict[str, Any]] = field(default_factory=list)  # rows whose status is "failed"


def point_key(config: dict[str, Any], fingerprint: str) -> str:
    """The cache key: SHA-256 (32 hex digits) of the configuration and the code fingerprint."""
    text = json.dumps({"config": config, "code": fingerprint}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Cache:
    """Results by key, one JSON file each, written aside and renamed into place (whole or absent)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None  # absent (or unreadable: it will be measured and written again)
        return record if isinstance(record, dict) and isinstance(record.get("row"), dict) else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(record, sort_keys=True, default=str).encode())


def default_out(grid_path: str | os.PathLike[str]) -> Path:
    """Where a sweep writes when not told: results/GRID-NAME."""
    return Path("results") / Path(grid_path).stem


def sweep(
    grid_path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run the grid's missing points and write the table; see the module.

    `jobs`: local worker processes (default one per core; ignored with `scheduler`, a Dask
    scheduler's address). `progress(done, total)` counts cached points as done. Raises
    `GridError` for a bad grid file, `OutputError` for an output folder that cannot be
    written (both before any simulation), and `SweepInterrupted` on Ctrl-C, after writing
    the table of the points finished by then.
    """
    t0 = time.perf_counter()
    grid = grid_mod.load(grid_path, reserved=RESERVED)
    out = check_output_dir(default_out(grid_path) if out is None else out)
    cache = Cache(out / CACHE_DIR)
    fingerprint = code_fingerprint()
    keys = [point_key(p.config, fingerprint) for p in grid.points]
    results: dict[int, dict[str, Any]] = {}
    by_key: dict[str, list[int]] = {}
    for p, key in zip(grid.points, keys, strict=True):
        by_key.setdefault(key, []).append(p.index)
    todo: list[str] = []
    for key, indices in by_key.items():
        record = cache.get(key)
        if record is None:
            todo.append(key)
        else:
            for i in indices:
                results[i] = record
    cached = len(results)
    total = len(grid.points)
    if progress:
        progress(cached, total)
    last_write = time.monotonic()

    def on_result(n: int, record: dict[str, Any]) -> None:
        nonlocal last_write
        if record.get("code") != fingerprint:
            raise SweepError(
                f"a worker measured with other apkern code (fingerprint {record.get('code')}, here {fingerprint}):"
                " install the same apkern on every worker"
            )
        key = todo[n]
        record = json.loads(
            json.dumps({"key": key, "config": grid.points[by_key[key][0]].config, **record}, default=str)
        )
        if record["row"]["status"] != "failed":
            cache.put(key, record)
        for i in by_key[key]:
            results[i] = record
        if time.monotonic() - last_write >= TABLE_EVERY:
            write_csv(out, grid, results)
            last_write = time.monotonic()

    calls = [(run_point, (grid.points[by_key[key][0]].config,)) for key in todo]
    try:
        runner.run_calls(
            calls,
            jobs=jobs or os.cpu_count() or 1,
            scheduler=scheduler,
            on_result=on_result,
            progress=lambda _done, _total: progress(len(results), total) if progress else None,
        )
    except KeyboardInterrupt:
        write_tables(out, grid, results)
        raise SweepInterrupted(len(results), total, out) from None
    except (SweepError, runner.SchedulerError):
        write_tables(out, grid, results)
        raise
    except Exception as e:
        write_tables(out, grid, results)
        why = str(e).splitlines()[0] if str(e) else ""
        raise SweepFailed(
            f"the sweep stopped: {type(e).__name__}: {why} ({len(results)} of {total} points finished, kept in {out}/)"
        ) from e
    files = write_tables(out, grid, results)
    failed = [r for r in table_rows(grid, results) if r["status"] == "failed"]
    return SweepResult(
        out=out,
        points=total,
        cached=cached,
        ran=total - cached,
        left_out=grid.left_out,
        files=files,
        seconds=round(time.perf_counter() - t0, 1),
        failed=failed,
    )


# --- the table -------------------------------------------------------------------------------------


def columns(grid: grid_mod.Grid) -> list[str]:
    return [*ID_COLUMNS, *grid.param_names, *AXIS_COLUMNS, *METRICS, *DERIVED]


def table_rows(grid: grid_mod.Grid, results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per point that has a result, in grid order, with the speedup over its `up` point.

    A point's baseline is the `up` point of the same workload, parameters and seed. Speedup:
    for a program, the baseline's time over the point's (both must have finished: status ok);
    for the throughput loop, its loop rate (loops per window instruction) over the baseline's.
    """
    base: dict[tuple[Any, ...], dict[str, Any]] = {}
    for p in grid.points:
        if p.config["kernel"] == "up" and p.index in results:
            base[(p.workload, p.params, p.config["seed"], _profile(p.config))] = results[p.index]["row"]
    rows = []
    for p in grid.points:
        if p.index not in results:
            continue
        record = results[p.index]
        c = p.config
        program = "loop" if c["kind"] == "throughput" else c["program"]
        row: dict[str, Any] = {
            "point": p.index,
            "key": record["key"],
            "workload": p.workload,
            "kind": c["kind"],
            "program": program,
            "args": shlex.join(c.get("args", [])),
        }
        row.update(dict.fromkeys(grid.param_names))
        row.update(p.params)
        row.update(kernel=c["kernel"], cpus=c["cpus"], extensions="+".join(c["extensions"]), seed=c["seed"])
        row["costs"] = _profile(c)
        row.update(record["row"])
        row["speedup"] = _speedup(c["kind"], record["row"], base.get((p.workload, p.params, c["seed"], row["costs"])))
        rows.append(row)
    return rows


def _profile(config: dict[str, Any]) -> str:
    """The name of a point's cost profile."""
    return config["costs"]["name"] if "costs" in config else profiles.DEFAULT.name


def _speedup(kind: str, r: dict[str, Any], up: dict[str, Any] | None) -> float | None:
    if up is None or r["status"] != "ok" or up["status"] != "ok":
        return None
    if kind == "throughput":
        if not up["loops"] or not r["time"]:
            return None
        return (r["loops"] / r["time"]) / (up["loops"] / up["time"])
    return up["time"] / r["time"] if r["time"] else None


def _cell(v: Any) -> Any:
    if isinstance(v, list | dict):
        return json.dumps(v, separators=(",", ":"))
    return v


def write_csv(out: Path, grid: grid_mod.Grid, results: dict[int, dict[str, Any]]) -> Path:
    cols = columns(grid)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in table_rows(grid, results):
        w.writerow(["" if row[c] is None else _cell(row[c]) for c in cols])
    path = out / CSV_NAME
    write_atomically(path, buf.getvalue().encode())
    return path


def write_parquet(out: Path, grid: grid_mod.Grid, results: dict[int, dict[str, Any]]) -> Path | None:
    """The table as Parquet, when pyarrow is installed (None when not): a column of whole numbers is
    int64, of numbers float64, anything else a string (lists as their JSON, as in the CSV)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    cols = columns(grid)
    rows = table_rows(grid, results)
    arrays = {}
    for c in cols:
        values = [_cell(r[c]) for r in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            arrays[c] = pa.array(values, type=pa.int64())
        elif present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            arrays[c] = pa.array([None if v is None else float(v) for v in values], type=pa.float64())
        else:
            arrays[c] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    path = out / PARQUET_NAME
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(pa.table(arrays), tmp)
    os.replace(tmp, path)
    return path


def write_tables(out: Path, grid: grid_mod.Grid, results: dict[int, dict[str, Any]]) -> list[Path]:
    files = [write_csv(out, grid, results)]
    parquet = write_parquet(out, grid, results)
    if parquet is not None:
        files.append(parquet)
    return files
