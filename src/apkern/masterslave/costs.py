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

from ..bootkernel import costs as boot

# --- the slave's trap stub: all a slave does on a trap, an exception or a signal ---------------------
STUB_ENTRY = boot.SYSCALL_ENTRY  # the same trap-frame construction as the kernel's entry: vector, pushal, segments
HANDOFF = 12  # mark the thread master-bound (Bach's "set master field in process table entry"), pick the queue
RESUME_USER = 20  # a slave resumes a thread handed back: restore the user registers from its PCB, popal, iret

# --- the queues between master and slaves (intrusive lists in kernel memory) ---------------------
QUEUE_OP = 8  # list_add_tail / list_del of a singly-linked list with a tail pointer, but the stores (ops)
QUEUE_VISIT = 5  # one step of a walk over a queue (unlinking from the middle): load the link, compare, branch

# --- the master ------------------------------------------------------------------------------------
USER_RETURN = 6  # before returning to user mode: must it switch? (Bach: "if other processes must run on master")
NOTIFY_IPI = 20  # the master's IPI handler: acknowledge the APIC, test the state (the smp port's reschedule IPI)
AST_CHECK = 4  # is a signal or a kill waiting for this thread (load the process's pending and killed words, test)

# --- the slaves' scheduler, timer and idle loop --------------------------------------------------
SLAVE_TICK = boot.TIMER_TICK  # acknowledge the APIC, count the thread's time slice
CPU_SCAN = 3  # one step of a walk over the CPUs: load its idle flag, compare, branch
WAKE_IPI = 20  # an idle slave's IPI handler: acknowledge the APIC (its loop looks at the queue next)

# --- processes -------------------------------------------------------------------------------------
THREAD_VISIT = 5  # one step of the walk over a dying process's threads: load the next, its state, branch
DROP_DEAD = 20  # a slave finds its thread killed: mark the CPU free, give up the context

# --- TLB shoot-down (Linux's flush_tlb_others, as in the smp port) -----------------------------------
SHOOTDOWN_SETUP = 30  # build the CPU mask and fill in the request
SHOOTDOWN_IPI = boot.TIMER_TICK  # interrupt entry and exit on the target, as for its timer

# --- start-up --------------------------------------------------------------------------------------
AP_START = 200  # trampoline: real-mode set-up before paging is on (the same estimate as the other kernels')
