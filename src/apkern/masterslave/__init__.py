"""The master-slave port of the bootstrap kernel: kernel code on the master only, user code on every CPU."""

from .kernel import MasterSlaveKernel

__all__ = ["MasterSlaveKernel"]
