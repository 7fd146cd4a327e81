"""The in-memory file system: a map from absolute paths to byte contents, and directories.

A directory exists when `mkdir` made it or when a path below it does (a file
created at /a/b/c makes /a and /a/b). `/dev/NAME` is not stored here: it names
the driver NAME of the kernel's build-time driver list.
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
        self.dirs: set[str] = set()  # made by mkdir (others are implied by the paths below them)

    def lookup(self, path: str) -> Inode | None:
        return self.inodes.get(normalize(path))

    def create(self, path: str) -> Inode:
        p = normalize(path)
        if p == "/" or p.startswith("/dev/") or p == "/dev":
            raise FileSystemError(f"cannot create {p}")
        if self.is_dir(p):
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
        return p == "/" or p in self.dirs or any(q.startswith(p + "/") for q in (*self.inodes, *self.dirs))

    def mkdir(self, path: str) -> None:
        """Make a directory: FileExistsError, NotADirectoryError (a parent is a file) or FileNotFoundError."""
        p = normalize(path)
        if p == "/dev" or p.startswith("/dev/"):
            raise FileSystemError(f"cannot create {p}")
        if p in self.inodes or self.is_dir(p):
            raise FileExistsError(p)
        parent = posixpath.dirname(p)
        if parent in self.inodes:
            raise NotADirectoryError(parent)
        if not self.is_dir(parent):
            raise FileNotFoundError(parent)
        self.dirs.add(p)

    def unlink(self, path: str) -> None:
        """Remove a file's name (an open file keeps its inode): FileNotFoundError, IsADirectoryError or
        NotADirectoryError (a parent is a file)."""
        p = normalize(path)
        if p in self.inodes:
            del self.inodes[p]
            return
        if self.is_dir(p):
            raise IsADirectoryError(p)
        parent = posixpath.dirname(p)
        while parent != "/":
            if parent in self.inodes:
                raise NotADirectoryError(parent)
            parent = posixpath.dirname(parent)
        raise FileNotFoundError(p)

    def listdir(self, path: str = "/") -> list[str]:
        p = normalize(path).rstrip("/") + "/"
        return sorted({q[len(p) :].split("/")[0] for q in (*self.inodes, *self.dirs) if q.startswith(p)})

    def snapshot(self) -> dict[str, bytes]:
        """Every file and its contents, and every directory made by mkdir as "path/" (for comparing runs)."""
        out = {p: bytes(n.data) for p, n in self.inodes.items()}
        out.update({d + "/": b"" for d in self.dirs})
        return dict(sorted(out.items()))
