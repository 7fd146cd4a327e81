"""Instruction costs of the application kernel's paths (none calibrated, none tuned).

The trap, switch and timer paths do the same work as the bootstrap kernel's and
take the same estimates (see `apkern.bootkernel.costs`); the rest are small
bookkeeping steps estimated from their C equivalents. Message traffic, locking,
spinning, CR3 loads, IPIs and the stores that update kernel data (TCB slots,
lists, process records) are not here: they cost what their ops cost; the
constants below are the loads, compares and branches around them.
"""

from ..bootkernel import costs as boot

TRAP_ENTRY = boot.SYSCALL_ENTRY  # the same IA-32 trap-frame construction
TRAP_EXIT = boot.SYSCALL_EXIT  # signal check, popal, iret
CONTEXT_SWITCH = boot.CONTEXT_SWITCH  # save and restore callee-saved registers
TIMER_TICK = boot.TIMER_TICK
LIST_OP = 8  # list_add_tail/list_del of a doubly-linked list: ~13 instructions in C, 5 of them the stores
LIST_VISIT = 5  # one iteration of a walk over a list of TCBs: load the next link and a field, compare, branch
PROC_LOOKUP = 12  # find a process's record by pid: hash, one bucket probe, compare (a C hash-table lookup)
BLOCK = 20  # mark a TCB blocked, note why
MESSAGE = 25  # choose the message kind and lay out its words
TCB_INIT = 120  # fill a TCB: ids, page table, context, stack and TLS pointers
TCB_FREE = 40  # decide what to free, drop the context (the unlinks and the slot clearing are ops)
DRIVER_CHECKS = 30  # look the TCB up, check that the caller owns it
SIGNAL_DELIVER = boot.SIGNAL_DELIVER
LOCAL_DISPATCH = boot.SYSCALL_DISPATCH  # a call served on the application kernel: check the number, fetch arguments
LOCAL_BODY = boot.SYS_GETTID  # and its body: the same work as the bootstrap kernel's
SHOOTDOWN_SETUP = 30  # fill in a shoot-down request, bump its sequence number (Linux's flush_tlb_others set-up)
SHOOTDOWN_IPI = boot.TIMER_TICK  # interrupt entry and exit on the AP, as for its timer
MIGRATION_POLICY = 15  # fold one stretch into the window: loads, a subtraction, compares and branches
MIGRATE = boot.CONTEXT_SWITCH  # save (or restore) the user registers: the register file a switch moves
BALANCE_PLACE = 6  # the balance extension's choice of queue: test the home's bit, the mask, a length; branch
MASK_WORD = 3  # one word of the mask of available APs searched: load, test, bsf (Linux's cpumask_first)
MASK_UPDATE = 2  # load the mask word and set or clear one bit (the store is an op)
QUEUE_SCAN = 4  # one AP's queue looked at in a steal scan: load its idle flag and length, compare, branch
AP_START = 200  # trampoline: real-mode set-up before paging is on
QUANTUM_TICKS = boot.QUANTUM_TICKS
TICK = boot.TICK
