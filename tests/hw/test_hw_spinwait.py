"""SpinWhile: a spin loop that sees another CPU's write at once and counts its time as instructions."""

from __future__ import annotations

from hwkit import boot, machine, park, start_ap

from apkern.hw import AtomicAdd, Compute, SpinWhile, Store
from apkern.hw.memory import PhysicalMemory

WORD = 0x8000  # physical: paging is off in these kernels


def test_spinner_wakes_at_the_instant_of_the_write_and_counts_spin_instructions() -> None:
    m = machine(cpus=2)
    seen = []

    def waiter(cpu):
        yield from start_ap(m, 1, writer)
        start = cpu.env.now
        value = yield SpinWhile(WORD, 0)
        seen.append((start, cpu.env.now, value))
        yield from park()

    def writer(cpu):
        yield Compute(5000)
        stores.append(cpu.env.now)
        yield Store(WORD, 7)
        yield from park()

    stores: list[int] = []
    boot(m, waiter(m.cpus[0]))
    m.run(until=20_000)
    ((start, t, value),) = seen
    assert value == 7
    assert t == stores[0] + 1  # the write's instant, plus the spin loop's last load
    bsp = m.cpus[0]
    assert bsp.acct["spin"] == t - start  # every tick in between was a spinning instruction
    assert bsp.halted == 20_000 - t


def test_spin_returns_at_once_when_the_word_already_differs() -> None:
    m = machine()
    seen = []

    def k(cpu):
        yield Store(WORD, 3)
        value = yield SpinWhile(WORD, 0)
        seen.append((cpu.env.now, value))
        yield from park()

    boot(m, k(m.bsp))
    m.run(until=100)
    assert seen == [(2, 3)]


def test_a_write_of_the_same_value_does_not_end_the_spin() -> None:
    m = machine(cpus=2)
    seen = []

    def waiter(cpu):
        yield from start_ap(m, 1, writer)
        seen.append((yield SpinWhile(WORD, 0)))
        seen.append(cpu.env.now)
        yield from park()

    def writer(cpu):
        yield Store(WORD, 0)  # wakes the spinner, which looks again and keeps spinning
        yield Compute(1000)
        yield AtomicAdd(WORD, 5)
        yield from park()

    boot(m, waiter(m.cpus[0]))
    m.run(until=5000)
    assert seen[0] == 5 and seen[1] > 1000


def test_memory_watch_fires_once_per_write_that_touches_the_word() -> None:
    mem = PhysicalMemory(1 << 16)
    fired = []
    mem.watch(0x100, lambda: fired.append("a"))
    mem.write_u32(0x104, 1)  # another word: nothing
    assert fired == []
    mem.write(0xFE, b"xyz")  # a byte range overlapping the word
    assert fired == ["a"]
    mem.write_u32(0x100, 2)  # the watch was one-shot
    assert fired == ["a"]
    cb = lambda: fired.append("b")  # noqa: E731
    mem.watch(0x100, cb)
    mem.unwatch(0x100, cb)
    mem.write_u32(0x100, 3)
    assert fired == ["a"]
