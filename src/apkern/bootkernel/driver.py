"""The device-driver framework: drivers chosen when the kernel is built.

A driver is named by `/dev/NAME`. The kernel calls `init` once at boot, `open`
for each open, `control` for `driver_control(fd, op, arg)` with the caller's
identity (for the driver's own permission checks), `flush` whenever a descriptor
of the file is closed (by `close` or by the death of the process holding it),
and `release` when the last descriptor of the file goes away. Drivers reach the
kernel only through `DriverServices`: kernel memory, a low-memory page, the
kernel's page directory, and copies to and from the caller's memory.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..hw import Op, PhysicalMemory, ReadMem, WriteMem
from . import abi
from .file import File
from .vm import KERNBASE

if TYPE_CHECKING:
    from .kernel import BootKernel

Gen = Generator[Op, Any, Any]


@dataclass(frozen=True)
class Caller:
    """Who is calling a driver: process id, thread id, and the process's page directory (CR3)."""

    pid: int
    tid: int
    cr3: int


class Driver:
    """Base class of drivers; override what the device supports (Linux's file_operations, in small)."""

    name = ""

    def init(self, services: DriverServices) -> Gen:
        """Called once at boot on the bootstrap processor, in kernel mode."""
        return
        yield

    def open(self, file: DeviceFile) -> Gen:
        """Return 0 to allow the open (`file.opener` is the caller), or -errno."""
        return 0
        yield

    def control(self, file: DeviceFile, caller: Caller, op: int, arg: int) -> Gen:
        """Perform operation `op`; return a non-negative result or -errno."""
        return -abi.ENOSYS
        yield

    def flush(self, file: DeviceFile, caller: Caller) -> Gen:
        """A descriptor of `file` is being closed by `caller`'s process (on every close, process death included)."""
        return
        yield

    def release(self, file: DeviceFile) -> Gen:
        """The last descriptor of `file` is gone."""
        return
        yield


class DeviceFile(File):
    """An open device: the driver, who opened it, and the driver's own per-file data."""

    kind = "device"

    def __init__(self, driver: Driver, opener: Caller) -> None:
        super().__init__(readable=False, writable=False)
        self.driver = driver
        self.opener = opener
        self.private: Any = None

    def flush(self, k: BootKernel) -> Gen:
        yield from self.driver.flush(self, k.caller())

    def close(self, k: BootKernel) -> Gen:
        yield from self.driver.release(self)


class DriverServices:
    """What the bootstrap kernel exports to drivers (its "module API")."""

    def __init__(self, kernel: BootKernel) -> None:
        self._k = kernel

    @property
    def memory(self) -> PhysicalMemory:
        """Physical memory, as the kernel's direct map sees it."""
        return self._k.machine.memory

    @property
    def kernbase(self) -> int:
        """Where physical memory appears in every address space (kernel-only): KERNBASE + physical address."""
        return KERNBASE

    @property
    def kernel_cr3(self) -> int:
        """The kernel's page directory, which maps no user memory."""
        return self._k.kernel_cr3

    @property
    def cpu_count(self) -> int:
        """Processors listed in the firmware's MP table (the kernel itself uses only the first)."""
        return len(self._k.machine.cpus)

    def kmalloc(self, size: int) -> int:
        """Physical address of `size` bytes of zeroed kernel memory."""
        return self._k.heap.kmalloc(size)

    def kfree(self, addr: int) -> None:
        self._k.heap.kfree(addr)

    def alloc_low_page(self) -> int:
        """A zeroed page below 1 MiB (its page number), e.g. for an AP start-up trampoline."""
        return self._k.frames.alloc_low()

    def free_low_page(self, page: int) -> None:
        self._k.frames.release(page)

    def register_tlb_hook(self, begin: Any, end: Any) -> bool:  # PATCH (section 4.3)
        """Ask to hear of asynchronous unmaps: `begin(cr3, vaddr)` before the swapper takes a page, `end` after.

        Both are generators run on the bootstrap processor; the frame is freed after `end`.
        Only a kernel built with the section 4.3 patch (`tlb_patch=True`) calls them;
        returns whether it will.
        """
        return self._k.tlb_patch.register(begin, end)  # PATCH (section 4.3)

    def copy_from_user(self, vaddr: int, n: int) -> Gen:
        """Bytes from the calling process's memory (in a control call); EFAULT on a bad address."""
        self._k.check_user_range(vaddr, n)
        return (yield ReadMem(vaddr, n))

    def copy_to_user(self, vaddr: int, data: bytes) -> Gen:
        self._k.check_user_range(vaddr, len(data))
        yield WriteMem(vaddr, data)

    def current(self) -> Caller:
        """The caller of the running system call."""
        return self._k.caller()

    def trace(self, cpu: int, name: str, key: Any = None, **args: Any) -> None:
        """Record a trace point (a no-op unless the machine is tracing)."""
        tracer = self._k.machine.tracer
        if tracer is not None:
            tracer.mark(self._k.machine.cpus[cpu], name, key, **args)

    def log(self, text: str) -> None:
        self._k.machine.log(text)
