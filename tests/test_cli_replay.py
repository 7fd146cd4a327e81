"""`apkern replay` and `apkern predict`: a shipped trace, a trace a user captured, and every kind of mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apkern.system import KERNELS
from test_cli import assert_usage_error, call

USER_TRACE = (  # what `strace -f -ttt -T -o t.trace sh -c 'cat x | wc -c'` could give, cut down
    '700 1000.000000 execve("/bin/sh", ["sh"], 0x1 /* 2 vars */) = 0 <0.000300>\n'
    "700 1000.000500 pipe2([3, 4], 0) = 0 <0.000010>\n"
    "700 1000.000600 clone(child_stack=NULL, flags=SIGCHLD) = 701 <0.000100>\n"
    "701 1000.000800 dup2(4, 1) = 1 <0.000005>\n"
    '701 1000.000900 openat(AT_FDCWD, "x", O_RDONLY) = 5 <0.000010>\n'
    '701 1000.001000 read(5, "12345", 131072) = 5 <0.000010>\n'
    '701 1000.001100 write(1, "12345", 5) = 5 <0.000010>\n'
    "701 1000.001200 exit_group(0) = ?\n"
    "701 1000.001300 +++ exited with 0 +++\n"
    "700 1000.001400 close(4) = 0 <0.000005>\n"
    '700 1000.001500 read(3, "12345", 128) = 5 <0.000010>\n'
    '700 1000.001600 read(3, "", 128) = 0 <0.000010>\n'
    '700 1000.001700 write(1, "5\\n", 2) = 2 <0.000010>\n'
    "700 1000.001800 wait4(-1, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 701 <0.000020>\n"
    "700 1000.001900 exit_group(0) = ?\n"
    "700 1000.002000 +++ exited with 0 +++\n"
)


@pytest.fixture
def user_trace(tmp_path: Path) -> Path:
    path = tmp_path / "t.trace"
    path.write_text(USER_TRACE)
    return path


def test_replay_of_a_shipped_trace_reports_the_mapping_and_the_run(capsys) -> None:
    code, out, err = call(capsys, "replay", "find", "--kernel", "apkern", "--cpus", "3")
    assert (code, err) == (0, "")
    assert out.startswith("trace find: 138 calls over 11.271 ms, 1 process(es), 0 further thread(s)")
    lines = out.splitlines()
    assert any(ln.split()[:3] == ["openat", "11", "open"] and "its measured time" in ln for ln in lines)
    assert any(ln.split()[:3] == ["mmap", "21", "spin"] for ln in lines)
    assert "replayed on apkern, 3 CPU(s):" in out and "exit status 0" in out and "forwarded to the bootstrap" in out


def test_replay_of_a_users_trace_as_json(capsys, user_trace: Path) -> None:
    code, out, err = call(capsys, "replay", str(user_trace), "--kernel", "smp", "--cpus", "2", "--json")
    assert (code, err) == (0, "")
    d = json.loads(out)
    assert d["trace"] == "t.trace" and sum(m["count"] for m in d["mapping"]) == 14
    assert {"call": "wait4", "as": "wait", "charge": "floor", "count": 1} in d["mapping"]
    assert d["run"]["exit_status"] == 0 and d["run"]["console"] == "5\n"  # the child wrote into the pipe
    assert [p[1] for p in d["run"]["processes"].values()] == [0, 0]


def test_replay_of_a_trace_cut_mid_line_notes_it(capsys, tmp_path: Path) -> None:
    path = tmp_path / "cut.trace"
    path.write_text(USER_TRACE[: USER_TRACE.index("700 1000.001500") + 30])
    code, out, err = call(capsys, "replay", str(path))
    assert (code, err) == (0, "")
    assert "line 11: cut short (the file ends mid-line): left out" in out
    assert "thread 700: no end in the trace: it ends after its last call" in out


def test_predict_prints_every_kernel_beside_the_model_and_plots(capsys, user_trace: Path, tmp_path: Path) -> None:
    plot = tmp_path / "p.png"
    code, out, err = call(capsys, "predict", str(user_trace), "--opsc", "500", "--plot", str(plot))
    assert (code, err) == (0, "")
    assert "opsc 500 instructions per forwarded call (given)" in out
    table = out.splitlines()[out.splitlines().index(next(ln for ln in out.splitlines() if ln.startswith("kernel"))) :]
    assert [ln.split()[0] for ln in table[1 : 1 + len(KERNELS)]] == list(KERNELS)
    assert table[0].split() == ["kernel", *map(str, range(1, 9))]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.rstrip().endswith(f"plot: {plot}")


def test_predict_derives_opsc_when_not_given_and_speaks_json(capsys, user_trace: Path, tmp_path: Path) -> None:
    code, out, err = call(capsys, "predict", str(user_trace), "--plot", str(tmp_path / "p.png"), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["inputs"]["opsc_source"].startswith("derived at the saturated throughput point")
    assert 100 < d["inputs"]["opsc"] < 5000
    assert len(d["points"]) == 8 * len(KERNELS) and d["plot"] == str(tmp_path / "p.png")
    up1 = next(p for p in d["points"] if (p["kernel"], p["cpus"]) == ("up", 1))
    assert up1["replayed"] == 1.0 and up1["model"] == 1.0


def _deadlock(tmp_path: Path) -> Path:
    path = tmp_path / "dead.trace"
    path.write_text(USER_TRACE.replace("700 1000.001400 close(4) = 0 <0.000005>\n", ""))
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "/no/such.trace"],
        ["replay", "{tmp}/garbage.trace"],
        ["replay", "{tmp}/empty.trace"],
        ["replay", "{tmp}/binary.trace"],
        ["replay", "{tmp}/untimed.trace"],
        ["replay", "{tmp}"],
        ["replay", "find", "--cpus", "0"],
        ["replay", "find", "--kernel", "apkern", "--cpus", "1"],
        ["replay", "find", "--kernel", "nope"],
        ["replay", "find", "--ips", "0"],
        ["replay", "find", "--ips", "-5"],
        ["replay", "find", "--ips", "nan"],
        ["replay", "find", "--ips", "fast"],
        ["replay", "find", "--limit", "5"],
        ["replay", "{tmp}/dead.trace"],
        ["replay"],
        ["predict", "find", "--opsc", "-1"],
        ["predict", "find", "--opsc", "inf"],
        ["predict", "find", "--plot", "/no/such/dir/p.png"],
        ["predict", "find", "--plot", "{tmp}"],
        ["predict", "{tmp}/garbage.trace"],
    ],
)
def test_a_mistake_is_one_line_and_status_2(capsys, tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "garbage.trace").write_text("1 1.0 getpid() = 1 <0.1>\nnot a trace at all\n")
    (tmp_path / "empty.trace").write_text("")
    (tmp_path / "binary.trace").write_bytes(bytes(range(256)))
    (tmp_path / "untimed.trace").write_text("1 getpid() = 1\n")
    _deadlock(tmp_path)
    assert_usage_error(*call(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args]))


def test_the_errors_say_what_is_wrong(capsys, tmp_path: Path) -> None:
    (tmp_path / "garbage.trace").write_text("1 1.0 getpid() = 1 <0.1>\nnot a trace at all\n")
    _, _, err = call(capsys, "replay", str(tmp_path / "garbage.trace"))
    where = tmp_path / "garbage.trace"
    assert err == f"apkern: error: {where}: line 2: not strace -ttt output (no time stamp): 'not a trace at all'\n"
    _, _, err = call(capsys, "replay", str(_deadlock(tmp_path)))
    assert "the replay did not finish within" in err and "--limit gives it more time" in err
