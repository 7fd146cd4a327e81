"""A program of your own: `apkern run examples/hello_threads.py 4 --kernel apkern --cpus 4`.

`main(argv)` is a generator function: every libc call is used with `yield from`.
Threads add to one counter under a mutex, then the main thread writes the sum
to a file and prints it. `apkern run examples/hello_threads.py:count_down 3` runs
the other function instead.
"""

from apkern import libc

COUNTER = libc.PROGRAM_DATA  # a word of this process's static data
LOCK = libc.PROGRAM_DATA + 4


def worker(n):
    lock = libc.mutex(LOCK)
    for _ in range(10):
        yield from libc.compute(5_000)  # user work between calls
        yield from lock.lock()
        value = yield from libc.load(COUNTER)
        yield from libc.store(COUNTER, value + n)
        yield from lock.unlock()
    return n


def main(argv):
    threads = int(argv[1]) if len(argv) > 1 else 3
    tids = []
    for n in range(1, threads + 1):
        tids.append((yield from libc.thread_create(worker, n)))
    returned = 0
    for tid in tids:
        returned += yield from libc.thread_join(tid)
    total = yield from libc.load(COUNTER)
    fd = yield from libc.open("/out/total.txt", libc.O_WRONLY | libc.O_CREAT | libc.O_TRUNC)
    yield from libc.write_bytes(fd, f"{total}\n".encode())
    yield from libc.close(fd)
    yield from libc.print(f"{threads} threads added {total} (returned {returned})\n")
    return 0


def count_down(argv):
    n = int(argv[1]) if len(argv) > 1 else 3
    for i in range(n, 0, -1):
        yield from libc.print(f"{i}...\n")
        yield from libc.sleep(10_000)
    yield from libc.print("lift-off\n")
    return 0
