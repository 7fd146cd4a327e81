"""The guide's examples and `help(apkern)` run as written.

Each file in docs/ runs its ```python blocks in order, in one namespace (a later block
uses what an earlier one defined); their asserts are the guide's claims. The package
docstring's `>>>` examples (what `help(apkern)` shows) run as doctests.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import pydoc
import re
from pathlib import Path

import pytest

import apkern

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDES = sorted(DOCS.glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_there_is_a_guide() -> None:
    assert "guide.md" in [p.name for p in GUIDES]
    assert len(BLOCK.findall((DOCS / "guide.md").read_text())) >= 10


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_the_guides_examples_run(guide: Path) -> None:
    namespace: dict = {"__name__": f"docs.{guide.stem}"}
    for i, block in enumerate(BLOCK.findall(guide.read_text()), 1):
        code = compile(block, f"{guide.name}, example {i}", "exec")
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)


def test_help_apkern_covers_the_guide_and_its_examples_run() -> None:
    text = pydoc.render_doc(apkern, renderer=pydoc.plaintext)
    for topic in ("yield from", "memory", "strict", "sim.machine.messages", "trace=True", "docs/guide.md", "errno"):
        assert topic in text, topic
    failures, tried = doctest.testmod(apkern, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert tried >= 5 and failures == 0


def _forgot(argv):
    apkern.libc.print("hello\n")
    yield from apkern.libc.compute(10)
    return 0


def _forgot_value(argv):
    pid = apkern.libc.getpid()
    yield from apkern.libc.print(f"{pid + 1}\n")
    return 0


def _yielded(argv):
    yield apkern.libc.print("hello\n")
    return 0


def _plain(argv):
    apkern.libc.print("hello\n")
    return 0


@pytest.mark.parametrize("program", [_forgot, _forgot_value, _yielded, _plain], ids=lambda f: f.__name__)
def test_forgetting_yield_from_does_the_same_on_every_kernel(program) -> None:
    """The guide says so: each mistake's status, output and reason are the same under every kernel."""
    seen = set()
    for kernel, cpus in (("up", 1), ("apkern", 2), ("smp", 2)):
        sim = apkern.System(kernel=kernel, cpus=cpus)
        proc = sim.spawn(program, [program.__name__])
        sim.run()
        why = (proc.crash or {}).get("why", "")
        seen.add((proc.exit_status, sim.console(proc.pid), re.sub(r" at 0x[0-9a-f]+", "", why)))
    assert len(seen) == 1, seen
    status, _, why = seen.pop()
    assert status == (0 if program is _forgot else -4)
    if program is _plain:
        assert why.endswith(
            "_plain returned 0, not a generator: code that runs on a CPU is a generator function "
            "(it yields operations, e.g. `yield from libc.print(...)`)"
        )
