"""The `apkern` command.

A user's mistake (unknown program, impossible machine, bad number) is one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
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
    help="uniprocessor kernel alone, or with the application kernel",
)


def cpus_option(default: int | None = None) -> Any:
    return click.option(
        "--cpus", type=int, default=default, help="processors (apkern: at least 2; default 1 for up, 4 for apkern)"
    )


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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--trace", "trace_file", type=click.Path(dir_okay=False, writable=True), help="write a Chrome trace-event JSON"
)
@click.option("--json", "as_json", is_flag=True, help="print exit status, console output and counters as JSON")
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
    seed: int,
    trace_file: str | None,
    as_json: bool,
    files: tuple[str, ...],
) -> None:
    """Run a built-in PROGRAM with ARGS; print its console output and exit with its status."""
    sim = System(kernel=kernel, cpus=_cpus(kernel, cpus), seed=seed, trace=trace_file is not None)
    for spec in files:
        path, sep, host = spec.partition("=")
        if not sep or not path.startswith("/"):
            fail(f"--file wants /PATH=HOSTFILE, not {spec!r}")
        try:
            with open(host, "rb") as f:
                sim.fs.write_file(path, f.read())
        except OSError as e:
            fail(f"cannot read {host}: {e.strerror}")
    proc = sim.spawn(program, [program, *args])
    sim.run()
    if trace_file:
        from .experiments.chrome_trace import write_trace

        write_trace(sim, trace_file)
    status = proc.exit_status
    if as_json:
        click.echo(
            json.dumps({"program": program, "exit_status": status, "console": sim.console(), "stats": sim.stats})
        )
    else:
        click.echo(sim.console(), nl=False)
    sys.exit(status if status >= 0 else 128 - status)


@cli.command()
def programs() -> None:
    """List the built-in programs."""
    from .userland.programs import PROGRAMS, USAGE, describe

    width = max(len(USAGE[n]) for n in PROGRAMS)
    for name in PROGRAMS:
        click.echo(f"{USAGE[name]:<{width}}  {describe(name)}")


@cli.group()
def bench() -> None:
    """Micro-benchmarks of the paper's section 5."""


@bench.command()
@kernel_option
@cpus_option()
@click.option("--iterations", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def latency(kernel: str, cpus: int | None, iterations: int, seed: int, as_json: bool) -> None:
    """gettid latency with inspection points, and its breakdown by stage."""
    from .experiments.latency import measure

    if iterations < 1:
        fail("--iterations must be at least 1")
    r = measure(kernel=kernel, cpus=_cpus(kernel, cpus), iterations=iterations, seed=seed)
    if as_json:
        click.echo(json.dumps(r.to_dict()))
        return
    click.echo(
        f"gettid latency, kernel {r.kernel}, {r.cpus} CPU(s), {r.iterations} calls: "
        f"mean {r.mean_instructions:.1f} instructions (min {r.min_instructions}, max {r.max_instructions})"
    )
    for stage, v in r.breakdown.items():
        click.echo(f"  {stage:<32} {v:10.1f}")


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
