"""The layer rules of DESIGN.md section 1, checked by import-linter, and the black-box rule by hand."""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys

import apkern

SRC = pathlib.Path(apkern.__file__).parent


def test_import_linter_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports") or str(pathlib.Path(sys.executable).parent / "lint-imports")
    root = SRC.parent.parent
    r = subprocess.run([exe, "--config", str(root / "pyproject.toml")], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "broken" in r.stdout and "0 broken" in r.stdout


def test_bootstrap_kernel_never_imports_the_application_kernel_or_anything_above() -> None:
    forbidden = ("appkernel", "smp", "masterslave", "userland", "experiments", "system", "cli")
    for path in (SRC / "bootkernel").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = ("." * node.level) + (node.module or "")
                assert not any(part in forbidden for part in mod.replace(".", " ").split()), (path.name, mod)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not any(f"apkern.{f}" in alias.name for f in forbidden), (path.name, alias.name)


def test_every_line_of_the_bootstrap_kernel_patch_is_marked_and_counted() -> None:
    """The report counts the section 4.3 patch by its marks: a line that reaches the patch must carry one."""
    import io
    import pathlib
    import tokenize

    from apkern import bootkernel
    from apkern.experiments.report import PATCH_MARK, patch_lines

    unmarked = []
    for path in pathlib.Path(bootkernel.__file__).parent.glob("*.py"):
        if path.name == "tlb_patch.py":
            continue
        text = path.read_text()
        lines = text.splitlines()
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):  # names in code, not in strings
            if tok.type == tokenize.NAME and tok.string in ("tlb_patch", "TLBPatch"):
                line = lines[tok.start[0] - 1]
                if PATCH_MARK not in line:
                    unmarked.append(f"{path.name}:{tok.start[0]}: {line.strip()}")
    assert not unmarked, unmarked
    counted = patch_lines()
    assert counted["bootkernel/swap.py"] == 2 and counted["bootkernel/tlb_patch.py"] > 10


def test_the_smp_ports_effort_is_measured_from_its_code() -> None:
    """The report's implementation-effort measure of the giant-lock port, and the one refactor it needed."""
    from apkern.bootkernel.syscall import TABLE, Syscalls
    from apkern.experiments.report import smp_effort, source_lines
    from apkern.smp import kernel

    effort = smp_effort()
    assert effort["total"] == sum(effort["lines"].values())
    assert effort["lines"]["smp/kernel.py"] == source_lines(kernel)
    # what an SMP port of the kernel must change, found in the code, not listed by hand
    must = ("Traps.timer", "Scheduler.schedule", "BootKernel.exit_process", "BootKernel.free_thread", "Swapper.evict")
    for fn in must:
        assert fn in effort["overridden"], fn
    assert effort["per_cpu"] == ["Scheduler.current", "Scheduler.loaded_cr3"]
    assert effort["replaced"] == ["sys_munmap"]
    # the bootstrap kernel's one refactor for it: the table is the instance's, the uniprocessor's by default
    import inspect

    assert Syscalls(None).table is TABLE  # type: ignore[arg-type]
    assert "self.table.get(nr)" in inspect.getsource(Syscalls.dispatch)
    assert set(effort["bootkernel_refactors"]) == {"bootkernel/syscall.py"}


def test_the_master_slave_ports_effort_is_measured_from_its_code() -> None:
    """The same measure for the master-slave port: it changes no line of the bootstrap kernel."""
    from apkern.experiments.report import apkern_effort, effort_table, masterslave_effort, source_lines
    from apkern.masterslave import sched

    effort = masterslave_effort()
    assert effort["total"] == sum(effort["lines"].values())
    assert effort["lines"]["masterslave/sched.py"] == source_lines(sched)
    must = (
        "Scheduler.schedule",
        "Scheduler.yield_",
        "BootKernel.exit_process",
        "BootKernel.free_thread",
        "Swapper.evict",
    )
    for fn in must:
        assert fn in effort["overridden"], fn
    assert "Traps.timer" not in effort["overridden"]  # the master's timer is a new handler beside the kernel's
    assert effort["per_cpu"] == ["Scheduler.current", "Scheduler.loaded_cr3"]
    assert effort["replaced"] == ["sys_munmap"] and effort["bootkernel_refactors"] == {}
    ak = apkern_effort()
    assert ak["overridden"] == [] and ak["patch_total"] == sum(ak["patch"].values()) > 10
    table = effort_table()
    assert len(table) == 5 and all(row.count("|") == 7 for row in table)
