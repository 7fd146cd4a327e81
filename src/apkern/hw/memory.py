"""Physical memory: real bytes, 4 KiB frames."""

from __future__ import annotations

from collections.abc import Callable

PAGE_SIZE = 4096
PAGE_SHIFT = 12
LOW_MEMORY = 1 << 20  # the first MiB: where an AP's start-up trampoline must live


class PhysicalMemory:
    """Byte-addressed physical memory of `size` bytes (a multiple of the page size).

    Words are 32-bit little-endian. Accesses outside memory raise `IndexError`:
    the kernels never do that, and the MMU only produces addresses of real frames.
    """

    def __init__(self, size: int) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"memory size must be a positive multiple of {PAGE_SIZE}")
        self.size = size
        self.data = bytearray(size)
        self._words = memoryview(self.data).cast("I")
        # word address -> callbacks run on the next write to that word (see `watch`)
        self.watchers: dict[int, list[Callable[[], None]]] = {}

    def watch(self, paddr: int, callback: Callable[[], None]) -> None:
        """Call `callback()` once, at the next write that touches the word at `paddr`.

        This is how a CPU spinning on a word (`SpinWhile`) learns that another CPU
        or a device wrote it, without simulating every iteration of its loop.
        """
        self.watchers.setdefault(paddr & ~3, []).append(callback)

    def unwatch(self, paddr: int, callback: Callable[[], None]) -> None:
        cbs = self.watchers.get(paddr & ~3)
        if cbs and callback in cbs:
            cbs.remove(callback)
            if not cbs:
                del self.watchers[paddr & ~3]

    def _notify(self, start: int, n: int) -> None:
        for w in [w for w in self.watchers if start - 3 <= w < start + n]:
            for cb in self.watchers.pop(w):
                cb()

    @property
    def frames(self) -> int:
        return self.size >> PAGE_SHIFT

    def read_u32(self, paddr: int) -> int:
        if paddr & 3 or paddr < 0:  # a negative index would wrap around to the end
            return int.from_bytes(self.read(paddr, 4), "little")
        return self._words[paddr >> 2]

    def write_u32(self, paddr: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if paddr & 3 or paddr < 0:
            self.write(paddr, value.to_bytes(4, "little"))
            return
        self._words[paddr >> 2] = value
        if self.watchers:
            cbs = self.watchers.pop(paddr, None)  # an aligned word: one exact key
            if cbs:
                for cb in cbs:
                    cb()

    def read(self, paddr: int, n: int) -> bytes:
        if paddr < 0 or paddr + n > self.size:
            raise IndexError(f"physical read {paddr:#x}+{n} outside memory")
        return bytes(self.data[paddr : paddr + n])

    def write(self, paddr: int, data: bytes) -> None:
        if paddr < 0 or paddr + len(data) > self.size:
            raise IndexError(f"physical write {paddr:#x}+{len(data)} outside memory")
        self.data[paddr : paddr + len(data)] = data
        if self.watchers:
            self._notify(paddr, len(data))

    def zero_frame(self, pfn: int) -> None:
        base = pfn << PAGE_SHIFT
        self.data[base : base + PAGE_SIZE] = bytes(PAGE_SIZE)
        if self.watchers:
            self._notify(base, PAGE_SIZE)

    def copy_frame(self, dst_pfn: int, src_pfn: int) -> None:
        s, d = src_pfn << PAGE_SHIFT, dst_pfn << PAGE_SHIFT
        self.data[d : d + PAGE_SIZE] = self.data[s : s + PAGE_SIZE]
        if self.watchers:
            self._notify(d, PAGE_SIZE)
