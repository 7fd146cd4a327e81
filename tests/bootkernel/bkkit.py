"""Helpers for the bootstrap-kernel tests: run small inline programs on a uniprocessor system.

A test program is a generator function `main(argv)` that uses libc with `yield
from`. Programs are Python closures, so they may append what they observe to a
list of the test; the test then checks it after the run. Every system here is
strict: a Python error inside a program propagates out of the run instead of
becoming SIGILL.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any

from apkern import System
from apkern.bootkernel import BootKernel, Driver
from apkern.bootkernel.proc import Process
from apkern.hw import Machine
from apkern.userland.crt0 import crt0
from apkern.userland.libc import encode_spawn_block
from apkern.userland.programs import bin_files

Gen = Generator[Any, Any, Any]
LIMIT = 200_000_000  # instructions; every test program ends long before


def run(main: Callable[..., Gen], argv: list[str] | None = None, **kw: Any) -> tuple[System, Any]:
    """Spawn `main` alone on a fresh strict uniprocessor System and run it to the end."""
    sim = System(kernel="up", strict=True, **kw)
    proc = sim.spawn(main, argv)
    sim.run(limit=LIMIT)
    return sim, proc


def errno_of(gen: Gen) -> Gen:
    """Run one libc call; return the errno it failed with, or None if it succeeded."""
    try:
        yield from gen
    except OSError as e:
        return e.errno
    return None


class HandBuilt:
    """A machine and a bootstrap kernel built by hand, with the drivers chosen at build time."""

    def __init__(self, drivers: Iterable[Driver] = (), **kernel_kw: Any) -> None:
        self.machine = Machine(cpus=1, strict=True)
        self.kernel = BootKernel(self.machine, drivers=list(drivers), **kernel_kw)
        for path, data in bin_files(self.machine.code.address_of).items():
            self.kernel.fs.write_file(path, data)
        self.kernel.boot()

    def spawn(self, main: Callable[..., Gen], argv: list[str] | None = None) -> Process:
        code = self.machine.code
        argv = [main.__name__] if argv is None else argv
        block = encode_spawn_block(code.address_of(main), argv)
        return self.kernel.create_process(code.address_of(crt0), block, main.__name__)

    def run(self, limit: int = LIMIT) -> None:
        if self.kernel.live:
            self.machine.run(until=self.machine.now + limit)  # the kernel stops the machine when the last one exits
        assert self.kernel.live == 0, "processes still running at the limit"

    def boot_only(self) -> None:
        """Run the machine just long enough for the kernel (and its drivers) to start."""
        m = self.machine
        while not self.kernel.booted and m.now < 1_000_000:
            m.run(until=m.now + 100)
        assert self.kernel.booted
