"""Throughput of the giant-lock SMP port: every CPU runs user code, and the lock caps the speedup.

The port's capacity bound, derived like the paper's formula: the kernel lock serializes the
kernel work of every loop, so the loop rate can never exceed one loop per uniprocessor kernel
path, and the speedup over one CPU never exceeds t_up / k_up, the inverse of the
uniprocessor's kernel share (k_up: its kernel instructions per loop, ticks and switches
included; t_up: its instructions per loop). A point with a large kernel share reaches it.
"""

from __future__ import annotations

import pytest

from apkern.experiments import throughput
from apkern.experiments.reproduce import QUICK


def _point(k: int, p: float, n: int, kernel: str = "smp") -> throughput.ThroughputPoint:
    return throughput.measure(
        k, p, n, warmup=QUICK.warmup(k, p, n), window=QUICK.window(k, p, n), kernel=kernel, attribute=False
    )


@pytest.fixture(scope="module")
def k151_p80() -> dict[int, throughput.ThroughputPoint]:
    up = _point(151, 80.0, 1)
    return {1: up, **{n: throughput.with_speedup(_point(151, 80.0, n), up) for n in (2, 4, 8)}}


def test_the_giant_lock_caps_the_speedup_at_the_inverse_of_the_kernel_share(k151_p80) -> None:
    up = k151_p80[1]
    bound = (up.window_instructions / up.loops) / up.kernel_instructions_per_call
    assert 3 < bound < 4  # a quarter of each loop is kernel work on one CPU
    for n in (4, 8):
        assert k151_p80[n].speedup <= bound
    assert k151_p80[8].speedup >= 0.9 * bound  # saturated: the lock is busy nearly all the time
    assert k151_p80[8].speedup <= k151_p80[4].speedup * 1.05  # more CPUs only spin


def test_lock_spin_grows_with_the_cpus_that_contend(k151_p80) -> None:
    shares = [k151_p80[n].lock_spin_share for n in (2, 4, 8)]
    assert shares == sorted(shares) and shares[0] < 0.05 < shares[-1] < 1
    assert k151_p80[2].speedup > 1.8  # two CPUs of user code, hardly any waiting


def test_with_little_kernel_work_the_port_scales_where_the_application_kernel_does_not() -> None:
    up = _point(151, 95.0, 1)
    smp = throughput.with_speedup(_point(151, 95.0, 4), up)
    ak = throughput.with_speedup(_point(151, 95.0, 4, kernel="apkern"), up)
    assert smp.speedup > 3.5 and ak.speedup < 3.1  # four CPUs of user code against three APs
    assert smp.forwarded_calls == 0 and ak.forwarded_calls > 0
    assert smp.lock_spin_share is not None and ak.lock_spin_share is None


def test_the_one_cpu_point_is_the_uniprocessor_whatever_the_kernel() -> None:
    a, b = _point(451, 95.0, 1, kernel="smp").to_dict(), _point(451, 95.0, 1, kernel="apkern").to_dict()
    assert a.pop("kernel") == "smp" and b.pop("kernel") == "apkern"
    assert a == b
    with pytest.raises(ValueError, match="not 'up'"):
        throughput.measure(451, 95.0, 2, kernel="up")
