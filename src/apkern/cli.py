"""The `apkern` command.

A user's mistake (unknown program, impossible machine, bad number) is one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

from .profiles import Profile
from .system import KERNELS, MAX_QUANTUM, ConfigError, SimulationLimit, System, crash_line

EXIT_USAGE = 2
EXIT_UNFINISHED = 3  # the run hit --limit or --timeout: what was reached is printed
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
DEFAULT_LIMIT = 500_000_000  # instructions: at worst about ten minutes of a laptop's time (about 1 us each)
SEED_HELP = (
    "seeds System.random, which only the benchmarks' start phases use; "
    "the machine has no randomness of its own, so a run's output does not depend on it"
)


def fail(message: str) -> NoReturn:
    click.echo(f"apkern: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


kernel_option = click.option(
    "--kernel",
    type=click.Choice(KERNELS),
    default="up",
    show_default=True,
    help="uniprocessor kernel alone, with the application kernel, or its giant-lock SMP or master-slave port",
)


def cpus_option(default: int | None = None) -> Any:
    return click.option(
        "--cpus",
        type=int,
        default=default,
        help="processors (apkern: at least 2; default 1 for up, 4 for the others)",
    )


ext_option = click.option(
    "--ext",
    "ext",
    default="",
    metavar="NAME,...",
    help="section 4.3 extensions of the application kernel (local_calls, migration, balance)",
)


def _load_costs(ctx: click.Context, param: click.Parameter, value: str | None) -> Profile:
    from .profiles import ProfileError, load

    try:
        return load(value)
    except ProfileError as e:
        fail(f"--costs: {e}")


costs_option = click.option(
    "--costs",
    default=None,
    metavar="PROFILE",
    callback=_load_costs,
    help="the kernels' path costs: xv6 (the default), linux-2.4 or a TOML file (see `apkern costs`)",
)

quantum_option = click.option(
    "--quantum",
    type=click.IntRange(0, MAX_QUANTUM),
    default=0,
    show_default=True,
    help="temporal decoupling: a CPU may run this many instructions ahead of the others (faster; 0 is exact)",
)


def _ext(ext: str) -> tuple[str, ...]:
    return tuple(e.strip() for e in ext.split(",") if e.strip())


def _cpus(kernel: str, cpus: int | None) -> int:
    if cpus is None:
        return 1 if kernel == "up" else 4
    return cpus


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="apkern")
def cli() -> None:
    """apkern: the application kernel approach on a simulated SMP machine."""


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("program")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@kernel_option
@cpus_option()
@ext_option
@click.option(
    "--placement",
    type=click.Choice(["ap", "bsp", "auto"]),
    default=None,
    help="apkern: run on the APs (default), on the bootstrap kernel alone, or move at run time (--ext migration)",
)
@click.option("--seed", type=int, default=0, show_default=True, help=SEED_HELP)
@click.option(
    "--trace", "trace_file", type=click.Path(dir_okay=False, writable=True), help="write a Chrome trace-event JSON"
)
@click.option("--json", "as_json", is_flag=True, help="print exit status, console output and counters as JSON")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    help=f"stop after this many instructions of machine time (exit status {EXIT_UNFINISHED})",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"stop after this many seconds of wall time (exit status {EXIT_UNFINISHED})",
)
@click.option("--memory", default=None, metavar="SIZE", help="the machine's memory: bytes, or with K, M or G: 64M")
@click.option(
    "--file",
    "files",
    multiple=True,
    metavar="PATH=HOSTFILE",
    help="copy a host file into the simulated file system first",
)
@costs_option
@quantum_option
def run(
    program: str,
    args: tuple[str, ...],
    kernel: str,
    cpus: int | None,
    ext: str,
    placement: str | None,
    seed: int,
    trace_file: str | None,
    as_json: bool,
    limit: int,
    timeout: float | None,
    memory: str | None,
    files: tuple[str, ...],
    costs: Profile,
    quantum: int,
) -> None:
    """Run PROGRAM with ARGS; print its output (fd 1 to stdout, fd 2 to stderr), exit with its status.

    PROGRAM is a built-in's name (`apkern programs`), a Python file FILE.py[:FUNCTION]
    whose generator function main(argv) (or FUNCTION) is the program, or a TOML
    workload WORKLOAD.toml (see docs/workloads.md).

    A process killed by a signal gets one line on stderr, as a shell says it ("Segmentation
    fault"), with the Python exception and its file:line when its code raised.
    """
    from .workloads.source import resolve

    prog = resolve(program, args)
    if trace_file:
        try:
            with open(trace_file, "w"):
                pass
        except OSError as e:
            fail(f"cannot write {trace_file}: {e.strerror}")
    system: dict[str, Any] = {} if memory is None else {"memory": _size(memory, "--memory")}
    sim = System(
        kernel=kernel,
        cpus=_cpus(kernel, cpus),
        seed=seed,
        trace=trace_file is not None,
        extensions=_ext(ext),
        costs=costs,
        quantum=quantum,
        **system,
    )
    for path, data in prog.files.items():  # a TOML workload's [files]; --file may replace them
        sim.fs.write_file(path, data)
    for spec in files:
        path, sep, host = spec.partition("=")
        if not sep or not path.startswith("/"):
            fail(f"--file wants /PATH=HOSTFILE, not {spec!r}")
        try:
            with open(host, "rb") as f:
                sim.fs.write_file(path, f.read())
        except OSError as e:
            fail(f"cannot read {host}: {e.strerror}")
    proc = sim.spawn(prog.main, prog.argv, placement=placement)
    unfinished = None
    try:
        sim.run(limit=limit, timeout=timeout)
    except SimulationLimit as e:
        unfinished = str(e)
    if trace_file:
        from .experiments.chrome_trace import write_trace

        write_trace(sim, trace_file)
    status = proc.exit_status
    crashes = _crashes(sim, proc)
    if as_json:
        out = {"program": program, "exit_status": status, "console": sim.console(), "stats": sim.stats}
        out["crash"] = proc.crash
        out["crashes"] = crashes
        if unfinished:
            out["unfinished"] = unfinished
        click.echo(json.dumps(out, default=str))
    else:
        click.echo(sim.kernel.console.text(fd=1), nl=False)
        click.echo(sim.kernel.console.text(fd=2), nl=False, err=True)
        for c in crashes:
            who = f"{c['name']} (pid {c['pid']})"
            click.echo(f"apkern: {crash_line(who, c)}", err=True)
    if unfinished:
        if not as_json:
            click.echo(f"apkern: stopped: {unfinished}", err=True)
        sys.exit(EXIT_UNFINISHED)
    sys.exit(status if status >= 0 else 128 - status)


def _crashes(sim: System, top: Any) -> list[dict[str, Any]]:
    """The processes whose death deserves a line: the one started, if a signal killed it, and any
    other whose code crashed the CPU (raised, or yielded garbage) or that its kernel ended."""
    out = []
    for pid, p in sorted(sim.kernel.procs.items()):
        c = sim.crash_report(p)
        if c is not None and (pid == top.pid or "why" in c or "death" in c):
            out.append({"pid": pid, "name": p.name, **c})
    return out


def _size(text: str, what: str) -> int:
    """Bytes from '67108864', '64M', '64MiB', '1G' (one line and status 2 if not)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    try:
        n = int(t[:-1] if scale > 1 else t)
    except ValueError:
        fail(f"{what} takes a size such as 64M or 67108864, not {text!r}")
    return n * scale


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("program")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--cpus",
    "cpus_arg",
    default="1,2,4,8",
    show_default=True,
    metavar="N,...",
    help="CPU counts for each kernel (up runs on 1: the baseline)",
)
@ext_option
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    help=f"stop after this many instructions of machine time in one run (exit status {EXIT_UNFINISHED})",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"stop after this many seconds of wall time in one run (exit status {EXIT_UNFINISHED})",
)
@click.option("--memory", default=None, metavar="SIZE", help="each machine's memory: bytes, or with K, M or G: 64M")
@click.option(
    "--file",
    "files",
    multiple=True,
    metavar="PATH=HOSTFILE",
    help="copy a host file into the simulated file system of every run",
)
@click.option("--json", "as_json", is_flag=True, help="print every run's figures and the verdict as JSON")
@costs_option
def compare(
    program: str,
    args: tuple[str, ...],
    cpus_arg: str,
    ext: str,
    limit: int,
    timeout: float | None,
    memory: str | None,
    files: tuple[str, ...],
    as_json: bool,
    costs: Profile,
) -> None:
    """Run PROGRAM (a built-in, FILE.py[:FUNCTION] or WORKLOAD.toml) on every kernel and CPU count.

    Prints time and speedup against up, forwarded calls and exceptions, the bootstrap
    processor's load and per-CPU user/kernel/spin/idle shares, and checks that output,
    exit statuses and files are the same on every kernel: exit status 1 when they differ.
    A run that reaches --limit or --timeout ends it: what finished is printed (exit status 3).
    """
    from .experiments.compare import compare as run_compare
    from .experiments.compare import format_comparison
    from .hw import MAX_CPUS
    from .workloads.source import resolve

    try:
        cpus = [int(c) for c in cpus_arg.split(",") if c.strip()]
    except ValueError:
        fail(f"--cpus takes numbers separated by commas, not {cpus_arg!r}")
    if not cpus or not all(1 <= c <= MAX_CPUS for c in cpus):
        fail(f"--cpus: each machine has 1 to {MAX_CPUS} CPUs, not {cpus_arg!r}")
    extra: dict[str, bytes] = {}
    for spec in files:
        path, sep, host = spec.partition("=")
        if not sep or not path.startswith("/") or path == "/" or path.startswith("/dev"):
            fail(f"--file wants /PATH=HOSTFILE (not / or under /dev), not {spec!r}")
        try:
            with open(host, "rb") as f:
                extra[path] = f.read()
        except OSError as e:
            fail(f"cannot read {host}: {e.strerror}")
    system: dict[str, Any] = (
        {"costs": costs} if memory is None else {"memory": _size(memory, "--memory"), "costs": costs}
    )
    prog = resolve(program, args)
    result = run_compare(prog, cpus, extensions=_ext(ext), files=extra, limit=limit, timeout=timeout, **system)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "costs": costs.to_dict()}))
    elif result.runs:
        click.echo(format_comparison(result))
    if result.unfinished:
        if not as_json:
            click.echo(f"apkern: stopped: {result.unfinished}", err=True)
        sys.exit(EXIT_UNFINISHED)
    sys.exit(0 if result.same else 1)


@cli.command("costs")
@click.argument("profile", default="xv6")
@click.option("--all", "show_all", is_flag=True, help="every cost, not only those the profile changes")
@click.option("--json", "as_json", is_flag=True)
def costs_cmd(profile: str, show_all: bool, as_json: bool) -> None:
    """Show a cost profile (xv6, linux-2.4 or a TOML file): each path cost, its value and where it comes from."""
    from .profiles import DEFAULT, ProfileError, load

    try:
        p = load(profile)
    except ProfileError as e:
        fail(str(e))
    shown = [(k, v, origin) for k, v, origin in p.items()]
    rows = [r for r in shown if show_all or p is DEFAULT or r[1] != DEFAULT.value(r[0]) or r[0] in p.sources]
    if as_json:
        click.echo(
            json.dumps(
                {
                    **p.to_dict(),
                    "calibration": dict(p.calibration),
                    "costs": [{"cost": k, "value": v, "default": DEFAULT.value(k), "source": s} for k, v, s in rows],
                }
            )
        )
        return
    click.echo(p.name + (f": {p.description}" if p.description else "") + (f" ({p.file})" if p.file else ""))
    if p.calibration:
        click.echo("calibrated: " + ", ".join(f"{k} = {v} instructions" for k, v in p.calibration.items()))
    for k, v, origin in rows:
        was = "" if v == DEFAULT.value(k) else f" (default {DEFAULT.value(k)})"
        click.echo(f"  {k:<34}{v:>6}{was}  {origin}")


@cli.command()
def programs() -> None:
    """List the built-in programs."""
    from .workloads.programs import PROGRAMS, USAGE, describe

    width = max(len(USAGE[n]) for n in PROGRAMS)
    for name in PROGRAMS:
        click.echo(f"{USAGE[name]:<{width}}  {describe(name)}")


@cli.group()
def bench() -> None:
    """Micro-benchmarks of the paper's section 5."""


@bench.command()
@kernel_option
@cpus_option()
@ext_option
@click.option("--iterations", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help=SEED_HELP)
@click.option("--json", "as_json", is_flag=True)
@costs_option
def latency(kernel: str, cpus: int | None, ext: str, iterations: int, seed: int, as_json: bool, costs: Profile) -> None:
    """gettid latency with inspection points, and its breakdown by stage."""
    from .experiments.latency import measure

    if iterations < 1:
        fail("--iterations must be at least 1")
    r = measure(
        kernel=kernel, cpus=_cpus(kernel, cpus), iterations=iterations, seed=seed, extensions=_ext(ext), costs=costs
    )
    if as_json:
        click.echo(json.dumps({**r.to_dict(), "costs": costs.to_dict()}))
        return
    click.echo(
        f"gettid latency, kernel {r.kernel}, {r.cpus} CPU(s), {r.iterations} calls: "
        f"mean {r.mean_instructions:.1f} instructions (min {r.min_instructions}, max {r.max_instructions})"
    )
    for stage, v in r.breakdown.items():
        click.echo(f"  {stage:<32} {v:10.1f}")


@bench.command("extensions")
@click.option(
    "--cpus", type=click.IntRange(2, 64), default=4, show_default=True, help="processors for latency and swap"
)
@click.option("--json", "as_json", is_flag=True)
@costs_option
def extensions_cmd(cpus: int, as_json: bool, costs: Profile) -> None:
    """Section 4.3's extensions built so far, each off and on: latency, throughput, the shoot-down's cost."""
    from .experiments.extensions import format_table, measure

    rep = measure(cpus=cpus, costs=costs)
    if as_json:
        click.echo(json.dumps({**rep.to_dict(), "costs": costs.to_dict()}))
        return
    click.echo(format_table(rep))


@bench.command("balance")
@click.option("--cpus", "cpus_arg", default="8,16,32", show_default=True, metavar="N,...", help="machine sizes")
@click.option("--quick", is_flag=True, help="reproduce's quick windows (a few minutes become one)")
@click.option("--seed", type=int, default=0, show_default=True, help="seeds the loops' random start phases")
@click.option("--json", "as_json", is_flag=True)
@costs_option
def balance_cmd(cpus_arg: str, quick: bool, seed: int, as_json: bool, costs: Profile) -> None:
    """One ready queue (the paper's) against a queue per AP: lock spinning and throughput (section 4.3)."""
    from .experiments.balance import compare, format_table
    from .experiments.reproduce import DEFAULT, QUICK

    try:
        cpus = tuple(int(c) for c in cpus_arg.split(",") if c.strip())
    except ValueError:
        fail(f"--cpus takes numbers separated by commas, not {cpus_arg!r}")
    if not cpus or not all(2 <= c <= 64 for c in cpus):
        fail("--cpus: each machine needs 2 to 64 CPUs")
    points = compare(cpus, precision=QUICK if quick else DEFAULT, seed=seed, costs=costs)
    if as_json:
        click.echo(json.dumps([{**pt.to_dict(), "costs": costs.to_dict()} for pt in points]))
        return
    click.echo(format_table(points))


@bench.command("sensitivity")
@click.option("--quick", is_flag=True, help="shorter runs (about a minute on two cores)")
@click.option("--jobs", type=int, default=None, help="worker processes (default: one per core)")
@click.option("--top", type=click.IntRange(min=1), default=None, help="print only the first N costs")
@click.option("--json", "as_json", is_flag=True)
@costs_option
def sensitivity_cmd(quick: bool, jobs: int | None, top: int | None, as_json: bool, costs: Profile) -> None:
    """Each path cost scaled by 0.5 and by 2, one at a time: the change in the overhead per forwarded
    call, the forwarded gettid and the saturated speedup (K=151, P=95%, 8 CPUs), ranked by effect."""
    from .experiments import sensitivity as sens

    if jobs is not None and jobs < 1:
        fail("--jobs must be at least 1")
    rep = sens.sensitivity(costs, precision=sens.QUICK if quick else sens.DEFAULT, jobs=jobs or os.cpu_count() or 1)
    if as_json:
        click.echo(json.dumps({**rep.to_dict(), "costs": costs.to_dict()}))
        return
    click.echo(sens.format_table(rep, top))


@bench.command("throughput")
@click.option(
    "--syscall-instr", "k", type=int, required=True, help="K: instructions each spin call spends in the kernel"
)
@click.option("--user-pct", "p", type=float, required=True, help="P: user share of a loop, percent")
@click.option("--cpus", type=int, default=4, show_default=True, help="1: the bootstrap kernel alone")
@click.option("--procs", type=int, default=20, show_default=True)
@click.option("--warmup", type=int, default=None, help="instructions before the window (default: by K and P)")
@click.option("--window", type=int, default=None, help="measurement window in instructions (default: by K and P)")
@click.option("--seed", type=int, default=0, show_default=True, help="seeds the loops' random start phases")
@ext_option
@click.option("--getpids", type=click.IntRange(min=0), default=0, show_default=True, help="getpid calls per loop")
@click.option(
    "--kernel",
    type=click.Choice(("apkern", "smp", "master-slave")),
    default="apkern",
    show_default=True,
    help="the kernel of 2 or more CPUs (1 CPU is the uniprocessor kernel)",
)
@click.option("--json", "as_json", is_flag=True)
@costs_option
@quantum_option
def throughput_cmd(
    k: int,
    p: float,
    cpus: int,
    procs: int,
    warmup: int | None,
    window: int | None,
    seed: int,
    ext: str,
    getpids: int,
    kernel: str,
    as_json: bool,
    costs: Profile,
    quantum: int,
) -> None:
    """Loops done by PROCS copies of `loop` in a window, against the one-CPU figure (Figures 6-8)."""
    from .experiments.reproduce import DEFAULT
    from .experiments.throughput import measure, user_instructions, with_speedup

    if not 0 < p < 100:
        fail("--user-pct must be strictly between 0 and 100")
    if k < 0 or procs < 1 or not 1 <= cpus <= 64:
        fail("need --syscall-instr >= 0, --procs >= 1 and 1 <= --cpus <= 64")
    if (warmup is not None and warmup < 0) or (window is not None and window < 1):
        fail("--warmup must be >= 0 and --window >= 1")
    if user_instructions(k, p) < 1:
        fail(f"P={p:g}% of a loop with K={k} rounds to no user instruction: raise --user-pct or --syscall-instr")

    def sized(n: int) -> tuple[int, int]:
        return (
            DEFAULT.warmup(k, p, n) if warmup is None else warmup,
            DEFAULT.window(k, p, n) if window is None else window,
        )

    extensions = _ext(ext)
    if extensions and (cpus == 1 or kernel != "apkern"):
        fail("--ext needs the application kernel: --kernel apkern and --cpus 2 or more")
    w1, win1 = sized(1)
    base = measure(k, p, 1, procs=procs, warmup=w1, window=win1, seed=seed, getpids=getpids, costs=costs)
    if base.loops == 0:
        fail(f"the one-CPU window of {win1} instructions holds no whole loop: make --window longer")
    wn, win = sized(cpus)
    point = (
        base
        if cpus == 1
        else measure(
            k,
            p,
            cpus,
            procs=procs,
            warmup=wn,
            window=win,
            seed=seed,
            extensions=extensions,
            getpids=getpids,
            kernel=kernel,
            costs=costs,
            quantum=quantum,
        )
    )
    with_speedup(point, base)
    d = point.to_dict()
    workers = cpus if kernel in ("smp", "master-slave") else cpus - 1  # the CPUs that run user code
    d["costs"] = costs.to_dict()
    d["quantum"] = quantum if cpus > 1 else 0  # the one-CPU baseline runs exact
    d["ideal_bound"] = workers * (win1 / base.loops) / user_instructions(k, p) if cpus > 1 else 1.0
    if as_json:
        click.echo(json.dumps(d))
        return
    if kernel == "smp" and cpus > 1:
        tail = (
            f"lock spin {point.lock_spin_share:.1%} of all CPU time, "
            f"{point.kernel_instructions_per_call or 0:.0f} kernel instructions per call"
        )
    elif kernel == "master-slave" and cpus > 1:
        port = (point.master_parts or {}).get("port", 0) / max(point.loops, 1)
        tail = (
            f"master load {point.master_load:.3f}, {point.kernel_instructions_per_call or 0:.0f} master kernel "
            f"instructions per call ({port:.0f} of them the port's)"
        )
    else:
        load = "-" if point.bsp_load is None else f"{point.bsp_load:.3f}"
        tail = f"bootstrap load {load}, {point.bsp_instructions_per_call or 0:.0f} BSP instructions per call"
    click.echo(
        f"K={k} P={p:g}% U={point.user_instr} on {cpus} CPU(s), {procs} processes, window {win}: "
        f"{point.loops} loops, speedup {point.speedup:.3f}, {tail}"
        + (f" (decoupled, quantum {quantum})" if d["quantum"] else "")
    )


@cli.command()
@click.option("--ipsc", type=float, required=True, help="instructions per system call")
@click.option("--interval", type=float, required=True, help="instructions between system calls on one CPU")
@click.option("--opsc", type=float, default=None, help="overhead per forwarded call (or --from DIR)")
@click.option("--ips", type=float, default=100e6, show_default=True, help="instructions per second")
@click.option(
    "--from",
    "results",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="without --opsc: the overhead a reproduction derived, from DIR/summary.json",
)
@click.option("--json", "as_json", is_flag=True)
def model(ipsc: float, interval: float, opsc: float | None, ips: float, results: str | None, as_json: bool) -> None:
    """The capacity model C = scps*(ipsc+opsc): the most calls per second and the best speedup."""
    import math

    from .experiments.model import capacity

    for name, value in (("--ipsc", ipsc), ("--interval", interval), ("--ips", ips), ("--opsc", opsc)):
        if value is not None and not math.isfinite(value):
            fail(f"{name} must be a finite number, not {value:g}")
    if opsc is not None and results is not None:
        fail("give --opsc or --from, not both")
    source = "given"
    if opsc is None:
        if results is None:
            fail("pass --opsc N, or --from DIR: a folder `apkern reproduce --out DIR` wrote")
        path = os.path.join(results, "summary.json")
        try:
            with open(path) as f:
                opsc = json.load(f)["derived_overhead"]
        except (OSError, ValueError, KeyError):
            fail(f"no measured overhead in {path}: pass --opsc N, or run `apkern reproduce` first")
        if opsc is None:
            fail(f"{path} has no derived overhead (no saturated point): pass --opsc N")
        source = f"derived by the reproduction in {results}"
    c = capacity(ipsc, interval, opsc, ips)
    if as_json:
        click.echo(json.dumps({**c.to_dict(), "opsc_source": source}))
        return
    click.echo(
        f"at most {c.max_calls_per_second:,.0f} calls/s (ipsc {ipsc:g} + opsc {opsc:g}, {source}); "
        f"the uniprocessor makes {c.uniprocessor_calls_per_second:,.0f}; maximum speedup {c.max_speedup:.2f}"
    )


@cli.command()
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--quick", is_flag=True, help="shorter windows: a few minutes on two cores")
@click.option("--jobs", type=int, default=None, help="worker processes (default: one per core)")
@click.option("--seed", type=int, default=0, show_default=True, help="seeds the loops' random start phases")
@click.option("--wide", is_flag=True, help="also the saturated curves at 16, 32 and 64 CPUs")
@click.option("--no-cache", is_flag=True, help="run every task, even those whose results OUT/cache holds for this code")
@costs_option
@quantum_option
def reproduce(
    out: str, quick: bool, jobs: int | None, seed: int, wide: bool, no_cache: bool, costs: Profile, quantum: int
) -> None:
    """Run the paper's section 5 and write CSVs, Figures 6-8, summary.json, report.md and report.html."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from .experiments.reproduce import check_output_dir
    from .experiments.reproduce import reproduce as run_all

    if jobs is not None and jobs < 1:
        fail("--jobs must be at least 1")
    check_output_dir(out)  # before minutes of simulation
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("simulating", total=None)
        summary = run_all(
            out,
            quick=quick,
            jobs=jobs,
            seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            costs=costs,
            wide=wide,
            cache=not no_cache,
            quantum=quantum,
        )
    d, a = summary["derived_overhead"], summary["attributed_overhead"]
    click.echo(
        f"wrote {out}/: latency.csv, throughput.csv ({len(summary['throughput'])} rows), smp_throughput.csv, "
        f"ms_throughput.csv, {'wide_throughput.csv, ' if wide else ''}fig6-8.png, fig_extensions.png, "
        f"fig_sensitivity.png, summary.json, report.md, report.html, trace_gettid_*.json in {summary['wall_seconds']} s"
    )
    _cache_lines(summary["tasks"]["cached"], summary["tasks"]["not_kept"], summary["tasks"]["total"], "tasks", out,
                 summary["tasks"]["cache_error"])  # fmt: skip
    if d is not None:
        click.echo(f"overhead per forwarded call: derived {d:.0f}, attributed by path {a:.0f} instructions")
    check = (summary.get("engine") or {}).get("check")
    if check:
        loops = max(c["largest"].get("loops", {}).get("difference", 0.0) for c in check["kinds"].values())
        click.echo(
            f"temporal decoupling, quantum {check['quantum']:,}: on the {check['points']} points also run exact "
            f"the loops moved by at most {loops:.2%} (report.md gives each kernel)"
        )
    sens = summary.get("sensitivity")
    if sens and sens["effects"]:
        top = sens["effects"][0]
        click.echo(f"the cost it depends on most: {top['key']} ({top['value']} instructions; fig_sensitivity.png)")


@cli.command()
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--quick", is_flag=True, help="smaller inputs: within five minutes on two cores")
@click.option("--jobs", type=int, default=None, help="worker processes (default: one per core)")
@click.option("--no-cache", is_flag=True, help="run every run, even those whose results OUT/cache holds for this code")
@costs_option
def study(out: str, quick: bool, jobs: int | None, no_cache: bool, costs: Profile) -> None:
    """Run every workload on every kernel on 1-8 CPUs: applications.csv, study_*.png, report.md's applications."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from .experiments.reproduce import check_output_dir
    from .experiments.study import study as run_study

    if jobs is not None and jobs < 1:
        fail("--jobs must be at least 1")
    check_output_dir(out)  # before minutes of simulation
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ) as bar:
        task = bar.add_task("simulating", total=None)
        summary = run_study(
            out,
            quick=quick,
            jobs=jobs,
            progress=lambda done, n: bar.update(task, completed=done, total=n),
            costs=costs,
            cache=not no_cache,
        )
    cpus = summary["config"]["cpus"]
    click.echo(f"{'speedup over up':<22}" + "".join(f"{n:>7}" for n in cpus))
    for w, curves in summary["curves"].items():
        for k, c in curves.items():
            cells = "".join(f"{c['points'][n]:7.2f}" if n in c["points"] else " " * 7 for n in cpus)
            click.echo(f"{w:<10}{k:<12}{cells}")
    c = summary["checks"]
    click.echo(
        f"wrote {out}/: applications.csv ({c['runs']} runs), study_*.png ({len(summary['curves'])}), study.json, "
        f"report.md (section applications) in {summary['wall_seconds']} s"
    )
    n = summary["cache"]
    _cache_lines(n["cached"], n["not_kept"], n["runs"], "runs", out, n["error"])
    click.echo(f"checks: {c['ok']} of {c['runs']} runs pass" + "".join(f"\nflagged: {f}" for f in c["flagged"]))
    if c["flagged"]:
        sys.exit(1)


@cli.command("replay")
@click.argument("trace")
@kernel_option
@cpus_option()
@click.option("--ips", type=float, default=None, help="instructions per second of the trace [default: 1e8, nominal]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="instructions of machine time [default: twice what the trace charges, and some]",
)
@click.option("--json", "as_json", is_flag=True, help="the mapping and the run's figures as JSON")
@costs_option
def replay_cmd(
    trace: str,
    kernel: str,
    cpus: int | None,
    ips: float | None,
    seed: int,
    limit: int | None,
    as_json: bool,
    costs: Profile,
) -> None:
    """Replay TRACE (`strace -f -ttt -T -o TRACE PROGRAM`, or a shipped trace: find, grep, gzip, findgrep, python)."""
    from .experiments import replay as rx

    label, plan = rx.load(trace, rx.rp.DEFAULT_IPS if ips is None else ips)
    r = rx.run(plan, kernel, _cpus(kernel, cpus), seed=seed, limit=limit, costs=costs)
    if as_json:
        mapping = [{"call": c, "as": op, "charge": ch, "count": n} for (c, op, ch), n in sorted(plan.mapping.items())]
        click.echo(
            json.dumps(
                {
                    "trace": label,
                    "mapping": mapping,
                    "setup": plan.setup,
                    "notes": plan.notes,
                    "run": r.to_dict(),
                    "costs": costs.to_dict(),
                }
            )
        )
        return
    click.echo(rx.report(label, plan))
    click.echo("")
    click.echo(rx.format_run(plan, r))


@cli.command("predict")
@click.argument("trace")
@click.option("--ips", type=float, default=None, help="instructions per second of the trace [default: 1e8, nominal]")
@click.option("--opsc", type=float, default=None, help="apkern's overhead per forwarded call [default: derived]")
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="where to write the figure [default: TRACE's name with .predict.png, here]",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@costs_option
def predict_cmd(
    trace: str, ips: float | None, opsc: float | None, plot_file: str | None, seed: int, as_json: bool, costs: Profile
) -> None:
    """Replayed speedups of TRACE on 1-8 CPUs under every kernel, beside the capacity model's."""
    from .experiments import replay as rx

    if opsc is not None and not 0 <= opsc < float("inf"):
        fail("--opsc must be a number of instructions, at least 0")
    label, plan = rx.load(trace, rx.rp.DEFAULT_IPS if ips is None else ips)
    out = plot_file or f"{label.removesuffix('.trace')}.predict.png"
    folder = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        fail(f"cannot write the plot to {out}")
    pred = rx.predict(label, plan, opsc=opsc, seed=seed, costs=costs)
    rx.plot_prediction(pred, out)
    if as_json:
        click.echo(json.dumps({**pred.to_dict(), "plot": out, "costs": costs.to_dict()}))
        return
    click.echo(rx.format_prediction(plan, pred))
    click.echo(f"plot: {out}")


@cli.command()
@click.argument("grid", metavar="GRID.toml")
@click.option(
    "--jobs", type=int, default=None, help="local worker processes (default: one per core; not with --scheduler)"
)
@click.option(
    "--scheduler", default=None, metavar="ADDRESS", help="run on this Dask scheduler's cluster: tcp://HOST:8786"
)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="output folder [default: results/GRID]")
def sweep(grid: str, jobs: int | None, scheduler: str | None, out: str | None) -> None:
    """Run a grid of points (workloads x kernels x CPUs x extensions x seeds, docs/sweep.md) into
    OUT/sweep.csv (and sweep.parquet with pyarrow), caching each point: run again, only what is missing runs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from .experiments.sweep import SweepFailed, SweepInterrupted
    from .experiments.sweep import sweep as run_sweep

    if jobs is not None and jobs < 1:
        fail("--jobs must be at least 1")
    console = Console(stderr=True)
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    # on a terminal only, and gone when done: stderr keeps nothing but what went wrong
    bar = Progress("{task.description}", *columns, console=console, transient=True, disable=not console.is_terminal)
    task = bar.add_task("points", total=None)

    def progress(done: int, total: int) -> None:
        bar.start()  # from the first count on: a bad grid file never shows a bar
        bar.update(task, completed=done, total=total)

    try:
        try:
            result = run_sweep(grid, out, jobs, scheduler, progress)
        finally:
            bar.stop()
    except SweepInterrupted as e:
        click.echo(
            f"apkern: interrupted: {e.finished} of {e.total} points finished, kept in {e.out}/"
            " (run the same sweep again to do the rest)",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    except SweepFailed as e:
        click.echo(f"apkern: {e}", err=True)
        sys.exit(1)
    left = f", {result.left_out} left out (apkern needs 2 CPUs)" if result.left_out else ""
    click.echo(
        f"{result.points} points ({result.cached} from the cache, {result.ran} run{left}) in {result.seconds} s: "
        + ", ".join(str(f) for f in result.files)
    )
    if result.failed:
        first = result.failed[0]
        click.echo(f"apkern: {len(result.failed)} point(s) failed; point {first['point']}: {first['error']}", err=True)
        sys.exit(1)


def _cache_lines(cached: int, not_kept: int, total: int, what: str, out: str, error: str | None) -> None:
    """What came from OUT/cache, and what will run again next time."""
    if cached:
        click.echo(f"{cached} of {total} {what} taken from {out}/cache (--no-cache runs them all)")
    if not_kept:
        why = f": {error}" if error else ""
        click.echo(f"apkern: {not_kept} {what} not kept in {out}/cache (they run again next time){why}", err=True)


def _interrupted(e: BaseException | None) -> NoReturn:
    """Ctrl-C: say what was kept (an interrupted reproduction's finished tasks) and exit 130."""
    finished = getattr(e, "finished", None)
    kept = "" if finished is None else f": {len(finished)} of {e.total} tasks had finished, kept in partial.json"
    if finished and getattr(e, "cached", False):
        kept += " and the cache (the same command again goes on from there)"
    click.echo(f"apkern: interrupted{kept}", err=True)
    sys.exit(EXIT_INTERRUPTED)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command; usage and configuration errors become one line and status 2."""
    try:
        cli.main(args=argv, prog_name="apkern", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else "", err=True)
        sys.exit(EXIT_USAGE)
    except click.UsageError as e:
        fail(e.format_message().splitlines()[0])
    except click.ClickException as e:
        fail(e.format_message())
    except click.exceptions.Abort as e:  # click's form of Ctrl-C (KeyboardInterrupt)
        _interrupted(e.__context__)
    except (ConfigError, ValueError) as e:
        fail(str(e))
    except SimulationLimit as e:
        fail(str(e))
    except KeyboardInterrupt as e:
        _interrupted(e)
    except SystemExit:
        raise
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
