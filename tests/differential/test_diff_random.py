"""Random programs behave the same on the uniprocessor kernel, on the application kernel and on the SMP port.

Hypothesis generates programs of the action language in `randprog` (compute,
system calls, page-faulting memory patterns, files, printing, pipes to
children, spawned children with their own programs, signals to self and to
children, threads on shared memory, fatal endings); each runs on "up" and on
"apkern", "smp" and "master-slave" (`diffkit.PORTS`) with 2 to 8 CPUs, and everything observable
must agree (see `diffkit`); then more programs on perturbed machines, the seed drawn with
the program (a few dozen in the ordinary run, more in the long job:
APKERN_PERTURB_SEEDS=N). Derandomized, so every run tests the same programs. To keep the
suite's time, the ordinary run takes every `SUBSET_EVERY`-th generated program on the ports
of `SUBSET_PORTS` (all of them in the long job); the kitchen sinks run on every port.
"""

from __future__ import annotations

import zlib

import pytest
from diffkit import PORTS, assert_clean, assert_same, long_job, observe, perturb_seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from randprog import ERROR_PROBES, REGISTRY, SIGNAL_CHOICES, Prog, argv_for, count_programs, register, rp_main

from apkern.bootkernel import abi

MAX_EXAMPLES = 200
PERTURBED_EXAMPLES = 40  # programs on perturbed machines in the ordinary run; 5 per seed asked in the long job
MAX_DEPTH = 2  # the top program, its children and their children
SUBSET_PORTS = ("master-slave",)  # ports that see only every SUBSET_EVERY-th generated program in the ordinary run
SUBSET_EVERY = 2

_texts = st.text(alphabet="abcdefxyz -_.!", max_size=20)

SIMPLE_ACTIONS = [
    st.tuples(st.just("compute"), st.integers(0, 30_000)),
    st.just(("getpid",)),
    st.just(("gettid",)),
    st.just(("yield",)),
    st.tuples(st.just("sleep"), st.integers(0, 20_000)),
    st.tuples(st.just("spin"), st.integers(0, 5_000)),
    st.tuples(st.just("print"), st.sampled_from([1, 1, 2]), _texts),
    st.tuples(st.just("mem"), st.integers(1, 6), st.integers(0, 1 << 16), st.booleans()),
    st.tuples(st.just("file"), st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 1 << 16), st.booleans()),
    st.tuples(st.just("errors"), st.sampled_from(ERROR_PROBES)),
    st.tuples(
        st.just("sig_self"), st.sampled_from(SIGNAL_CHOICES), st.sampled_from(["handler", "handler_now", "ignore"])
    ),
    st.tuples(st.just("threads"), st.lists(st.integers(0, 40_000), min_size=1, max_size=4).map(tuple), st.booleans()),
]

ENDINGS = st.one_of(
    st.tuples(st.just("return"), st.integers(0, 255)),
    st.tuples(st.just("exit"), st.integers(0, 300)),
    st.just(("segv",)),
    st.just(("illegal",)),
    st.just(("gp",)),
    st.tuples(st.just("kill_self"), st.sampled_from([abi.SIGTERM, abi.SIGUSR1, abi.SIGHUP, abi.SIGKILL])),
    st.just(("after_munmap",)),
)


def programs(depth: int = 0) -> st.SearchStrategy[Prog]:
    actions = list(SIMPLE_ACTIONS)
    if depth < MAX_DEPTH:
        child = programs(depth + 1)
        actions += [
            st.tuples(st.just("spawn"), child),
            st.tuples(st.just("pipe_child"), child, st.integers(0, 40)),
            st.tuples(st.just("kill_child"), child, st.sampled_from(["kill9", "term", "handler"])),
        ]
    size = 6 if depth == 0 else 3
    return st.builds(Prog, st.lists(st.one_of(*actions), max_size=size).map(tuple), ENDINGS)


TESTED: list[int] = []  # programs (top + children) per example, for the report at the end of the session


def run_both(prog: Prog, cpus: int, perturb: int | None = None, subset: bool = False) -> None:
    """The program on "up", then on each of `PORTS` with `cpus` CPUs (perturbed by `perturb`): all agree.

    `subset`: a generated program; the ports of `SUBSET_PORTS` take one in `SUBSET_EVERY` of them
    (chosen by a hash of the program, so always the same ones), unless in the long job.
    """
    REGISTRY.clear()
    key = register(prog)
    ref = observe(rp_main, argv_for(key), "up", 1)
    # a program may die before its first system call: then only that exception was forwarded
    calls = any(act[0] != "compute" for act in prog.actions) or prog.end[0] not in ("segv", "illegal", "gp")
    skip = subset and not long_job() and zlib.crc32(repr(prog).encode()) % SUBSET_EVERY
    for kernel in PORTS:
        if skip and kernel in SUBSET_PORTS:
            continue
        got = observe(rp_main, argv_for(key), kernel, cpus, perturb=perturb)
        assert_same(ref, got)
        assert_clean(got, require_calls=calls)


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(prog=programs(), cpus=st.integers(2, 8))
def test_random_program_same_on_up_and_smp_kernels(prog: Prog, cpus: int) -> None:
    TESTED.append(count_programs(prog))
    run_both(prog, cpus, subset=True)


@settings(
    max_examples=max(PERTURBED_EXAMPLES, 5 * long_job()),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(prog=programs(), cpus=st.integers(2, 8), seed=st.integers(0, 2**32 - 1))
def test_random_program_same_on_up_and_perturbed_smp_kernels(prog: Prog, cpus: int, seed: int) -> None:
    TESTED.append(count_programs(prog))
    run_both(prog, cpus, perturb=seed, subset=True)


# --- every action and every ending at least once, whatever hypothesis draws ----------------------------

LEAF = Prog((("print", 1, "leaf"), ("getpid",), ("gettid",), ("mem", 2, 9, False)), ("exit", 5))
KITCHEN_SINK = (
    ("compute", 1000),
    ("getpid",),
    ("gettid",),
    ("yield",),
    ("sleep", 3000),
    ("spin", 500),
    ("print", 1, "to stdout"),
    ("print", 2, "to stderr"),
    ("mem", 3, 1, True),
    ("mem", 1, 2, False),
    ("file", 0, 9000, 3, False),
    ("file", 0, 100, 4, True),
    *[("errors", probe) for probe in ERROR_PROBES],
    ("spawn", LEAF),
    ("pipe_child", LEAF, 30),
    ("kill_child", LEAF, "kill9"),
    ("kill_child", LEAF, "term"),
    ("kill_child", LEAF, "handler"),
    ("spawn", Prog((("spawn", LEAF), ("pipe_child", LEAF, 3)), ("segv",))),
    ("sig_self", abi.SIGUSR1, "handler"),
    ("sig_self", abi.SIGUSR2, "handler_now"),
    ("sig_self", abi.SIGTERM, "ignore"),
    ("threads", (1000, 5000, 200), False),
    ("threads", (100, 20), True),
)
ALL_ENDINGS = [
    ("return", 3),
    ("exit", 260),
    ("segv",),
    ("illegal",),
    ("gp",),
    ("kill_self", abi.SIGTERM),
    ("after_munmap",),
]
ENDING_STATUS = [3, 260 & 0xFF, -abi.SIGSEGV, -abi.SIGILL, -abi.SIGSEGV, -abi.SIGTERM, -abi.SIGSEGV]


@pytest.mark.parametrize("cpus", [2, 5, 8])
@pytest.mark.parametrize("end", ALL_ENDINGS, ids=lambda e: e[0])
def test_kitchen_sink_same_on_up_and_smp_kernels(end: tuple, cpus: int) -> None:
    run_both(Prog(KITCHEN_SINK, end), cpus)


@pytest.mark.parametrize(
    ("end", "seed", "cpus"),
    [
        (end, seed, (2, 5, 8)[(i + k) % 3])
        for i, end in enumerate(ALL_ENDINGS)
        for k, seed in enumerate(perturb_seeds(1, end[0]))
    ],
    ids=str,
)
def test_kitchen_sink_same_on_up_and_perturbed_smp_kernels(end: tuple, seed: int, cpus: int) -> None:
    run_both(Prog(KITCHEN_SINK, end), cpus, perturb=seed)


@pytest.mark.parametrize(("end", "status"), list(zip(ALL_ENDINGS, ENDING_STATUS, strict=True)), ids=lambda x: str(x))
def test_kitchen_sink_reference_does_what_it_says(end: tuple, status: int) -> None:
    """The UP run of the interpreter is sane, so agreement with it means something."""
    REGISTRY.clear()
    ref = observe(rp_main, argv_for(register(Prog(KITCHEN_SINK, end))), "up", 1)
    assert ref.top_status == status
    text = ref.console
    for want in [
        "p0 pid 1\n",
        "p0 tid 1\n",
        "p0 says to stdout\n",
        "p0 mem 3p zero=True words=",
        "block=True bad=0\n",
        "p0 file 0 trunc wrote 9000 read 9000 ",
        "p0 file 0 append wrote 100 read 9100 ",
        "p0 err close_bad: errno 9\n",
        "p0 err waitpid_none: errno 10\n",
        "p0 err read_badaddr: errno 14\n",
        "p0 spawn p1 pid 2 status 5\n",
        "p0 pipe p2: 30 lines ",
        "p0 kill_child p3 kill9: ready b'r' status -9\n",
        "p0 kill_child p4 term: ready b'r' status -15\n",
        "p5 victim: handler ran 1\n",
        "p0 kill_child p5 handler: ready b'r' status 5\n",
        f"p0 spawn p6 pid 7 status {-abi.SIGSEGV}\n",
        f"p0 sig_self {abi.SIGUSR1} handler: handler ran 1 (previous dfl)\n",
        f"p0 sig_self {abi.SIGUSR2} handler_now: handler ran 1 (previous dfl)\n",
        f"p0 sig_self {abi.SIGTERM} ignore: handler ran 0 (previous dfl)\n",
        "bad 0\n",
        "thread 1: computed 20 in pid 1\n",
    ]:
        assert want in text, (want, text)
    assert ref.per_pid[1][2] == "p0 says to stderr\n"
    assert "survived" not in text
    assert "/rp_p0_0" in ref.files
