"""`apkern bench balance`: the paper's one ready queue against a queue per application processor.

Section 4.3's load balancing (the `balance` extension, `appkernel/balance.py`),
measured on the throughput benchmark (20 loop processes, compute(U) then spin(K))
at 8, 16 and 32 CPUs, with the global queue and with per-AP queues:

- lock spinning per forwarded call: the instructions all CPUs spent in their
  "spin" account during the window, over the calls forwarded in it. In this
  benchmark only the application kernel's spinlock spins: no process exits in the
  window (the driver's wait for an AP to leave a dying thread) and nothing is shot
  down (no swapper). The bootstrap processor's share is given apart;
- the spinlock's acquisitions and contended acquisitions per forwarded call (its
  own counters: a contended one found the lock taken at least once);
- throughput: forwarded calls per simulated second (at the nominal 100 MIPS) and
  the loops' speedup over the uniprocessor kernel;
- what the balancing did: steals (own queue empty, or a pull at a quantum's end)
  and hand-offs to idle APs, per forwarded call.
Every figure is a difference of counters over the window; nothing is computed from
constants. Windows are sized as `apkern reproduce` sizes its points (`--quick`: its
quick precision).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..hw import NOMINAL_IPS
from ..profiles import Profile
from ..system import System
from . import throughput
from .reproduce import DEFAULT, Precision

CPUS = (8, 16, 32)
POINTS = ((151, 95.0), (4510, 99.0))  # a short-call point (the bootstrap processor saturates) and a long-call one
SCHEMES = {"global": (), "per-AP": ("balance",)}


@dataclass
class BalancePoint:
    queues: str  # "global" (the paper's) or "per-AP" (balance)
    cpus: int
    syscall_instr: int
    user_pct: float
    warmup_instructions: int
    window_instructions: int
    forwarded_calls: int
    loops: int
    calls_per_second: float
    speedup: float | None
    spin_per_call: float | None
    bsp_spin_per_call: float | None
    lock_acquisitions_per_call: float | None
    lock_contended_per_call: float | None
    steals_per_call: float | None
    handoffs_per_call: float | None
    bsp_instructions_per_call: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counters(sim: System) -> dict[str, int]:
    st = sim.stats
    return {
        "loops": st["syscalls_by_name"].get("spin", 0),
        "calls": st["forwarded_calls"],
        "spin": sum(c["spin_instructions"] for c in st["per_cpu"]),
        "bsp_spin": st["per_cpu"][0]["spin_instructions"],
        "bsp": st["per_cpu"][0]["instructions"],
        "acquisitions": st["spinlock_acquisitions"],
        "contended": st["spinlock_contended"],
        "steals": st.get("balance_steals", 0),
        "handoffs": st.get("balance_handoffs", 0),
    }


def measure_point(
    k: int,
    p: float,
    cpus: int,
    queues: str,
    warmup: int,
    window: int,
    procs: int = throughput.DEFAULT_PROCS,
    seed: int = 0,
    costs: Profile | None = None,
) -> BalancePoint:
    """One point: the throughput benchmark's system with the given ready queues, counted over the window."""
    if cpus < 2 or queues not in SCHEMES:
        raise ValueError("need at least 2 CPUs and queues 'global' or 'per-AP'")
    sim = System(kernel="apkern", cpus=cpus, seed=seed, extensions=SCHEMES[queues], costs=costs)
    throughput.spawn_loops(sim, k, p, procs)
    sim.run(until=warmup)
    a = _counters(sim)
    sim.run(until=warmup + window)
    b = _counters(sim)
    d = {key: b[key] - a[key] for key in a}
    calls = d["calls"]

    def per_call(key: str) -> float | None:
        return d[key] / calls if calls else None

    return BalancePoint(
        queues=queues,
        cpus=cpus,
        syscall_instr=k,
        user_pct=p,
        warmup_instructions=warmup,
        window_instructions=window,
        forwarded_calls=calls,
        loops=d["loops"],
        calls_per_second=calls * NOMINAL_IPS / window,
        speedup=None,
        spin_per_call=per_call("spin"),
        bsp_spin_per_call=per_call("bsp_spin"),
        lock_acquisitions_per_call=per_call("acquisitions"),
        lock_contended_per_call=per_call("contended"),
        steals_per_call=per_call("steals"),
        handoffs_per_call=per_call("handoffs"),
        bsp_instructions_per_call=per_call("bsp"),
    )


def compare(
    cpus_list: tuple[int, ...] = CPUS,
    points: tuple[tuple[int, float], ...] = POINTS,
    precision: Precision = DEFAULT,
    seed: int = 0,
    costs: Profile | None = None,
) -> list[BalancePoint]:
    """Every point with both kinds of queue, each with its speedup over the uniprocessor kernel."""
    out = []
    for k, p in points:
        base = throughput.measure(
            k,
            p,
            1,
            warmup=precision.warmup(k, p, 1),
            window=precision.window(k, p, 1),
            seed=seed,
            attribute=False,
            costs=costs,
        )
        for cpus in cpus_list:
            for queues in SCHEMES:
                pt = measure_point(
                    k,
                    p,
                    cpus,
                    queues,
                    precision.warmup(k, p, cpus),
                    precision.window(k, p, cpus),
                    seed=seed,
                    costs=costs,
                )
                pt.speedup = throughput.speedup(pt.loops, pt.window_instructions, base.loops, base.window_instructions)
                out.append(pt)
    return out


def _f(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def format_table(points: list[BalancePoint]) -> str:
    head = (
        "K",
        "P",
        "CPUs",
        "queues",
        "spin/call",
        "BSP spin/call",
        "lock acq/call",
        "contended/call",
        "calls/s",
        "speedup",
        "steals/call",
        "hand-offs/call",
        "BSP instr/call",
    )
    body = [
        (
            str(pt.syscall_instr),
            f"{pt.user_pct:g}%",
            str(pt.cpus),
            pt.queues,
            _f(pt.spin_per_call),
            _f(pt.bsp_spin_per_call),
            _f(pt.lock_acquisitions_per_call, 2),
            _f(pt.lock_contended_per_call, 2),
            f"{pt.calls_per_second:.0f}",
            _f(pt.speedup, 3),
            _f(pt.steals_per_call, 3),
            _f(pt.handoffs_per_call, 3),
            _f(pt.bsp_instructions_per_call, 0),
        )
        for pt in points
    ]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in (head, *body)]
    return "\n".join(lines)
