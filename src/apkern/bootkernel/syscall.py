"""System-call dispatch: number -> implementation, argument checks, EFAULT on bad pointers.

Arguments arrive as register values; anything that is not a 32-bit integer is
rejected with EINVAL before an implementation sees it. A fault on a user pointer
inside an implementation surfaces as `UserAccessFault` and becomes EFAULT.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ..hw import Op, UserAccessFault
from . import abi, sysfile, sysproc

if TYPE_CHECKING:
    from .kernel import BootKernel

Gen = Generator[Op, Any, Any]

# number -> (implementation, argument count)
TABLE: dict[int, tuple[Callable[..., Gen], int]] = {
    abi.SYS_EXIT: (sysproc.sys_exit, 1),
    abi.SYS_GETPID: (sysproc.sys_getpid, 0),
    abi.SYS_GETTID: (sysproc.sys_gettid, 0),
    abi.SYS_SPAWN: (sysproc.sys_spawn, 3),
    abi.SYS_WAITPID: (sysproc.sys_waitpid, 2),
    abi.SYS_KILL: (sysproc.sys_kill, 2),
    abi.SYS_SIGACTION: (sysproc.sys_sigaction, 2),
    abi.SYS_YIELD: (sysproc.sys_yield, 0),
    abi.SYS_SLEEP: (sysproc.sys_sleep, 1),
    abi.SYS_THREAD_CREATE: (sysproc.sys_thread_create, 3),
    abi.SYS_THREAD_JOIN: (sysproc.sys_thread_join, 2),
    abi.SYS_THREAD_EXIT: (sysproc.sys_thread_exit, 1),
    abi.SYS_MMAP: (sysproc.sys_mmap, 1),
    abi.SYS_MUNMAP: (sysproc.sys_munmap, 2),
    abi.SYS_SPIN: (sysproc.sys_spin, 1),
    abi.SYS_SPIN_CALL: (sysproc.sys_spin_call, 5),
    abi.SYS_MLOCK: (sysproc.sys_mlock, 2),
    abi.SYS_MUNLOCK: (sysproc.sys_munlock, 2),
    abi.SYS_LSEEK: (sysfile.sys_lseek, 3),
    abi.SYS_DUP: (sysfile.sys_dup, 1),
    abi.SYS_FUTEX: (sysproc.sys_futex, 3),
    abi.SYS_MKDIR: (sysfile.sys_mkdir, 1),
    abi.SYS_STAT: (sysfile.sys_stat, 2),
    abi.SYS_GETDENTS: (sysfile.sys_getdents, 3),
    abi.SYS_OPEN: (sysfile.sys_open, 2),
    abi.SYS_READ: (sysfile.sys_read, 3),
    abi.SYS_WRITE: (sysfile.sys_write, 3),
    abi.SYS_CLOSE: (sysfile.sys_close, 1),
    abi.SYS_PIPE: (sysfile.sys_pipe, 1),
    abi.SYS_DRIVER_CONTROL: (sysfile.sys_driver_control, 3),
}


def _is_word(v: Any) -> bool:
    return type(v) is int and -(1 << 31) <= v < (1 << 32)


class Syscalls:
    def __init__(self, kernel: BootKernel) -> None:
        self.k = kernel
        self.table = TABLE  # number -> (implementation, argument count)
        self.counts: dict[str, int] = {}

    def dispatch(self, args: tuple[Any, ...]) -> Gen:
        if not args or not all(_is_word(a) for a in args):
            return -abi.EINVAL
        nr, rest = args[0], args[1:]
        entry = self.table.get(nr)
        if entry is None:
            return -abi.ENOSYS
        impl, nargs = entry
        if len(rest) < nargs:
            return -abi.EINVAL
        name = abi.SYSCALL_NAMES[nr]
        self.counts[name] = self.counts.get(name, 0) + 1
        try:
            result = yield from impl(self.k, *rest[:nargs])
        except UserAccessFault:
            return -abi.EFAULT
        return result
