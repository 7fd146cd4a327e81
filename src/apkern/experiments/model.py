"""The paper's capacity model (section 5.2): C = ips = scps * (ipsc + opsc).

The bootstrap processor serves every forwarded call; with `ips` instructions per
second, `ipsc` instructions per call and an overhead of `opsc` per call, it can
serve at most ips / (ipsc + opsc) calls per second. A program issuing a call every
`interval` instructions makes ips / interval calls per second on the uniprocessor,
so the best speedup is interval / (ipsc + opsc).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..hw import NOMINAL_IPS


@dataclass
class Capacity:
    ipsc: float
    opsc: float
    interval: float
    ips: float
    max_calls_per_second: float
    uniprocessor_calls_per_second: float
    max_speedup: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def capacity(ipsc: float, interval: float, opsc: float, ips: float = NOMINAL_IPS) -> Capacity:
    """The most calls per second the bootstrap processor can serve, and the speedup that allows."""
    if ipsc < 0 or opsc < 0 or interval <= 0 or ips <= 0 or ipsc + opsc <= 0:
        raise ValueError("need ipsc >= 0, opsc >= 0, ipsc + opsc > 0, interval > 0 and ips > 0")
    max_cps = ips / (ipsc + opsc)
    up_cps = ips / interval
    return Capacity(ipsc, opsc, interval, ips, max_cps, up_cps, max_cps / up_cps)


def predicted_speedup(t_up: float, ipsc: float, opsc: float) -> float:
    """The bound the model puts on a loop that takes `t_up` instructions per call on the uniprocessor."""
    return t_up / (ipsc + opsc)
