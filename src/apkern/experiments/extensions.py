"""`apkern bench extensions`: what each part of section 4.3 built so far buys, off and on.

- `local_calls`: the latency of `gettid` (uniprocessor, forwarded, served on the
  AP), and the throughput of the loop benchmark when each loop also calls getpid:
  forwarded, those calls load the bootstrap processor; served on the AP, they do not.
- placement: a multiprogramming mix of kernel-bound loops (K=4510, P=80%) and
  compute-bound ones (K=151, P=99%), and one whose kernel-bound loops make short
  calls (K=151, P=5%): time to finish all of it, with every process on the APs
  and with the kernel-bound ones placed on the bootstrap processor;
- `migration`: the same mixes with every process spawned with placement "auto",
  so that the policy, not the user, decides where each one runs (and the moves);
- the TLB shoot-down (the swapper under the application kernel): the memory-pressure
  workload (`swap_pressure`) run with the section 4.3 patch, and without it; the
  evictions, shoot-downs, IPIs and instructions per shoot-down on both sides;
- `balance`: the throughput benchmark at its short-call point on 8 and 16 CPUs with
  the paper's one ready queue and with a queue per AP: lock spinning and acquisitions
  per forwarded call, and throughput (`apkern bench balance` adds 32 CPUs and a
  long-call point).
Every figure comes from a run; nothing is computed from constants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..hw import StaleTLB
from ..profiles import Profile
from ..system import System
from . import balance, latency, swap_pressure, throughput

LOCAL = ("local_calls",)


@dataclass
class Row:
    extension: str
    measure: str
    off: float | str
    on: float | str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExtensionsReport:
    rows: list[Row] = field(default_factory=list)
    shootdown: dict[str, Any] = field(default_factory=dict)
    mixes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows], "shootdown": self.shootdown, "mixes": self.mixes}


def local_calls_rows(
    cpus: int = 4,
    iterations: int = 300,
    k: int = 151,
    p: float = 95.0,
    tput_cpus: int = 8,
    getpids: int = 2,
    warmup: int = 400_000,
    window: int = 1_500_000,
    costs: Profile | None = None,
) -> list[Row]:
    up = latency.measure("up", 1, iterations, costs=costs)
    off = latency.measure("apkern", cpus, iterations, costs=costs)
    on = latency.measure("apkern", cpus, iterations, extensions=LOCAL, costs=costs)
    rows = [
        Row(
            "local_calls",
            f"gettid latency on {cpus} CPUs (instructions)",
            round(off.mean_instructions, 1),
            round(on.mean_instructions, 1),
            f"uniprocessor: {up.mean_instructions:.1f}",
        ),
    ]
    base = throughput.measure(k, p, 1, warmup=warmup, window=window, attribute=False, getpids=getpids, costs=costs)
    points = {}
    for name, ext in (("off", ()), ("on", LOCAL)):
        pt = throughput.measure(
            k, p, tput_cpus, warmup=warmup, window=window, attribute=False, extensions=ext, getpids=getpids, costs=costs
        )
        points[name] = throughput.with_speedup(pt, base)
    what = f"loop K={k} P={p:g}% + {getpids} getpid per loop, {tput_cpus} CPUs"
    rows.append(Row("local_calls", f"{what}: speedup", round(points["off"].speedup, 3), round(points["on"].speedup, 3)))
    rows.append(
        Row("local_calls", f"{what}: bootstrap load", round(points["off"].bsp_load, 3), round(points["on"].bsp_load, 3))
    )
    rows.append(
        Row(
            "local_calls",
            f"{what}: forwarded calls per loop",
            round(points["off"].forwarded_calls / points["off"].loops, 2),
            round(points["on"].forwarded_calls / points["on"].loops, 2),
        )
    )
    return rows


def balance_rows(
    cpus_list: tuple[int, ...] = (8, 16),
    k: int = 151,
    p: float = 95.0,
    warmup: int = 400_000,
    window: int = 1_500_000,
    costs: Profile | None = None,
) -> list[Row]:
    """The paper's one ready queue (off) against a queue per AP (on), on the throughput benchmark."""
    base = throughput.measure(k, p, 1, warmup=2_000_000, window=window, attribute=False, costs=costs)
    rows = []
    for cpus in cpus_list:
        off, on = (balance.measure_point(k, p, cpus, q, warmup, window, costs=costs) for q in ("global", "per-AP"))
        for pt in (off, on):
            pt.speedup = throughput.speedup(pt.loops, window, base.loops, base.window_instructions)
        what = f"loop K={k} P={p:g}%, {cpus} CPUs"
        rows += [
            Row(
                "balance",
                f"{what}: lock spinning per forwarded call (instructions, all CPUs)",
                round(off.spin_per_call, 1),
                round(on.spin_per_call, 1),
                f"bootstrap processor's: {off.bsp_spin_per_call:.1f} / {on.bsp_spin_per_call:.1f}",
            ),
            Row(
                "balance",
                f"{what}: lock acquisitions per forwarded call (contended)",
                f"{off.lock_acquisitions_per_call:.2f} ({off.lock_contended_per_call:.2f})",
                f"{on.lock_acquisitions_per_call:.2f} ({on.lock_contended_per_call:.2f})",
            ),
            Row(
                "balance",
                f"{what}: forwarded calls per simulated second",
                round(off.calls_per_second),
                round(on.calls_per_second),
                f"bootstrap processor's instructions per call: {off.bsp_instructions_per_call:.0f} / "
                f"{on.bsp_instructions_per_call:.0f} (the activation places the thread)",
            ),
            Row("balance", f"{what}: speedup", round(off.speedup, 3), round(on.speedup, 3)),
        ]
    return rows


# (K, P, processes, loops each): kernel-bound ones first, then compute-bound ones
MIXES = {
    "the issue's mix": ((4510, 80.0, 4, 30), (151, 99.0, 4, 45)),
    "short kernel-bound calls": ((151, 5.0, 4, 600), (151, 99.0, 4, 45)),
}


def migration_rows(
    cpus: int = 8, warmup: int = 400_000, window: int = 1_500_000, costs: Profile | None = None
) -> list[Row]:
    """The throughput benchmark with every loop spawned "auto": a short-call point whose loops stay on
    the APs (2,869 user instructions per call) and a kernel-bound one whose loops go home (151)."""
    rows = []
    for k, p in ((151, 95.0), (151, 50.0)):
        base = throughput.measure(k, p, 1, warmup=warmup, window=window, attribute=False, costs=costs)
        pts = {}
        for name, ext in (("off", ()), ("on", ("migration",))):
            pt = throughput.measure(
                k, p, cpus, warmup=warmup, window=window, attribute=False, extensions=ext, costs=costs
            )
            pts[name] = throughput.with_speedup(pt, base)
        u = throughput.user_instructions(k, p)
        rows.append(
            Row(
                "migration",
                f"loop K={k} P={p:g}% ({u} user instructions per call), {cpus} CPUs: speedup",
                round(pts["off"].speedup, 3),
                round(pts["on"].speedup, 3),
                "forwarded calls per loop: "
                + " / ".join(f"{pt.forwarded_calls / pt.loops:.2f}" if pt.loops else "-" for pt in pts.values()),
            )
        )
    return rows


def _mix_time(
    mix: tuple[tuple[int, float, int, int], ...], cpus: int, mode: str, costs: Profile | None = None
) -> tuple[int, dict[str, Any]]:
    """Time until the whole mix has finished, and the run's counters. `mode`: "ap" (every process on
    the APs), "static" (the kernel-bound ones, the mix's first entry, on the bootstrap kernel) or
    "auto" (every process spawned with placement "auto", the migration extension on)."""
    ext = ("migration",) if cpus > 1 and mode == "auto" else ()
    sim = System(kernel="up" if cpus == 1 else "apkern", cpus=cpus, extensions=ext, costs=costs)
    for i, (k, p, procs, loops) in enumerate(mix):
        u = throughput.user_instructions(k, p)
        place = None
        if cpus > 1 and (mode == "auto" or mode == "static" and i == 0):
            place = "bsp" if mode == "static" else "auto"
        for j in range(procs):
            sim.spawn("loop", ["loop", str(u), str(k), str(loops), str(j * 997)], placement=place)
    sim.run()
    return sim.now, sim.stats


def mix_times(cpus_list: tuple[int, ...] = (2, 4, 8), costs: Profile | None = None) -> list[dict[str, Any]]:
    """Each mix on each CPU count under every placement: time to finish, speedup over up, moves."""
    out = []
    for name, mix in MIXES.items():
        up, _ = _mix_time(mix, 1, "ap", costs)
        desc = ", ".join(f"{n} x (K={k}, P={p:g}%)" for k, p, n, _ in mix)
        for cpus in cpus_list:
            row: dict[str, Any] = {"mix": name, "desc": desc, "cpus": cpus, "up_time": up}
            for mode in ("ap", "static", "auto"):
                t, st = _mix_time(mix, cpus, mode, costs)
                row[f"{mode}_time"] = t
                row[f"{mode}_speedup"] = round(up / t, 3)
                if mode == "auto":
                    row["migrations_home"] = st["migrations_home"]
                    row["migrations_away"] = st["migrations_away"]
            out.append(row)
    return out


def placement_rows(
    cpus_list: tuple[int, ...] = (2, 4, 8), costs: Profile | None = None
) -> tuple[list[Row], list[dict[str, Any]]]:
    """Time to finish each mix, as a speedup over the uniprocessor kernel: static placement and migration."""
    rows = []
    mixes = mix_times(cpus_list, costs)
    for m in mixes:
        what = f"{m['mix']} [{m['desc']}] on {m['cpus']} CPUs: speedup over up"
        rows.append(
            Row(
                "placement",
                what,
                m["ap_speedup"],
                m["static_speedup"],
                "off: all on the APs; on: the kernel-bound ones on the bootstrap processor",
            )
        )
        rows.append(
            Row(
                "migration",
                what,
                m["ap_speedup"],
                m["auto_speedup"],
                f"on: placement auto ({m['migrations_home']} moves home, {m['migrations_away']} back);"
                f" static: {m['static_speedup']}",
            )
        )
    return rows, mixes


def _pressure(cpus: int, tlb_patch: bool, costs: Profile | None = None) -> System:
    sim = System(
        kernel="apkern",
        cpus=cpus,
        memory=swap_pressure.MEMORY,
        swapper=True,
        tlb_patch=tlb_patch,
        check_tlb=not tlb_patch,
        costs=costs,
    )
    sim.spawn(swap_pressure.pressure, swap_pressure.ARGV)
    return sim


def shootdown_rows(cpus: int = 4, costs: Profile | None = None) -> tuple[list[Row], dict[str, Any]]:
    """The pressure workload with the patch (and its cost), and without (what goes wrong)."""
    sim = _pressure(cpus, tlb_patch=True, costs=costs)
    sim.run(limit=4_000_000_000)
    st = sim.stats
    ok = sim.console().strip()
    n = st["tlb_shootdowns"]
    cost = {
        "cpus": cpus,
        "pages_evicted": st["pages_evicted"],
        "reclaims": st["reclaims"],
        "tlb_shootdowns": n,
        "shootdowns_per_eviction": n / st["pages_evicted"] if st["pages_evicted"] else None,
        "ipis_per_shootdown": st["tlb_shootdown_ipis"] / n if n else None,
        "bsp_instructions_per_shootdown": st["tlb_shootdown_bsp_instructions"] / n if n else None,
        "ap_instructions_per_shootdown": st["tlb_shootdown_ap_instructions"] / n if n else None,
        "ap_instructions_per_ipi": (
            st["tlb_shootdown_ap_instructions"] / st["tlb_shootdown_ipis"] if st["tlb_shootdown_ipis"] else None
        ),
        "time": st["time"],
        "console": ok,
    }
    checked = _pressure(
        cpus, tlb_patch=False, costs=costs
    )  # the TLB checker on: the first stale translation used stops it
    try:
        checked.run(limit=4_000_000_000)
        stale = "none used"
    except StaleTLB as e:
        stale = str(e).split(": ", 1)[0] + " used a stale translation"
    plain = System(kernel="apkern", cpus=cpus, memory=swap_pressure.MEMORY, swapper=True, tlb_patch=False, costs=costs)
    plain.spawn(swap_pressure.pressure, swap_pressure.ARGV)
    plain.run(limit=4_000_000_000)
    wrong = plain.console().strip()
    rows = [
        Row(
            "TLB shoot-down (swapper)",
            f"memory pressure on {cpus} CPUs: the workload's statuses",
            wrong,
            ok,
            f"without the patch: {stale}",
        ),
        Row(
            "TLB shoot-down (swapper)",
            "shoot-downs per eviction / IPIs per shoot-down",
            "-",
            f"{cost['shootdowns_per_eviction']:.2f} / {cost['ipis_per_shootdown']:.2f}",
        ),
        Row(
            "TLB shoot-down (swapper)",
            "instructions per shoot-down: bootstrap processor / APs",
            "-",
            f"{cost['bsp_instructions_per_shootdown']:.0f} / {cost['ap_instructions_per_shootdown']:.0f}",
            f"{cost['ap_instructions_per_ipi']:.0f} per AP interrupted (parked while the page is copied out)",
        ),
    ]
    return rows, cost


def measure(cpus: int = 4, costs: Profile | None = None) -> ExtensionsReport:
    """Every extension off and on (`costs`: the cost profile; the default's when None)."""
    rep = ExtensionsReport()
    rep.rows += local_calls_rows(cpus=cpus, costs=costs)
    rep.rows += balance_rows(costs=costs)
    rows, rep.mixes = placement_rows(costs=costs)
    rep.rows += rows
    rep.rows += migration_rows(costs=costs)
    rows, cost = shootdown_rows(cpus=cpus, costs=costs)
    rep.rows += rows
    rep.shootdown = cost
    return rep


def format_table(rep: ExtensionsReport) -> str:
    head = ("extension", "measure", "off", "on", "note")
    body = [(r.extension, r.measure, str(r.off), str(r.on), r.note) for r in rep.rows]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (head, *body)]
    return "\n".join(lines)
