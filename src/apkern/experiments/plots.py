"""Figures 6, 7 and 8: speedup (top) and bootstrap load (bottom) against CPUs, a line per user share.

With the giant-lock SMP port's grid in the summary, its speedups (top) and lock-spin
shares (bottom) are drawn dashed in the colour of the same user share; with the
master-slave port's, its speedups and the master's load dotted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIGURES = {151: "fig6.png", 451: "fig7.png", 4510: "fig8.png"}


def plot_extensions(summary: dict[str, Any], out: Path) -> Path | None:
    """Speedups with each extension off and on (the rows that are speedups)."""
    ext = summary.get("extensions")
    rows = [
        r for r in (ext or {}).get("rows", []) if r["measure"].endswith("speedup") or "speedup over" in r["measure"]
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(rows) + 1.5))
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], [r["off"] for r in rows], height=0.4, label="off")
    ax.barh([y - 0.2 for y in ys], [r["on"] for r in rows], height=0.4, label="on")
    labels = [r["extension"] + ": " + re.sub(r" \[.*?\]", "", r["measure"]).split(":")[0] for r in rows]
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speedup over the uniprocessor kernel")
    ax.set_title("Section 4.3 extensions, off and on")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "fig_extensions.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _style_key(labels: tuple[str, str, str]) -> list[Any]:
    """Legend entries for the three kernels' line styles (solid, dashed, dotted), in grey."""
    from matplotlib.lines import Line2D

    styles = (("-", "o"), ("--", "x"), (":", "s"))
    return [
        Line2D([], [], color="grey", linestyle=ls, marker=m, label=lab)
        for lab, (ls, m) in zip(labels, styles, strict=True)
    ]


def plot_figures(summary: dict[str, Any], out: Path) -> list[Path]:
    rows = summary["throughput"]
    plateau = summary.get("saturation", {}).get("plateau_load")
    written = []
    for k, name in FIGURES.items():
        wide = [r for r in summary.get("wide") or [] if r["syscall_instr"] == k]
        if wide:  # a third panel: the saturated curve on wide machines, beside the capacity model's bound
            fig, axes = plt.subplots(3, 1, figsize=(6.4, 10.0), height_ratios=[3, 2, 2])
            top, bottom, far = axes
            bottom.sharex(top)
            curve = [r for r in rows if r["syscall_instr"] == k and r["user_pct"] == wide[0]["user_pct"]]
            _wide_panel(far, wide, curve)
        else:
            fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 7.2), sharex=True, height_ratios=[3, 2])
        smp = (summary.get("smp") or {}).get("throughput", [])
        ms = (summary.get("master_slave") or {}).get("throughput", [])
        for p in sorted({r["user_pct"] for r in rows if r["syscall_instr"] == k}):
            pts = sorted((r for r in rows if r["syscall_instr"] == k and r["user_pct"] == p), key=lambda r: r["cpus"])
            cpus = [r["cpus"] for r in pts]
            (line,) = top.plot(cpus, [r["speedup"] for r in pts], marker="o", label=f"{p:g}%")
            ak = [r for r in pts if r["cpus"] > 1 and r["bsp_load"] is not None]
            bottom.plot([r["cpus"] for r in ak], [r["bsp_load"] for r in ak], marker="o", label=f"{p:g}%")
            port = [pts[0]] + [r for r in smp if r["syscall_instr"] == k and r["user_pct"] == p]
            if len(port) > 1:  # the giant-lock port, dashed in the same colour; its lock spin below
                style = {"color": line.get_color(), "linestyle": "--", "marker": "x", "linewidth": 1}
                top.plot([r["cpus"] for r in port], [r["speedup"] for r in port], **style)
                bottom.plot([r["cpus"] for r in port[1:]], [r["lock_spin_share"] for r in port[1:]], **style)
            port = [pts[0]] + [r for r in ms if r["syscall_instr"] == k and r["user_pct"] == p]
            if len(port) > 1:  # the master-slave port, dotted in the same colour; the master's load below
                style = {"color": line.get_color(), "linestyle": ":", "marker": "s", "markersize": 3, "linewidth": 1}
                top.plot([r["cpus"] for r in port], [r["speedup"] for r in port], **style)
                bottom.plot([r["cpus"] for r in port[1:]], [r["master_load"] for r in port[1:]], **style)
        if ms:  # three kernels: a legend of line styles says which is which, top and bottom
            top.set_ylabel("speedup (vs. uniprocessor kernel)")
            bottom.set_ylabel("load or share")
        else:
            top.set_ylabel("speedup (vs. uniprocessor kernel)" + ("; dashed: smp" if smp else ""))
            bottom.set_ylabel("bootstrap load" + (" (smp, dashed: lock-spin share)" if smp else ""))
        top.set_title(f"Speedup and bootstrap kernel load at {k}-instruction system calls")
        top.grid(alpha=0.3)
        shares = top.legend(title="user share", fontsize=8, loc="upper left")
        if ms:
            top.add_artist(shares)
            top.legend(handles=_style_key(("apkern", "smp", "master-slave")), fontsize=7, loc="lower right")
            bottom.legend(
                handles=_style_key(("apkern: bootstrap load", "smp: lock-spin share", "master-slave: master load")),
                fontsize=7,
                loc="upper left",
            )
        if plateau is not None:  # where the saturated points' load settles, as observed
            bottom.axhline(plateau, color="grey", linestyle="--", linewidth=0.8)
            bottom.annotate("observed plateau", (1.1, plateau + 0.02), fontsize=7, color="grey")
        bottom.set_xlabel("CPUs")
        bottom.set_ylim(0, 1.05)
        bottom.grid(alpha=0.3)
        bottom.set_xticks(range(1, 9))
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    for extra in (plot_extensions(summary, out), plot_sensitivity(summary, out)):
        if extra is not None:
            written.append(extra)
    return written


SENSITIVITY_PANELS = (
    ("overhead", "overhead per forwarded call", "{:.0f}"),
    ("forwarded_gettid", "forwarded gettid", "{:.0f}"),
    ("speedup", "saturated speedup", "{:.2f}"),
)


def tornado_rows(sens: dict[str, Any], top: int = 12) -> list[dict[str, Any]]:
    """The `top` costs of a sensitivity report, each with its changes at x0.5 and x2 per figure."""
    base = sens["base"]
    rows = []
    for e in sens["effects"][:top]:
        d = {m: (e["at"]["0.5"][m] - base[m], e["at"]["2.0"][m] - base[m]) for m, _, _ in SENSITIVITY_PANELS}
        rows.append({"key": e["key"], "value": e["value"], **d})
    return rows


def plot_sensitivity(summary: dict[str, Any], out: Path, top: int = 12) -> Path | None:
    """The tornado figure of `apkern bench sensitivity`: each cost's effect, halved and doubled."""
    sens = summary.get("sensitivity")
    if not sens or not sens["effects"]:
        return None
    rows = tornado_rows(sens, top)
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.42 * len(rows) + 1.8), sharey=True)
    ys = list(range(len(rows)))
    for ax, (m, title, fmt) in zip(axes, SENSITIVITY_PANELS, strict=True):
        ax.barh(ys, [r[m][0] for r in rows], height=0.6, color="tab:blue", label="cost x0.5")
        ax.barh(ys, [r[m][1] for r in rows], height=0.6, color="tab:red", alpha=0.8, label="cost x2")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"{title}\n(baseline {fmt.format(sens['base'][m])})", fontsize=9)
        ax.set_xlabel("change" + (" (instructions)" if m != "speedup" else ""), fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, [f"{r['key']} ({r['value']})" for r in rows], fontsize=7)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=7, loc="lower right")
    name = sens["profile"]["name"]
    fig.suptitle(f"Which path costs matter: each halved and doubled, one at a time (profile {name})", fontsize=10)
    fig.tight_layout()
    path = out / "fig_sensitivity.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _wide_panel(ax: Any, wide: list[dict[str, Any]], grid: list[dict[str, Any]]) -> None:
    """Speedup of one saturated curve from 1 to 64 CPUs (log scale), and the model's bound at the wide points."""
    pts = sorted(grid + wide, key=lambda r: r["cpus"])
    ax.plot([r["cpus"] for r in pts], [r["speedup"] for r in pts], marker="o", label=f"{wide[0]['user_pct']:g}%")
    bound = [r for r in wide if r.get("predicted_speedup") is not None]
    if bound:
        ax.plot(
            [r["cpus"] for r in bound],
            [r["predicted_speedup"] for r in bound],
            color="grey",
            linestyle="--",
            linewidth=1,
            label="capacity model",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8, 16, 32, 64], ["1", "2", "4", "8", "16", "32", "64"])
    ax.set_xlabel("CPUs (wide machines)")
    ax.set_ylabel("speedup")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def plot_study(summary: dict[str, Any], out: Path) -> list[Path]:
    """`apkern study`: one figure per workload, speedup against CPUs, a curve per kernel (the journal's layout).

    A kernel without a one-CPU run starts its curve from the uniprocessor point; the
    journal's figures for the workload, where it gives some, are drawn as hollow
    markers (a figure on the largest CPU count), dotted lines (the top of the curve)
    and bands (a range over the CPU counts from 2 on), in the kernel's colour.
    """
    from .study import BASELINE

    written = []
    journal = {e["workload"]: f for f in summary.get("journal", []) for e in f["ours"]}
    for w, curves in summary["curves"].items():
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        base = curves.get(BASELINE, {}).get("points", {}).get(1)
        colours = {}
        most = max(n for c in curves.values() for n in c["points"])
        for k, c in curves.items():
            pts = dict(c["points"])
            if k == BASELINE:
                continue
            if 1 not in pts and base is not None:
                pts[1] = base
            ns = sorted(pts)
            (line,) = ax.plot(ns, [pts[n] for n in ns], marker="o", label=k)
            colours[k] = line.get_color()
        if base is not None:
            ax.plot([1], [base], marker="s", color="black", linestyle="", label=f"{BASELINE} (1 CPU)")
        f = journal.get(w)
        if f is not None and f["measure"] != "vs_smp":
            for k, (lo, hi) in (("apkern", f["apkern"]), ("smp", f["smp"])):
                colour = colours.get(k, "grey")
                label = f"journal (SPE 2006): {'SMP Linux' if k == 'smp' else 'apkern'}"
                if f["measure"] == "range":  # over the CPU counts from 2 on
                    ax.fill_between([2, most], lo - 0.005, hi + 0.005, color=colour, alpha=0.15, label=label)
                elif f["measure"] == "top":  # where the curve tops out, on whichever CPU count
                    ax.axhline(hi, color=colour, linestyle=":", label=label)
                else:  # on the largest CPU count
                    ax.plot([most], [hi], marker="D", markerfacecolor="none", color=colour, linestyle="", label=label)
        ax.set_xlabel("CPUs")
        ax.set_ylabel(f"speedup over {BASELINE} on 1 CPU")
        ax.set_title(f"{w}: speedup against CPUs")
        ax.set_xticks(range(1, most + 1))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"study_{w}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
