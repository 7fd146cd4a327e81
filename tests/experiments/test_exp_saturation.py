"""Saturation read from the data: where the speedup and the load stop growing, and the plateau they show."""

from __future__ import annotations

import pytest

from apkern.experiments.saturation import detect


def curve(k: int, p: float, speedups: list[float], loads: list[float]) -> list[dict]:
    return [
        {"syscall_instr": k, "user_pct": p, "cpus": n, "speedup": s, "bsp_load": load}
        for n, s, load in zip(range(2, 2 + len(speedups)), speedups, loads, strict=True)
    ]


def test_a_curve_that_keeps_rising_has_no_saturated_point() -> None:
    rows = curve(451, 99.0, [1.0, 2.0, 3.0, 4.0], [0.01, 0.02, 0.03, 0.04])
    s = detect(rows, 0.02)
    assert not s.points and s.plateau_load is None


def test_a_flat_tail_is_saturated_from_where_it_flattens() -> None:
    rows = curve(151, 80.0, [1.03, 1.35, 1.35, 1.35], [0.32, 0.5, 0.5, 0.5])
    s = detect(rows, 0.0)
    assert s.points == {(151, 80.0, n) for n in (3, 4, 5)}
    assert s.flat == {(151, 80.0, 3), (151, 80.0, 4)}  # the last point has no larger count to show it
    assert s.plateau_load == 0.5


def test_growth_within_the_tolerance_is_no_growth_and_beyond_it_is() -> None:
    rows = curve(151, 90.0, [2.0, 2.5, 2.52, 2.51], [0.3, 0.49, 0.495, 0.5])
    assert (151, 90.0, 3) in detect(rows, 0.02).points
    assert (151, 90.0, 3) not in detect(rows, 0.005).points


def test_the_speedup_flattening_is_not_enough_while_the_load_still_climbs() -> None:
    # the speedup grows little from 7 to 8 CPUs, but the load still rises well beyond the tolerance
    rows = curve(451, 92.5, [1.1, 2.3, 3.4, 4.5, 5.6, 6.85, 7.0], [0.03, 0.08, 0.13, 0.2, 0.3, 0.473, 0.5])
    rows += curve(151, 80.0, [1.03, 1.35, 1.35, 1.35, 1.35, 1.35, 1.35], [0.3] + [0.5] * 6)
    s = detect(rows, 0.025)
    assert (451, 92.5, 7) not in s.points
    # the last point reaches the plateau the other curve shows: saturated
    assert (451, 92.5, 8) in s.points and (451, 92.5, 8) not in s.flat


def test_the_plateau_comes_from_the_data_not_from_a_constant() -> None:
    rows = curve(151, 80.0, [1.0, 1.3, 1.3, 1.3], [0.2, 0.3, 0.3, 0.3])
    rows += curve(451, 90.0, [1.0, 2.0, 3.0, 3.8], [0.05, 0.1, 0.2, 0.297])
    s = detect(rows, 0.02)
    assert s.plateau_load == pytest.approx(0.3)
    assert (451, 90.0, 5) in s.points and (451, 90.0, 4) not in s.points


def test_a_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError):
        detect([], -0.1)
