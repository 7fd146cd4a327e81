"""report.md's sections on the kernels' path costs: the sensitivity analysis and the out-of-sample check.

Every sentence is computed from the summary: which costs move the overhead most, how many
times per forwarded call each path runs (a cost's change when doubled, over its value),
how much of the overhead the named path costs make up, and whether the linux-2.4
profile's predictions match the Linux version's Simics table.
"""

from __future__ import annotations

from typing import Any

MATCH = 0.20  # a prediction within 20% of the published figure is a match
SHOWN = 10


def times_per_call(effect: dict[str, Any], base: dict[str, Any], metric: str) -> float:
    """How many times per unit of `metric` a path runs: the change when its cost doubles, over its value."""
    return (effect["at"]["2.0"][metric] - base[metric]) / effect["value"]


def _verdict(predicted: float, published: float) -> str:
    r = predicted / published
    if abs(r - 1) <= MATCH:
        return f"match ({r:.2f} of it)"
    return f"miss: {r:.2f} of it" if r < 1 else f"miss: {r:.2f} times it"


def sensitivity_lines(sens: dict[str, Any]) -> list[str]:
    base = sens["base"]
    effects = sens["effects"]
    read = len(effects)
    total = read + len(sens["unread"])
    named = sum(e["at"]["2.0"]["overhead"] - base["overhead"] for e in effects)
    lines = [
        "",
        "## Which path costs the overhead depends on (`apkern bench sensitivity`)",
        "",
        f"Profile `{sens['profile']['name']}`. Each of the {read} path costs the runs read (of {total}; the "
        "others cannot change them) halved and doubled, one at a time, at least one instruction; the overhead "
        f"is attributed by path at K={sens['point']['syscall_instr']}, P={sens['point']['user_pct']:g}%, "
        f"{sens['point']['cpus']} CPUs (baseline {base['overhead']:.1f} instructions per forwarded call), the "
        f"forwarded `gettid` runs on {sens['point']['latency_cpus']} CPUs (baseline "
        f"{base['forwarded_gettid']:.1f}), and the speedup is over the uniprocessor under the same scaled "
        f"profile (baseline {base['speedup']:.3f}). Ranked by the change of the overhead "
        "(`fig_sensitivity.png`); *per call* is the change when doubled over the cost's value: how many "
        "times per forwarded call the bootstrap side runs that path.",
        "",
        "| rank | cost | value | overhead x0.5 / x2 | per call | forwarded gettid x0.5 / x2 | speedup x0.5 / x2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, e in enumerate(effects[:SHOWN], 1):
        d = {f: {m: e["at"][f][m] - base[m] for m in ("overhead", "forwarded_gettid", "speedup")} for f in e["at"]}
        lines.append(
            f"| {i} | `{e['key']}` | {e['value']} | {d['0.5']['overhead']:+.1f} / {d['2.0']['overhead']:+.1f} | "
            f"{times_per_call(e, base, 'overhead'):.2f} | {d['0.5']['forwarded_gettid']:+.1f} / "
            f"{d['2.0']['forwarded_gettid']:+.1f} | {d['0.5']['speedup']:+.3f} / {d['2.0']['speedup']:+.3f} |"
        )
    top = effects[:3]
    lines += [
        "",
        f"The named path costs make up {named:.0f} of the {base['overhead']:.0f} instructions of overhead "
        f"({named / base['overhead']:.0%}, the sum of every cost's change when doubled); the rest is what ops "
        "cost: the message and TCB stores, the lock's compare-exchange and spinning, the CR3 loads. The "
        "three paths a kernel developer would make cheaper first: "
        + "; ".join(
            f"`{e['key']}` ({times_per_call(e, base, 'overhead'):.1f} per forwarded call at {e['value']})" for e in top
        )
        + ".",
    ]
    return lines


def out_of_sample_lines(oos: dict[str, Any], sens: dict[str, Any] | None, own: dict[str, Any]) -> list[str]:
    """The linux-2.4 predictions beside the published figures; `own` holds this run's profile's."""
    pred, pub = oos["predicted"], oos["published"]
    lines = [
        "",
        "## Out of sample: the linux-2.4 profile beside the Linux version",
        "",
        "The `linux-2.4` profile (`apkern costs linux-2.4`) sets the bootstrap kernel's system-call entry, "
        "dispatch and exit, getpid and gettid bodies, scheduler, wake-up, fget and ioctl paths to their "
        "instruction counts in the Linux 2.4.22 source, each with its source in the file, and calibrates "
        "nothing to the application kernel's figures. Its predictions, beside the Linux version's Simics "
        "table (getpid, in cycles of a one-instruction-per-cycle model) and the paper's overhead:",
        "",
        f"| figure | published | apkern, linux-2.4 | verdict | apkern, {own['name']} |",
        "|---|---|---|---|---|",
        f"| uniprocessor getpid | {pub['up_getpid']} (Linux) | {pred['up_getpid']:.1f} | "
        f"{_verdict(pred['up_getpid'], pub['up_getpid'])} | {own['up_gettid']:.1f} |",
        f"| forwarded getpid | about {pub['forwarded_getpid']} | {pred['forwarded_getpid']:.1f} | "
        f"{_verdict(pred['forwarded_getpid'], pub['forwarded_getpid'])} | {own['forwarded_gettid']:.1f} |",
        f"| their ratio | {pub['ratio']:.1f} | {pred['ratio']:.1f} | {_verdict(pred['ratio'], pub['ratio'])} | "
        f"{own['forwarded_gettid'] / own['up_gettid']:.1f} |",
        f"| overhead per forwarded call | about {pub['overhead']} (the paper's kernel) | {pred['overhead']:.0f} | "
        f"{_verdict(pred['overhead'], pub['overhead'])} | {own['overhead']:.0f} |",
        "",
        "(getpid and gettid take the same path here: the latency program times gettid.)",
    ]
    if sens:
        base = sens["base"]
        gap = pub["forwarded_getpid"] - pred["forwarded_getpid"]
        paths = sorted(sens["effects"], key=lambda e: -times_per_call(e, base, "forwarded_gettid") * e["value"])[:3]
        up_gap = pub["up_getpid"] - pred["up_getpid"]
        lines += [
            "",
            f"What the sensitivity analysis says causes it. The uniprocessor getpid is the four system-call "
            f"path costs and the `int`, once each, so the {up_gap:+.0f} instructions to Linux's 74 lie outside "
            "the counted entry.S path and body: in what the published measurement held besides them (the C "
            "library's wrapper, the timing code), which the table does not say. A forwarded "
            f"call is {gap:+.0f} instructions from the published one. The paths that make up most of it, with "
            "how many times a forwarded gettid runs each: "
            + "; ".join(
                f"`{e['key']}` {times_per_call(e, base, 'forwarded_gettid'):.1f} times"
                for e in paths
                if times_per_call(e, base, "forwarded_gettid") > 0
            )
            + ". Closing the gap with one of them alone would need it "
            + ", or ".join(
                f"{gap / times_per_call(e, base, 'forwarded_gettid'):+.0f} instructions longer (`{e['key']}`)"
                for e in paths
                if times_per_call(e, base, "forwarded_gettid") > 0
            )
            + ".",
        ]
        counted = set(oos["counted"])
        unmeasured = [e for e in sens["effects"] if e["key"] not in counted]
        u = sum(times_per_call(e, base, "overhead") * e["value"] for e in unmeasured)
        need = pub["overhead"] - pred["overhead"]
        if u > 0 and need > 0:
            lines += [
                "",
                f"The overhead misses the paper's by {need:.0f} instructions. The bootstrap-side paths the "
                f"profile leaves at their estimates (no Linux count: the application kernel's own paths, the "
                f"driver's checks) make up {u:.0f} instructions of it; they would have to be "
                f"{(u + need) / u:.1f} times their estimates for the overhead to reach "
                f"{pub['overhead']}, or the paper's kernel did work per forwarded call that no path here stands for.",
            ]

    return lines
