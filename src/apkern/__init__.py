"""apkern: the application kernel approach — SMP support for an unmodified uniprocessor kernel.

A deterministic, instruction-timed SMP machine runs a uniprocessor kernel ("up"),
the same kernel with the application kernel as its driver ("apkern": user code on
the other CPUs, every system call forwarded to the bootstrap processor), or its
giant-lock SMP port ("smp"). The guide with more examples is docs/guide.md.

Programs are generator functions
    Everything that runs on a CPU is a generator yielding machine operations.
    A program is `main(argv)`, a generator function returning its exit status;
    every libc function is a generator function, called with `yield from`:

    >>> import apkern
    >>> from apkern import libc
    >>> def hello(argv):
    ...     pid = yield from libc.getpid()
    ...     yield from libc.print(f"hello from {pid}\\n")
    ...     return 0
    >>> sim = apkern.System(kernel="apkern", cpus=2, seed=0)
    >>> proc = sim.spawn(hello, ["hello"])   # or a built-in program's name
    >>> sim.run()                            # until every process has exited
    >>> proc.exit_status, sim.console(proc.pid)
    (0, 'hello from 1\\n')
    >>> sim.stats["forwarded_calls"] > 0     # counters of the run
    True

Forgetting `yield from`
    `libc.print("x")` alone only makes a generator: nothing runs, nothing is
    printed, and nothing says so. Using such a call's result as a value raises in
    the program, which is then killed by SIGILL (exit status -4); `yield` instead
    of `yield from` hands the CPU something that is not an operation (SIGILL too):

    >>> def forgot(argv):
    ...     pid = libc.getpid()              # a generator, not a number
    ...     return pid + 1
    ...     yield
    >>> sim = apkern.System(kernel="up")
    >>> proc = sim.spawn(forgot, ["forgot"])
    >>> sim.run()
    >>> proc.exit_status, proc.crash["signal"]
    (-4, 'SIGILL')
    >>> print(sim.machine.messages[-1])
    [...] cpu0: user code raised TypeError("unsupported operand type(s) for +: 'generator' and 'int'")
    at ...; raising #UD

The messages log
    `sim.machine.messages` holds "[time] text" lines: crashes of user code (why,
    and file:line) and the kernels' notices (the out-of-memory killer's). A clean
    run leaves it empty. `ProcessHandle.crash` tells how one process died.

strict
    `System(strict=True)` lets a program's uncaught Python exception propagate
    out of `sim.run()` with its traceback, instead of crashing the program:

    >>> def buggy(argv):
    ...     yield from libc.compute(10)
    ...     return {}["missing"]
    >>> sim = apkern.System(kernel="up", strict=True)
    >>> _ = sim.spawn(buggy, ["buggy"])
    >>> sim.run()
    Traceback (most recent call last):
    ...
    KeyError: 'missing'

The memory model
    Only simulated memory is isolated between processes: what libc.load/store,
    read_mem/write_mem, mmap and the read/write buffers reach, through each
    process's own page tables (threads of a process share it). Python objects
    (globals, closures, lists) live in the host, are shared by every process,
    cost no instructions and are invisible to the kernels.

Constants
    libc re-exports what a program needs: libc.O_*, SEEK_*, the signals
    (libc.SIGKILL, SIG_IGN, ...) and the errno names (compare OSError.errno with
    libc.ENOENT, ...). They are the host's values, so os.O_*, signal.SIG* and
    errno.E* mean the same. A signal's death is exit status -SIG. Path costs are
    a profile chosen when the system is built (`System(costs="xv6")`, the default,
    "linux-2.4" or a TOML file; `apkern.profiles`, docs/costs.md); time is in
    instructions, 100 MIPS nominal (`hw.NOMINAL_IPS`).

Traces from Python
    `System(trace=True)` records per-CPU activity slices and the kernels' trace
    points in `sim.machine.tracer` (`.slices`, `.marks`), at no simulated cost;
    `apkern.experiments.chrome_trace.write_trace(sim, path)` writes them as a
    Chrome trace for https://ui.perfetto.dev (as `apkern run ... --trace FILE`):

    >>> sim = apkern.System(kernel="apkern", cpus=2, trace=True)
    >>> _ = sim.spawn("gettid", ["gettid", "1"])
    >>> sim.run()
    >>> sorted({m.name for m in sim.machine.tracer.marks if m.name.startswith("ak_")})
    ['ak_activated', 'ak_posted', 'ak_resumed', 'ak_trap']
"""

from .system import ConfigError, ProcessHandle, SimulationLimit, SimulationTimeout, System
from .userland import libc

__all__ = ["ConfigError", "ProcessHandle", "SimulationLimit", "SimulationTimeout", "System", "libc"]
__version__ = "0.1.0"
