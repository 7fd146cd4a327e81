"""Regular files of the in-memory file system: open flags, offsets, visibility after the run."""

from __future__ import annotations

import errno
import os

from bkkit import errno_of

from apkern import System, libc
from apkern.bootkernel import abi


def run_with(files: dict[str, bytes], main):
    sim = System(kernel="up", strict=True)
    for path, data in files.items():
        sim.fs.write_file(path, data)
    proc = sim.spawn(main)
    sim.run()
    assert proc.exit_status == 0, sim.console()
    return sim


def test_o_creat_creates_and_data_is_visible_after_the_run() -> None:
    got = []

    def main(argv):
        got.append((yield from errno_of(libc.open("/new.txt", os.O_WRONLY))))
        fd = yield from libc.open("/new.txt", os.O_WRONLY | os.O_CREAT)
        yield from libc.write_bytes(fd, b"first line\n")
        yield from libc.write_bytes(fd, b"second\n")
        yield from libc.close(fd)
        fd = yield from libc.open("/new.txt")
        got.append((yield from libc.read_bytes(fd, 100)))
        return 0

    sim = run_with({}, main)
    assert got == [abi.ENOENT, b"first line\nsecond\n"]
    assert sim.fs.read_file("/new.txt") == b"first line\nsecond\n"


def test_open_without_trunc_overwrites_in_place() -> None:
    def main(argv):
        fd = yield from libc.open("/f", os.O_WRONLY)
        yield from libc.write_bytes(fd, b"XY")
        return 0

    sim = run_with({"/f": b"abcdef"}, main)
    assert sim.fs.read_file("/f") == b"XYcdef"


def test_o_trunc_empties_an_existing_file() -> None:
    sizes = []

    def main(argv):
        fd = yield from libc.open("/f", os.O_RDWR | os.O_TRUNC)
        sizes.append((yield from libc.read_bytes(fd, 100)))
        yield from libc.write_bytes(fd, b"new")
        return 0

    sim = run_with({"/f": b"old contents, quite long"}, main)
    assert sizes == [b""]
    assert sim.fs.read_file("/f") == b"new"


def test_o_trunc_with_o_creat_on_a_new_file() -> None:
    def main(argv):
        fd = yield from libc.open("/dir/made.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        yield from libc.write_bytes(fd, b"x")
        return 0

    sim = run_with({}, main)
    assert sim.fs.read_file("/dir/made.txt") == b"x"
    assert sim.fs.listdir("/dir") == ["made.txt"]


def test_o_append_writes_at_the_end_even_after_others_write() -> None:
    def main(argv):
        a = yield from libc.open("/log", os.O_WRONLY | os.O_APPEND)
        b = yield from libc.open("/log", os.O_WRONLY | os.O_APPEND)
        yield from libc.write_bytes(a, b"1")
        yield from libc.write_bytes(b, b"22")
        yield from libc.write_bytes(a, b"333")
        return 0

    sim = run_with({"/log": b"start:"}, main)
    assert sim.fs.read_file("/log") == b"start:122333"


def test_o_excl_with_o_creat_fails_on_an_existing_file() -> None:
    got = []

    def main(argv):
        got.append((yield from errno_of(libc.open("/exists", os.O_WRONLY | os.O_CREAT | os.O_EXCL))))
        fd = yield from libc.open("/fresh", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        yield from libc.write_bytes(fd, b"made")
        got.append((yield from errno_of(libc.open("/fresh", os.O_WRONLY | os.O_CREAT | os.O_EXCL))))
        return 0

    sim = run_with({"/exists": b"keep me"}, main)
    assert got == [abi.EEXIST, abi.EEXIST]
    assert sim.fs.read_file("/exists") == b"keep me"
    assert sim.fs.read_file("/fresh") == b"made"


def test_access_modes_are_enforced() -> None:
    got = []

    def main(argv):
        ro = yield from libc.open("/f", os.O_RDONLY)
        wo = yield from libc.open("/f", os.O_WRONLY)
        got.append((yield from errno_of(libc.write_bytes(ro, b"no"))))
        got.append((yield from errno_of(libc.read_bytes(wo, 1))))
        rw = yield from libc.open("/f", os.O_RDWR)
        got.append((yield from libc.read_bytes(rw, 3)))
        yield from libc.write_bytes(rw, b"D")
        return 0

    sim = run_with({"/f": b"abcdef"}, main)
    assert got == [abi.EBADF, abi.EBADF, b"abc"]
    assert sim.fs.read_file("/f") == b"abcDef"


def test_each_open_has_its_own_offset_and_reads_reach_end_of_file() -> None:
    got = []

    def main(argv):
        a = yield from libc.open("/f")
        b = yield from libc.open("/f")
        got.append((yield from libc.read_bytes(a, 4)))
        got.append((yield from libc.read_bytes(b, 2)))
        got.append((yield from libc.read_bytes(a, 100)))
        got.append((yield from libc.read_bytes(a, 100)))
        return 0

    run_with({"/f": b"0123456789"}, main)
    assert got == [b"0123", b"01", b"456789", b""]


def test_large_file_round_trip_through_several_staging_chunks() -> None:
    data = bytes((i * 7 + i // 251) & 0xFF for i in range(3 * libc.STAGING_SIZE + 17))
    got = []

    def main(argv):
        fd = yield from libc.open("/big", os.O_RDWR | os.O_CREAT)
        yield from libc.write_bytes(fd, data)
        yield from libc.close(fd)
        fd = yield from libc.open("/big")
        got.append((yield from libc.read_bytes(fd, len(data) + 10)))
        return 0

    sim = run_with({}, main)
    assert got == [data]
    assert sim.fs.read_file("/big") == data


def test_files_before_and_after_a_run_and_a_spawned_child_shares_the_offset() -> None:
    def child(argv):
        fd = int(argv[1])
        yield from libc.write_bytes(fd, b"child,")
        return 0

    def main(argv):
        fd = yield from libc.open("/out", os.O_WRONLY | os.O_CREAT)
        yield from libc.write_bytes(fd, b"parent,")
        pid = yield from libc.spawn(child, ["child", str(fd)])
        yield from libc.waitpid(pid)
        yield from libc.write_bytes(fd, b"parent")
        return 0

    sim = run_with({"/untouched": b"same"}, main)
    assert sim.fs.read_file("/out") == b"parent,child,parent"
    assert sim.fs.read_file("/untouched") == b"same"


def test_creating_a_file_under_a_regular_file_fails_and_keeps_the_file() -> None:
    got = []

    def main(argv):
        got.append((yield from errno_of(libc.open("/f/x", os.O_WRONLY | os.O_CREAT))))
        fd = yield from libc.open("/f")
        got.append((yield from libc.read_bytes(fd, 100)))
        return 0

    sim = System(kernel="up", strict=True)
    sim.fs.write_file("/f", b"plain file")
    proc = sim.spawn(main)
    sim.run()
    assert proc.exit_status == 0
    assert got[0] is not None  # ENOTDIR on a POSIX system
    assert got[1] == b"plain file"
    assert not sim.fs.exists("/f/x")


def test_spawn_of_a_program_whose_bin_file_is_not_an_image() -> None:
    got = []

    def main(argv):
        got.append((yield from errno_of(libc.spawn("fake", ["fake"]))))
        got.append((yield from errno_of(libc.spawn("absent", ["absent"]))))
        return 0

    sim = System(kernel="up", strict=True)
    sim.fs.write_file("/bin/fake", b"#!/bin/sh\necho hi\n")
    proc = sim.spawn(main)
    sim.run()
    assert proc.exit_status == 0
    assert got == [errno.ENOEXEC, abi.ENOENT]


def test_unlink_removes_the_name_and_an_open_descriptor_keeps_the_data() -> None:
    got = []

    def main(argv):
        fd = yield from libc.open("/dir/f.txt", os.O_RDWR | os.O_CREAT)
        yield from libc.write_bytes(fd, b"kept")
        yield from libc.unlink("/dir/f.txt")
        got.append((yield from errno_of(libc.stat("/dir/f.txt"))))
        got.append((yield from errno_of(libc.open("/dir/f.txt"))))
        yield from libc.lseek(fd, 0)
        got.append((yield from libc.read_bytes(fd, 10)))
        got.append((yield from errno_of(libc.unlink("/dir/f.txt"))))
        got.append((yield from errno_of(libc.unlink("/keep/x.txt/below"))))
        got.append((yield from errno_of(libc.unlink("/keep"))))
        got.append((yield from errno_of(libc.unlink("relative"))))
        return 0

    sim = run_with({"/keep/x.txt": b"x"}, main)
    assert got == [errno.ENOENT, errno.ENOENT, b"kept", errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENOENT]
    assert not sim.fs.exists("/dir/f.txt") and sim.fs.read_file("/keep/x.txt") == b"x"
    assert sim.kernel.syscalls.counts["unlink"] == 5
