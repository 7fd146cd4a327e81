"""Which throughput points saturate the bootstrap processor, read from the data alone.

A point (K, P, N) is saturated when adding processors stops helping: from N on,
neither the speedup nor the bootstrap load grows beyond the tolerance at any
larger N of its curve. Those flat points show the level the load settles at (the
plateau: Figure 4's loop caps it, and the data say where). A point whose load is
within the tolerance of that plateau is saturated too, which decides the last
point of a curve, where no larger N can show the flatness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Saturation:
    points: frozenset[tuple[int, float, int]]  # (K, P, N)
    flat: frozenset[tuple[int, float, int]]  # the points shown saturated by their curve flattening
    plateau_load: float | None  # the lowest load of a flat point: where the load settles
    tolerance: float


def _curves(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[int, float], list[Mapping[str, Any]]]:
    curves: dict[tuple[int, float], list[Mapping[str, Any]]] = {}
    for r in rows:
        if r["cpus"] > 1 and r["bsp_load"] is not None:
            curves.setdefault((r["syscall_instr"], r["user_pct"]), []).append(r)
    return {key: sorted(c, key=lambda r: r["cpus"]) for key, c in curves.items()}


def detect(rows: Iterable[Mapping[str, Any]], tolerance: float) -> Saturation:
    """The saturated points among `rows` (dicts with syscall_instr, user_pct, cpus, speedup, bsp_load).

    `tolerance` is a relative change small enough to be noise (growth within it is no growth).
    """
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    curves = _curves(rows)
    flat: set[tuple[int, float, int]] = set()
    for (k, p), curve in curves.items():
        for i, r in enumerate(curve[:-1]):
            later = curve[i + 1 :]
            if all(
                o["speedup"] <= r["speedup"] * (1 + tolerance) and o["bsp_load"] <= r["bsp_load"] * (1 + tolerance)
                for o in later
            ):
                flat.add((k, p, r["cpus"]))
    plateau = None
    points = set(flat)
    if flat:
        plateau = min(r["bsp_load"] for (k, p), c in curves.items() for r in c if (k, p, r["cpus"]) in flat)
        for (k, p), curve in curves.items():
            for r in curve:
                if r["bsp_load"] >= plateau * (1 - tolerance):
                    points.add((k, p, r["cpus"]))
    return Saturation(frozenset(points), frozenset(flat), plateau, tolerance)
