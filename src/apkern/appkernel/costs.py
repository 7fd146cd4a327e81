"""Instruction costs of the application kernel's paths (none calibrated, none tuned).

The trap, switch and timer paths do the same work as the bootstrap kernel's and
follow its estimates (`follows`: a profile that changes the bootstrap kernel's
value changes these too, unless it sets them); the rest are small bookkeeping
steps estimated from their C equivalents. Message traffic, locking, spinning,
CR3 loads, IPIs and the stores that update kernel data (TCB slots, lists,
process records) are not here: they cost what their ops cost; the values below
are the loads, compares and branches around them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bootkernel.costs import QUANTUM_TICKS, TICK, cost

__all__ = ["QUANTUM_TICKS", "TICK", "Costs"]


@dataclass(frozen=True)
class Costs:
    """The application kernel's path costs, in instructions (the defaults: the "xv6" profile)."""

    TRAP_ENTRY: int = cost(34, "the same IA-32 trap-frame construction", follows="SYSCALL_ENTRY")
    TRAP_EXIT: int = cost(40, "signal check, popal, iret", follows="SYSCALL_EXIT")
    CONTEXT_SWITCH: int = cost(70, "save and restore callee-saved registers", follows="CONTEXT_SWITCH")
    TIMER_TICK: int = cost(40, "the bootstrap kernel's tick path", follows="TIMER_TICK")
    LIST_OP: int = cost(8, "list_add_tail/list_del of a doubly-linked list: ~13 instructions in C, 5 are stores")
    LIST_VISIT: int = cost(5, "one step of a walk over a list of TCBs: load the next link and a field, compare, branch")
    PROC_LOOKUP: int = cost(12, "find a process's record by pid: hash, one bucket probe, compare (a C hash table)")
    BLOCK: int = cost(20, "mark a TCB blocked, note why")
    MESSAGE: int = cost(25, "choose the message kind and lay out its words")
    TCB_INIT: int = cost(120, "fill a TCB: ids, page table, context, stack and TLS pointers")
    SLAB_GROW: int = cost(
        1024, "a full table takes a zero-filled page of kernel memory (slots.py)", follows="ZERO_PAGE"
    )
    TCB_FREE: int = cost(40, "decide what to free, drop the context (the unlinks and the slot clearing are ops)")
    DRIVER_CHECKS: int = cost(30, "look the TCB up, check that the caller owns it")
    SIGNAL_DELIVER: int = cost(60, "build the signal frame, switch to the handler", follows="SIGNAL_DELIVER")
    LOCAL_DISPATCH: int = cost(
        15, "a call served on the application kernel: check the number, fetch arguments", follows="SYSCALL_DISPATCH"
    )
    LOCAL_BODY: int = cost(10, "and its body: the same work as the bootstrap kernel's", follows="SYS_GETTID")
    SHOOTDOWN_SETUP: int = cost(30, "fill in a shoot-down request, bump its sequence number (Linux flush_tlb_others)")
    SHOOTDOWN_IPI: int = cost(40, "interrupt entry and exit on the AP, as for its timer", follows="TIMER_TICK")
    MIGRATION_POLICY: int = cost(15, "fold one stretch into the window: loads, a subtraction, compares and branches")
    MIGRATE: int = cost(70, "save (or restore) the user registers: the register file a switch moves", "CONTEXT_SWITCH")
    BALANCE_PLACE: int = cost(6, "the balance extension's choice of queue: test the home's bit, the mask, a length")
    MASK_WORD: int = cost(3, "one word of the mask of available APs searched: load, test, bsf (cpumask_first)")
    MASK_UPDATE: int = cost(2, "load the mask word and set or clear one bit (the store is an op)")
    QUEUE_SCAN: int = cost(4, "one AP's queue looked at in a steal scan: load idle flag and length, compare")
    AP_START: int = cost(200, "trampoline: real-mode set-up before paging is on")
