"""Chrome trace-event JSON of a run (what Perfetto and chrome://tracing open).

One track per CPU with slices of user, kernel, spin, idle and halted time, named
by the thread (context) that ran; instant events for the kernels' trace points;
and one flow arrow per forwarded call or fault: from the application
processor's trap, through the bootstrap thread's re-issue and the activation on
the bootstrap processor, to the resume on an application processor.
Timestamps are microseconds at the nominal 100 MIPS (one instruction = 0.01 us).
"""

from __future__ import annotations

import json
from typing import Any

from ..hw import NOMINAL_IPS
from ..system import System

US_PER_INSTRUCTION = 1e6 / NOMINAL_IPS
PID = 1


def _ts(t: int) -> float:
    return round(t * US_PER_INSTRUCTION, 4)


def build_trace(sim: System) -> dict[str, Any]:
    """The trace of a finished run made with `System(..., trace=True)`."""
    tracer = sim.machine.tracer
    if tracer is None:
        raise ValueError("the system was not built with trace=True")
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": PID, "args": {"name": f"apkern machine ({sim.kernel_name})"}}
    ]
    for c in sim.machine.cpus:
        role = "bootstrap processor" if c.id == 0 else "application processor"
        events.append(
            {"ph": "M", "name": "thread_name", "pid": PID, "tid": c.id, "args": {"name": f"CPU {c.id} ({role})"}}
        )
        events.append({"ph": "M", "name": "thread_sort_index", "pid": PID, "tid": c.id, "args": {"sort_index": c.id}})
    for cpu, rows in sorted(tracer.slices.items()):
        for start, end, account, name in rows:
            events.append(
                {
                    "ph": "X",
                    "pid": PID,
                    "tid": cpu,
                    "ts": _ts(start),
                    "dur": _ts(end - start),
                    "name": f"{account}: {name}" if name else account,
                    "cat": account,
                }
            )
    for m in tracer.marks:
        if m.name == "inspect":
            continue
        events.append(
            {
                "ph": "i",
                "s": "t",
                "pid": PID,
                "tid": m.cpu,
                "ts": _ts(m.time),
                "name": m.name,
                "cat": "mark",
                "args": {"key": m.key, **{k: v for k, v in m.args.items() if v is not None}},
            }
        )
    events += _flows(tracer.marks)
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": {"stats": sim.stats}}


def _flows(marks: list[Any]) -> list[dict[str, Any]]:
    """Follow each forwarded call by TCB: ak_trap -> re-issued call -> ak_activated -> ak_resumed."""
    out: list[dict[str, Any]] = []
    flows: dict[Any, dict[str, Any]] = {}  # TCB id -> open flow
    last: dict[int, dict[str, Any]] = {}  # flow id -> its latest event
    ids = iter(range(1, 1 << 62))

    def emit(ph: str, flow: dict[str, Any], m: Any) -> None:
        ev = {"ph": ph, "id": flow["id"], "pid": PID, "tid": m.cpu, "ts": _ts(m.time), "name": "forwarded call"}
        ev["cat"] = "forward"
        if ph == "f":
            ev["bp"] = "e"
        out.append(ev)
        last[flow["id"]] = ev

    for m in marks:
        if m.name == "ak_trap":
            flows[m.key] = {"id": next(ids), "owner": m.args.get("owner"), "reissued": False}
            emit("s", flows[m.key], m)
        elif m.name == "sys_enter" and m.args.get("call") not in (None, "yield", "driver_control"):
            for flow in flows.values():
                if flow["owner"] == m.key and not flow["reissued"]:
                    flow["reissued"] = True
                    emit("t", flow, m)
        elif m.name == "ak_activated" and m.key in flows:
            emit("t", flows[m.key], m)
        elif m.name == "ak_resumed" and m.key in flows:
            emit("f", flows.pop(m.key), m)
    # calls that never resume (exit, fatal exceptions) end where the bootstrap thread re-issued them
    for flow in flows.values():
        ev = last[flow["id"]]
        if ev["ph"] == "s":
            out.remove(ev)
        else:
            ev["ph"], ev["bp"] = "f", "e"
    return out


def write_trace(sim: System, path: str) -> None:
    with open(path, "w") as f:
        json.dump(build_trace(sim), f)
