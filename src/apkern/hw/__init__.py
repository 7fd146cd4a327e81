"""The simulated SMP machine (the role Simics played in the paper's evaluation)."""

from .code import CODE_PAGE_MAGIC, CodeStore
from .cpu import CPU, IVT, Context, Frame, Gate, MachineError, entry_frame
from .machine import MAX_CPUS, NOMINAL_IPS, Machine
from .memory import LOW_MEMORY, PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from .ops import (
    AtomicAdd,
    Call,
    CodeAddr,
    Compute,
    CpuId,
    EnablePaging,
    FlushTLB,
    Halt,
    Illegal,
    InvalidatePage,
    Load,
    LoadCR3,
    Op,
    PushFrame,
    ReadCR3,
    ReadMem,
    Rdtsc,
    ReadTP,
    SendIPI,
    SetIVT,
    SetTimer,
    SpinWhile,
    Store,
    Switch,
    Trap,
    WriteMem,
    Xchg,
)
from .traps import Fault, Fixup, UserAccessFault

__all__ = [
    "CODE_PAGE_MAGIC", "CPU", "IVT", "LOW_MEMORY", "MAX_CPUS", "NOMINAL_IPS", "PAGE_SHIFT", "PAGE_SIZE",
    "AtomicAdd", "Call", "entry_frame", "CodeAddr", "CodeStore", "Compute", "Context", "CpuId", "EnablePaging", "Fault", "Fixup",
    "FlushTLB", "Frame", "Gate", "Halt", "Illegal", "InvalidatePage", "Load", "LoadCR3", "Machine",
    "MachineError", "Op", "PhysicalMemory", "PushFrame", "ReadCR3", "ReadMem", "Rdtsc", "ReadTP", "SendIPI", "SetIVT",
    "SetTimer", "SpinWhile", "Store", "Switch", "Trap", "UserAccessFault", "WriteMem", "Xchg",
]
