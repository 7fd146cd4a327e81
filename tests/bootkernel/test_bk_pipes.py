"""Pipes: blocking on a full or empty buffer, end of file, EPIPE and SIGPIPE."""

from __future__ import annotations

from bkkit import errno_of, run

from apkern import libc
from apkern.bootkernel import abi
from apkern.hw import Rdtsc


def test_writer_blocks_when_the_pipe_is_full_and_resumes_when_drained() -> None:
    events: list[tuple[str, int]] = []
    extra = 1000
    payload = bytes(i & 0xFF for i in range(abi.PIPE_BUF + extra))

    def writer(argv):
        wfd = int(argv[1])
        buf = yield from libc.mmap(len(payload))
        yield from libc.write_mem(buf, payload)
        n = yield from libc.write(wfd, buf, abi.PIPE_BUF)  # fills the pipe exactly: does not block
        events.append(("first write done", (yield Rdtsc())))
        assert n == abi.PIPE_BUF
        n = yield from libc.write(wfd, buf + abi.PIPE_BUF, extra)  # no room: blocks
        events.append(("second write done", (yield Rdtsc())))
        assert n == extra
        return 0

    got = []

    def main(argv):
        r, w = yield from libc.pipe()
        pid = yield from libc.spawn(writer, ["writer", str(w)])
        yield from libc.close(w)
        yield from libc.sleep(100_000)  # the writer runs meanwhile, fills the pipe and blocks
        events.append(("reader drains", (yield Rdtsc())))
        data = b""
        while True:
            chunk = yield from libc.read_bytes(r, abi.PIPE_BUF)
            if not chunk:
                break
            data += chunk
        got.append(data)
        got.append((yield from libc.waitpid(pid)))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert [e for e, _ in events] == ["first write done", "reader drains", "second write done"]
    assert events[2][1] - events[0][1] > 100_000 // 2  # blocked through most of the reader's sleep
    assert got == [payload, 0]


def test_a_large_write_is_delivered_whole_through_a_small_buffer() -> None:
    payload = bytes((i * 31) & 0xFF for i in range(5 * abi.PIPE_BUF + 77))
    got = []

    def writer(argv):
        wfd = int(argv[1])
        buf = yield from libc.mmap(len(payload))
        yield from libc.write_mem(buf, payload)
        got.append(("written", (yield from libc.write(wfd, buf, len(payload)))))
        return 0

    def main(argv):
        r, w = yield from libc.pipe()
        pid = yield from libc.spawn(writer, ["writer", str(w)])
        yield from libc.close(w)
        data = b""
        while True:
            chunk = yield from libc.read_bytes(r, 3000)
            if not chunk:
                break
            assert len(chunk) <= abi.PIPE_BUF
            data += chunk
        got.append(("read", data))
        yield from libc.waitpid(pid)
        return 0

    run(main)
    assert got == [("written", len(payload)), ("read", payload)]


def test_reader_gets_eof_when_all_writers_closed() -> None:
    got = []

    def main(argv):
        r, w = yield from libc.pipe()
        yield from libc.write_bytes(w, b"abc")
        yield from libc.close(w)
        got.append((yield from libc.read_bytes(r, 10)))
        got.append((yield from libc.read(r, libc.PROGRAM_DATA, 10)))
        got.append((yield from libc.read(r, libc.PROGRAM_DATA, 10)))
        return 0

    run(main)
    assert got == [b"abc", 0, 0]


def test_blocked_reader_gets_eof_when_the_last_writer_exits_without_closing() -> None:
    got = []

    def writer(argv):
        yield from libc.compute(30_000)
        yield from libc.write_bytes(int(argv[1]), b"bye")
        return 0  # exits holding the write end

    def main(argv):
        r, w = yield from libc.pipe()
        pid = yield from libc.spawn(writer, ["writer", str(w)])
        yield from libc.close(w)
        got.append((yield from libc.read_bytes(r, 10)))
        got.append((yield from libc.read_bytes(r, 10)))  # blocks until the writer's exit closes its end
        got.append((yield from libc.waitpid(pid)))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert got == [b"bye", b"", 0]


def test_write_with_no_reader_raises_sigpipe_which_kills_by_default() -> None:
    after = []

    def main(argv):
        r, w = yield from libc.pipe()
        yield from libc.close(r)
        try:
            yield from libc.write_bytes(w, b"x")
        except OSError as e:
            after.append(e.errno)
        after.append("survived")
        return 0

    _, proc = run(main)
    assert proc.exit_status == -abi.SIGPIPE
    assert after == []


def test_write_with_no_reader_and_sigpipe_ignored_is_epipe() -> None:
    got = []

    def main(argv):
        yield from libc.sigaction(abi.SIGPIPE, abi.SIG_IGN)
        r, w = yield from libc.pipe()
        yield from libc.close(r)
        got.append((yield from errno_of(libc.write_bytes(w, b"x"))))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert got == [abi.EPIPE]


def test_write_with_no_reader_and_sigpipe_handled_is_epipe_and_the_handler_runs() -> None:
    got = []

    def on_pipe(sig):
        got.append(("handler", sig))
        return
        yield

    def main(argv):
        yield from libc.sigaction(abi.SIGPIPE, on_pipe)
        r, w = yield from libc.pipe()
        yield from libc.close(r)
        got.append(("errno", (yield from errno_of(libc.write_bytes(w, b"x")))))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    assert sorted(got) == [("errno", abi.EPIPE), ("handler", abi.SIGPIPE)]


def test_blocked_writer_gets_epipe_when_the_reader_goes_away() -> None:
    got = []

    def writer(argv):
        yield from libc.sigaction(abi.SIGPIPE, abi.SIG_IGN)
        wfd = int(argv[1])
        yield from libc.close(int(argv[2]))  # the inherited read end
        buf = yield from libc.mmap(2 * abi.PIPE_BUF)
        try:
            n = yield from libc.write(wfd, buf, 2 * abi.PIPE_BUF)  # fills the pipe, blocks, then the reader closes
            got.append(("partial", n))
        except OSError as e:
            got.append(("error", e.errno))
        got.append(("again", (yield from errno_of(libc.write(wfd, buf, 1)))))
        return 0

    def main(argv):
        r, w = yield from libc.pipe()
        pid = yield from libc.spawn(writer, ["writer", str(w), str(r)])
        yield from libc.close(w)
        yield from libc.sleep(50_000)
        yield from libc.close(r)
        got.append(("child", (yield from libc.waitpid(pid))))
        return 0

    _, proc = run(main)
    assert proc.exit_status == 0
    # the bytes that went in before the reader left are reported; the next write fails
    assert got == [("partial", abi.PIPE_BUF), ("again", abi.EPIPE), ("child", 0)]


def test_pipe_between_threads_of_one_process() -> None:
    got = []

    def producer(wfd):
        for i in range(5):
            yield from libc.write_bytes(wfd, f"{i};".encode())
        yield from libc.close(wfd)
        return 5

    def main(argv):
        r, w = yield from libc.pipe()
        tid = yield from libc.thread_create(producer, w)
        data = b""
        while True:
            chunk = yield from libc.read_bytes(r, 64)
            if not chunk:
                break
            data += chunk
        got.append(data)
        got.append((yield from libc.thread_join(tid)))
        return 0

    run(main)
    assert got == [b"0;1;2;3;4;", 5]
