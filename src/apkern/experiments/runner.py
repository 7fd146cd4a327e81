"""Running many independent calls: here, in a pool of local worker processes, or on a Dask cluster.

This is the machinery under `apkern sweep` and `apkern reproduce`. A call is
`(function, args)`: a module-level function (so that another process, or another
machine with the same apkern installed, can find it by name) and picklable
arguments. `run_calls` hands each result to `on_result(index, result)` in the
calling process as soon as it arrives, in the order the calls finish (a caller that
wants the list's order sorts by index; a sweep writes each result to its cache at
once), then calls `progress(done, total)`.

Three ways to run, the same results:

- `jobs <= 1` and no scheduler: one after the other, in this process;
- `jobs > 1`: a pool of `jobs` worker processes on this machine;
- `scheduler="tcp://host:8786"`: the workers of that Dask distributed cluster
  (`dask.distributed`, imported only then). Each worker must import the same
  apkern (the sweep checks its code fingerprint).

Only a bounded window of calls is in flight at once (a few per worker), handed out
in list order, so a planner that sorts the big calls first gets them started first,
and a cancellation throws away little.

Ctrl-C (`KeyboardInterrupt` in the calling process) cancels at once: the local
workers are terminated, not waited for, the cluster's pending calls are cancelled,
and `Cancelled` (a `KeyboardInterrupt`) is raised; every result delivered before it
has been through `on_result`. Local workers ignore SIGINT themselves, so a Ctrl-C
at the terminal (which signals the whole process group) reaches only the caller,
which decides. An exception raised by a call (or by `on_result`) cancels the rest
the same way and propagates.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

Call = tuple[Callable[..., Any], tuple[Any, ...]]
OnResult = Callable[[int, Any], None]
Progress = Callable[[int, int], None]

IN_FLIGHT_PER_WORKER = 2  # calls handed to each worker ahead of its current one
DASK_CONNECT_TIMEOUT = 10  # seconds to reach a scheduler before giving up


class Cancelled(KeyboardInterrupt):
    """Ctrl-C during `run_calls`: `done` of `total` results had been delivered."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"{done} of {total} calls finished")
        self.done = done
        self.total = total


class SchedulerError(ValueError):
    """The Dask scheduler cannot be used: dask.distributed missing, or the address unreachable."""


def run_calls(
    calls: Sequence[Call],
    jobs: int = 1,
    scheduler: str | None = None,
    on_result: OnResult | None = None,
    progress: Progress | None = None,
) -> None:
    """Run every call; deliver each result to `on_result(index, result)` as it arrives (see the module)."""
    state = _Delivery(len(calls), on_result, progress)
    if not calls:
        return
    try:
        if scheduler:
            _on_dask(calls, scheduler, state)
        elif jobs <= 1:
            for i, (fn, args) in enumerate(calls):
                state.deliver(i, fn(*args))
        else:
            _on_pool(calls, jobs, state)
    except Cancelled:
        raise
    except KeyboardInterrupt:
        raise Cancelled(state.done, len(calls)) from None


class _Delivery:
    def __init__(self, total: int, on_result: OnResult | None, progress: Progress | None) -> None:
        self.total = total
        self.done = 0
        self.on_result = on_result
        self.progress = progress

    def deliver(self, index: int, result: Any) -> None:
        if self.on_result:
            self.on_result(index, result)
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _on_pool(calls: Sequence[Call], jobs: int, state: _Delivery) -> None:
    jobs = min(jobs, len(calls))
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_ignore_sigint)
    window = jobs * (1 + IN_FLIGHT_PER_WORKER)
    pending: dict[Future[Any], int] = {}
    nxt = 0
    try:
        while nxt < len(calls) or pending:
            while nxt < len(calls) and len(pending) < window:
                fn, args = calls[nxt]
                pending[pool.submit(fn, *args)] = nxt
                nxt += 1
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=pending.__getitem__):  # several at once: in list order
                state.deliver(pending.pop(fut), fut.result())
    except BaseException:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):  # at once, not after their calls
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _on_dask(calls: Sequence[Call], address: str, state: _Delivery) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise SchedulerError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        raise SchedulerError(f"cannot reach the Dask scheduler at {address!r}: {e}") from None
    pending: dict[Any, int] = {}
    try:
        threads = sum(client.nthreads().values()) or 1
        window = max(8, threads * (1 + IN_FLIGHT_PER_WORKER))
        nxt = 0
        stream = as_completed(loop=client.loop)
        while nxt < len(calls) or pending:
            while nxt < len(calls) and len(pending) < window:
                fn, args = calls[nxt]
                fut = client.submit(fn, *args, pure=False)
                pending[fut] = nxt
                stream.add(fut)
                nxt += 1
            fut = next(stream)
            state.deliver(pending.pop(fut), fut.result())
    except BaseException:
        if pending:
            client.cancel(list(pending))
        raise
    finally:
        client.close(timeout=DASK_CONNECT_TIMEOUT)
