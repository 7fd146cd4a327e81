"""Instruction costs of the application kernel's paths (none calibrated, none tuned).

The trap, switch and timer paths do the same work as the bootstrap kernel's and
take the same estimates (see `apkern.bootkernel.costs`); the rest are small
bookkeeping steps estimated from their C equivalents. Message traffic, locking,
spinning, CR3 loads and IPIs are not here: they cost what their ops cost.
"""

from ..bootkernel import costs as boot

TRAP_ENTRY = boot.SYSCALL_ENTRY  # the same IA-32 trap-frame construction
TRAP_EXIT = boot.SYSCALL_EXIT  # signal check, popal, iret
CONTEXT_SWITCH = boot.CONTEXT_SWITCH  # save and restore callee-saved registers
TIMER_TICK = boot.TIMER_TICK
QUEUE_OP = 15  # link or unlink a TCB on the ready queue
BLOCK = 20  # mark a TCB blocked, note why
MESSAGE = 25  # choose the message kind and lay out its words
TCB_INIT = 120  # fill a TCB: ids, page table, context, stack and TLS pointers
TCB_FREE = 40  # unlink and clear a TCB slot
DRIVER_CHECKS = 30  # look the TCB up, check that the caller owns it
SIGNAL_DELIVER = boot.SIGNAL_DELIVER
AP_START = 200  # trampoline: real-mode set-up before paging is on
QUANTUM_TICKS = boot.QUANTUM_TICKS
TICK = boot.TICK
