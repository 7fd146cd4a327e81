"""Instruction costs of the master-slave port's own paths (none calibrated, none tuned).

The kernel paths the master runs are the bootstrap kernel's, at that kernel's
costs (`apkern.bootkernel.costs`). What the port adds: the slaves' trap stub, the
two queues between master and slaves and the lock around them, the slaves'
scheduler and timer, the IPIs that wake a CPU, the master's test before it
returns to user mode, TLB shoot-down and AP start-up. The queue lock's
compare-exchange and release, the spin on a held lock, the loads and stores of
the port's kernel data and every IPI cost what their ops cost; the values below
are the instructions around them, estimated from the dual VAX Unix described in
Bach's "The Design of the UNIX Operating System", section 12.2 (Goble and
Marsh's master-slave port: the slave's `syscall` stub sets the master field and
switches; the master's `syscall` resets it and switches if other processes must
run on the master) and from the smp port's equivalents.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bootkernel.costs import cost


@dataclass(frozen=True)
class Costs:
    """The master-slave port's own path costs, in instructions (the defaults: the "xv6" profile)."""

    # --- the slave's trap stub: all a slave does on a trap, an exception or a signal -----------------
    STUB_ENTRY: int = cost(34, "the kernel's trap-frame construction: vector, pushal, segments", "SYSCALL_ENTRY")
    HANDOFF: int = cost(12, "mark the thread master-bound (Bach's master field in the process table), pick the queue")
    RESUME_USER: int = cost(20, "a slave resumes a thread handed back: restore the user registers, popal, iret")
    # --- the queues between master and slaves (intrusive lists in kernel memory) ---------------------
    QUEUE_OP: int = cost(8, "list_add_tail / list_del of a singly-linked list with a tail pointer, but the stores")
    QUEUE_VISIT: int = cost(5, "one step of a walk over a queue (unlinking from the middle): load, compare, branch")
    # --- the master ----------------------------------------------------------------------------------
    USER_RETURN: int = cost(6, "before returning to user mode: must it switch? (Bach: other processes on the master)")
    NOTIFY_IPI: int = cost(20, "the master's IPI handler: acknowledge the APIC, test the state (as smp's IPI)")
    AST_CHECK: int = cost(4, "is a signal or a kill waiting for this thread (load pending and killed words, test)")
    # --- the slaves' scheduler, timer and idle loop --------------------------------------------------
    SLAVE_TICK: int = cost(40, "acknowledge the APIC, count the thread's time slice", follows="TIMER_TICK")
    CPU_SCAN: int = cost(3, "one step of a walk over the CPUs: load its idle flag, compare, branch")
    WAKE_IPI: int = cost(20, "an idle slave's IPI handler: acknowledge the APIC (its loop looks at the queue next)")
    # --- processes -----------------------------------------------------------------------------------
    THREAD_VISIT: int = cost(5, "one step of the walk over a dying process's threads: load the next, its state, branch")
    DROP_DEAD: int = cost(20, "a slave finds its thread killed: mark the CPU free, give up the context")
    # --- TLB shoot-down (Linux's flush_tlb_others, as in the smp port) -------------------------------
    SHOOTDOWN_SETUP: int = cost(30, "build the CPU mask and fill in the request")
    SHOOTDOWN_IPI: int = cost(40, "interrupt entry and exit on the target, as for its timer", follows="TIMER_TICK")
    # --- start-up ------------------------------------------------------------------------------------
    AP_START: int = cost(200, "trampoline: real-mode set-up before paging is on (as the other kernels')")
