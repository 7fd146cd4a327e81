"""The spawn block and /bin image formats: pure encoding and decoding, no kernel needed."""

from __future__ import annotations

import errno
import struct

import pytest
from fakeproc import FakeProcess
from hypothesis import given
from hypothesis import strategies as st

from apkern.userland import libc
from apkern.userland.crt0 import decode_spawn_block, read_spawn_block


def test_block_layout_is_words_then_padded_strings() -> None:
    block = libc.encode_spawn_block(0x08048010, ["cat", "a.txt", ""])
    assert block == (
        struct.pack("<II", 0x08048010, 3)
        + struct.pack("<I", 3)
        + b"cat\0"
        + struct.pack("<I", 5)
        + b"a.txt\0\0\0"
        + struct.pack("<I", 0)
    )
    assert len(block) % 4 == 0


def test_empty_argv() -> None:
    assert libc.encode_spawn_block(0x1234, []) == struct.pack("<II", 0x1234, 0)
    assert decode_spawn_block(struct.pack("<II", 0x1234, 0)) == (0x1234, [])


def test_utf8_lengths_are_in_bytes() -> None:
    block = libc.encode_spawn_block(1, ["héllo"])
    assert struct.unpack_from("<I", block, 8) == (6,)
    assert decode_spawn_block(block) == (1, ["héllo"])


@given(st.integers(0, 0xFFFFFFFF), st.lists(st.text(max_size=20), max_size=8))
def test_round_trip(main_addr: int, argv: list[str]) -> None:
    assert decode_spawn_block(libc.encode_spawn_block(main_addr, argv)) == (main_addr, argv)


def test_read_spawn_block_from_user_memory() -> None:
    proc = FakeProcess()
    block = libc.encode_spawn_block(0x08048020, ["pipeline", "--child", "4", "20"])
    proc.write(0xBFFE0000, block)
    assert proc.run(read_spawn_block(0xBFFE0000)) == (0x08048020, ["pipeline", "--child", "4", "20"])


@pytest.mark.parametrize("bad", [b"", b"\x01\0\0\0", struct.pack("<II", 1, 1), struct.pack("<III", 1, 1, 9) + b"ab"])
def test_truncated_blocks_are_rejected(bad: bytes) -> None:
    with pytest.raises(ValueError):
        decode_spawn_block(bad)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        libc.encode_spawn_block(-1, [])
    with pytest.raises(TypeError):
        libc.encode_spawn_block(1, [b"bytes"])  # type: ignore[list-item]


def test_bin_image_round_trip() -> None:
    assert libc.bin_image(0x08048030) == b"#!code 0x08048030\n"
    assert libc.parse_bin_image(b"#!code 0x08048030\n") == 0x08048030
    assert libc.parse_bin_image(b"#!code 0xabc\n") == 0xABC


@pytest.mark.parametrize(
    "bad", [b"", b"#!code 0x1", b"#!code 12\n", b"#!code 0x\n", b"#!sh 0x10\n", b"#!code 0x123456789\n", b"\x7fELF"]
)
def test_malformed_bin_image_is_enoexec(bad: bytes) -> None:
    with pytest.raises(OSError) as e:
        libc.parse_bin_image(bad)
    assert e.value.errno == errno.ENOEXEC
