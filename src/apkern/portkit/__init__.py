"""What the bootstrap kernel's two SMP ports share: written once, used by `apkern.smp` and `apkern.masterslave`."""
