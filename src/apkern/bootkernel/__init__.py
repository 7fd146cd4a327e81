"""The bootstrap kernel: a real uniprocessor kernel for CPU 0 (the paper's "small in-house kernel")."""

from .driver import Caller, Driver, DriverServices
from .kernel import BootKernel

__all__ = ["BootKernel", "Caller", "Driver", "DriverServices"]
