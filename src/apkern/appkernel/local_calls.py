"""Section 4.3: system calls served on the application kernel (the `local_calls` extension).

"It is also possible to implement some system calls directly on the application
kernel, providing the semantics of the system calls are known. For example,
sleeping, yielding the CPU and returning the process ID of the current process
can easily be implemented." With the extension on, these never reach the
bootstrap processor; their answers are the forwarded calls' answers:
- getpid: the process's id;
- gettid: the id of the thread's bootstrap thread, the thread that would re-issue it;
- yield: the thread goes to the back of the ready queue if another is ready;
- sleep(n): the thread waits on the application kernel's sleep list, in kernel
  memory under the spinlock, until an AP's local timer tick finds its time has
  come (requirement 2 of section 3.2); a signal passed on by the bootstrap thread
  (asynchronous activation) cuts it short with EINTR, as on the uniprocessor kernel.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..bootkernel import abi as sys_abi
from ..hw import Compute, Op, Rdtsc, Store
from .tcb import HELD, SLEEP_LINKS, SLEEPING, SLOT_WAKE
from .tcb_list import TCBList

if TYPE_CHECKING:
    from .kernel import AppKernel
    from .tcb import TCB

Gen = Generator[Op, Any, Any]
LOCAL = frozenset({sys_abi.SYS_GETPID, sys_abi.SYS_GETTID, sys_abi.SYS_YIELD, sys_abi.SYS_SLEEP})


class LocalCalls:
    def __init__(self, ak: AppKernel, sleepers_kva: int) -> None:
        self.ak = ak
        self.sleepers = TCBList(sleepers_kva, SLEEP_LINKS, ak.costs)  # lock held to change it
        self.served = 0

    def serve(self, cid: int, tcb: TCB, nr: int, args: tuple[int, ...]) -> Gen:
        """Serve call `nr` on this AP; returns (the CPU the thread goes on on, the result)."""
        self.served += 1
        yield Compute(self.ak.costs.LOCAL_DISPATCH)
        if nr == sys_abi.SYS_GETPID:
            yield Compute(self.ak.costs.LOCAL_BODY)
            return cid, tcb.pid
        if nr == sys_abi.SYS_GETTID:
            yield Compute(self.ak.costs.LOCAL_BODY)
            return cid, tcb.owner
        if nr == sys_abi.SYS_YIELD:
            yield Compute(self.ak.costs.LOCAL_BODY)
            return (yield from self.ak.preempt(cid, tcb, voluntary=True)), 0
        n = args[0] if args else -1
        if n < 0 or n >= 1 << 31:
            return cid, -sys_abi.EINVAL
        return (yield from self.sleep(cid, tcb, n))

    def sleep(self, cid: int, tcb: TCB, n: int) -> Gen:
        ak = self.ak
        yield Compute(self.ak.costs.LOCAL_BODY)
        wake = (yield Rdtsc()) + n
        yield from ak.lock.acquire(cid)
        tcb.sleep_result = 0
        yield Store(tcb.slot_kva + SLOT_WAKE, wake & 0xFFFFFFFF)
        tcb.wake = wake
        yield from self.sleepers.push(tcb)
        yield from ak.set_state(tcb, SLEEPING)
        yield from ak._stopped(tcb)  # it leaves its CPU: a sibling's page-table change need not wait for it
        yield from ak.post_waiting()
        cid = yield from ak.schedule_next(cid, tcb)
        return cid, tcb.sleep_result

    def tick(self, cid: int) -> Gen:
        """An AP's timer tick: wake the sleepers whose time has come (the walk charges per sleeper)."""
        if not len(self.sleepers):  # an unlocked look at the list's length word, as a C kernel would
            return
        ak = self.ak
        now = yield Rdtsc()
        yield from ak.lock.acquire(cid)
        for t in list(self.sleepers):
            yield Compute(self.ak.costs.LIST_VISIT)
            if t.wake <= now:
                yield from self.wake(t, 0)
        yield from ak.lock.release()

    def wake(self, tcb: TCB, result: int) -> Gen:
        """Lock held: end `tcb`'s sleep with `result` (0, or -EINTR for a signal)."""
        ak = self.ak
        yield from self.sleepers.remove(tcb)
        tcb.sleep_result = result
        if tcb.proc.faults:  # a sibling's page-table change is in flight: it waits with the others
            yield from ak.set_state(tcb, HELD)
        else:
            yield from ak.make_ready(tcb)

    def forget(self, tcb: TCB) -> Gen:
        """Lock held: a dying thread leaves the sleep list."""
        if tcb in self.sleepers:
            yield from self.sleepers.remove(tcb)
