"""Differential testing kit: run one program on the uniprocessor kernel and on its SMP kernels, compare.

The oracle is the paper's promise: a program runs *unmodified* on the application
kernel and must behave exactly as on the bootstrap kernel alone. The same holds for
the giant-lock SMP port of that kernel ("smp") and its master-slave port
("master-slave"): `PORTS` lists the kernels that every
comparison with "up" covers. `observe` runs a
program on one configuration and records what a user can see of the run:

- the whole console, in order (`System.console()`), and each process's console
  text, split by descriptor (1 and 2);
- every process the run created: pid, name, exit status (signals as -SIG);
- the file system after the run (`fs.snapshot()`).

A run is strict by default (a program's own Python exception stops the test);
`strict=False` lets it crash the program (#UD, SIGILL) as it would for a user, and
the machine's log (`messages`, not compared: it names CPUs and times) says why.

`perturb` runs a configuration on a perturbed machine (`System(perturb=seed)`: kernel
path costs, IPI and timer delivery vary within stated bounds, so other interleavings
are tried); `perturb_seeds` says which seeds a case gets: a few in the ordinary run,
N with the environment variable APKERN_PERTURB_SEEDS=N (the long job, run by hand).

`assert_same` compares two observations field by field with a readable message;
`assert_ak_clean` checks what an application-kernel run must leave behind (no
live TCB) and that it really went through the application kernel (calls were
forwarded); `assert_smp_clean` the same for the SMP port (every AP started, the
kernel lock taken, no CPU left on a thread of a dead process, no shoot-down in
flight); `assert_ms_clean` for the master-slave port (every slave started and
handed threads to the master, nothing left queued or in the thread table);
`assert_clean` picks the right one for an observation's kernel.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import apkern

PORTS = ("apkern", "smp", "master-slave")  # the multiprocessor kernels, each compared with "up"
RUN_LIMIT = 2_000_000_000  # instructions: far above any test program, far below "forever"
PERTURB_SEEDS_ENV = "APKERN_PERTURB_SEEDS"


def long_job() -> int:
    """N when the environment asks for the long job (APKERN_PERTURB_SEEDS=N), else 0."""
    return int(os.environ.get(PERTURB_SEEDS_ENV, "0") or 0)


def perturb_seeds(ci: int, case: str) -> list[int]:
    """Perturbation seeds for one case: `ci` of them, different for each `case` name; 1..N in the long job."""
    n = long_job()
    if n:
        return list(range(1, n + 1))
    base = zlib.crc32(case.encode()) % 100_000 * 100
    return [base + k for k in range(ci)]


@dataclass
class Observation:
    """What one run showed to the outside."""

    kernel: str
    cpus: int
    top_pid: int
    top_status: int | None
    console: str
    per_pid: dict[int, dict[int, str]]  # pid -> fd -> text (fd 0: all it wrote, System.console(pid))
    procs: dict[int, tuple[str, int | None]]  # pid -> (name, exit status)
    files: dict[str, bytes]
    stats: dict[str, Any] = field(repr=False)
    messages: list[str] = field(default_factory=list, repr=False)  # the machine's log
    perturb: int | None = None

    @property
    def label(self) -> str:
        seed = "" if self.perturb is None else f"/perturb={self.perturb}"
        return f"{self.kernel}/{self.cpus}cpu{seed}"


def observe(
    program: Callable[..., Any] | str,
    argv: list[str],
    kernel: str,
    cpus: int,
    files: dict[str, bytes] | None = None,
    limit: int = RUN_LIMIT,
    strict: bool = True,
    perturb: int | None = None,
    extensions: tuple[str, ...] = (),
    placement: str | None = None,
    setup: Callable[[Any], None] | None = None,
    **system: Any,
) -> Observation:
    """Run `program argv` alone on a fresh system (strict unless told; perturbed by seed `perturb`) and record it.

    `extensions`: section 4.3 extensions, for the application kernel only. `setup(sim)` prepares
    the system after `files` are written (e.g. a replay's directories). `system`: further
    `System` settings (memory, swapper, tlb_patch, ...).

    The machine checks every TLB hit against the page tables (a stale translation fails the run)
    and the application kernel's lock discipline.
    """
    sim = apkern.System(
        kernel=kernel,
        cpus=cpus,
        strict=strict,
        check_tlb=True,
        check_locks=True,
        extensions=extensions if kernel == "apkern" else (),
        perturb=perturb,
        **system,
    )
    for path, data in (files or {}).items():
        sim.fs.write_file(path, data)
    if setup is not None:
        setup(sim)
    proc = sim.spawn(program, argv, placement=placement if kernel == "apkern" else None)
    sim.run(limit=limit)
    records = sim.kernel.console.records
    pids = sorted({pid for pid, _fd, _data in records} | {proc.pid})
    per_pid = {pid: {fd: sim.kernel.console.text(pid, fd) for fd in (1, 2)} | {0: sim.console(pid)} for pid in pids}
    procs = {pid: (p.name, p.exit_status) for pid, p in sorted(sim.kernel.procs.items())}
    return Observation(
        kernel=kernel,
        cpus=cpus,
        top_pid=proc.pid,
        top_status=proc.exit_status,
        console=sim.console(),
        per_pid=per_pid,
        procs=procs,
        files=sim.fs.snapshot(),
        stats=sim.stats,
        messages=list(sim.machine.messages),
        perturb=perturb,
    )


def _first_difference(a: str, b: str) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            lo = max(0, i - 40)
            return f"at offset {i}: {a[lo : i + 40]!r} vs {b[lo : i + 40]!r}"
    return f"lengths {len(a)} vs {len(b)}: tails {a[len(b) :][:80]!r} vs {b[len(a) :][:80]!r}"


def differences(ref: Observation, got: Observation, normalize: Callable[[str], str] = str) -> list[str]:
    """Human-readable list of every way `got` differs from `ref` (empty when they agree)."""
    out: list[str] = []
    tag = f"{ref.label} vs {got.label}"
    if ref.top_pid != got.top_pid:
        out.append(f"{tag}: top pid {ref.top_pid} vs {got.top_pid}")
    if ref.top_status != got.top_status:
        out.append(f"{tag}: exit status {ref.top_status} vs {got.top_status}")
    a, b = normalize(ref.console), normalize(got.console)
    if a != b:
        out.append(f"{tag}: whole console differs {_first_difference(a, b)}")
    if set(ref.per_pid) != set(got.per_pid):
        out.append(f"{tag}: pids that wrote {sorted(ref.per_pid)} vs {sorted(got.per_pid)}")
    for pid in sorted(set(ref.per_pid) & set(got.per_pid)):
        for fd in (0, 1, 2):  # 0: the process's fd 1 and fd 2 together, in order
            a, b = normalize(ref.per_pid[pid][fd]), normalize(got.per_pid[pid][fd])
            if a != b:
                out.append(f"{tag}: pid {pid} {f'fd {fd}' if fd else 'console'} differs {_first_difference(a, b)}")
    if ref.procs != got.procs:
        out.append(f"{tag}: processes {ref.procs} vs {got.procs}")
    if ref.files != got.files:
        names = sorted(set(ref.files) | set(got.files))
        bad = [n for n in names if ref.files.get(n) != got.files.get(n)]
        out.append(f"{tag}: files differ: {bad}")
    return out


def assert_same(ref: Observation, got: Observation, normalize: Callable[[str], str] = str) -> None:
    diffs = differences(ref, got, normalize)
    assert not diffs, (
        "\n".join(diffs) + f"\n--- {ref.label} console:\n{ref.console}\n--- {got.label} console:\n{got.console}"
    )


FORWARDED = ("forwarded_calls", "forwarded_page_faults", "forwarded_exceptions")


def ak_problems(obs: Observation, require_calls: bool = True) -> list[str]:
    """What an application-kernel run must leave behind, and proof that it used the application kernel.

    `require_calls`: at least one *system call* was forwarded (else any forwarded
    event will do: a program may die of its very first instruction).
    """
    st = obs.stats
    out = []
    if st.get("tcbs_live") != 0:
        out.append(f"{obs.label}: {st.get('tcbs_live')} TCBs still live after the run")
    if require_calls and not st.get("forwarded_calls", 0) > 0:
        out.append(f"{obs.label}: no system call was forwarded ({st.get('forwarded_calls')})")
    if not sum(st.get(name, 0) for name in FORWARDED) > 0:
        out.append(f"{obs.label}: nothing was forwarded ({ {name: st.get(name) for name in FORWARDED} })")
    if st.get("tcbs_created") != st.get("tcbs_freed"):
        out.append(f"{obs.label}: TCBs created {st.get('tcbs_created')} but freed {st.get('tcbs_freed')}")
    return out


def assert_ak_clean(obs: Observation, require_calls: bool = True) -> None:
    problems = ak_problems(obs, require_calls)
    assert not problems, "\n".join(problems)


def smp_problems(obs: Observation) -> list[str]:
    """What a run of the SMP port must leave behind, and proof that it ran the port on every CPU."""
    st = obs.stats
    out = []
    if st.get("aps_started") != obs.cpus - 1:
        out.append(f"{obs.label}: {st.get('aps_started')} of {obs.cpus - 1} APs started")
    if not st.get("lock_acquisitions", 0) > 0:
        out.append(f"{obs.label}: the kernel lock was never taken")
    down = [c["id"] for c in st["per_cpu"] if c["state"] != "running"]
    if down:
        out.append(f"{obs.label}: CPUs {down} are not running")
    if st.get("cpus_on_dead_processes"):
        out.append(f"{obs.label}: CPUs {st['cpus_on_dead_processes']} still run a thread of a dead process")
    if st.get("tlb_shootdown_in_flight"):
        out.append(f"{obs.label}: a TLB shoot-down is still in flight")
    return out


def assert_smp_clean(obs: Observation) -> None:
    problems = smp_problems(obs)
    assert not problems, "\n".join(problems)


def ms_problems(obs: Observation) -> list[str]:
    """What a run of the master-slave port must leave behind, and proof that its slaves ran user code."""
    st = obs.stats
    out = []
    if st.get("aps_started") != obs.cpus - 1:
        out.append(f"{obs.label}: {st.get('aps_started')} of {obs.cpus - 1} slaves started")
    if obs.cpus > 1 and not st.get("handoffs", 0) > 0:
        out.append(f"{obs.label}: no slave ever handed a thread to the master")
    down = [c["id"] for c in st["per_cpu"] if c["state"] != "running"]
    if down:
        out.append(f"{obs.label}: CPUs {down} are not running")
    if st.get("cpus_on_dead_processes"):
        out.append(f"{obs.label}: CPUs {st['cpus_on_dead_processes']} still run a thread of a dead process")
    if st.get("tlb_shootdown_in_flight"):
        out.append(f"{obs.label}: a TLB shoot-down is still in flight")
    if st.get("queued_for_master") or st.get("thread_table_slots"):
        out.append(
            f"{obs.label}: {st.get('queued_for_master')} threads still queued for the master, "
            f"{st.get('thread_table_slots')} thread-table slots still taken"
        )
    return out


def assert_ms_clean(obs: Observation) -> None:
    problems = ms_problems(obs)
    assert not problems, "\n".join(problems)


def assert_clean(obs: Observation, require_calls: bool = True) -> None:
    """The checks of the observation's kernel: `assert_ak_clean`, `assert_smp_clean` or `assert_ms_clean`."""
    if obs.kernel == "apkern":
        assert_ak_clean(obs, require_calls)
    elif obs.kernel == "smp":
        assert_smp_clean(obs)
    elif obs.kernel == "master-slave":
        assert_ms_clean(obs)


def compare_all(
    program: Callable[..., Any] | str,
    argv: list[str],
    cpus_list: Iterable[int],
    files: dict[str, bytes] | None = None,
    normalize: Callable[[str], str] = str,
    strict: bool = True,
    kernels: Iterable[str] = PORTS,
    **system: Any,
) -> tuple[Observation, list[Observation]]:
    """Run on "up" once and on each of `kernels` with each CPU count; assert every run agrees with the UP run.

    The runs come back kernel by kernel, each in the order of `cpus_list`.
    """
    ref = observe(program, argv, "up", 1, files, strict=strict, **system)
    runs = []
    for kernel in kernels:
        for cpus in cpus_list:
            got = observe(program, argv, kernel, cpus, files, strict=strict, **system)
            assert_same(ref, got, normalize)
            assert_clean(got)
            runs.append(got)
    return ref, runs
