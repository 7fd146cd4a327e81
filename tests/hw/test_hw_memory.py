"""Physical memory: real bytes, little-endian words, bounds."""

from __future__ import annotations

import pytest

from apkern.hw import LOW_MEMORY, PAGE_SIZE, Machine, PhysicalMemory


@pytest.mark.parametrize("size", [0, -PAGE_SIZE, 1000, PAGE_SIZE + 1, 3 * PAGE_SIZE // 2])
def test_memory_size_must_be_a_positive_multiple_of_the_page_size(size: int) -> None:
    with pytest.raises(ValueError):
        PhysicalMemory(size)


def test_machine_memory_size_is_checked_too() -> None:
    with pytest.raises(ValueError):
        Machine(memory=PAGE_SIZE * 3 + 8)


def test_sizes_and_frames() -> None:
    mem = PhysicalMemory(16 * PAGE_SIZE)
    assert mem.size == 16 * PAGE_SIZE and mem.frames == 16
    assert PhysicalMemory(PAGE_SIZE).frames == 1
    assert LOW_MEMORY == 1 << 20
    assert mem.read(0, 16 * PAGE_SIZE) == bytes(16 * PAGE_SIZE)  # starts zeroed


def test_words_are_little_endian_32_bit() -> None:
    mem = PhysicalMemory(PAGE_SIZE)
    mem.write_u32(8, 0x11223344)
    assert mem.read(8, 4) == b"\x44\x33\x22\x11"
    mem.write(16, b"\x01\x02\x03\x04\x05")
    assert mem.read_u32(16) == 0x04030201
    assert mem.read_u32(17) == 0x05040302  # unaligned
    mem.write_u32(33, 0xAABBCCDD)  # unaligned
    assert mem.read(32, 6) == b"\x00\xdd\xcc\xbb\xaa\x00"
    mem.write_u32(40, (1 << 32) + 5)
    assert mem.read_u32(40) == 5
    mem.write_u32(44, -1)
    assert mem.read_u32(44) == 0xFFFFFFFF
    mem.write_u32(PAGE_SIZE - 4, 0x01020304)  # the very last word
    assert mem.read_u32(PAGE_SIZE - 4) == 0x01020304
    assert mem.read(PAGE_SIZE - 1, 1) == b"\x01"


def test_read_returns_a_copy() -> None:
    mem = PhysicalMemory(PAGE_SIZE)
    mem.write(0, b"abcd")
    data = mem.read(0, 4)
    mem.write(0, b"wxyz")
    assert data == b"abcd" and isinstance(data, bytes)


@pytest.mark.parametrize(
    ("addr", "n"), [(PAGE_SIZE * 2, 1), (PAGE_SIZE * 2 - 2, 4), (-1, 1), (-4, 4), (0, PAGE_SIZE * 2 + 1)]
)
def test_byte_access_outside_memory_raises(addr: int, n: int) -> None:
    mem = PhysicalMemory(2 * PAGE_SIZE)
    with pytest.raises(IndexError):
        mem.read(addr, n)
    with pytest.raises(IndexError):
        mem.write(addr, bytes(n))
    assert mem.read(0, 2 * PAGE_SIZE) == bytes(2 * PAGE_SIZE)


@pytest.mark.parametrize("addr", [2 * PAGE_SIZE, 2 * PAGE_SIZE + 4, 2 * PAGE_SIZE - 2, 2 * PAGE_SIZE - 1, -4, -1, -8])
def test_word_access_outside_memory_raises(addr: int) -> None:
    mem = PhysicalMemory(2 * PAGE_SIZE)
    mem.write(2 * PAGE_SIZE - 8, b"\xff" * 8)  # something a wrapped-around access could return
    with pytest.raises(IndexError):
        mem.read_u32(addr)
    with pytest.raises(IndexError):
        mem.write_u32(addr, 0x12345678)
    assert mem.size == 2 * PAGE_SIZE
    assert mem.read(2 * PAGE_SIZE - 8, 8) == b"\xff" * 8  # nothing was written


def test_zero_and_copy_frames() -> None:
    mem = PhysicalMemory(4 * PAGE_SIZE)
    mem.write(PAGE_SIZE, bytes(range(256)) * 16)
    mem.copy_frame(3, 1)
    assert mem.read(3 * PAGE_SIZE, PAGE_SIZE) == bytes(range(256)) * 16
    mem.zero_frame(1)
    assert mem.read(PAGE_SIZE, PAGE_SIZE) == bytes(PAGE_SIZE)
    assert mem.read(3 * PAGE_SIZE, 4) == b"\x00\x01\x02\x03"  # the copy is independent
    assert mem.read(0, PAGE_SIZE) == bytes(PAGE_SIZE) and mem.read(2 * PAGE_SIZE, PAGE_SIZE) == bytes(PAGE_SIZE)
