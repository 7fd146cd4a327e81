"""A sweep's grid file (TOML): what it may say, and the points it expands to (docs/sweep.md).

```toml
[grid]                                # the axes every workload shares (each may be overridden by one)
kernels = ["up", "apkern", "smp"]     # default: every kernel of apkern.system.KERNELS
cpus = [1, 2, 4]                      # default [1, 2, 4]
seeds = [0]                           # default [0]
extensions = [[], ["local_calls"]]    # sets of apkern's section 4.3 extensions; default [[]]
costs = ["xv6", "linux-2.4"]          # cost profiles: names or TOML files (beside the grid file); default ["xv6"]
limit = 500_000_000                   # instructions a point may run; default 500,000,000

[[workload]]                          # a built-in program, its argv with {param} placeholders
name = "radix"
program = "radix"
args = ["{threads}", "4096"]
params = { threads = [1, 4] }         # each list is an axis of the grid
setup = [["mktree", "/t", "200"]]     # optional: programs run to completion first (not measured)
files = { "/in.txt" = "text" }        # optional: files written before the run

[[workload]]                          # the throughput loop of the paper's section 5.2
name = "loop"
throughput = { syscall_instr = [151, 4510], user_pct = 95, procs = 20, warmup = 200_000, window = 1_000_000 }
```

A point is one workload with one value of each parameter, on one kernel with one
CPU count, one set of extensions and one seed. The grid is the product of those axes,
in the file's order (the last axis varies fastest: workload, parameters, cost profile,
kernel, CPUs, extensions, seed), less the combinations that are not machines:

- `up` is the uniprocessor kernel: it runs on one CPU, once per workload point, cost
  profile and seed, whatever `cpus` lists (it is the baseline of the speedups);
- `apkern` needs two CPUs or more: its points with one CPU are left out;
- extensions are the application kernel's: the other kernels run without.

Any other mistake is a `GridError`, one line naming the file and the place.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import profiles
from ..hw import MAX_CPUS
from ..system import EXTENSIONS, KERNELS
from ..workloads.programs import PROGRAMS
from . import throughput

DEFAULT_CPUS = (1, 2, 4)
DEFAULT_LIMIT = 500_000_000  # instructions, as `apkern run`'s default: minutes of a laptop's time at worst
THROUGHPUT_PARAMS = {  # name -> default (None: required)
    "syscall_instr": None,
    "user_pct": None,
    "procs": throughput.DEFAULT_PROCS,
    "warmup": throughput.DEFAULT_WARMUP,
    "window": throughput.DEFAULT_WINDOW,
    "getpids": 0,
}
GRID_KEYS = ("kernels", "cpus", "seeds", "extensions", "costs", "limit", "description")
WORKLOAD_KEYS = ("name", "program", "args", "params", "setup", "files", "throughput", *GRID_KEYS[:-1])
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class GridError(ValueError):
    """A grid file that cannot be used: one line saying where and why."""


@dataclass(frozen=True)
class Point:
    """One point of a sweep: `config` is everything its simulation depends on (and its cache key's content)."""

    index: int
    workload: str
    params: tuple[tuple[str, Any], ...]
    config: dict[str, Any] = field(hash=False, compare=False)


@dataclass
class Grid:
    path: str
    points: list[Point]
    param_names: list[str]  # every parameter of every workload, in order of first appearance
    left_out: int  # combinations that are not machines: apkern on one CPU


def load(path: str | os.PathLike[str], reserved: tuple[str, ...] = ()) -> Grid:
    """Read and expand a grid file; `reserved` are names a parameter may not take (the table's columns)."""
    name = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise GridError(f"cannot read {name}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise GridError(f"{name}: not a UTF-8 text file") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GridError(f"{name}: not valid TOML: {e}") from None
    return expand(doc, name, reserved)


def expand(doc: dict[str, Any], name: str = "grid", reserved: tuple[str, ...] = ()) -> Grid:
    """The points of a parsed grid file (see the module)."""
    _keys(doc, ("grid", "workload"), f"{name}: top level")
    top = doc.get("grid", {})
    if not isinstance(top, dict):
        raise GridError(f"{name}: [grid] must be a table")
    _keys(top, GRID_KEYS, f"{name}: [grid]")
    if "description" in top and not isinstance(top["description"], str):
        raise GridError(f"{name}: [grid] description must be a string")
    here = Path(name).parent  # a profile file is named relative to the grid file
    defaults = _axes(top, f"{name}: [grid]", None, here)
    workloads = doc.get("workload")
    if not isinstance(workloads, list) or not workloads or not all(isinstance(w, dict) for w in workloads):
        raise GridError(f"{name}: no workload: add at least one [[workload]] table (docs/sweep.md)")
    points: list[Point] = []
    params_seen: dict[str, None] = {}
    names: set[str] = set()
    left_out = 0
    for n, w in enumerate(workloads, 1):
        where = f"{name}: workload {n}"
        _keys(w, WORKLOAD_KEYS, where)
        wname, base, params = _workload(w, where)
        if wname in names:
            raise GridError(f"{where}: a second workload named {wname!r} (give each a different name)")
        names.add(wname)
        where = f"{name}: workload {wname!r}"
        for p in params:
            if p in reserved:
                raise GridError(f"{where}: parameter {p!r} has the name of a column of the table: rename it")
            params_seen.setdefault(p, None)
        axes = _axes(w, where, defaults, here)
        for combo in itertools.product(*params.values()):
            values = dict(zip(params, combo, strict=True))
            config = _substitute(base, values, where)
            for profile, kernel in itertools.product(axes["costs"], axes["kernels"]):
                cpus_list = (1,) if kernel == "up" else axes["cpus"]
                for cpus in cpus_list:
                    if kernel == "apkern" and cpus < 2:
                        left_out += len(axes["extensions"]) * len(axes["seeds"])
                        continue
                    for ext in axes["extensions"] if kernel == "apkern" else [()]:
                        for seed in axes["seeds"]:
                            c = dict(config, kernel=kernel, cpus=cpus, extensions=list(ext), seed=seed)
                            c["limit"] = axes["limit"]
                            if profile != profiles.DEFAULT:  # the default's points keep their cache keys
                                c["costs"] = profile.to_dict()
                            points.append(Point(len(points), wname, tuple(values.items()), c))
    if not points:
        raise GridError(f"{name}: the grid has no point (apkern needs at least 2 CPUs)")
    return Grid(name, points, list(params_seen), left_out)


# --- parts ----------------------------------------------------------------------------------------------


def _keys(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for k in table:
        if k not in allowed:
            raise GridError(f"{where}: unknown key {k!r} (allowed: {', '.join(allowed)})")


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise GridError(f"{where} must be a list, not {value!r}")
    if not value:
        raise GridError(f"{where} is an empty list")
    return value


def _no_repeats(values: list[Any], where: str) -> None:
    for i, v in enumerate(values):
        if v in values[:i]:
            raise GridError(f"{where} lists {v!r} twice")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _axes(table: dict[str, Any], where: str, defaults: dict[str, Any] | None, here: Path) -> dict[str, Any]:
    """kernels, cpus, seeds, extensions, costs and limit of a table, or else of `defaults` (else the built-in ones)."""
    out = (
        dict(defaults)
        if defaults
        else {
            "kernels": list(KERNELS),
            "cpus": list(DEFAULT_CPUS),
            "seeds": [0],
            "extensions": [()],
            "costs": [profiles.DEFAULT],
            "limit": DEFAULT_LIMIT,
        }
    )
    if "kernels" in table:
        kernels = _list(table["kernels"], f"{where}: kernels")
        for k in kernels:
            if k not in KERNELS:
                raise GridError(f"{where}: unknown kernel {k!r} (choose from {', '.join(KERNELS)})")
        _no_repeats(kernels, f"{where}: kernels")
        out["kernels"] = kernels
    if "cpus" in table:
        cpus = _list(table["cpus"], f"{where}: cpus")
        for c in cpus:
            if not _int(c) or not 1 <= c <= MAX_CPUS:
                raise GridError(f"{where}: cpus: a machine has 1 to {MAX_CPUS} CPUs, not {c!r}")
        _no_repeats(cpus, f"{where}: cpus")
        out["cpus"] = cpus
    if "seeds" in table:
        seeds = _list(table["seeds"], f"{where}: seeds")
        for s in seeds:
            if not _int(s) or s < 0:
                raise GridError(f"{where}: seeds are whole numbers from 0, not {s!r}")
        _no_repeats(seeds, f"{where}: seeds")
        out["seeds"] = seeds
    if "extensions" in table:
        sets = _list(table["extensions"], f"{where}: extensions")
        norm = []
        for s in sets:
            if not isinstance(s, list) or not all(isinstance(e, str) for e in s):
                raise GridError(
                    f'{where}: extensions is a list of sets, each a list of names: [[], ["local_calls"]], not {s!r}'
                )
            for e in s:
                if e not in EXTENSIONS:
                    raise GridError(f"{where}: unknown extension {e!r} (choose from {', '.join(EXTENSIONS)})")
            norm.append(tuple(e for e in EXTENSIONS if e in s))  # one order, whatever the file's
        _no_repeats(norm, f"{where}: extensions")
        out["extensions"] = norm
    if "costs" in table:
        specs = _list(table["costs"], f"{where}: costs")
        loaded = []
        for spec in specs:
            if not isinstance(spec, str) or not spec:
                raise GridError(f"{where}: costs are profile names or TOML files, not {spec!r}")
            try:
                loaded.append(profiles.load(spec if spec in profiles.BUILTIN else here / spec))
            except profiles.ProfileError as e:
                raise GridError(f"{where}: costs: {e}") from None
        _no_repeats([p.name for p in loaded], f"{where}: costs (by profile name)")
        out["costs"] = loaded
    if "limit" in table:
        limit = table["limit"]
        if not _int(limit) or limit < 1:
            raise GridError(f"{where}: limit is a number of instructions, at least 1, not {limit!r}")
        out["limit"] = limit
    return out


def _scalar(v: Any) -> bool:
    return (
        isinstance(v, str | int | float)
        and not isinstance(v, bool)
        and not (isinstance(v, float) and not math.isfinite(v))
    )


def _workload(w: dict[str, Any], where: str) -> tuple[str, dict[str, Any], dict[str, list[Any]]]:
    """(name, the config without kernel/cpus/extensions/seed, {param: values})."""
    has_program, has_loop = "program" in w, "throughput" in w
    if has_program == has_loop:
        raise GridError(f'{where}: say either program = "NAME" or throughput = {{...}} (docs/sweep.md)')
    if has_loop:
        for k in ("args", "params", "setup", "files"):
            if k in w:
                raise GridError(f"{where}: a throughput workload takes no {k!r}")
        loop = w["throughput"]
        if not isinstance(loop, dict):
            raise GridError(
                f"{where}: throughput must be a table: throughput = {{ syscall_instr = 451, user_pct = 95 }}"
            )
        _keys(loop, tuple(THROUGHPUT_PARAMS), f"{where}: throughput")
        params: dict[str, list[Any]] = {}
        for p, default in THROUGHPUT_PARAMS.items():
            if p not in loop and default is None:
                raise GridError(f"{where}: throughput needs {p} (a value or a list)")
            values = loop.get(p, default)
            values = _list(values, f"{where}: throughput.{p}") if isinstance(values, list) else [values]
            params[p] = [_loop_value(p, v, f"{where}: throughput.{p}") for v in values]
            _no_repeats(params[p], f"{where}: throughput.{p}")
        name = w.get("name", "loop")
        if not isinstance(name, str) or not name:
            raise GridError(f"{where}: name must be a non-empty string")
        return name, {"kind": "throughput"}, params
    program = w["program"]
    if not isinstance(program, str) or program not in PROGRAMS:
        raise GridError(f"{where}: unknown program {program!r} (see `apkern programs`)")
    name = w.get("name", program)
    if not isinstance(name, str) or not name:
        raise GridError(f"{where}: name must be a non-empty string")
    params = {}
    raw = w.get("params", {})
    if not isinstance(raw, dict):
        raise GridError(f"{where}: params must be a table: params = {{ threads = [1, 4] }}")
    for p, values in raw.items():
        if not NAME.match(p):
            raise GridError(f"{where}: parameter name {p!r} is not a plain name (letters, digits, _)")
        values = _list(values, f"{where}: params.{p}") if isinstance(values, list) else [values]
        for v in values:
            if not _scalar(v):
                raise GridError(f"{where}: params.{p}: values are strings or numbers, not {v!r}")
        _no_repeats(values, f"{where}: params.{p}")
        params[p] = values
    args = _argv(w.get("args", []), f"{where}: args")
    setup = w.get("setup", [])
    if not isinstance(setup, list) or not all(isinstance(s, list) and s for s in setup):
        raise GridError(f'{where}: setup is a list of command lines: [["mktree", "/t", "200"]]')
    setup = [_argv(s, f"{where}: setup") for s in setup]
    for s in setup:
        if s[0] not in PROGRAMS:
            raise GridError(f"{where}: setup: unknown program {s[0]!r} (see `apkern programs`)")
    files = w.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise GridError(f'{where}: files is a table of path = "contents"')
    for path in files:
        if not path.startswith("/"):
            raise GridError(f"{where}: files: {path!r} is not an absolute path")
    for text in [*args, *(a for s in setup for a in s)]:
        for ref in PLACEHOLDER.findall(text):
            if ref not in params:
                raise GridError(f"{where}: {{{ref}}} is used but params does not define {ref!r}")
    config = {"kind": "program", "program": program, "args": args, "setup": setup, "files": dict(sorted(files.items()))}
    return name, config, params


def _argv(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(_scalar(a) for a in value):
        raise GridError(f"{where} must be a list of strings or numbers, not {value!r}")
    return [str(a) for a in value]


def _loop_value(p: str, v: Any, where: str) -> int | float:
    if p == "user_pct":
        if not isinstance(v, int | float) or isinstance(v, bool) or not 0 < v < 100:
            raise GridError(f"{where}: the user share is a percentage strictly between 0 and 100, not {v!r}")
        return float(v)
    least = {"syscall_instr": 0, "procs": 1, "warmup": 0, "window": 1, "getpids": 0}[p]
    if not _int(v) or v < least:
        raise GridError(f"{where}: a whole number from {least}, not {v!r}")
    return v


def _substitute(base: dict[str, Any], values: dict[str, Any], where: str) -> dict[str, Any]:
    """The config with the parameters' values: in argv placeholders, or (throughput) as fields."""
    if base["kind"] == "throughput":
        config = dict(base, **values)
        if throughput.user_instructions(config["syscall_instr"], config["user_pct"]) < 1:
            raise GridError(
                f"{where}: syscall_instr {config['syscall_instr']} at user_pct {config['user_pct']:g} leaves the loop"
                " no user instruction"
            )
        return config

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)

    return dict(base, args=[fill(a) for a in base["args"]], setup=[[fill(a) for a in s] for s in base["setup"]])
