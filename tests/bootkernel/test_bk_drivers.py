"""The device-driver framework: /dev/NAME, driver_control with the caller's identity, release, services."""

from __future__ import annotations

import os

import pytest
from bkkit import HandBuilt, errno_of

from apkern import libc
from apkern.bootkernel import BootKernel, Caller, Driver, DriverServices, abi
from apkern.hw import PAGE_SIZE, Compute, Machine

OP_ECHO = 1  # returns arg * 2
OP_COPY_OUT = 2  # writes b"echo" at user address arg
OP_COPY_IN = 3  # returns the word at user address arg
OP_FAIL = 4  # returns -EPERM


def _caller(x) -> Caller:
    """The Caller in a driver entry's argument: a Caller itself, or a device file's opener."""
    return x if isinstance(x, Caller) else x.opener


class EchoDriver(Driver):
    """A test device: doubles numbers and records who calls it.

    The entries take their arguments positionally from the end (`*args`) so the
    driver fits the framework whether or not it passes the device file first.
    """

    name = "echo"

    def __init__(self) -> None:
        self.services: DriverServices | None = None
        self.inits = 0
        self.opens: list[Caller] = []
        self.calls: list[tuple[int, int, int, int]] = []  # (pid, tid, op, arg)
        self.callers: list[Caller] = []
        self.released: list[Caller] = []

    def init(self, services):
        self.services = services
        self.inits += 1
        yield Compute(10)

    def open(self, *args):
        self.opens.append(_caller(args[-1]))
        return 0
        yield

    def control(self, *args):
        caller, op, arg = args[-3:]
        self.calls.append((caller.pid, caller.tid, op, arg))
        self.callers.append(caller)
        assert self.services.current() == caller
        yield Compute(5)
        if op == OP_ECHO:
            return arg * 2
        if op == OP_COPY_OUT:
            yield from self.services.copy_to_user(arg, b"echo")
            return 4
        if op == OP_COPY_IN:
            data = yield from self.services.copy_from_user(arg, 4)
            return int.from_bytes(data, "little")
        if op == OP_FAIL:
            return -abi.EPERM
        return -abi.ENOSYS

    def release(self, *args):
        self.released.append(_caller(args[-1]))
        yield Compute(5)


class DenyDriver(Driver):
    name = "deny"

    def __init__(self) -> None:
        self.released: list[Caller] = []

    def open(self, *args):
        return -abi.EPERM
        yield

    def release(self, *args):
        self.released.append(_caller(args[-1]))
        return
        yield


def control(fd, op, arg):
    return (yield from libc.syscall(abi.SYS_DRIVER_CONTROL, fd, op, arg))


def build(*extra: Driver) -> tuple[HandBuilt, EchoDriver]:
    drv = EchoDriver()
    return HandBuilt(drivers=[drv, *extra]), drv


def test_open_and_control_pass_the_callers_identity() -> None:
    system, drv = build()
    got = []

    def worker(fd):
        tid = yield from libc.gettid()
        got.append(("thread", tid, (yield from control(fd, OP_ECHO, 5))))
        return 0

    def main(argv):
        fd = yield from libc.open("/dev/echo", os.O_RDWR)
        got.append(("fd", fd, (yield from libc.getpid()), (yield from libc.gettid())))
        got.append(("echo", (yield from control(fd, OP_ECHO, 21))))
        tid = yield from libc.thread_create(worker, fd)
        yield from libc.thread_join(tid)
        return 0

    proc = system.spawn(main)
    system.run()
    assert proc.exit_status == 0
    (_, fd, pid, tid), (_, echoed), (_, wtid, wechoed) = got
    assert fd >= 3 and pid == proc.pid
    assert (echoed, wechoed) == (42, 10)
    assert drv.calls == [(pid, tid, OP_ECHO, 21), (pid, wtid, OP_ECHO, 5)]
    assert wtid != tid
    assert [c.pid for c in drv.opens] == [pid]
    cr3 = system.kernel.procs[pid].aspace.cr3
    assert cr3 != system.kernel.kernel_cr3
    assert [c.cr3 for c in drv.opens + drv.callers] == [cr3] * 3
    assert drv.inits == 1


def test_control_copies_to_and_from_the_callers_memory() -> None:
    system, drv = build()
    got = []

    def main(argv):
        fd = yield from libc.open("/dev/echo")
        buf = libc.PROGRAM_DATA
        got.append((yield from control(fd, OP_COPY_OUT, buf)))
        got.append((yield from libc.read_mem(buf, 4)))
        yield from libc.store(buf + 8, 0x01020304)
        got.append((yield from control(fd, OP_COPY_IN, buf + 8)))
        got.append((yield from errno_of(control(fd, OP_COPY_OUT, 0xC0001000))))
        got.append((yield from errno_of(control(fd, OP_COPY_OUT, 0x10))))
        got.append((yield from errno_of(control(fd, OP_COPY_IN, 0x10))))
        got.append((yield from errno_of(control(fd, OP_FAIL, 0))))
        got.append((yield from errno_of(control(fd, 99, 0))))
        return 0

    proc = system.spawn(main)
    system.run()
    assert proc.exit_status == 0
    assert got == [4, b"echo", 0x01020304, abi.EFAULT, abi.EFAULT, abi.EFAULT, abi.EPERM, abi.ENOSYS]


def test_release_is_called_when_the_last_descriptor_closes() -> None:
    system, drv = build()
    got = []

    def main(argv):
        a = yield from libc.open("/dev/echo")
        b = yield from libc.open("/dev/echo")
        yield from libc.close(a)
        got.append(len(drv.released))
        yield from control(b, OP_ECHO, 1)
        yield from libc.close(b)
        got.append(len(drv.released))
        got.append((yield from errno_of(control(b, OP_ECHO, 1))))
        return 0

    proc = system.spawn(main)
    system.run()
    assert proc.exit_status == 0
    assert got == [1, 2, abi.EBADF]
    assert [c.pid for c in drv.released] == [proc.pid, proc.pid]


def test_inherited_descriptor_is_released_only_after_both_processes_close() -> None:
    system, drv = build()
    got = []

    def child(argv):
        fd = int(argv[1])
        got.append(("child echo", (yield from control(fd, OP_ECHO, 4))))
        yield from libc.sleep(50_000)
        got.append(("child closes", len(drv.released)))
        yield from libc.close(fd)
        got.append(("child closed", len(drv.released)))
        return 0

    def main(argv):
        fd = yield from libc.open("/dev/echo")
        pid = yield from libc.spawn(child, ["child", str(fd)])
        yield from libc.sleep(10_000)
        yield from libc.close(fd)
        got.append(("parent closed", len(drv.released)))
        yield from libc.waitpid(pid)
        got.append(("child pid", pid))
        return 0

    proc = system.spawn(main)
    system.run()
    assert proc.exit_status == 0
    child_pid = got[-1][1]
    assert got[:-1] == [("child echo", 8), ("parent closed", 0), ("child closes", 0), ("child closed", 1)]
    assert drv.calls[0][0] == child_pid  # the call is made as the child
    assert [c.pid for c in drv.released] == [proc.pid]  # released with the identity of its opener


def _die(how: str):
    def child(argv):
        yield from libc.open("/dev/echo")
        yield from libc.open("/dev/echo")
        if how == "exit":
            return 3
        if how == "segv":
            yield from libc.load(0x10)
        if how == "thread_exit":
            yield from libc.thread_exit(0)
        yield from libc.pipe()  # other kinds of files are closed at death too
        yield from libc.open("/bin/hello")
        while True:  # killed here
            yield from libc.sleep(1_000)

    return child


@pytest.mark.parametrize(
    "how,status",
    [("exit", 3), ("segv", -abi.SIGSEGV), ("sigkill", -abi.SIGKILL), ("sigterm", -abi.SIGTERM), ("thread_exit", 0)],
)
def test_release_is_called_when_the_process_dies_without_closing(how: str, status: int) -> None:
    system, drv = build()
    got = []

    def main(argv):
        pid = yield from libc.spawn(_die(how), ["child"])
        if how in ("sigkill", "sigterm"):
            yield from libc.sleep(20_000)
            got.append(("before kill", len(drv.released)))
            yield from libc.kill(pid, abi.SIGKILL if how == "sigkill" else abi.SIGTERM)
        got.append(("status", (yield from libc.waitpid(pid))))
        got.append(("released", len(drv.released)))
        got.append(("child", pid))
        return 0

    proc = system.spawn(main)
    system.run()
    assert proc.exit_status == 0
    child_pid = got[-1][1]
    assert got[-3:-1] == [("status", status), ("released", 2)]
    if how in ("sigkill", "sigterm"):
        assert got[0] == ("before kill", 0)
    assert [c.pid for c in drv.released] == [child_pid, child_pid]


def test_cloexec_descriptor_is_not_inherited() -> None:
    system, drv = build()
    got = []

    def child(argv):
        got.append(("cloexec fd", (yield from errno_of(control(int(argv[1]), OP_ECHO, 1)))))
        got.append(("plain fd", (yield from control(int(argv[2]), OP_ECHO, 2))))
        yield from libc.sleep(50_000)
        return 0

    def main(argv):
        ce = yield from libc.open("/dev/echo", os.O_RDWR | os.O_CLOEXEC)
        plain = yield from libc.open("/dev/echo", os.O_RDWR)
        got.append(("parent", (yield from control(ce, OP_ECHO, 3))))
        pid = yield from libc.spawn(child, ["child", str(ce), str(plain)])
        yield from libc.sleep(10_000)
        yield from libc.close(ce)  # the child never had it: released now, while the child lives
        got.append(("released", len(drv.released)))
        yield from libc.close(plain)
        got.append(("released", len(drv.released)))
        yield from libc.waitpid(pid)
        got.append(("released", len(drv.released)))
        return 0

    proc = system.spawn(main)
    system.run()
    assert proc.exit_status == 0
    assert got == [
        ("parent", 6),
        ("cloexec fd", abi.EBADF),
        ("plain fd", 4),
        ("released", 1),
        ("released", 1),
        ("released", 2),
    ]


def test_cloexec_file_descriptor_of_a_regular_file_is_not_inherited() -> None:
    system, _ = build()
    system.kernel.fs.write_file("/f", b"data")
    got = []

    def child(argv):
        got.append((yield from errno_of(libc.read_bytes(int(argv[1]), 4))))
        got.append((yield from libc.read_bytes(int(argv[2]), 4)))
        return 0

    def main(argv):
        ce = yield from libc.open("/f", os.O_RDONLY | os.O_CLOEXEC)
        plain = yield from libc.open("/f", os.O_RDONLY)
        pid = yield from libc.spawn(child, ["child", str(ce), str(plain)])
        yield from libc.waitpid(pid)
        return 0

    proc = system.spawn(main)
    system.run()
    assert proc.exit_status == 0
    assert got == [abi.EBADF, b"data"]


def test_open_refused_by_the_driver() -> None:
    deny = DenyDriver()
    system, drv = build(deny)
    got = []

    def main(argv):
        got.append((yield from errno_of(libc.open("/dev/deny"))))
        got.append((yield from errno_of(libc.open("/dev/echo"))))
        got.append((yield from errno_of(libc.open("/dev/ech"))))
        return 0

    proc = system.spawn(main)
    system.run()
    assert proc.exit_status == 0
    assert got == [abi.EPERM, None, abi.ENOENT]
    assert deny.released == []  # nothing was opened, so nothing to release


def test_driver_services_memory() -> None:
    system, drv = build()
    system.boot_only()
    svc = drv.services
    assert isinstance(svc, DriverServices)
    assert svc.cpu_count == 1
    assert svc.kernel_cr3 == system.kernel.kernel_cr3
    before = system.kernel.stats()
    frames0, heap0 = before["frames_in_use"], before["kernel_heap_bytes"]

    small = svc.kmalloc(100)
    big = svc.kmalloc(PAGE_SIZE + 1)
    low = svc.alloc_low_page()
    assert small % PAGE_SIZE == 0 and big % PAGE_SIZE == 0 and small != big
    assert 0 < low < 256  # below 1 MiB: usable as an AP start-up page
    assert svc.memory.read(small, 100) == bytes(100)
    assert svc.memory.read(big, 2 * PAGE_SIZE) == bytes(2 * PAGE_SIZE)
    assert svc.memory.read(low * PAGE_SIZE, PAGE_SIZE) == bytes(PAGE_SIZE)
    after = system.kernel.stats()
    assert after["kernel_heap_bytes"] - heap0 == 3 * PAGE_SIZE
    assert after["frames_in_use"] - frames0 == 4

    svc.memory.write(small, b"dirty")
    svc.kfree(small)
    again = svc.kmalloc(8)
    assert svc.memory.read(again, 5) == bytes(5)  # handed out zeroed again
    svc.kfree(again)
    svc.kfree(big)
    svc.free_low_page(low)
    final = system.kernel.stats()
    assert (final["frames_in_use"], final["kernel_heap_bytes"]) == (frames0, heap0)
    with pytest.raises(ValueError):
        svc.kmalloc(0)


def test_low_pages_are_kept_apart_from_ordinary_allocations() -> None:
    system, drv = build()
    system.boot_only()
    svc = drv.services
    ordinary = [svc.kmalloc(PAGE_SIZE) >> 12 for _ in range(50)]
    lows = [svc.alloc_low_page() for _ in range(20)]
    assert all(p >= 256 for p in ordinary)
    assert all(0 < p < 256 for p in lows) and len(set(lows)) == 20


def test_drivers_need_unique_names() -> None:
    with pytest.raises(ValueError):
        BootKernel(Machine(cpus=1), drivers=[EchoDriver(), EchoDriver()])

    class Nameless(Driver):
        pass

    with pytest.raises(ValueError):
        BootKernel(Machine(cpus=1), drivers=[Nameless()])


def test_base_driver_refuses_control_with_enosys() -> None:
    class Plain(Driver):
        name = "plain"

    system = HandBuilt(drivers=[Plain()])
    got = []

    def main(argv):
        fd = yield from libc.open("/dev/plain")
        got.append((yield from errno_of(control(fd, 1, 1))))
        yield from libc.close(fd)
        return 0

    proc = system.spawn(main)
    system.run()
    assert proc.exit_status == 0 and got == [abi.ENOSYS]


def test_flush_is_called_on_every_close_with_the_closing_process() -> None:
    class Flushing(EchoDriver):
        name = "flushing"

        def __init__(self) -> None:
            super().__init__()
            self.flushed: list[int] = []

        def flush(self, *args):
            self.flushed.append(args[-1].pid)
            return
            yield

    drv = Flushing()
    system = HandBuilt(drivers=[drv])
    got = []

    def child(argv):
        yield from libc.close(int(argv[1]))
        got.append(("child", (yield from libc.getpid()), list(drv.flushed), len(drv.released)))
        return 0

    def main(argv):
        fd = yield from libc.open("/dev/flushing")
        pid = yield from libc.spawn(child, ["child", str(fd)])
        yield from libc.waitpid(pid)
        return 0  # exits holding fd: flushed and released at death

    proc = system.spawn(main)
    system.run()
    assert proc.exit_status == 0
    ((_, child_pid, flushed_then, released_then),) = got
    assert (flushed_then, released_then) == ([child_pid], 0)
    assert drv.flushed == [child_pid, proc.pid]
    assert [c.pid for c in drv.released] == [proc.pid]
