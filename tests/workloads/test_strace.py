"""The strace log parser: the shipped traces, every kind of line, and what broken logs give (never a traceback)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apkern.workloads import replay, strace

TRACES = replay.shipped()


def test_the_shipped_traces_parse_whole() -> None:
    got = {name: strace.parse(text) for name, text in TRACES.items()}
    assert set(got) == {"find", "grep", "gzip", "findgrep", "python"}
    for name, t in got.items():
        assert t.notes == [], name
        assert all(c.duration is not None or c.result == "?" for c in t.calls), name
        assert all(c.line > 0 and c.start > 1e9 for c in t.calls)
    assert [len(t.pids) for t in got.values()] == [1, 3, 1, 1, 3]  # find, findgrep, grep, gzip, python
    py = got["python"]
    assert [type(e).__name__ for e in py.events].count("Exit") == 3
    assert sum(1 for c in py.calls if c.name == "clone3" and "CLONE_THREAD" in c.args) == 1


def test_an_interrupted_call_is_joined_to_its_resumption() -> None:
    t = strace.parse(
        "10 100.000000 read(3,  <unfinished ...>\n"
        "11 100.000050 getpid()    = 11 <0.000002>\n"
        '10 100.000300 <... read resumed>"ab\\n", 64) = 3 <0.000290>\n'
        "11 100.000400 exit_group(0 <unfinished ...>\n"
        "11 100.000500 <... exit_group resumed>) = ?\n"
        "11 100.000600 +++ exited with 0 +++\n"
        "10 100.000700 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=11} ---\n"
        "10 100.000800 +++ killed by SIGKILL +++\n"
    )
    read = t.calls[1]
    assert (read.pid, read.line, read.start, read.name) == (10, 1, 100.0, "read")
    assert (read.args, read.value, read.duration) == ('3, "ab\\n", 64', 3, 0.00029)
    assert read.arg_list() == ["3", '"ab\\n"', "64"]
    assert t.calls[0].name == "getpid" and t.calls[2].name == "exit_group" and t.calls[2].value is None
    exits = [e for e in t.events if isinstance(e, strace.Exit)]
    assert [(e.pid, e.status, e.signal) for e in exits] == [(11, 0, None), (10, None, "SIGKILL")]
    assert [e.name for e in t.events if isinstance(e, strace.Signal)] == ["SIGCHLD"]
    assert t.pids == [10, 11] and t.notes == []


def test_results_errors_and_prefixes() -> None:
    t = strace.parse(
        '[pid  7] 5.000001 openat(AT_FDCWD, "/x", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000010>\n'
        "5.000002 brk(NULL)       = 0x55d0c000 <0.000003>\n"
        "8 5.000003 fcntl(4, F_GETFL) = 0x38800 (flags O_RDONLY|O_NONBLOCK) <0.000007>\n"
        "8 5.000004 close(3</tmp/f>) = 0<0.000002>\n"
        "8 5.000005 lseek(3, 0, SEEK_CUR) = 3<pipe:[5]> <0.000002>\n"
    )
    c = t.calls
    assert (c[0].pid, c[0].value, c[0].errno, c[0].failed) == (7, -1, "ENOENT", True)
    assert (c[1].pid, c[1].value, c[1].result) == (0, 0x55D0C000, "0x55d0c000")  # no pid: a trace without -f
    assert (c[2].value, c[2].detail) == (0x38800, "(flags O_RDONLY|O_NONBLOCK)")
    assert c[3].value == 0 and c[4].value == 3


def test_arguments_and_strings() -> None:
    assert strace.split_args('3, "a, b", {x=1, y=[2, 3]}, /* 4 entries */ 5') == [
        "3",
        '"a, b"',
        "{x=1, y=[2, 3]}",
        "/* 4 entries */ 5",
    ]
    assert strace.split_args("") == []
    assert strace.unquote('"a\\nb\\t\\"\\\\\\x41\\101\\0"') == (b'a\nb\t"\\AA\0', False)
    assert strace.unquote('"abc"...') == (b"abc", True)
    assert strace.unquote("0x7ffd") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no system call"),
        ("\n\n", "no system call"),
        ("1 1.0 +++ exited with 0 +++\n", "no system call"),
        ("1 1.0 getpid() = 1\n", "no call has a <duration>"),
        ("getpid() = 1 <0.1>\n", "line 1: not strace -ttt output"),
        ("1 12:00:01.000001 getpid() = 1 <0.1>\n", "line 1: not strace -ttt output"),
        ("1 1.0 getpid() = 1 <0.1>\n1 1.1 hello world\n1 1.2 getpid() = 1 <0.1>\n", "line 2: not strace output"),
        ('1 1.0 read(3, "abc" = 1 <0.1>\n', "line 1: the arguments of read() are not closed"),
        ("1 1.0 getpid() == 1 <0.1>\n", "line 1: getpid() has no '= result'"),
        ("1 1.0 getpid() = one <0.1>\n", "line 1: getpid() has no '= result'"),
        ("1 " + "9" * 400 + ".0 getpid() = 1 <0.1>\n", "line 1: time"),
        ("1 1.0 getpid() = 1 <" + "9" * 400 + ".0>\n", "line 1: time"),
    ],
)
def test_what_is_not_a_trace_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(strace.TraceError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        strace.parse(text)


def test_cut_short_and_dangling_lines_are_left_out_with_a_note() -> None:
    t = strace.parse(
        "1 1.0 getpid() = 1 <0.000001>\n"
        "1 1.1 <... read resumed>) = 0 <0.1>\n"  # its start is before the file's first line
        "2 1.2 read(0,  <unfinished ...>\n"  # never resumed: thread 2 died in it
        "3 1.3 exit_group(4 <unfinished ...>\n"  # an exit is kept: it returns nowhere
        "1 1.4 getppid() = 0 <0.000002>\n"
        '1 1.5 write(1, "partial li'  # strace was killed mid-line
    )
    assert [c.name for c in t.calls] == ["getpid", "getppid", "exit_group"]
    assert t.calls[2].args == "4" and t.calls[2].value is None
    assert t.notes == [
        "line 6: cut short (the file ends mid-line): left out",
        "line 2: read resumed, but its start is not in the trace: left out",
        "line 3: thread 2 never returned from read: left out",
    ]


def test_a_binary_file_is_refused(tmp_path) -> None:
    path = tmp_path / "t"
    path.write_bytes(b"\x7fELF\x02\x01\x00\x00garbage")
    with pytest.raises(strace.TraceError, match="binary"):
        strace.read(path)
    path.write_bytes(b'1 1.0 write(1, "\xff\xfe", 2) = 2 <0.000001>\n')  # not UTF-8: replaced, still a trace
    assert strace.read(path).calls[0].value == 2


LINE = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "1 1.0 getpid() = 1 <0.000001>",
            "2 1.5 read(3,  <unfinished ...>",
            '2 1.6 <... read resumed>"x", 1) = 1 <0.1>',
            "2 1.7 <... read resumed> <unfinished ...>) = ?",
            "1 1.8 --- SIGCHLD {si_signo=SIGCHLD} ---",
            "1 1.9 +++ killed by SIGSEGV (core dumped) +++",
            '1 2.0 openat(AT_FDCWD, "/a(b", O_RDONLY) = 3 <0.000002>',
            "1 2.1 futex(0x1, FUTEX_WAIT, 0, NULL) = ? ERESTARTSYS (To be restarted) <0.2>",
            "[pid 9] 2.2 clone3({flags=CLONE_VM} => {parent_tid=[9]}, 88) = 9 <0.1>",
        ]
    ),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(lines=st.lists(LINE, max_size=12), newline=st.booleans())
def test_the_parser_takes_any_text_without_a_traceback(lines: list[str], newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if newline else "")
    try:
        t = strace.parse(text)
    except strace.TraceError as e:
        assert str(e)
        return
    assert t.calls and all(isinstance(c.line, int) for c in t.calls)


@settings(
    max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_a_real_trace_cut_or_damaged_anywhere_parses_or_fails_clearly(data: st.DataObject) -> None:
    text = TRACES[data.draw(st.sampled_from(sorted(TRACES)), label="trace")]
    cut = data.draw(st.integers(0, len(text)), label="cut")
    junk = data.draw(st.text(max_size=20), label="junk")
    at = data.draw(st.integers(0, cut), label="at")
    damaged = text[:at] + junk + text[at:cut]
    try:
        t = strace.parse(damaged)
    except strace.TraceError as e:
        assert str(e).startswith(("line ", "no "))
        return
    assert all(c.start > 0 for c in t.calls)
