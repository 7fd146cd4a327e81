"""Instruction costs of the giant-lock port's own paths (none calibrated, none tuned).

The paths it inherits from the bootstrap kernel keep that kernel's costs
(`apkern.bootkernel.costs`). What the port adds is small: the code around the
lock at kernel entry and exit, the reschedule IPI, the TLB shoot-down, AP
start-up and the walk that stops a dying process's threads. The lock's
compare-exchange and release store, the spin on a held lock, the loads and
stores of the port's kernel data and every IPI cost what their ops cost; the
values below are the loads, compares and branches around them, estimated from
Linux 2.0's giant-lock SMP code (`ENTER_KERNEL`/`LEAVE_KERNEL` in
`include/asm-i386/smp_lock.h`, `smp_invalidate`, `smp_reschedule_irq`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bootkernel.costs import cost


@dataclass(frozen=True)
class Costs:
    """The giant-lock port's own path costs, in instructions (the defaults: the "xv6" profile)."""

    # --- the kernel lock at every entry and exit ----------------------------------------------------
    LOCK_ENTRY: int = cost(6, "pushfl, cli, read the CPU number, test the owner and nesting count around cmpxchg")
    LOCK_EXIT: int = cost(4, "test the run queue and the kick list (need_resched), read the CPU number, release")
    # --- waking other processors ---------------------------------------------------------------------
    CPU_SCAN: int = cost(3, "one step of a walk over the CPUs: load its word, compare, branch")
    RESCHEDULE_IPI: int = cost(20, "acknowledge the APIC, test need_resched (Linux 2.0's smp_reschedule_irq)")
    # --- TLB shoot-down ------------------------------------------------------------------------------
    SHOOTDOWN_SETUP: int = cost(30, "build the CPU mask and fill in the request (Linux flush_tlb_others set-up)")
    SHOOTDOWN_IPI: int = cost(40, "interrupt entry and exit on the target, as for its timer", follows="TIMER_TICK")
    # --- processes -----------------------------------------------------------------------------------
    THREAD_VISIT: int = cost(5, "one step of the walk over a dying process's threads: load the next, its state, branch")
    LEAVE_DEAD: int = cost(20, "a thread killed while it ran notices at kernel entry: mark the CPU free, wake the exit")
    # --- start-up ------------------------------------------------------------------------------------
    AP_START: int = cost(200, "trampoline: real-mode set-up before paging is on (as the application kernel's)")
