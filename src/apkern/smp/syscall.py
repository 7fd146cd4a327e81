"""System calls of the SMP port: the bootstrap kernel's table, with munmap shooting its pages down everywhere."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..bootkernel import abi, sysproc
from ..bootkernel.syscall import TABLE as UP_TABLE
from ..bootkernel.syscall import Syscalls
from ..hw import Op

if TYPE_CHECKING:
    from .kernel import SMPKernel

Gen = Generator[Op, Any, Any]


def sys_munmap(k: SMPKernel, addr: int, length: int) -> Gen:
    """The uniprocessor munmap between a shoot-down's begin and end: no other CPU keeps a translation."""
    yield from k.shootdown.begin(k.sched.current.proc.aspace.cr3)
    result = yield from sysproc.sys_munmap(k, addr, length)
    yield from k.shootdown.end()
    return result


TABLE = {**UP_TABLE, abi.SYS_MUNMAP: (sys_munmap, 2)}


class SMPSyscalls(Syscalls):
    def __init__(self, kernel: SMPKernel) -> None:
        super().__init__(kernel)
        self.table = TABLE
