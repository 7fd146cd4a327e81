"""The console: captures what each process writes to its standard output and error."""

from __future__ import annotations


class Console:
    """An append-only log of (pid, fd, bytes) writes, in the order they happened."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int, bytes]] = []

    def write(self, pid: int, fd: int, data: bytes) -> None:
        self.records.append((pid, fd, data))

    def text(self, pid: int | None = None, fd: int | None = None) -> str:
        """Everything written (by `pid`, to `fd` when given), decoded as UTF-8."""
        out = b"".join(d for p, f, d in self.records if (pid is None or p == pid) and (fd is None or f == fd))
        return out.decode("utf-8", errors="replace")
