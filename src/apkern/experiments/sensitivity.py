"""How much each path cost matters: every cost scaled by 0.5 and by 2, one at a time.

For a profile and each of its costs, three figures are measured with the cost as it is,
halved and doubled (at least one instruction):

- the overhead per forwarded call: the bootstrap processor's instructions per forwarded
  call but the re-issued call itself, attributed by path at a saturated short-call point
  (K=151, P=95%, 8 CPUs), as the reproduction attributes it;
- the forwarded `gettid` latency on two CPUs (the latency program's mean);
- the speedup over the uniprocessor kernel at that same point (both runs under the scaled
  profile).

Costs no baseline run reads cannot change any of the three (the machine is deterministic
and a cost is only ever read by the kernels), so they are not run: `Profile.tracked` tells
which are read. The costs are ranked by the larger of their two changes of the overhead,
then of the latency. This names the paths a kernel developer would make cheaper first
(the paper's conclusion: "a highly optimized production version ... would decrease the
overhead").

`out_of_sample` runs the same figures under the "linux-2.4" profile, beside the Linux
version's Simics table (getpid 74 instructions on Linux, about 860 with the application
kernel) and the paper's overhead of about 2000 instructions per forwarded call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import profiles
from ..bootkernel.costs import QUANTUM_TICKS, TICK
from ..profiles import Profile
from . import latency, throughput
from .attribution import CALL
from .tasks import run_tasks

K, P, CPUS = 151, 95.0, 8  # the saturated short-call point
LATENCY_CPUS = 2
FACTORS = (0.5, 2.0)
# The Linux version's Simics measurements (Kågström et al.): getpid on Linux and with the application kernel
LINUX_TABLE = {"up_getpid": 74, "forwarded_getpid": 860, "ratio": 860 / 74}
PAPER_OVERHEAD = 2000  # section 5.2: about 2000 instructions per forwarded call


@dataclass(frozen=True)
class Precision:
    """Run lengths: `iterations` gettid calls; the throughput point's warm-up and window (instructions)."""

    name: str
    iterations: int
    warmup: int
    window: int
    up_window: int


QUICK = Precision("quick", iterations=100, warmup=300_000, window=1_200_000, up_window=3_000_000)
DEFAULT = Precision("default", iterations=300, warmup=1_000_000, window=4_000_000, up_window=10_000_000)


def measure(costs: Profile, precision: Precision = QUICK, seed: int = 0) -> dict[str, Any]:
    """The three figures under `costs` (and the uniprocessor gettid), as a dict."""
    up_lat = latency.measure("up", 1, precision.iterations, seed=seed, costs=costs)
    fwd = latency.measure("apkern", LATENCY_CPUS, precision.iterations, seed=seed, costs=costs)
    up_warm = max(precision.warmup, throughput.DEFAULT_PROCS * QUANTUM_TICKS * TICK)  # every process has started
    base = throughput.measure(
        K, P, 1, warmup=up_warm, window=precision.up_window, seed=seed, attribute=False, costs=costs
    )
    pt = throughput.measure(K, P, CPUS, warmup=precision.warmup, window=precision.window, seed=seed, costs=costs)
    throughput.with_speedup(pt, base)
    calls = pt.busy_passes
    overhead = sum(v for part, v in pt.bsp_parts.items() if part != CALL) / calls if calls else None
    return {
        "up_gettid": up_lat.mean_instructions,
        "forwarded_gettid": fwd.mean_instructions,
        "overhead": overhead,
        "speedup": pt.speedup,
        "bsp_load": pt.bsp_load,
    }


def _tracked_task(costs: Profile, precision: Precision, seed: int) -> dict[str, Any]:
    tracked, reads = costs.tracked()
    out = measure(tracked, precision, seed)
    out["reads"] = sorted(reads)
    return out


def _scaled_task(key: str, factor: float, costs: Profile, precision: Precision, seed: int) -> dict[str, Any]:
    return measure(costs.scaled(key, factor), precision, seed)


METRICS = ("overhead", "forwarded_gettid", "speedup")


@dataclass
class Effect:
    """One cost's effect: its value, the value at each factor (`Profile.scaled`'s), and the figures there."""

    key: str
    value: int
    origin: str
    scaled: dict[float, int] = field(default_factory=dict)
    at: dict[float, dict[str, Any]] = field(default_factory=dict)

    def change(self, metric: str, base: dict[str, Any]) -> dict[float, float]:
        return {f: r[metric] - base[metric] for f, r in self.at.items()}

    def rank_key(self, base: dict[str, Any]) -> tuple[float, float]:
        return (
            max(abs(d) for d in self.change("overhead", base).values()),
            max(abs(d) for d in self.change("forwarded_gettid", base).values()),
        )


@dataclass
class SensitivityReport:
    """The baseline figures, every cost's effect (ranked, largest first) and the costs no run read."""

    profile: dict[str, Any]
    precision: str
    base: dict[str, Any]
    effects: list[Effect]
    unread: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "precision": self.precision,
            "point": {
                "syscall_instr": K,
                "user_pct": P,
                "cpus": CPUS,
                "procs": throughput.DEFAULT_PROCS,
                "latency_cpus": LATENCY_CPUS,
            },
            "base": self.base,
            "effects": [
                {
                    **asdict(e),
                    "scaled": {str(f): v for f, v in e.scaled.items()},
                    "at": {str(f): r for f, r in e.at.items()},
                }
                for e in self.effects
            ],
            "unread": self.unread,
        }


def plan(costs: Profile, reads: list[str]) -> list[tuple[str, tuple[Any, ...], float]]:
    """The scaled runs: each cost a baseline run read, at each factor whose rounding changes it."""
    tasks = []
    for key in reads:
        for f in FACTORS:
            if costs.scaled(key, f).value(key) != costs.value(key):
                tasks.append(("scaled", (key, f), 1.0))
    return tasks


def analyse(
    costs: Profile, precision: Precision, base: dict[str, Any], results: list[tuple[str, tuple[Any, ...], Any]]
) -> SensitivityReport:
    reads = base["reads"]
    origins = {key: origin for key, _, origin in costs.items()}
    effects = {
        key: Effect(key, costs.value(key), origins[key], {f: costs.scaled(key, f).value(key) for f in FACTORS})
        for key in reads
    }
    for _, (key, f), r in results:
        effects[key].at[f] = r
    for e in effects.values():  # a factor that rounds to the same value changes nothing
        for f in FACTORS:
            e.at.setdefault(f, {m: base[m] for m in (*METRICS, "up_gettid", "bsp_load")})
    figures = {m: base[m] for m in (*METRICS, "up_gettid", "bsp_load")}
    ranked = sorted(effects.values(), key=lambda e: (tuple(-x for x in e.rank_key(figures)), e.key))
    unread = [key for key, _, _ in costs.items() if key not in effects]
    return SensitivityReport(costs.to_dict(), precision.name, figures, ranked, unread)


def sensitivity(
    costs: Profile | str | None = None,
    precision: Precision = QUICK,
    jobs: int = 1,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SensitivityReport:
    """Scale each cost the baseline reads by 0.5 and by 2, one at a time, in `jobs` processes."""
    costs = profiles.load(costs)
    base = _tracked_task(costs, precision, seed)
    funcs = {"scaled": functools.partial(_scaled_task, costs=costs, precision=precision, seed=seed)}
    results = run_tasks(plan(costs, base["reads"]), funcs, jobs, progress)
    return analyse(costs, precision, base, results)


def out_of_sample(precision: Precision = QUICK, seed: int = 0, analyse_costs: bool = True) -> dict[str, Any]:
    """The "linux-2.4" profile's predictions beside the Linux version's Simics table and the paper's overhead,
    with (`analyse_costs`) that profile's own sensitivity analysis, which says what causes a miss."""
    linux = profiles.load("linux-2.4")
    r = measure(linux, precision, seed)
    sens = sensitivity(linux, precision, jobs=1, seed=seed).to_dict() if analyse_costs else None
    return {
        "sensitivity": sens,
        "same_body": linux.bootkernel.SYS_GETTID == linux.bootkernel.SYS_TRIVIAL,  # gettid's as getpid's
        "profile": linux.to_dict(),
        "predicted": {
            "up_getpid": r["up_gettid"],
            "forwarded_getpid": r["forwarded_gettid"],
            "ratio": r["forwarded_gettid"] / r["up_gettid"],
            "overhead": r["overhead"],
            "speedup": r["speedup"],
        },
        "published": {**LINUX_TABLE, "overhead": PAPER_OVERHEAD},
        # the values Linux's source gave (those it keeps at the default, it says why, are not counted)
        "counted": sorted(
            f"{s}.{n}" for s, names in linux.overrides().items() for n in names if f"{s}.{n}" in linux.sources
        ),
    }


def format_table(rep: SensitivityReport, top: int | None = None) -> str:
    """The ranked table: each cost's value and the three figures' changes at x0.5 and x2."""
    b = rep.base
    lines = [
        f"profile {rep.profile['name']}, {rep.precision} precision; baseline: overhead {b['overhead']:.1f} "
        f"instructions per forwarded call (K={K}, P={P:g}%, {CPUS} CPUs), forwarded gettid "
        f"{b['forwarded_gettid']:.1f} ({LATENCY_CPUS} CPUs), speedup {b['speedup']:.3f}",
        f"{'rank':>4}  {'cost':<30}{'value':>6}   {'overhead x0.5 / x2':>20}   {'gettid x0.5 / x2':>18}"
        f"   {'speedup x0.5 / x2':>19}",
    ]
    for i, e in enumerate(rep.effects[:top] if top else rep.effects, 1):
        cells = []
        for m, fmt in (("overhead", "{:+.1f}"), ("forwarded_gettid", "{:+.1f}"), ("speedup", "{:+.3f}")):
            d = e.change(m, b)
            cells.append(f"{fmt.format(d[0.5])} / {fmt.format(d[2.0])}")
        lines.append(f"{i:>4}  {e.key:<30}{e.value:>6}   {cells[0]:>20}   {cells[1]:>18}   {cells[2]:>19}")
    lines.append(f"not read by these runs (no effect): {len(rep.unread)} costs")
    return "\n".join(lines)
