"""libc's use of the ABI and crt0's start-up, run on a fake process (no kernel)."""

from __future__ import annotations

import errno

import pytest
from fakeproc import TLS, Exited, FakeProcess, UndefinedOpcode

from apkern.bootkernel import abi
from apkern.userland import libc, programs
from apkern.userland.crt0 import crt0, decode_spawn_block


def test_negative_result_raises_oserror_with_errno() -> None:
    proc = FakeProcess()
    proc.results[abi.SYS_KILL] = -abi.ESRCH
    with pytest.raises(OSError) as e:
        proc.run(libc.kill(99, abi.SIGTERM))
    assert e.value.errno == errno.ESRCH
    assert proc.calls == [("kill", (99, abi.SIGTERM))]


def test_open_stages_nul_terminated_path_in_scratch() -> None:
    proc = FakeProcess({"/in.txt": b"x"})
    assert proc.run(libc.open("/in.txt")) == 3
    assert proc.read(TLS, 8) == b"/in.txt\0"
    assert proc.calls == [("open", (TLS, abi.O_RDONLY))]


def test_long_path_fails_without_calling_the_kernel() -> None:
    longest = "/" + "a" * (abi.PATH_MAX - 2)  # 255 bytes: fits with its NUL
    proc = FakeProcess({longest: b""})
    proc.run(libc.open(longest))
    with pytest.raises(OSError) as e:
        proc.run(libc.open("/" + "a" * (abi.PATH_MAX - 1)))
    assert e.value.errno == errno.ENAMETOOLONG
    assert len(proc.calls) == 1


def test_write_bytes_chunks_and_survives_short_writes() -> None:
    proc = FakeProcess(write_limit=1000)
    data = bytes(range(256)) * 40  # 10240 bytes: two staging chunks
    assert proc.run(libc.write_bytes(1, data)) == len(data)
    assert bytes(proc.out[1]) == data
    for _, (fd, buf, n) in proc.calls:
        assert fd == 1 and buf >= TLS + libc.STAGING_OFFSET and buf + n <= TLS + abi.TLS_SIZE


def test_read_bytes_stops_at_a_short_read() -> None:
    proc = FakeProcess({"/f": b"abc" * 5000})
    fd = proc.run(libc.open("/f"))
    first = proc.run(libc.read_bytes(fd, 10000))
    assert first == (b"abc" * 5000)[:10000]
    assert proc.run(libc.read_bytes(fd, 10000)) == (b"abc" * 5000)[10000:]
    assert proc.run(libc.read_bytes(fd, 10000)) == b""


def test_pipe_and_waitpid_read_their_words() -> None:
    proc = FakeProcess()

    def fake_pipe(ptr: int) -> int:
        proc.set_word(ptr, 5)
        proc.set_word(ptr + 4, 6)
        return 0

    def fake_wait(pid: int, ptr: int) -> int:
        proc.set_word(ptr, -abi.SIGKILL)
        return 42

    proc.results[abi.SYS_PIPE] = fake_pipe
    proc.results[abi.SYS_WAITPID] = fake_wait
    assert proc.run(libc.pipe()) == (5, 6)
    assert proc.run(libc.waitpid(42)) == -abi.SIGKILL


def test_sigaction_passes_code_address_or_constant() -> None:
    proc = FakeProcess()
    proc.results[abi.SYS_SIGACTION] = lambda sig, handler: abi.SIG_DFL

    def handler(sig: int):
        yield from libc.compute(1)

    assert proc.run(libc.sigaction(abi.SIGUSR1, handler)) == abi.SIG_DFL
    proc.run(libc.sigaction(abi.SIGUSR2, abi.SIG_IGN))
    assert proc.calls == [("sigaction", (abi.SIGUSR1, proc.address_of(handler))), ("sigaction", (abi.SIGUSR2, 1))]


def _spawned_block(proc: FakeProcess) -> tuple[int, int, list[str]]:
    name, (entry, ptr, length) = proc.calls[-1]
    assert name == "spawn"
    main_addr, argv = decode_spawn_block(proc.read(ptr, length))
    return entry, main_addr, argv


def test_spawn_a_function_passes_this_process_crt0() -> None:
    proc = FakeProcess()
    proc.results[abi.SYS_SPAWN] = 7
    proc.set_word(libc.CRT0_WORD, 0x08049990)
    assert proc.run(libc.spawn(programs.hello, ["hello", "x"])) == 7
    assert _spawned_block(proc) == (0x08049990, proc.address_of(programs.hello), ["hello", "x"])


def test_spawn_without_recorded_crt0_uses_the_plain_one() -> None:
    proc = FakeProcess()
    proc.results[abi.SYS_SPAWN] = 7
    proc.run(libc.spawn(programs.hello, ["hello"]))
    assert _spawned_block(proc)[0] == proc.address_of(crt0)


def test_spawn_by_name_reads_bin_file() -> None:
    proc = FakeProcess({"/bin/hello": libc.bin_image(0x08048100), "/bin/junk": b"#!/bin/sh\n"})
    proc.results[abi.SYS_SPAWN] = 9
    assert proc.run(libc.spawn("hello", ["hello"])) == 9
    assert _spawned_block(proc)[1:] == (0x08048100, ["hello"])
    assert not proc.fds  # the /bin file was closed
    for name, err in (("nosuch", errno.ENOENT), ("junk", errno.ENOEXEC)):
        with pytest.raises(OSError) as e:
            proc.run(libc.spawn(name, [name]))
        assert e.value.errno == err


def test_crt0_records_itself_runs_main_and_exits_with_its_status() -> None:
    proc = FakeProcess()
    seen = []

    def main(argv: list[str]):
        seen.append(argv)
        yield from libc.print("hi\n")
        return 3

    block = libc.encode_spawn_block(proc.address_of(main), ["prog", "arg"])
    proc.write(0xBFFE0000, block)
    with pytest.raises(Exited) as e:
        proc.run(crt0(0xBFFE0000))
    assert e.value.status == 3
    assert seen == [["prog", "arg"]]
    assert proc.word(libc.CRT0_WORD) == proc.address_of(crt0)
    assert bytes(proc.out[1]) == b"hi\n"


def test_thread_start_calls_func_and_exits_with_its_value() -> None:
    proc = FakeProcess()
    proc.results[abi.SYS_THREAD_CREATE] = 2

    def body(arg: int):
        yield from libc.compute(arg)
        return arg + 1

    assert proc.run(libc.thread_create(body, 41)) == 2
    entry, func_addr, arg = proc.calls[-1][1]
    with pytest.raises(Exited) as e:
        proc.run(proc.code[entry](func_addr, arg))
    assert e.value.status == 42


def test_exit_never_returns() -> None:
    proc = FakeProcess()
    proc.results[abi.SYS_EXIT] = 0  # a broken kernel that returns from exit
    with pytest.raises(UndefinedOpcode):
        proc.run(libc.exit(0))


def _run_main(proc: FakeProcess, main, argv: list[str]) -> int:
    return proc.run(main(argv))


def test_hello_cat_wc_output() -> None:
    files = {"/a": b"one two\nthree\n", "/b": b"  x  "}
    proc = FakeProcess(files)
    assert _run_main(proc, programs.hello, ["hello"]) == 0
    assert _run_main(proc, programs.cat, ["cat", "/a", "/missing", "/b"]) == 1
    assert _run_main(proc, programs.wc, ["wc", "/a", "/b"]) == 0
    assert _run_main(proc, programs.cat, ["cat"]) == 2
    assert bytes(proc.out[1]) == b"hello, world\none two\nthree\n  x  2 3 14 /a\n0 1 5 /b\n2 4 19 total\n"
    assert bytes(proc.out[2]) == b"cat: /missing: No such file or directory\nusage: cat FILE...\n"
    assert not proc.fds


def test_benchmark_programs_parse_arguments() -> None:
    proc = FakeProcess()
    proc.results[abi.SYS_SPIN] = 0
    proc.results[abi.SYS_GETTID] = 1
    proc.results[abi.SYS_GETPID] = 7
    assert _run_main(proc, programs.loop, ["loop", "10", "5", "3"]) == 0
    assert [c for c in proc.calls if c[0] == "spin"] == [("spin", (5,))] * 3
    assert not [c for c in proc.calls if c[0] == "getpid"]
    assert _run_main(proc, programs.loop, ["loop", "10", "5", "2", "0", "3"]) == 0  # three getpid calls a loop
    assert [c[0] for c in proc.calls if c[0] in ("spin", "getpid")][3:] == ["getpid"] * 3 + ["spin"] + [
        "getpid"
    ] * 3 + ["spin"]
    assert _run_main(proc, programs.gettid, ["gettid", "4"]) == 0
    assert _run_main(proc, programs.loop, ["loop", "x"]) == 2
    assert _run_main(proc, programs.gettid, ["gettid", "-1"]) == 2
    assert bytes(proc.out[1]) == b"loop: 3 iterations\nloop: 2 iterations\ngettid: 4 calls, mean 1.00 instructions\n"
    assert bytes(proc.out[2]) == b"usage: loop [U K N [SKEW [GETPIDS]]]\nusage: gettid [N]\n"


def test_registry_is_complete() -> None:
    assert set(programs.PROGRAMS) == set(programs.DESCRIPTIONS) == set(programs.USAGE)
    files = programs.bin_files(FakeProcess().address_of)
    assert set(files) == {f"/bin/{name}" for name in programs.PROGRAMS}
    assert all(libc.parse_bin_image(data) for data in files.values())
