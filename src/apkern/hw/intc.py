"""The interrupt controller: external IRQ routing (I/O APIC) and inter-processor interrupts (local APICs).

External IRQs go to the one CPU their routing entry names (requirement 1 of
section 3.2). IPIs are "fixed" (a vector), "init" (hold the target for a SIPI) or
"sipi" (start it at physical page `vector`, so below 1 MiB: the vector is 8 bits).
Delivery happens at the receiver's next op boundary (a `Perturbation` may delay a fixed IPI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .traps import GP, IRQ_BASE, Fault

if TYPE_CHECKING:
    from .machine import Machine


class InterruptController:
    """Routes device IRQs to a chosen CPU and carries IPIs between CPUs."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.routes: dict[int, int] = {}
        self.ipis_sent = 0

    def route(self, irq: int, cpu: int) -> None:
        if not 0 <= cpu < len(self.machine.cpus):
            raise ValueError(f"no CPU {cpu}")
        self.routes[irq] = cpu

    def raise_irq(self, irq: int, info: Any = None) -> None:
        """A device asserts `irq`; it reaches only the CPU it is routed to (CPU 0 by default)."""
        self.machine.cpus[self.routes.get(irq, 0)].raise_irq(IRQ_BASE + irq, info)

    def send_ipi(self, src: int, dest: int, kind: str, vector: int = 0) -> None:
        cpus = self.machine.cpus
        if not 0 <= dest < len(cpus) or dest == src and kind != "fixed":
            raise Fault(GP, 0, 0, f"IPI to invalid destination {dest}")
        if not 0 <= vector <= 0xFF:
            raise Fault(GP, 0, 0, f"IPI vector {vector:#x} does not fit 8 bits")
        self.ipis_sent += 1
        target = cpus[dest]
        if kind == "fixed":
            perturb = self.machine.perturb
            delay = 0 if perturb is None else perturb.ipi_latency()
            if delay:
                self.machine.env.timeout(delay).callbacks.append(lambda _ev: target.raise_irq(vector, src))
            else:
                target.raise_irq(vector, src)
        elif kind == "init":
            target.init_ipi()
        elif kind == "sipi":
            target.startup_ipi(vector)
        else:
            raise Fault(GP, 0, 0, f"unknown IPI kind {kind!r}")
