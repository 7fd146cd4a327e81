"""report.md's sections on the kernels' path costs: the sensitivity analysis and the out-of-sample check.

Every sentence is computed from the summary: which costs move the overhead most, how many
times per forwarded call each path runs (a cost's change when doubled, over its value),
how much of the overhead the named path costs make up, and whether the linux-2.4
profile's predictions match the Linux version's Simics table.
"""

from __future__ import annotations

from typing import Any

MATCH = 0.20  # a prediction within 20% of the published figure is a match
# linux-2.4.toml's CONTEXT_SWITCH is counted with 2 runnable tasks; schedule()'s goodness() loop takes about
# this many instructions more per further runnable task (the same count, in that value's source)
GOODNESS_PER_TASK = 23
SHOWN = 10


def times_per_call(effect: dict[str, Any], base: dict[str, Any], metric: str) -> float | None:
    """How many times per unit of `metric` a path runs: its change over the cost's change, when halving and
    doubling agree on it (within 10%); None when they do not (the path hides in slack, e.g. behind a wait)."""
    v, v2, v05 = effect["value"], effect["scaled"]["2.0"], effect["scaled"]["0.5"]
    c2 = (effect["at"]["2.0"][metric] - base[metric]) / (v2 - v)
    if v05 == v:  # halving cannot change it: doubling alone says
        return c2
    c05 = (effect["at"]["0.5"][metric] - base[metric]) / (v05 - v)
    return c2 if abs(c2 - c05) <= 0.1 * max(abs(c2), abs(c05)) + 0.02 else None


def _moves(effect: dict[str, Any], base: dict[str, Any], metric: str) -> bool:
    """Whether halving or doubling the cost moves `metric` by a tenth of the cost's value (and an instruction)."""
    change = max(abs(effect["at"][f][metric] - base[metric]) for f in ("0.5", "2.0"))
    return change >= max(1.0, 0.1 * effect["value"])


def _count(c: float | None) -> str:
    return "non-linear" if c is None else f"{c:.2f}"


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
        "times per forwarded call the bootstrap side runs that path (when halving and doubling agree on it; "
        "*non-linear* when they do not: the path hides in slack).",
        "",
        "| rank | cost | value | overhead x0.5 / x2 | per call | forwarded gettid x0.5 / x2 | speedup x0.5 / x2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, e in enumerate(effects[:SHOWN], 1):
        d = {f: {m: e["at"][f][m] - base[m] for m in ("overhead", "forwarded_gettid", "speedup")} for f in e["at"]}
        lines.append(
            f"| {i} | `{e['key']}` | {e['value']} | {d['0.5']['overhead']:+.1f} / {d['2.0']['overhead']:+.1f} | "
            f"{_count(times_per_call(e, base, 'overhead'))} | {d['0.5']['forwarded_gettid']:+.1f} / "
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
            f"`{e['key']}` ({_count(times_per_call(e, base, 'overhead'))} per forwarded call at {e['value']})"
            for e in top
        )
        + ".",
    ]
    return lines


def out_of_sample_lines(oos: dict[str, Any], own: dict[str, Any]) -> list[str]:
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
        "(The latency program times gettid: in this profile its body costs what getpid's does.)"
        if oos.get("same_body", True)
        else "(The latency program times gettid, whose body this profile prices apart from getpid's.)",
    ]
    sens = oos.get("sensitivity")
    if sens:
        base = sens["base"]
        gap = pub["forwarded_getpid"] - pred["forwarded_getpid"]
        fwd = [(e, times_per_call(e, base, "forwarded_gettid")) for e in sens["effects"]]
        paths = sorted(((e, c) for e, c in fwd if c and c > 0), key=lambda ec: -ec[1] * ec[0]["value"])[:3]
        slack = [e["key"] for e, c in fwd if c is None and _moves(e, base, "forwarded_gettid")]
        up_gap = pub["up_getpid"] - pred["up_getpid"]
        lines += [
            "",
            "What the sensitivity analysis of the linux-2.4 profile itself says causes it (`apkern bench "
            "sensitivity --costs linux-2.4`). The uniprocessor getpid is the four system-call path costs and "
            f"the `int`, once each: the {up_gap:+.0f} instructions to the published {pub['up_getpid']} are not "
            "in those paths as counted. Which of two explanations holds the table does not say: the published "
            "figure may hold more than the path (the C library's wrapper, the timing code), or the compiler "
            f"that built 2.4 emitted more than the one the counts were made with. A forwarded call is "
            f"{gap:+.0f} instructions from the published one. The paths that make up most of the predicted "
            f"{pred['forwarded_getpid']:.0f}, with how many times a forwarded gettid runs each: "
            + "; ".join(f"`{e['key']}` {c:.1f} times at {e['value']}" for e, c in paths)
            + ". Closing the gap with one of them alone would need it "
            + ", or ".join(f"{gap / c:+.0f} instructions longer (`{e['key']}`)" for e, c in paths)
            + "."
            + (
                f" Paths that move it, but not in proportion to their cost (they partly hide in slack, the AP "
                f"waiting for the bootstrap thread's next pass): {', '.join(f'`{k}`' for k in slack)}."
                if slack
                else ""
            ),
        ]
        counted = set(oos["counted"])
        over = [(e, times_per_call(e, base, "overhead")) for e in sens["effects"]]
        u = sum(c * e["value"] for e, c in over if e["key"] not in counted and c)
        switches = next((c for e, c in over if e["key"] == "bootkernel.CONTEXT_SWITCH"), None)
        need = pub["overhead"] - pred["overhead"]
        if need > 0:
            text = (
                f"The overhead misses the paper's by {need:.0f} instructions. Of the predicted "
                f"{pred['overhead']:.0f}, the bootstrap-side paths the profile leaves at their estimates (no "
                f"Linux count: the application kernel's own paths, the driver's checks) make up {u:.0f}"
            )
            text += (
                f"; they would have to be {(u + need) / u:.1f} times their estimates to close the gap."
                if u > 0
                else "."
            )
            if switches:
                procs = sens["point"].get("procs", 20)
                more = GOODNESS_PER_TASK * max(0, procs - 2) * switches
                text += (
                    f" One limit of the model counts against it: the profile's switch is a fixed "
                    f"{oos['profile']['overrides']['bootkernel']['CONTEXT_SWITCH']} instructions, counted with "
                    f"2 runnable tasks, while 2.4's schedule() scans every runnable task (about "
                    f"{GOODNESS_PER_TASK} more each). With the point's {procs} processes runnable that is about "
                    f"{more:.0f} instructions more per forwarded call ({switches:.1f} switches each): "
                    f"{more / need:.0%} of the gap. The rest is work per forwarded call that no path here "
                    "stands for."
                )
            lines += ["", text]

    return lines
