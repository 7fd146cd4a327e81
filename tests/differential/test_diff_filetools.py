"""find, grep, find | grep and the multiprogramming mix run unmodified on every kernel, and check themselves.

Each case makes its tree with mktree inside the run (mkdir, open, write), then
runs the tool; the uniprocessor run is the oracle for the others, and Python's own
walk and search of the file system after the run is an oracle for the tools.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest
from diffkit import assert_ak_clean, compare_all, observe

from apkern import libc
from apkern.workloads import grep, mix, tree

ROOT = "/t"
SEED = 3
find_mod = sys.modules["apkern.workloads.find"]
grep_mod = sys.modules["apkern.workloads.grep"]
lu_mod = sys.modules["apkern.workloads.lu"]
gcc_mod = sys.modules["apkern.workloads.gcc"]
mix_mod = sys.modules["apkern.workloads.mix"]
MANIFEST = tree.manifest_path(ROOT)


def tree_then(argv: list[str]) -> Generator[Any, Any, int]:
    """tree_then ENTRIES SIZE_PERCENT PROGRAM ARGS...: mktree /t, then the program; its exit status."""
    pid = yield from libc.spawn("mktree", ["mktree", ROOT, argv[1], str(SEED), argv[2]])
    if (yield from libc.waitpid(pid)) != 0:
        return 100
    pid = yield from libc.spawn(argv[3], argv[3:])
    return (yield from libc.waitpid(pid))


def _files(obs) -> dict[str, bytes]:
    return {p: d for p, d in obs.files.items() if p.startswith(ROOT + "/") and not p.endswith("/")}


def _paths(entries: int) -> list[str]:
    """The tree's paths in find's order: depth first, a directory's entries sorted (the order getdents gives)."""
    below: dict[str, list[str]] = {}
    for e in tree.plan(ROOT, entries, SEED):
        below.setdefault(e.path.rsplit("/", 1)[0], []).append(e.path)
    out: list[str] = []

    def visit(p: str) -> None:
        out.append(p)
        for q in sorted(below.get(p, [])):
            visit(q)

    visit(ROOT)
    return out


def test_mktree_makes_the_planned_tree() -> None:
    got = observe(tree_then, ["tree_then", "60", "10", "hello"], "up", 1)
    lines = tree.pool(SEED)
    want = {e.path: tree.content(e, lines) for e in tree.plan(ROOT, 60, SEED, 10) if not e.is_dir}
    assert _files(got) == want
    made = {p[:-1] for p in got.files if p.endswith("/")}
    assert made == {ROOT} | {e.path for e in tree.plan(ROOT, 60, SEED) if e.is_dir}
    assert got.files[MANIFEST] == tree.manifest(ROOT, 60, SEED, 10)


def test_find_walks_the_same_on_every_kernel() -> None:
    ref, runs = compare_all(tree_then, ["tree_then", "80", "10", "find", "-verify", MANIFEST, ROOT], [2, 4, 8])
    out = ref.per_pid[ref.top_pid + 2][1].splitlines()  # the find process: mktree is top + 1
    assert out == _paths(80)
    assert ref.per_pid[ref.top_pid + 2][2] == f"find: 81 entries, checksum {_checksum(80)}: manifest agrees True\n"
    assert ref.top_status == 0
    st = runs[-1].stats["syscalls_by_name"]
    assert st["stat"] >= 80 and st["getdents"] > 0


def _checksum(entries: int) -> int:
    return tree.parse_manifest(tree.manifest(ROOT, entries, SEED, 10))["checksum"]


def _grep_oracle(obs, pattern: bytes) -> list[bytes]:
    """Python's own search of the files the run left behind, in find's order."""
    files = _files(obs)
    out = []
    for path in [p for p in _paths(80) if p in files]:
        out += [path.encode() + b":" + line for line in files[path].splitlines(keepends=True) if pattern in line]
    return out


def test_grep_searches_the_same_on_every_kernel() -> None:
    argv = ["tree_then", "80", "10", "grep", "-r", "-verify", MANIFEST, "sched", ROOT]  # a rare word: quicker
    ref, runs = compare_all(tree_then, argv, [2, 4, 8])
    got = ref.per_pid[ref.top_pid + 2]
    assert got[1].encode().splitlines(keepends=True) == _grep_oracle(ref, b"sched")
    assert got[2].endswith("manifest agrees True\n") and ref.top_status == 0
    assert runs[-1].stats["syscalls_by_name"]["read"] > 0


def test_find_pipe_grep_on_every_kernel() -> None:
    argv = ["tree_then", "80", "10", "findgrep", "-verify", ROOT, "int"]
    ref, _ = compare_all(tree_then, argv, [2, 4, 8])
    grep_pid = next(p for p, out in ref.per_pid.items() if out[2].startswith("grep: "))
    printed = ref.per_pid[grep_pid][1]
    want = [p for p in _paths(80) if "int" in p]
    assert printed.splitlines() == want  # grep's output: find's paths holding the word, in find's order
    assert ref.console.endswith("findgrep: find exit 0, grep exit 0\n") and ref.top_status == 0
    assert ref.console.count("manifest agrees True") == 2


@pytest.mark.parametrize("program", ["grep", "findgrep"])
def test_filetools_on_a_perturbed_machine(program: str) -> None:
    args = ["-r", "-verify", MANIFEST, "sched", ROOT] if program == "grep" else ["-verify", ROOT]
    got = observe(tree_then, ["tree_then", "120", "10", program, *args], "apkern", 5, perturb=6)
    assert got.top_status == 0 and got.console.count("manifest agrees True") == (1 if program == "grep" else 2)
    assert_ak_clean(got)


def test_finds_check_catches_a_wrong_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(find_mod, "_walk_dir", lambda d, visit, on_error: iter(()))  # never descends
    got = observe(tree_then, ["tree_then", "40", "10", "find", "-verify", MANIFEST, ROOT], "up", 1)
    assert got.top_status == 1 and "find: 1 entries" in got.console and "manifest agrees False" in got.console


def test_greps_check_catches_a_missed_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = grep_mod.scan
    monkeypatch.setattr(grep_mod, "scan", lambda text, p: real(text, p)[1:])  # misses a block's first match
    got = observe(tree_then, ["tree_then", "40", "10", "grep", "-r", "-verify", MANIFEST, "int", ROOT], "up", 1)
    assert got.top_status == 2 and "manifest agrees False" in got.console
    got = observe(tree_then, ["tree_then", "40", "10", "findgrep", "-verify", ROOT, "int"], "up", 1)
    assert got.top_status == 1 and "grep exit 2" in got.console


def test_grep_without_verify_and_its_statuses() -> None:
    files = {"/a": b"one\ntwo inode\nthree", "/b": b"inode at the end"}
    got = observe(grep, ["grep", "inode", "/a", "/b"], "up", 1, files)
    assert got.console == "/a:two inode\n/b:inode at the end\n" and got.top_status == 0
    got = observe(grep, ["grep", "zzz", "/a"], "up", 1, files)
    assert got.console == "" and got.top_status == 1
    got = observe(grep, ["grep", "inode", "/a", "/missing"], "up", 1, files)
    assert got.top_status == 2 and "grep: /missing: No such file or directory" in got.console


@pytest.mark.parametrize(
    ("program", "argv"),
    [
        ("grep", ["grep"]),
        ("grep", ["grep", "-x", "a"]),
        ("grep", ["grep", "-verify", MANIFEST, "inode"]),
        ("find", ["find"]),
        ("find", ["find", "-z", "/"]),
        ("findgrep", ["findgrep"]),
        ("mktree", ["mktree", "relative", "10"]),
        ("mktree", ["mktree", "/t", "0"]),
        ("mix", ["mix", "0"]),
        ("mix", ["mix", "1", "x"]),
    ],
)
def test_usage(program: str, argv: list[str]) -> None:
    ref, _ = compare_all(program, argv, [2])
    assert ref.top_status == 2
    assert ref.console.startswith((f"usage: {program}", f"{program}: "))


def test_mix_on_every_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcc_mod, "PER_BYTE", 100)  # less machine time, the same calls: a quicker test
    monkeypatch.setattr(mix_mod, "ENTRIES_PER_SCALE", 60)
    ref, runs = compare_all(mix, ["mix", "1", "3", "2", "5"], [2, 8])
    assert ref.console.endswith("mix: gcc exit 0, find exit 0, grep exit 0, findgrep exit 0, fft exit 0, lu exit 0\n")
    assert ref.top_status == 0
    outs = {p: d.decode() for p, d in ref.files.items() if p.startswith("/mix.out/")}
    assert "manifest agrees True" in outs["/mix.out/find"] and "L U matches the input True" in outs["/mix.out/lu"]
    assert runs[-1].stats["syscalls_by_name"]["futex"] > 0  # FFT's and LU's threads synchronised


def test_mixs_check_catches_a_wrong_member(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lu_mod, "_update", lambda a, left, up: 0)
    got = observe(mix, ["mix", "1", "2", "2", "5"], "up", 1)
    assert got.top_status == 1 and "lu exit 1" in got.console


def test_find_on_the_root_lists_the_programs() -> None:
    got = observe("find", ["find", "/"], "up", 1)
    assert "/bin/find" in got.console.splitlines() and got.top_status == 0
