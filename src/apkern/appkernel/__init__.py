"""The application kernel: a driver of the bootstrap kernel and a small kernel on the other processors."""

from .driver import ApkernDriver

__all__ = ["ApkernDriver"]
