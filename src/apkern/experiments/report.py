"""report.md: our figures beside the paper's statements, each with a verdict, and the component sizes."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

from .model import capacity

PAPER_OVERHEAD = 2000


def source_lines(obj: ModuleType | Any) -> int:
    """Lines of code of a module or function: not blank, not comments, not docstrings."""
    src = inspect.getsource(obj)
    tree = ast.parse(src)
    doc: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            v = body[0].value
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                doc.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(
        1
        for i, line in enumerate(src.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and i not in doc
    )


def component_sizes() -> list[tuple[str, int, str]]:
    from ..appkernel import abi, costs, driver, kernel, ready_queue, spinlock, tcb, trap
    from ..bootkernel import tlb_patch
    from ..userland import ak_crt0, crt0

    ap_part = sum(source_lines(m) for m in (kernel, trap, spinlock, ready_queue, tcb, costs))
    loop = sum(
        source_lines(f)
        for f in (
            ak_crt0.bootstrap_loop,
            ak_crt0.handle_message,
            ak_crt0._sigaction,
            ak_crt0._thread_create,
            ak_crt0.bt_signal_handler,
            ak_crt0.ak_bootstrap_thread,
        )
    )
    start = sum(source_lines(f) for f in (ak_crt0.ak_crt0, ak_crt0._pair, ak_crt0.ak_app_start))
    return [
        (
            "application kernel, in all (driver + AP side + ABI)",
            source_lines(driver) + ap_part + source_lines(abi),
            "about 2500 lines of C and assembly, mostly SMP initialisation",
        ),
        ("device driver part (`appkernel/driver.py`)", source_lines(driver), "slightly more than 250 lines"),
        ("AP side (kernel, traps, ready queue, spinlock, TCBs, costs)", ap_part, "(part of the 2500)"),
        ("bootstrap-thread loop and call translation (`ak_crt0`)", loop, "about 120 lines"),
        (
            f"crt0 start-up (`ak_crt0` vs plain crt0: {source_lines(crt0.crt0)} lines)",
            start,
            "a few lines of modified code",
        ),
        ("bootstrap kernel patch (section 4.3 TLB hook, off by default)", source_lines(tlb_patch), "none needed"),
    ]


def _lat(summary: dict[str, Any], kernel: str, cpus: int | None = None) -> dict[str, Any] | None:
    for r in summary["latency"]:
        if r["kernel"] == kernel and (cpus is None or r["cpus"] == cpus):
            return r
    return None


def _speedup(summary: dict[str, Any], k: int, p: float, n: int) -> float | None:
    for r in summary["throughput"]:
        if r["syscall_instr"] == k and r["user_pct"] == p and r["cpus"] == n:
            return r["speedup"]
    return None


def _flatness_verdict(summary: dict[str, Any]) -> str:
    """Agrees if, on every curve, the saturated points' speedups stay within 5% of each other."""
    curves: dict[tuple[int, float], list[float]] = {}
    for r in summary["throughput"]:
        if r["saturated"]:
            curves.setdefault((r["syscall_instr"], r["user_pct"]), []).append(r["speedup"])
    if not curves:
        return "not reached"
    rising = [f"K={k} P={p:g}%" for (k, p), v in curves.items() if max(v) > 1.05 * min(v)]
    if rising:
        return "differs: still rising past saturation at " + ", ".join(rising)
    return "agrees: every curve is flat once the load reaches its ceiling of 0.5 (see below)"


def write_report(summary: dict[str, Any], path: Path) -> None:
    up = _lat(summary, "up")
    ak2 = _lat(summary, "apkern", 2)
    ak8 = _lat(summary, "apkern", 8)
    derived, measured = summary["derived_overhead"], summary["measured_overhead"]
    cfg = summary["config"]
    lines = [
        "# apkern: the paper's section 5, reproduced",
        "",
        f"Precision `{cfg['precision']}`, seed {cfg['seed']}, {cfg['procs']} loop processes, "
        f"{len(summary['throughput'])} throughput points, {cfg['jobs']} worker processes, "
        f"{summary['wall_seconds']} s. Time is counted in instructions, as in the paper's Simics runs; "
        "100 MIPS converts to seconds. Every figure below is a difference of counters kept by the code "
        "paths; only the uniprocessor `gettid` cost is calibrated to the paper.",
        "",
        "## The paper's statements and ours",
        "",
        "| the paper says | we measure | verdict |",
        "|---|---|---|",
    ]

    def row(paper: str, ours: str, verdict: str) -> None:
        lines.append(f"| {paper} | {ours} | {verdict} |")

    if up:
        row(
            "`gettid` takes about 100 instructions on the uniprocessor kernel (5.1)",
            f"{up['mean_instructions']:.1f} instructions (min {up['min_instructions']})",
            "agrees: this is the one calibrated cost (timer interrupts add the fraction)"
            if abs(up["mean_instructions"] - 100) <= 20
            else "differs",
        )
    if ak2 and ak8:
        bd = ak2["breakdown"]
        bsp = bd.get("wait for the BSP", 0) + bd.get("bootstrap thread re-issue", 0) + bd.get("activation", 0)
        row(
            "with the application kernel the main delay is on the bootstrap processor (5.1)",
            f"{ak2['mean_instructions']:.0f} instructions on 2 CPUs, {ak8['mean_instructions']:.0f} on 8; "
            f"{bsp:.0f} of them on the bootstrap side (wait, re-issue, activation)",
            "agrees" if bsp > ak2["mean_instructions"] / 2 else "differs: most of the delay is on the AP",
        )
    if derived is not None:
        agree = summary["overhead_agreement"]
        row(
            f"the overhead per forwarded call is about {PAPER_OVERHEAD} instructions (5.2)",
            f"derived from the saturated points: {derived:.0f}; measured on the bootstrap processor: "
            f"{measured:.0f} (they differ by {100 * agree:.1f}%)",
            "differs, explained below" if abs(derived - PAPER_OVERHEAD) / PAPER_OVERHEAD > 0.25 else "agrees",
        )
    else:
        row(
            f"the overhead per forwarded call is about {PAPER_OVERHEAD} instructions (5.2)",
            "no point saturated the bootstrap processor in this run",
            "cannot derive",
        )
    s2 = [(p, _speedup(summary, 4510, p, 2)) for p in cfg["ps"]]
    gains = [f"{p:g}%: {s:.2f}" for p, s in s2 if s is not None]
    row(
        "even two processors give a gain at 4510-instruction calls (Figure 8)",
        "speedup on 2 CPUs, K=4510 — " + ", ".join(gains),
        "agrees" if all(s > 1 for _, s in s2 if s is not None) else "partly: not at every user share",
    )
    s151 = [(p, _speedup(summary, 151, p, 2)) for p in cfg["ps"]]
    row(
        "with frequent short calls the gain shows only beyond two processors (Figure 6)",
        "speedup on 2 CPUs, K=151 — " + ", ".join(f"{p:g}%: {s:.2f}" for p, s in s151 if s is not None),
        "agrees" if all(s <= 1.05 for p, s in s151 if s is not None and p <= 95) else "differs",
    )
    sat = summary["saturated_speedups"]
    row(
        "the maximum throughput is limited by the bootstrap processor's capacity (5.2)",
        f"{summary['saturated_points']} points reach a bootstrap load of {cfg['saturation_threshold']} or more; "
        "their best speedups: " + ", ".join(f"K={k}: {v:.2f}" for k, v in sat.items() if v),
        _flatness_verdict(summary),
    )
    ex = capacity(1000, 15000, 2000, 100e6)
    ours = capacity(1000, 15000, derived, 100e6) if derived is not None else None
    row(
        "worked example: 1000-instruction calls every 15,000 instructions, opsc 2000, 100 MIPS: "
        "about 33,000 calls/s and a speedup of 5",
        f"the model gives {ex.max_calls_per_second:,.0f} calls/s and {ex.max_speedup:.2f}"
        + (
            f"; with our overhead {derived:.0f}: {ours.max_calls_per_second:,.0f} calls/s, speedup "
            f"{ours.max_speedup:.2f}"
            if ours
            else ""
        ),
        "agrees: the model reproduces the paper's arithmetic"
        if round(ex.max_calls_per_second) == 33333 and abs(ex.max_speedup - 5) < 1e-9
        else "differs",
    )
    lines += ["", "## Why our overhead is what it is", ""]
    if ak2:
        bd = ak2["breakdown"]
        lines.append(
            "The overhead is not a constant of ours: it is the bootstrap processor's instructions per forwarded "
            "call minus the call itself. Per call the bootstrap side runs the bootstrap thread's loop pass that "
            "finds the message, the re-issued call (the same path as on the uniprocessor), the store of the "
            f"result, and a `driver_control` system call into `apkern_activate_thread` (about "
            f"{bd.get('activation', 0):.0f} instructions in the unloaded latency run), plus the passes "
            "of other bootstrap threads that find no message and yield. Our bootstrap kernel's paths are short "
            "(xv6-sized estimates, see `bootkernel/costs.py`); the paper's in-house kernel, its IA-32 trap "
            "and context-switch paths, and its device-driver call path were presumably longer, which is where "
            "a 2000-instruction overhead would come from. The model itself (C = scps·(ipsc+opsc)) holds for "
            "our numbers: see the check below."
        )
    lines += [
        "",
        "The bootstrap load is the paper's: the share of bootstrap-loop passes that handled a message. "
        "Figure 4's loop checks its area again right after handling a message, before it reschedules, "
        "and that second look always finds the area empty (the application thread has only just been "
        "activated), so at most every other pass is busy: the load tops out at 0.5, not 1. We call a "
        f"point saturated at {summary['config']['saturation_threshold']:.3f} (95% of that ceiling); "
        "the derived overhead uses those points, as the paper uses the flat parts of its curves.",
        "",
        "## Model check at every saturated point",
        "",
        "Each point is predicted by T_up / (ipsc + opsc) with opsc derived from the saturated points of the "
        "*other* two call lengths (held out), so the check does not test the derivation against itself.",
        "",
    ]
    if summary["model_check"]:
        lines += [
            "| K | P | CPUs | load | simulated | predicted | opsc used | error | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in summary["model_check"]:
            why = (
                "ok"
                if c["within"]
                else (
                    f"outside 10%: this point's own overhead is {c['point_overhead']:.0f} against "
                    f"{c['overhead_used']:.0f} derived at the other call lengths. ipsc is measured on the "
                    f"uniprocessor kernel, which spends {c['up_extra_per_call']:.0f} instructions per call beyond "
                    f"K here (path, timer ticks, context switches) and {c['up_extra_elsewhere'] or 0:.0f} there; "
                    "the overhead absorbs the difference. Bootstrap side: "
                    f"{c['idle_passes_per_call']:.2f} empty loop passes per call, "
                    f"{c['bsp_spin_per_call'] or 0:.0f} instructions per call spinning on the lock"
                )
            )
            lines.append(
                f"| {c['syscall_instr']} | {c['user_pct']:g} | {c['cpus']} | {c['bsp_load']:.2f} | "
                f"{c['simulated_speedup']:.2f} | {c['predicted_speedup']:.2f} | {c['overhead_used']:.0f} | "
                f"{100 * c['relative_error']:+.1f}% | "
                f"{why} |"
            )
    else:
        lines.append("No point reached the saturation threshold in this run.")
    lines += ["", "## Latency breakdown (instructions per `gettid`)", ""]
    stages: list[str] = []
    for r in summary["latency"]:
        stages += [s for s in r["breakdown"] if s not in stages]
    lines.append("| kernel | CPUs | mean | " + " | ".join(stages) + " |")
    lines.append("|---" * (3 + len(stages)) + "|")
    for r in summary["latency"]:
        cells = [f"{r['breakdown'][s]:.1f}" if s in r["breakdown"] else "" for s in stages]
        lines.append(f"| {r['kernel']} | {r['cpus']} | {r['mean_instructions']:.1f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Component sizes beside the paper's section 4.4",
        "",
        "| component | lines of code (ours) | the paper |",
        "|---|---|---|",
    ]
    for name, n, paper in component_sizes():
        lines.append(f"| {name} | {n} | {paper} |")
    lines += [
        "",
        "Lines of code: not blank, not comments, not docstrings. The paper's figures are C and assembly.",
        "",
        "Figures: `fig6.png` (K=151), `fig7.png` (K=451), `fig8.png` (K=4510); data: `throughput.csv`, "
        "`latency.csv`, `summary.json`.",
        "",
    ]
    path.write_text("\n".join(lines))
