"""apkern: the application kernel approach — SMP support for an unmodified uniprocessor kernel.

import apkern
from apkern import libc
sim = apkern.System(kernel="apkern", cpus=4, seed=0)
"""

from .system import ConfigError, ProcessHandle, SimulationLimit, SimulationTimeout, System
from .userland import libc

__all__ = ["ConfigError", "ProcessHandle", "SimulationLimit", "SimulationTimeout", "System", "libc"]
__version__ = "0.1.0"
