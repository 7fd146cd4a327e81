"""System: a machine, the bootstrap kernel (and, with kernel="apkern", the application kernel), the user land.

sim = System(kernel="up", cpus=1, seed=0)
proc = sim.spawn("hello", ["hello"])
sim.run()
proc.exit_status, sim.console(proc.pid), sim.stats
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .bootkernel import BootKernel
from .bootkernel.proc import Process
from .hw import MAX_CPUS, Machine, Perturbation
from .hw.machine import DEFAULT_MEMORY, ENGINES
from .profiles import Profile, ProfileError
from .profiles import load as load_profile
from .userland.crt0 import crt0
from .userland.libc import encode_spawn_block
from .workloads.programs import PROGRAMS, bin_files

KERNELS = ("up", "apkern", "smp", "master-slave")
EXTENSIONS = ("local_calls", "migration", "balance")  # section 4.3's optional parts of the application kernel
PLACEMENTS = ("ap", "bsp", "auto")


class ConfigError(ValueError):
    """An impossible system: unknown kernel, CPU count out of range, and the like."""


class SimulationLimit(RuntimeError):
    """The run reached its instruction limit before every process exited."""


class SimulationTimeout(SimulationLimit):
    """The run used up its wall-clock time before every process exited."""


TIMEOUT_STEP = 2_000_000  # instructions of machine time between two looks at the wall clock
# Temporal decoupling's largest quantum. A lock's holder that runs ahead releases it early for the CPUs behind
# it, and takes it again before they look (`CPU._run`), so the spinlock kernels move most. Over 144 points of
# the quick grid at 30 instructions (benchmarks/engine_speed.py --grid 3): the application kernel's loops
# by at most 0.3%, the giant-lock port's by up to 9.3% (K=4510, P=80%, 6 CPUs, where three seeds agree within
# 1.1%), the master-slave port's by up to 6.6%. At K=151, P=80% the master-slave port's move by 4.9% at 100
# instructions, the giant-lock port's by -16% to +125% at 300. At 10 nothing is gained on the host.
MAX_QUANTUM = 30


class ProcessHandle:
    """A process started with `System.spawn`: its pid, and after it exits its status."""

    def __init__(self, system: System, proc: Process) -> None:
        self._system = system
        self._proc = proc

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def name(self) -> str:
        return self._proc.name

    @property
    def exited(self) -> bool:
        return self._proc.exit_status is not None

    @property
    def exit_status(self) -> int | None:
        """Exit status (0-255), -SIG if a signal killed it, None while it runs."""
        return self._proc.exit_status

    @property
    def crash(self) -> dict[str, Any] | None:
        """How it died, if a signal killed it: `signal` (its name), `description` (as a shell says it),
        and when its code crashed the machine's CPU (raised, or yielded garbage) `why` and `where`
        (file:line); `death` when its kernel ended it on its own ("out of memory"). None otherwise."""
        return self._system.crash_report(self._proc)

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.name} status={self.exit_status}>"


def _owner_pid(owner: Any) -> int | None:
    """The pid of a context's owner: a thread of the bootstrap kernel (or a port's), or an application thread."""
    if hasattr(owner, "proc") and hasattr(owner.proc, "pid"):
        return owner.proc.pid
    return getattr(owner, "pid", None)


def crash_line(name: str, crash: dict[str, Any]) -> str:
    """One line, as a shell reports a killed job: `NAME: Segmentation fault (SIGSEGV): ...`."""
    line = f"{name}: {crash['description']} ({crash['signal']})"
    if crash.get("death"):
        line += f": {crash['death']}"
    if crash.get("why"):
        line += f": {crash['why']}" + (f" at {crash['where']}" if crash.get("where") else "")
    return line


class System:
    """A whole simulated system; `kernel` is "up" (the bootstrap kernel alone), "apkern", "smp" (its giant-lock
    port) or "master-slave" (its asymmetric port: kernel code on CPU 0 only).

    `strict`: a program's Python exception propagates instead of crashing it with #UD.
    `check_tlb`: the machine compares every TLB hit with the page tables and raises
    `StaleTLB` on a stale translation (a test setting: it costs host time only).
    `check_locks` turns on the machine's lock-discipline checker (for tests; it changes no number).
    `swapper` builds the bootstrap kernel with its swapper; under "apkern" it comes with the
    section 4.3 patch (`tlb_patch`, on unless told otherwise) and the application kernel's
    TLB shoot-down. `tlb_patch=False` there shows what the paper warns of: APs using stale
    translations of pages the swapper took.
    `extensions`: section 4.3's optional parts of the application kernel, by name
    (`EXTENSIONS`); none is the paper's prototype. "local_calls" serves getpid, gettid,
    yield and sleep on the application processors; "migration" moves the threads of
    processes spawned with placement "auto" between the two kernels as they run;
    "balance" gives each application processor its own ready queue, hands ready
    threads to idle ones and steals.
    `perturb`: a seed (or a `Perturbation`) to vary path costs, IPI and timer delivery
    within stated bounds and so explore other interleavings; None (the default) keeps
    the machine's fixed costs, as every experiment does.
    `costs`: the kernels' path-cost profile (`apkern.profiles`): "xv6" (the default),
    "linux-2.4", a TOML file's path or a `Profile`.
    `engine`: the simulator's engine, "fast" or "reference" (`hw.machine.ENGINES`): the same run either way.
    `quantum`: temporal decoupling (fast engine), 0 to `MAX_QUANTUM`: a CPU may run up to that many
    instructions ahead of the others before they catch up, as Simics' switch time does. 0 (the
    default) is exact; more is faster and moves timing, and so the figures: most those of contended
    spinlocks (benchmarks/engine_speed.py measures by how much).
    """

    def __init__(
        self,
        kernel: str = "up",
        cpus: int = 1,
        seed: int = 0,
        memory: int = DEFAULT_MEMORY,
        swapper: bool = False,
        trace: bool = False,
        strict: bool = False,
        check_tlb: bool = False,
        check_locks: bool = False,
        tlb_patch: bool | None = None,
        extensions: tuple[str, ...] | list[str] = (),
        perturb: int | Perturbation | None = None,
        costs: str | Path | Profile | None = None,
        engine: str = "fast",
        quantum: int = 0,
    ) -> None:
        if kernel not in KERNELS:
            raise ConfigError(f"unknown kernel {kernel!r} (choose from {', '.join(KERNELS)})")
        if isinstance(cpus, bool) or not isinstance(cpus, int) or not 1 <= cpus <= MAX_CPUS:
            raise ConfigError(f"a machine has 1 to {MAX_CPUS} CPUs, not {cpus!r}")
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
        if isinstance(quantum, bool) or not isinstance(quantum, int) or not 0 <= quantum <= MAX_QUANTUM:
            raise ConfigError(f"the decoupling quantum is 0 to {MAX_QUANTUM:,} instructions, not {quantum!r}")
        if quantum and engine != "fast":
            raise ConfigError("temporal decoupling (quantum > 0) needs the fast engine")
        if kernel == "apkern" and cpus < 2:
            raise ConfigError("kernel 'apkern' needs at least 2 CPUs: with one there is no application processor")
        if isinstance(extensions, str) or not all(isinstance(e, str) for e in extensions):
            raise ConfigError(f"extensions are a list of names, not {extensions!r}")
        unknown = [e for e in extensions if e not in EXTENSIONS]
        if unknown:
            raise ConfigError(f"unknown extension {unknown[0]!r} (choose from {', '.join(EXTENSIONS)})")
        if extensions and kernel != "apkern":
            raise ConfigError(f"extensions are parts of the application kernel: kernel {kernel!r} has none")
        self.extensions = tuple(dict.fromkeys(extensions))
        try:
            self.profile = load_profile(costs)
        except ProfileError as e:
            raise ConfigError(str(e)) from None
        if tlb_patch is None:
            tlb_patch = kernel == "apkern" and swapper
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < (4 << 20) or memory % 4096:
            raise ConfigError("memory must be at least 4 MiB and a multiple of 4096")
        self.kernel_name = kernel
        self.seed = seed
        self.random = random.Random(seed)
        if isinstance(perturb, bool) or not (perturb is None or isinstance(perturb, int | Perturbation)):
            raise ConfigError(f"perturb is a seed or a Perturbation, not {perturb!r}")
        if isinstance(perturb, int):
            perturb = Perturbation(perturb)
        self.machine = Machine(
            cpus=cpus,
            memory=memory,
            strict=strict,
            trace=trace,
            perturb=perturb,
            check_tlb=check_tlb,
            check_locks=check_locks,
            engine=engine,
            quantum=quantum,
        )
        drivers: list[Any] = []
        self._crt0: Callable[..., Any] = crt0
        self._auto_crt0: Callable[..., Any] | None = None
        if kernel == "apkern":
            from .appkernel import ApkernDriver
            from .userland.ak_crt0 import ak_crt0, ak_crt0_auto

            drivers.append(ApkernDriver(frozenset(self.extensions), self.profile.appkernel))
            self._crt0 = ak_crt0
            if "migration" in self.extensions:
                self._auto_crt0 = ak_crt0_auto
        if kernel == "smp":  # the giant-lock port of the bootstrap kernel, on every CPU
            from .smp import SMPKernel

            self.kernel: BootKernel = SMPKernel(
                self.machine, swapper=swapper, costs=self.profile.bootkernel, port_costs=self.profile.smp
            )
        elif kernel == "master-slave":  # the asymmetric port: kernel code on CPU 0 only
            from .masterslave import MasterSlaveKernel

            self.kernel = MasterSlaveKernel(
                self.machine, swapper=swapper, costs=self.profile.bootkernel, port_costs=self.profile.master_slave
            )
        else:
            self.kernel = BootKernel(
                self.machine,
                drivers=drivers,
                swapper=swapper,
                tlb_patch=bool(tlb_patch),
                costs=self.profile.bootkernel,
            )
        self.appkernel = drivers[0] if drivers else None
        for path, data in bin_files(self.machine.code.address_of).items():
            self.kernel.fs.write_file(path, data)
        self.kernel.boot()

    @property
    def fs(self) -> Any:
        """The in-memory file system (`write_file`, `read_file`, `exists`, `listdir`, `snapshot`)."""
        return self.kernel.fs

    @property
    def now(self) -> int:
        return self.machine.now

    def spawn(
        self, program: Callable[..., Any] | str, argv: list[str] | None = None, placement: str | None = None
    ) -> ProcessHandle:
        """Start a program: a generator function `main(argv)` or a built-in program's name.

        `placement` (section 4.3), under "apkern": "ap" (the default, the paper's prototype)
        runs it on the application processors through the relinked crt0; "bsp" runs it on
        the bootstrap kernel alone, with the plain crt0 and no forwarding, beside the
        others (its children stay there too); "auto", with the "migration" extension, starts
        it on the APs and moves each of its threads (and its children's) to the bootstrap
        kernel and back as its calls per instruction change. Under "up" everything is on
        the one CPU.
        """
        if placement not in (None, *PLACEMENTS):
            raise ConfigError(f"unknown placement {placement!r} (choose from {', '.join(PLACEMENTS)})")
        if placement == "auto" and self._auto_crt0 is None:
            raise ConfigError("placement 'auto' moves threads at run time: it needs apkern's migration extension")
        if placement == "ap" and self.kernel_name != "apkern":
            raise ConfigError(f"placement 'ap' needs application processors: kernel {self.kernel_name!r} has none")
        if isinstance(program, str):
            if program not in PROGRAMS:
                raise ConfigError(f"unknown program {program!r} (see `apkern programs`)")
            name, main = program, PROGRAMS[program]
        elif callable(program):
            name, main = getattr(program, "__name__", "program"), program
        else:
            raise ConfigError(f"a program is a generator function or a built-in name, not {program!r}")
        argv = [name] if argv is None else [str(a) for a in argv]
        code = self.machine.code
        block = encode_spawn_block(code.address_of(main), argv)
        start = crt0 if placement == "bsp" else self._auto_crt0 if placement == "auto" else self._crt0
        proc = self.kernel.create_process(code.address_of(start), block, name)
        if proc is None:
            raise ConfigError(f"no memory left to start {name!r}: give the system more memory")
        return ProcessHandle(self, proc)

    def run(self, until: int | None = None, limit: int = 50_000_000_000, timeout: float | None = None) -> None:
        """Run until every process has exited (or to time `until`); `SimulationLimit` past `limit`.

        `timeout`: seconds of wall time, after which `SimulationTimeout` (the machine is stopped
        between two steps of its time, which changes no figure: a run that finishes is the same).
        """
        if until is not None:
            self.machine.run(until=until)
            return
        if self.kernel.live == 0:
            return
        if timeout is None:
            self.machine.run(until=limit)
        else:
            deadline = time.monotonic() + timeout
            while self.kernel.live and self.now < limit:
                if time.monotonic() >= deadline:
                    raise SimulationTimeout(
                        f"{self.kernel.live} process(es) still running after {timeout:g} s of wall time"
                        f" ({self.now} instructions of machine time)"
                    )
                self.machine.run(until=min(limit, self.now + TIMEOUT_STEP))
        if self.kernel.live:
            raise SimulationLimit(f"{self.kernel.live} process(es) still running after {self.now} instructions")

    def console(self, pid: int | None = None) -> str:
        """Text written to fd 1 and 2 by process `pid` (all processes when None)."""
        return self.kernel.console.text(pid)

    def crash_report(self, proc: Any) -> dict[str, Any] | None:
        """See `ProcessHandle.crash`; `proc` is the kernel's process record."""
        status = proc.exit_status
        if status is None or status >= 0:
            return None
        sig = -status
        try:
            name = signal.Signals(sig).name
            description = signal.strsignal(sig) or name
        except ValueError:
            name = description = f"signal {sig}"
        out: dict[str, Any] = {"signal": name, "description": description}
        if proc.death:
            out["death"] = proc.death
        mine = [c for c in self.machine.crashes if _owner_pid(c["owner"]) == proc.pid]
        if mine:
            out["why"], out["where"] = mine[-1]["why"], mine[-1]["where"]
        return out

    @property
    def stats(self) -> dict[str, Any]:
        """Counters of the run: time, instructions per CPU, kernel counters, application-kernel counters."""
        m = self.machine.stats()
        out: dict[str, Any] = {
            "kernel": self.kernel_name,
            "cpus": len(self.machine.cpus),
            "costs": self.profile.to_dict(),
            "time": m["time"],
            "instructions": sum(c["instructions"] for c in m["cpus"]),
            "per_cpu": m["cpus"],
            "ipis": m["ipis"],
        }
        if "perturb" in m:
            out["perturb"] = m["perturb"]
        out.update(self.kernel.stats())
        if self.appkernel is not None:
            out.update(self.appkernel.stats(self.machine.debugger))
        return out
