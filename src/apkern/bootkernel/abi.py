"""The bootstrap kernel's user ABI: trap vector, system call numbers, errno, flags, memory layout.

This is the one module user land includes (like `<unistd.h>` and `<errno.h>`).
A system call is `Trap(SYSCALL, nr, a0, a1, ...)` with integer arguments (pointers
are user virtual addresses); the kernel returns a non-negative value or `-errno`.
Error numbers, open flags and signal numbers are the host's standard values
(`errno`, `os.O_*`, `signal`).
"""

from __future__ import annotations

import errno as _errno
import os as _os
import signal as _signal

from ..hw.traps import SYSCALL

__all__ = ["SYSCALL"]

# --- system call numbers ---------------------------------------------------------
SYS_EXIT = 1
SYS_GETPID = 2
SYS_GETTID = 3
SYS_SPAWN = 4  # (entry, block_ptr, block_len) -> pid: start entry(block address) in a new process
SYS_WAITPID = 5  # (pid or -1, status_ptr) -> pid; *status_ptr = exit status, or -SIG
SYS_KILL = 6  # (pid, sig)
SYS_SIGACTION = 7  # (sig, handler code address | SIG_DFL | SIG_IGN) -> previous
SYS_YIELD = 8
SYS_SLEEP = 9  # (instructions)
SYS_THREAD_CREATE = 10  # (entry, arg0, arg1) -> tid: start entry(arg0, arg1) in a new thread
SYS_THREAD_JOIN = 11  # (tid, retval_ptr) -> 0
SYS_THREAD_EXIT = 12  # (value)
SYS_MMAP = 13  # (length) -> address of zero-filled, demand-paged memory
SYS_MUNMAP = 14  # (address, length)
SYS_OPEN = 15  # (path_ptr, flags) -> fd; the path is NUL-terminated
SYS_READ = 16  # (fd, buf, n) -> bytes read
SYS_WRITE = 17  # (fd, buf, n) -> bytes written
SYS_CLOSE = 18  # (fd)
SYS_PIPE = 19  # (fds_ptr) -> 0; fds_ptr[0] read end, fds_ptr[1] write end
SYS_DRIVER_CONTROL = 20  # (fd, op, arg) -> driver's result
SYS_SPIN = 21  # (n): the benchmark call, spins n instructions in the kernel
SYS_MLOCK = 22  # (address, length): fault the pages in and keep them resident (the swapper leaves them)
SYS_MUNLOCK = 23  # (address, length): let the swapper have them again
SYS_LSEEK = 24  # (fd, offset, whence) -> the new offset
SYS_DUP = 25  # (fd) -> the lowest free descriptor, referring to the same open file
SYS_MKDIR = 27  # (path_ptr) -> 0
SYS_STAT = 28  # (path_ptr, buf) -> 0; buf gets STAT_SIZE bytes: mode, size (little-endian words)
SYS_GETDENTS = 29  # (fd of a directory, buf, n) -> bytes of entries written, 0 at the end
SYS_FUTEX = 26  # (address, op, value): FUTEX_WAIT sleeps if the word still holds value; FUTEX_WAKE wakes value sleepers
# (n, nr, a0, a1, a2): spin n instructions, then make call nr(a0, a1, a2), in one trap: a call of a
# replayed trace (`apkern replay`) that spends its measured kernel time. nr is one of SPIN_CALL_TARGETS.
SYS_SPIN_CALL = 30

SYSCALL_NAMES = {v: k[4:].lower() for k, v in globals().items() if k.startswith("SYS_")}
# The calls SYS_SPIN_CALL may make: plain ones, which return to their caller and leave its process's
# threads, mappings (mmap only adds) and signal dispositions as they were; never calls that start or
# end processes or threads, remove mappings, change dispositions or reach a driver.
SPIN_CALL_TARGETS = frozenset(
    {SYS_GETPID, SYS_GETTID, SYS_OPEN, SYS_READ, SYS_WRITE, SYS_CLOSE, SYS_PIPE, SYS_LSEEK, SYS_DUP}
    | {SYS_MKDIR, SYS_STAT, SYS_GETDENTS, SYS_WAITPID, SYS_MMAP, SYS_FUTEX}
)

# --- error numbers and flags: the host's values ----------------------------------------
EPERM = _errno.EPERM
ENOENT = _errno.ENOENT
ESRCH = _errno.ESRCH
EINTR = _errno.EINTR
EBADF = _errno.EBADF
ECHILD = _errno.ECHILD
ENOMEM = _errno.ENOMEM
EFAULT = _errno.EFAULT
EINVAL = _errno.EINVAL
EMFILE = _errno.EMFILE
ENOSYS = _errno.ENOSYS
EPIPE = _errno.EPIPE
EISDIR = _errno.EISDIR
ENAMETOOLONG = _errno.ENAMETOOLONG
EAGAIN = _errno.EAGAIN
ENODEV = _errno.ENODEV
EEXIST = _errno.EEXIST
ENOTTY = _errno.ENOTTY
ENOTDIR = _errno.ENOTDIR
EDEADLK = _errno.EDEADLK
ESPIPE = _errno.ESPIPE
ENOTEMPTY = _errno.ENOTEMPTY

SEEK_SET = _os.SEEK_SET
SEEK_CUR = _os.SEEK_CUR
SEEK_END = _os.SEEK_END
FUTEX_WAIT = 0  # Linux's values
FUTEX_WAKE = 1

O_RDONLY = _os.O_RDONLY
O_WRONLY = _os.O_WRONLY
O_RDWR = _os.O_RDWR
O_ACCMODE = 3
O_CREAT = _os.O_CREAT
O_TRUNC = _os.O_TRUNC
O_APPEND = _os.O_APPEND
O_EXCL = _os.O_EXCL
O_CLOEXEC = _os.O_CLOEXEC  # not inherited by spawned children

SIGHUP = int(_signal.SIGHUP)
SIGINT = int(_signal.SIGINT)
SIGILL = int(_signal.SIGILL)
SIGKILL = int(_signal.SIGKILL)
SIGUSR1 = int(_signal.SIGUSR1)
SIGSEGV = int(_signal.SIGSEGV)
SIGUSR2 = int(_signal.SIGUSR2)
SIGPIPE = int(_signal.SIGPIPE)
SIGALRM = int(_signal.SIGALRM)
SIGTERM = int(_signal.SIGTERM)
SIGCHLD = int(_signal.SIGCHLD)
NSIG = 32
SIG_DFL = 0
SIG_IGN = 1

# --- user address-space layout (IA-32 style; the kernel owns 0xC0000000 and up) ----------
CODE_BASE = 0x08048000  # text: read-only
CODE_SIZE = 0x1000
DATA_BASE = 0x10000000  # data/bss: read-write
DATA_SIZE = 0x10000
MMAP_BASE = 0x20000000  # heap and mmap regions grow up from here
STACK_TOP = 0xBFFF0000  # the main thread's stack ends here; each further thread's lies below
STACK_SIZE = 0x40000  # 256 KiB per thread stack, with a guard page between stacks
STACK_STRIDE = STACK_SIZE + 0x1000
TLS_SIZE = 0x2000  # the top of each thread stack: its local storage (libc's staging buffer)
USER_TOP = 0xC0000000
PATH_MAX = 256
STAT_SIZE = 8
S_IFDIR = 0o040000
S_IFREG = 0o100000
DIRENT_HEADER = 8  # a directory entry: record length, type (DT_*), then the name, NUL-terminated, padded to 4
DT_REG = 8  # Linux's values
DT_DIR = 4
PIPE_BUF = 4096
