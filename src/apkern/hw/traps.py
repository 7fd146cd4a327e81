"""Interrupt and exception vectors of the machine (IA-32 numbering) and the faults ops raise."""

from __future__ import annotations

# Exceptions (IA-32 vectors).
DE = 0  # divide error
UD = 6  # invalid opcode
GP = 13  # general protection
PF = 14  # page fault

# Local APIC timer and inter-processor interrupts.
TIMER = 0x20
IRQ_BASE = 0x21  # external IRQ n arrives on vector IRQ_BASE + n
IPI_RESCHEDULE = 0xF0
IPI_TLB_SHOOTDOWN = 0xF1
IPI_STOP = 0xF2
SPURIOUS = 0xFF

SYSCALL = 0x80  # int 0x80

# Page-fault error code bits (pushed by the CPU, as on IA-32).
PF_PRESENT = 1  # 0: page not present, 1: protection violation
PF_WRITE = 2
PF_USER = 4


class MachineError(RuntimeError):
    """The machine reached a state no correct kernel can produce (a kernel bug)."""


class Fault(Exception):
    """An exception raised by an operation: vector, error code and (for #PF) the CR2 address."""

    def __init__(self, vector: int, error: int = 0, addr: int = 0, reason: str = "") -> None:
        super().__init__(vector, error, addr, reason)
        self.vector = vector
        self.error = error
        self.addr = addr
        self.reason = reason
        self.from_user = False  # set by the CPU: the faulting code ran in user mode (saved CS has RPL 3)

    @property
    def write(self) -> bool:
        return bool(self.error & PF_WRITE)

    @property
    def user(self) -> bool:
        return bool(self.error & PF_USER)

    @property
    def present(self) -> bool:
        return bool(self.error & PF_PRESENT)

    def __repr__(self) -> str:
        return f"Fault(vector={self.vector}, error={self.error:#x}, addr={self.addr:#x}, {self.reason!r})"


class Fixup:
    """Returned by a fault handler: do not retry the faulting op, throw `exc` into its code instead.

    This is the machine's exception-table mechanism: kernel code copying from a user
    address catches the exception and turns it into EFAULT.
    """

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class UserAccessFault(Exception):
    """Thrown into kernel code whose access to a user address could not be satisfied."""

    def __init__(self, addr: int) -> None:
        super().__init__(f"bad user address {addr:#x}")
        self.addr = addr
