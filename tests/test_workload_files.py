"""Programs from files: a user's Python file and TOML workloads are loaded and checked (no simulation here).

Every mistake is one `ProgramError` line that names the file and the place; the TOML
blocks of docs/workloads.md are valid workloads (or valid TOML, for fragments).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from apkern.workloads import declarative
from apkern.workloads.declarative import load_workload
from apkern.workloads.source import ProgramError, load_function, resolve, split_file_spec

DOCS = Path(__file__).resolve().parents[1] / "docs" / "workloads.md"


def _toml(tmp_path: Path, text: str, name: str = "w.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_minimal_workload_takes_the_defaults(tmp_path: Path) -> None:
    w = load_workload(_toml(tmp_path, '[[process]]\nname = "a"\n[process.calls]\nwrite = 2\nspin = 1\n', "my-w.toml"))
    assert (w.name, w.pipes, w.files) == ("my-w", (), {})
    (p,) = w.processes
    assert (p.name, p.count, p.threads, p.iterations, p.compute) == ("a", 1, 1, 1, 0)
    assert p.calls == (
        declarative.Call("write", count=2, file=declarative.DEFAULT_WRITE_FILE),
        declarative.Call("spin", instructions=1000),
    )
    assert w.main is w.main and w.main.__name__ == "my-w"  # one launcher per workload


def test_files_pipes_and_an_array_of_calls(tmp_path: Path) -> None:
    w = load_workload(
        _toml(
            tmp_path,
            """
[workload]
name = "x"
[files]
"/a.txt" = "hi"
"/b" = { text = "ab", repeat = 3 }
"/c" = { size = 5, seed = 1 }
[[pipe]]
name = "p"
[[process]]
name = "w"
count = 2
[[process.calls]]
call = "write"
pipe = "p"
[[process.calls]]
call = "write"
file = "/o/{copy}"
bytes = 9
[[process]]
name = "r"
calls = { read = { pipe = "p", count = 3 } }
""",
        )
    )
    assert w.files["/a.txt"] == b"hi" and w.files["/b"] == b"ababab" and len(w.files["/c"]) == 5
    assert w.pipes == ("p",)
    assert [c.label for c in w.processes[0].calls] == ["write p", "write"]
    assert w.processes[0].calls[1].file == "/o/{copy}" and w.processes[1].calls[0].count == 3


BAD = [
    ("not toml", "[[process]\n", "not valid TOML"),
    ("no process", '[workload]\nname = "x"\n', "needs at least one"),
    ("top-level key", '[[process]]\nname = "a"\n[proces]\n', "unknown key 'proces'"),
    ("process as a table", '[process]\nname = "a"\n', "[[process]]"),
    ("unknown process key", '[[process]]\nname = "a"\nthread = 2\n', "unknown key 'thread'"),
    ("no name", "[[process]]\ncount = 2\n", "'name' is missing"),
    ("bad name", '[[process]]\nname = "a b"\n', "is not a name"),
    ("two of a name", '[[process]]\nname = "a"\n[[process]]\nname = "a"\n', "a second process"),
    ("threads 0", '[[process]]\nname = "a"\nthreads = 0\n', "between 1 and 16"),
    ("a float", '[[process]]\nname = "a"\ncompute = 1.5\n', "whole number"),
    ("a bool", '[[process]]\nname = "a"\niterations = true\n', "whole number"),
    ("a string", '[[process]]\nname = "a"\ncount = "2"\n', "whole number"),
    ("too many copies", '[[process]]\nname = "a"\ncount = 20\n[[process]]\nname = "b"\ncount = 20\n', "at most 32"),
    ("unknown call", '[[process]]\nname = "a"\n[process.calls]\nfork = 1\n', "unknown call 'fork'"),
    ("call param", '[[process]]\nname = "a"\n[process.calls]\ngetpid = { bytes = 3 }\n', "unknown key 'bytes'"),
    ("negative count", '[[process]]\nname = "a"\n[process.calls]\ngetpid = -1\n', "between 0 and"),
    ("bytes 0", '[[process]]\nname = "a"\n[process.calls]\nmmap = { bytes = 0 }\n', "between 1 and"),
    ("read where", '[[process]]\nname = "a"\n[process.calls]\nread = 1\n', "which file?"),
    ("calls array no call", '[[process]]\nname = "a"\n[[process.calls]]\nfile = "/x"\n', "'call' is missing"),
    ("calls a number", '[[process]]\nname = "a"\ncalls = 3\n', "must be a table"),
    ("relative file", '[[process]]\nname = "a"\n[process.calls]\nopen = { file = "x" }\n', "not an absolute path"),
    ("dev file", '[[process]]\nname = "a"\n[process.calls]\nopen = { file = "/dev/apkern" }\n', "/dev names devices"),
    ("placeholder", '[[process]]\nname = "a"\n[process.calls]\nwrite = { file = "/{pid}" }\n', "placeholder {pid}"),
    ("brace", '[[process]]\nname = "a"\n[process.calls]\nwrite = { file = "/{" }\n', "braces"),
    ("file and pipe", '[[pipe]]\nname="p"\n[[process]]\nname = "a"\ncalls={write={pipe="p", file="/x"}}\n', "not both"),
    ("no such pipe", '[[process]]\nname = "a"\n[process.calls]\nwrite = { pipe = "q" }\n', "no pipe named 'q'"),
    ("unread pipe", '[[pipe]]\nname = "p"\n[[process]]\nname = "a"\ncalls = {write={pipe="p"}}\n', "no process reads"),
    (
        "unwritten pipe",
        '[[pipe]]\nname = "p"\n[[process]]\nname = "a"\ncalls = {read={pipe="p"}}\n',
        "no process writes",
    ),
    (
        "two readers",
        '[[pipe]]\nname="p"\n[[process]]\nname="w"\ncalls={write={pipe="p"}}\n'
        '[[process]]\nname="r"\ncount=2\ncalls={read={pipe="p"}}\n',
        "more than one process",
    ),
    (
        "read and write",
        '[[pipe]]\nname="p"\n[[process]]\nname="a"\ncalls={write={pipe="p"}, read={pipe="p"}}\n',
        "both writes and reads",
    ),
    (
        "cycle",
        '[[pipe]]\nname="p"\n[[pipe]]\nname="q"\n[[process]]\nname="a"\ncalls={write={pipe="p"}, read={pipe="q"}}\n'
        '[[process]]\nname="b"\ncalls={write={pipe="q"}, read={pipe="p"}}\n',
        "cycle (a -> b -> a)",
    ),
    ("two pipes of a name", '[[pipe]]\nname="p"\n[[pipe]]\nname="p"\n[[process]]\nname="a"\n', "a second pipe"),
    ("file value", '[files]\n"/a" = 3\n[[process]]\nname = "a"\n', "must be a string"),
    ("file key", '[files]\n"/a" = { size = 3, mode = 1 }\n[[process]]\nname = "a"\n', "unknown key 'mode'"),
    ("file too big", '[files]\n"/a" = { size = 99999999 }\n[[process]]\nname = "a"\n', "between 0 and"),
    ("file and dir", '[files]\n"/a" = "x"\n"/a/b" = "y"\n[[process]]\nname = "a"\n', "cannot be a directory"),
    ("file path", '[files]\n"/a/../b" = "x"\n[[process]]\nname = "a"\n', "plainly"),
    (
        "shared write file",
        '[[process]]\nname = "a"\nthreads = 2\n[process.calls]\nwrite = { file = "/log" }\n',
        "'/log' is written by a[0] thread 0 and by a[0] thread 1",
    ),
    (
        "read of another's file",
        '[[process]]\nname = "a"\n[process.calls]\nwrite = { file = "/x" }\n'
        '[[process]]\nname = "b"\n[process.calls]\nread = { file = "/x" }\n',
        "what it finds would depend on timing",
    ),
    (
        "stat of a dir another makes",
        '[[process]]\nname = "a"\n[process.calls]\nwrite = { file = "/d/x" }\n'
        '[[process]]\nname = "b"\n[process.calls]\nstat = { file = "/d" }\n',
        "exists only once",
    ),
    ("reports", '[[process]]\nname = "a"\n[process.calls]\nwrite = { file = "/tmp/.workload/a.0" }\n', "reports"),
]


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_malformed_workload_is_one_line_naming_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(ProgramError) as e:
        load_workload(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert expected in message, message


def test_too_many_descriptors_for_one_process(tmp_path: Path) -> None:
    calls = "\n".join(f'[[process.calls]]\ncall = "read"\nfile = "/f{i}/{{thread}}"' for i in range(4))
    path = _toml(tmp_path, f'[[process]]\nname = "a"\nthreads = 16\n{calls}\n')
    with pytest.raises(ProgramError, match=r"needs 68 descriptors \(16 threads x 4 files, 0 pipes\); at most 60"):
        load_workload(path)


def test_unreadable_workload_files(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match="cannot read .*missing.toml: No such file"):
        load_workload(str(tmp_path / "missing.toml"))
    (tmp_path / "d.toml").mkdir()
    with pytest.raises(ProgramError, match="it is a directory"):
        load_workload(str(tmp_path / "d.toml"))
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[[process]]")
    with pytest.raises(ProgramError, match="not UTF-8"):
        load_workload(str(tmp_path / "bin.toml"))


def _doc_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.S)


def test_the_guides_toml_examples_are_valid(tmp_path: Path) -> None:
    blocks = _doc_blocks()
    assert len(blocks) >= 2
    whole = 0
    for i, text in enumerate(blocks):
        if "[[process]]" in text:
            load_workload(_toml(tmp_path, text, f"doc{i}.toml"))
            whole += 1
        else:
            tomllib.loads(text)  # a fragment: at least TOML
    assert whole >= 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a.py", ("a.py", "main")),
        ("d/a.py:f", ("d/a.py", "f")),
        ("a.py:", ("a.py", "")),
        ("hello", None),
        ("x:y", None),
    ],
)
def test_split_file_spec(spec: str, expected: tuple[str, str] | None) -> None:
    assert split_file_spec(spec) == expected


def test_a_users_file_may_import_its_neighbours_and_leaves_sys_path_alone(tmp_path: Path) -> None:
    (tmp_path / "helper_mod_for_apkern.py").write_text("GREETING = 'hi'\n")
    (tmp_path / "prog.py").write_text(
        "from dataclasses import dataclass\nimport helper_mod_for_apkern as h\n\n"
        "@dataclass\nclass P:\n    x: int\n\n"
        "def main(argv):\n    yield from ()\n    return len(h.GREETING)\n"
    )
    before = list(sys.path)
    main = load_function(str(tmp_path / "prog.py"))
    assert sys.path == before
    assert main.__name__ == "main" and list(main(["x"])) == []
    prog = resolve(str(tmp_path / "prog.py"), ["1", "2"])
    assert (prog.kind, prog.argv, prog.files) == ("file", [str(tmp_path / "prog.py"), "1", "2"], {})


@pytest.mark.parametrize(
    ("source", "spec", "expected"),
    [
        ("def main(argv):\n    return 0\n", "p.py", "p.py:main is not a generator function"),
        ("def main(argv)\n    yield\n", "p.py", "p.py:1: syntax error"),
        ("x = 1\n\n\nraise KeyError('boom')\n", "p.py", "p.py:4: loading the module raised KeyError: 'boom'"),
        ("import sys\nsys.exit(3)\n", "p.py", "p.py:2: loading the module raised SystemExit: 3"),
        ("x = 1\n", "p.py", "p.py has no function 'main'"),
        ("def f(argv):\n    yield\n", "p.py:g", "p.py has no function 'g'"),
        ("def f(argv):\n    yield\n", "p.py:2f", "'2f' is not a function name"),
        ("def main():\n    yield\n", "p.py", "must take one argument, argv"),
        ("def main(a, b):\n    yield\n", "p.py", "must take one argument, argv"),
        ("main = [1]\n", "p.py", "p.py:main is not a function (it is list [1])"),
    ],
)
def test_a_broken_program_file_is_one_line(tmp_path: Path, source: str, spec: str, expected: str) -> None:
    (tmp_path / "p.py").write_text(source)
    with pytest.raises(ProgramError) as e:
        resolve(str(tmp_path / spec))
    assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_workload_takes_no_arguments_and_unknown_names_say_what_is_accepted(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[[process]]\nname = "a"\n')
    with pytest.raises(ProgramError, match="takes no arguments"):
        resolve(path, ["1"])
    with pytest.raises(ProgramError, match=r"unknown program 'nosuch' .*\.py or \.toml"):
        resolve("nosuch")
    assert resolve("hello", ["x"]).argv == ["hello", "x"] and resolve("hello").main == "hello"
