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

from .system import KERNELS, ConfigError, SimulationLimit, System

EXIT_USAGE = 2


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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--trace", "trace_file", type=click.Path(dir_okay=False, writable=True), help="write a Chrome trace-event JSON"
)
@click.option("--json", "as_json", is_flag=True, help="print exit status, console output and counters as JSON")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=10_000_000_000,
    show_default=True,
    help="stop with an error after this many instructions of machine time",
)
@click.option(
    "--file",
    "files",
    multiple=True,
    metavar="PATH=HOSTFILE",
    help="copy a host file into the simulated file system first",
)
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
    files: tuple[str, ...],
) -> None:
    """Run a built-in PROGRAM with ARGS; print its output (fd 1 to stdout, fd 2 to stderr), exit with its status."""
    if trace_file:
        try:
            with open(trace_file, "w"):
                pass
        except OSError as e:
            fail(f"cannot write {trace_file}: {e.strerror}")
    sim = System(kernel=kernel, cpus=_cpus(kernel, cpus), seed=seed, trace=trace_file is not None, extensions=_ext(ext))
    for spec in files:
        path, sep, host = spec.partition("=")
        if not sep or not path.startswith("/"):
            fail(f"--file wants /PATH=HOSTFILE, not {spec!r}")
        try:
            with open(host, "rb") as f:
                sim.fs.write_file(path, f.read())
        except OSError as e:
            fail(f"cannot read {host}: {e.strerror}")
    proc = sim.spawn(program, [program, *args], placement=placement)
    sim.run(limit=limit)
    if trace_file:
        from .experiments.chrome_trace import write_trace

        write_trace(sim, trace_file)
    status = proc.exit_status
    if as_json:
        click.echo(
            json.dumps({"program": program, "exit_status": status, "console": sim.console(), "stats": sim.stats})
        )
    else:
        click.echo(sim.kernel.console.text(fd=1), nl=False)
        click.echo(sim.kernel.console.text(fd=2), nl=False, err=True)
    sys.exit(status if status >= 0 else 128 - status)


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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def latency(kernel: str, cpus: int | None, ext: str, iterations: int, seed: int, as_json: bool) -> None:
    """gettid latency with inspection points, and its breakdown by stage."""
    from .experiments.latency import measure

    if iterations < 1:
        fail("--iterations must be at least 1")
    r = measure(kernel=kernel, cpus=_cpus(kernel, cpus), iterations=iterations, seed=seed, extensions=_ext(ext))
    if as_json:
        click.echo(json.dumps(r.to_dict()))
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
def extensions_cmd(cpus: int, as_json: bool) -> None:
    """Section 4.3's extensions built so far, each off and on: latency, throughput, the shoot-down's cost."""
    from .experiments.extensions import format_table, measure

    rep = measure(cpus=cpus)
    if as_json:
        click.echo(json.dumps(rep.to_dict()))
        return
    click.echo(format_table(rep))


@bench.command("balance")
@click.option("--cpus", "cpus_arg", default="8,16,32", show_default=True, metavar="N,...", help="machine sizes")
@click.option("--quick", is_flag=True, help="reproduce's quick windows (a few minutes become one)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def balance_cmd(cpus_arg: str, quick: bool, seed: int, as_json: bool) -> None:
    """One ready queue (the paper's) against a queue per AP: lock spinning and throughput (section 4.3)."""
    from .experiments.balance import compare, format_table
    from .experiments.reproduce import DEFAULT, QUICK

    try:
        cpus = tuple(int(c) for c in cpus_arg.split(",") if c.strip())
    except ValueError:
        fail(f"--cpus takes numbers separated by commas, not {cpus_arg!r}")
    if not cpus or not all(2 <= c <= 64 for c in cpus):
        fail("--cpus: each machine needs 2 to 64 CPUs")
    points = compare(cpus, precision=QUICK if quick else DEFAULT, seed=seed)
    if as_json:
        click.echo(json.dumps([pt.to_dict() for pt in points]))
        return
    click.echo(format_table(points))


@bench.command("throughput")
@click.option(
    "--syscall-instr", "k", type=int, required=True, help="K: instructions each spin call spends in the kernel"
)
@click.option("--user-pct", "p", type=float, required=True, help="P: user share of a loop, percent")
@click.option("--cpus", type=int, default=4, show_default=True, help="1: the bootstrap kernel alone")
@click.option("--procs", type=int, default=20, show_default=True)
@click.option("--warmup", type=int, default=None, help="instructions before the window (default: by K and P)")
@click.option("--window", type=int, default=None, help="measurement window in instructions (default: by K and P)")
@click.option("--seed", type=int, default=0, show_default=True)
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

    def sized(n: int) -> tuple[int, int]:
        return (
            DEFAULT.warmup(k, p, n) if warmup is None else warmup,
            DEFAULT.window(k, p, n) if window is None else window,
        )

    extensions = _ext(ext)
    if extensions and (cpus == 1 or kernel != "apkern"):
        fail("--ext needs the application kernel: --kernel apkern and --cpus 2 or more")
    w1, win1 = sized(1)
    base = measure(k, p, 1, procs=procs, warmup=w1, window=win1, seed=seed, getpids=getpids)
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
        )
    )
    with_speedup(point, base)
    d = point.to_dict()
    workers = cpus if kernel in ("smp", "master-slave") else cpus - 1  # the CPUs that run user code
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
    )


@cli.command()
@click.option("--ipsc", type=float, required=True, help="instructions per system call")
@click.option("--interval", type=float, required=True, help="instructions between system calls on one CPU")
@click.option("--opsc", type=float, default=None, help="overhead per forwarded call (default: the last reproduction's)")
@click.option("--ips", type=float, default=100e6, show_default=True, help="instructions per second")
@click.option(
    "--results",
    type=click.Path(file_okay=False),
    default="results",
    show_default=True,
    help="where the last reproduction wrote summary.json",
)
@click.option("--json", "as_json", is_flag=True)
def model(ipsc: float, interval: float, opsc: float | None, ips: float, results: str, as_json: bool) -> None:
    """The capacity model C = scps*(ipsc+opsc): the most calls per second and the best speedup."""
    from .experiments.model import capacity

    source = "given"
    if opsc is None:
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
@click.option("--seed", type=int, default=0, show_default=True)
def reproduce(out: str, quick: bool, jobs: int | None, seed: int) -> None:
    """Run the paper's section 5 and write CSVs, Figures 6-8, summary.json and report.md."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from .experiments.reproduce import reproduce as run_all

    if jobs is not None and jobs < 1:
        fail("--jobs must be at least 1")
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
        )
    d, a = summary["derived_overhead"], summary["attributed_overhead"]
    click.echo(
        f"wrote {out}/: latency.csv, throughput.csv ({len(summary['throughput'])} rows), smp_throughput.csv, "
        f"ms_throughput.csv, fig6-8.png, fig_extensions.png, summary.json, report.md in {summary['wall_seconds']} s"
    )
    if d is not None:
        click.echo(f"overhead per forwarded call: derived {d:.0f}, attributed by path {a:.0f} instructions")


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
    except click.exceptions.Abort:
        fail("aborted")
    except (ConfigError, ValueError) as e:
        fail(str(e))
    except SimulationLimit as e:
        fail(str(e))
    except SystemExit:
        raise
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
