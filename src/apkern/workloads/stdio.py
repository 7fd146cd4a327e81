"""A stdio output stream, as glibc's: bytes gather in a buffer in user memory, a full buffer is one write.

glibc sizes the buffer of a pipe or file from st_blksize: 4096 bytes, and the
traces agree (`strace -o T find /usr/include/linux | cat` and `strace -o T grep -F
int FILE | cat`: every write of find and grep but the last is 4096 bytes). The
copy into the buffer is a `WriteMem` (one instruction per word, as memcpy).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Generator
from typing import Any

from ..hw.ops import Op
from ..userland import libc

Gen = Generator[Op, Any, Any]

BUFSIZ = 4096


class Output:
    """Buffered output to `fd` through BUFSIZ bytes of user memory at `buf`."""

    def __init__(self, fd: int, buf: int) -> None:
        self.fd, self.buf, self.used = fd, buf, 0

    def put(self, data: bytes) -> Gen:
        while data:
            k = min(len(data), BUFSIZ - self.used)
            yield from libc.write_mem(self.buf + self.used, data[:k])
            self.used += k
            data = data[k:]
            if self.used == BUFSIZ:
                yield from self.flush()

    def flush(self) -> Gen:
        done = 0
        while done < self.used:
            k = yield from libc.write(self.fd, self.buf + done, self.used - done)
            if k == 0:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            done += k
        self.used = 0
