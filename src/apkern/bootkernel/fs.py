"""The in-memory file system: a flat map from absolute paths to byte contents.

Directories are implied by paths. `/dev/NAME` is not stored here: it names the
driver NAME of the kernel's build-time driver list.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field


@dataclass(eq=False)
class Inode:
    data: bytearray = field(default_factory=bytearray)


class FileSystemError(ValueError):
    """A path the file system cannot hold (not absolute, a directory, under /dev)."""


def normalize(path: str) -> str:
    if not path.startswith("/"):
        raise FileSystemError(f"path must be absolute: {path!r}")
    return posixpath.normpath(path).replace("//", "/")


class FileSystem:
    """Files by absolute path; also the API tests use before and after a run."""

    def __init__(self) -> None:
        self.inodes: dict[str, Inode] = {}

    def lookup(self, path: str) -> Inode | None:
        return self.inodes.get(normalize(path))

    def create(self, path: str) -> Inode:
        p = normalize(path)
        if p == "/" or p.startswith("/dev/") or p == "/dev":
            raise FileSystemError(f"cannot create {p}")
        if any(q.startswith(p + "/") for q in self.inodes):
            raise FileSystemError(f"{p} is a directory")
        parent = posixpath.dirname(p)
        while parent != "/":
            if parent in self.inodes:
                raise NotADirectoryError(f"{parent} is a file")
            parent = posixpath.dirname(parent)
        return self.inodes.setdefault(p, Inode())

    def write_file(self, path: str, data: bytes | str) -> None:
        """Create or replace a file."""
        self.create(path).data[:] = data.encode() if isinstance(data, str) else bytes(data)

    def read_file(self, path: str) -> bytes:
        """The contents of a file; `FileNotFoundError` if it does not exist."""
        node = self.lookup(path)
        if node is None:
            raise FileNotFoundError(path)
        return bytes(node.data)

    def exists(self, path: str) -> bool:
        return self.lookup(path) is not None

    def is_dir(self, path: str) -> bool:
        p = normalize(path)
        return p == "/" or any(q.startswith(p + "/") for q in self.inodes)

    def listdir(self, path: str = "/") -> list[str]:
        p = normalize(path).rstrip("/") + "/"
        return sorted({q[len(p) :].split("/")[0] for q in self.inodes if q.startswith(p)})

    def snapshot(self) -> dict[str, bytes]:
        """Every file and its contents (for comparing two runs)."""
        return {p: bytes(n.data) for p, n in sorted(self.inodes.items())}
