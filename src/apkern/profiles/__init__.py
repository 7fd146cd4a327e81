"""Cost profiles: which path costs the kernels of a system are built with (see `profile`)."""

from .profile import BUILTIN, DEFAULT, SECTIONS, Profile, ProfileError, build, from_dict, load, parse

__all__ = ["BUILTIN", "DEFAULT", "SECTIONS", "Profile", "ProfileError", "build", "from_dict", "load", "parse"]
