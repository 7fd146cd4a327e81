"""System calls of both ports: the bootstrap kernel's table, with munmap shooting its pages down."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..bootkernel import abi, sysproc
from ..bootkernel.syscall import TABLE as UP_TABLE
from ..bootkernel.syscall import Syscalls
from ..hw import Op

Gen = Generator[Op, Any, Any]


def sys_munmap(k: Any, addr: int, length: int) -> Gen:
    """The uniprocessor munmap between a shoot-down's begin and end (`k.shootdown`): no other CPU keeps a
    translation."""
    yield from k.shootdown.begin(k.sched.current.proc.aspace.cr3)
    result = yield from sysproc.sys_munmap(k, addr, length)
    yield from k.shootdown.end()
    return result


TABLE = {**UP_TABLE, abi.SYS_MUNMAP: (sys_munmap, 2)}


class PortSyscalls(Syscalls):
    """The bootstrap kernel's system calls for a port whose kernel has a `shootdown`."""

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        self.table = TABLE
