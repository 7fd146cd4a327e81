"""Every built-in program behaves the same on the uniprocessor kernel, the application kernel and the SMP port.

Each case runs once on "up" (1 CPU) and on each of `diffkit.PORTS` ("apkern" and
"smp") with 2, 3, 4 and 8 CPUs, and perturbed by a few seeds (other interleavings,
`diffkit.perturb_seeds`); the whole console, each process's output on fd 1 and
fd 2, every process's exit status and the file system afterwards must be
identical, and each kernel must leave itself clean (`diffkit.assert_clean`: the
application kernel forwarded calls and freed every TCB; the port started every
AP and left no CPU on a dead process).
"""

from __future__ import annotations

import functools
import random
import re

import pytest
from diffkit import PORTS, Observation, assert_clean, assert_same, observe, perturb_seeds

from apkern.bootkernel import abi
from apkern.userland.programs import PROGRAMS

AK_CPUS = (2, 3, 4, 8)
CI_SEEDS = 2  # perturbed runs per case and kernel in the ordinary run, each on one of AK_CPUS


def _text(seed: int, n_words: int) -> bytes:
    rng = random.Random(seed)
    seps = [b" ", b"  ", b"\n", b"\t", b" \n", b"\r\n"]
    words = [bytes(rng.choice(b"abcdefghij.,;") for _ in range(rng.randint(1, 12))) for _ in range(n_words)]
    return b"".join(w + rng.choice(seps) for w in words)


FILES = {
    "/a.txt": b"first file\nwith two lines\n",
    "/big.txt": bytes(range(32, 127)) * 200,  # longer than libc's staging buffer
    "/words.txt": _text(7, 3000),
    "/empty": b"",
    "/noeol": b"no newline at the end",
}

# id -> (program, argv). Small arguments keep every run well under a second.
CASES: dict[str, tuple[str, list[str]]] = {
    "hello": ("hello", ["hello"]),
    "hello-args": ("hello", ["hello", "ignored", "arguments"]),
    "cat-one": ("cat", ["cat", "/a.txt"]),
    "cat-many": ("cat", ["cat", "/a.txt", "/big.txt", "/empty", "/a.txt"]),
    "cat-missing": ("cat", ["cat", "/a.txt", "/missing", "/noeol"]),
    "cat-dir": ("cat", ["cat", "/bin"]),
    "cat-usage": ("cat", ["cat"]),
    "wc-one": ("wc", ["wc", "/words.txt"]),
    "wc-many": ("wc", ["wc", "/a.txt", "/big.txt", "/empty", "/noeol", "/words.txt"]),
    "wc-missing": ("wc", ["wc", "/nope", "/a.txt"]),
    "wc-usage": ("wc", ["wc"]),
    "pipeline-0": ("pipeline", ["pipeline", "0"]),
    "pipeline-7": ("pipeline", ["pipeline", "7"]),
    "pipeline-500": ("pipeline", ["pipeline", "500"]),  # > PIPE_BUF: the writer blocks on a full pipe
    "pipeline-usage": ("pipeline", ["pipeline", "x"]),
    "pagetouch-1": ("pagetouch", ["pagetouch", "1"]),
    "pagetouch-24": ("pagetouch", ["pagetouch", "24"]),
    "pagetouch-usage": ("pagetouch", ["pagetouch", "0"]),
    "signals": ("signals", ["signals"]),
    "signals-usage": ("signals", ["signals", "extra"]),
    "threads-1": ("threads", ["threads", "1"]),
    "threads-3": ("threads", ["threads", "3"]),
    "threads-9": ("threads", ["threads", "9"]),  # more threads than any machine has APs
    "threads-usage": ("threads", ["threads", "-1"]),
    "segv": ("segv", ["segv"]),
    "illegal": ("illegal", ["illegal"]),
    "loop": ("loop", ["loop", "300", "151", "25"]),
    "loop-nocompute": ("loop", ["loop", "0", "0", "10"]),
    "loop-usage": ("loop", ["loop", "many"]),
    "gettid": ("gettid", ["gettid", "5"]),
    "gettid-usage": ("gettid", ["gettid", "0"]),
}

# gettid reports a measured latency, which is *supposed* to differ between kernels.
_LATENCY = re.compile(r"mean [0-9.]+ instructions")


def normalize(text: str) -> str:
    return _LATENCY.sub("mean <N> instructions", text)


def test_every_builtin_program_has_a_case() -> None:
    assert {prog for prog, _argv in CASES.values()} == set(PROGRAMS)


@functools.cache
def reference(case: str) -> Observation:
    prog, argv = CASES[case]
    return observe(prog, argv, "up", 1, FILES)


@pytest.mark.parametrize("cpus", AK_CPUS)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kernel", PORTS)
def test_builtin_same_on_up_and_every_smp_kernel(kernel: str, case: str, cpus: int) -> None:
    prog, argv = CASES[case]
    ref = reference(case)
    got = observe(prog, argv, kernel, cpus, FILES)
    assert_same(ref, got, normalize)
    assert_clean(got)


PERTURBED = [
    (kernel, case, seed, AK_CPUS[(i + k + j) % len(AK_CPUS)])
    for j, kernel in enumerate(PORTS)
    for i, case in enumerate(sorted(CASES))
    for k, seed in enumerate(perturb_seeds(CI_SEEDS, case))
]


@pytest.mark.parametrize(("kernel", "case", "seed", "cpus"), PERTURBED)
def test_builtin_same_on_up_and_perturbed_smp_kernels(kernel: str, case: str, seed: int, cpus: int) -> None:
    prog, argv = CASES[case]
    got = observe(prog, argv, kernel, cpus, FILES, perturb=seed)
    assert_same(reference(case), got, normalize)
    assert_clean(got)


# --- sanity of the reference runs themselves: the comparison above is only worth what they show ---

EXPECTED_STATUS = {
    "cat-missing": 1,
    "cat-dir": 1,
    "wc-missing": 1,
    "segv": -abi.SIGSEGV,
    "illegal": -abi.SIGILL,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_run_is_meaningful(case: str) -> None:
    ref = reference(case)
    want = 2 if case.endswith("-usage") else EXPECTED_STATUS.get(case, 0)
    assert ref.top_status == want, ref.console
    assert ref.console, "every case prints something"
    assert ref.files == {**ref.files, **FILES}, "the input files are left alone"


def _mean(obs: Observation) -> float:
    m = re.search(r"mean ([0-9.]+) instructions", obs.console)
    assert m, obs.console
    return float(m.group(1))


def test_gettid_really_is_slower_on_the_application_kernel() -> None:
    """The one output allowed to differ does differ, in the expected direction."""
    up = reference("gettid")
    ak = observe("gettid", ["gettid", "5"], "apkern", 2, FILES)
    assert _mean(ak) > _mean(up) > 0


def test_gettid_costs_the_smp_port_only_the_lock() -> None:
    """Under the giant lock a gettid is the uniprocessor's path plus taking and releasing the lock."""
    up = reference("gettid")
    smp = observe("gettid", ["gettid", "5"], "smp", 2, FILES)
    assert _mean(up) < _mean(smp) < _mean(up) + 20
