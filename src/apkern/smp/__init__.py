"""The giant-lock SMP port of the bootstrap kernel (the alternative the application kernel is compared with)."""

from .kernel import SMPKernel

__all__ = ["SMPKernel"]
