"""Cost profiles: the path costs every kernel of a system is built with.

A profile gives each kernel's `Costs` (`apkern.bootkernel.costs`, `apkern.appkernel.costs`,
`apkern.smp.costs`, `apkern.masterslave.costs`). The built-in "xv6" profile is their
defaults, with each value's origin beside it; "linux-2.4" is a TOML file shipped here,
with a published source for each value it sets. A user's profile is a TOML file that
sets any subset of the values:

    name = "mykernel"                      # optional; the file's stem otherwise
    description = "one line"               # optional
    [bootkernel]
    SYSCALL_ENTRY = 60                     # a positive whole number of instructions
    CONTEXT_SWITCH = { value = 900, source = "where it comes from" }
    [appkernel]
    LIST_OP = 10
    [calibration]                          # optional: what the profile claims it reproduces
    gettid = 100                           # the uniprocessor gettid, int to iret, in instructions

Sections are "bootkernel", "appkernel", "smp" and "master-slave". A port's copy of a
bootstrap-kernel path (the application kernel's trap entry, say) follows the bootstrap
kernel's value unless the profile sets it too. Unknown sections or names, and values
that are not positive whole numbers, are a `ProfileError` naming the file and the key.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..appkernel import costs as ak_costs
from ..bootkernel import costs as boot_costs
from ..masterslave import costs as ms_costs
from ..smp import costs as smp_costs

SECTIONS: dict[str, type] = {
    "bootkernel": boot_costs.Costs,
    "appkernel": ak_costs.Costs,
    "smp": smp_costs.Costs,
    "master-slave": ms_costs.Costs,
}
DEFAULT_NAME = "xv6"
BUILTIN_FILES = {"linux-2.4": "linux-2.4.toml"}
BUILTIN = (DEFAULT_NAME, *BUILTIN_FILES)
CALIBRATIONS = ("gettid",)  # what a profile may claim: the uniprocessor gettid, int 0x80 to iret


class ProfileError(ValueError):
    """A cost profile that cannot be used: unknown name, malformed file, bad key or value."""


@dataclass(frozen=True, repr=False, eq=False)
class Profile:
    """The path costs of every kernel, by section; build one with `load`.

    `costs[section]` is that kernel's `Costs`; `sources` maps "section.NAME" to where a
    value the profile set comes from (the defaults' origins are in the `Costs` classes);
    `calibration` is what the profile claims to reproduce, e.g. {"gettid": 100}.
    """

    name: str
    costs: Mapping[str, Any]
    description: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)
    calibration: Mapping[str, int] = field(default_factory=dict)
    file: str | None = None

    def __post_init__(self) -> None:  # what runs record, fixed when the profile is made
        object.__setattr__(self, "_summary", {"name": self.name, "file": self.file, "overrides": self.overrides()})

    def _key(self) -> tuple[Any, ...]:
        return (self.name, self.file, tuple(self.costs[s] for s in SECTIONS))

    def __eq__(self, other: object) -> bool:  # the same name and the same values (sources are comments)
        return isinstance(other, Profile) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Profile({self.name!r})"

    __str__ = __repr__

    @property
    def bootkernel(self) -> boot_costs.Costs:
        return self.costs["bootkernel"]

    @property
    def appkernel(self) -> ak_costs.Costs:
        return self.costs["appkernel"]

    @property
    def smp(self) -> smp_costs.Costs:
        return self.costs["smp"]

    @property
    def master_slave(self) -> ms_costs.Costs:
        return self.costs["master-slave"]

    def value(self, key: str) -> int:
        """The value of "section.NAME"."""
        section, name = _split(key)
        return getattr(self.costs[section], name)

    def items(self) -> Iterator[tuple[str, int, str]]:
        """Every cost as ("section.NAME", value, where it comes from), in declaration order: the profile's
        source for a value it set; "follows bootkernel.X" for a port's copy that took that value; "set, no
        source given"; or the default's origin."""
        for section, cls in SECTIONS.items():
            for f in dataclasses.fields(cls):
                key = f"{section}.{f.name}"
                value = getattr(self.costs[section], f.name)
                if key in self.sources:
                    origin = self.sources[key]
                elif value == f.default:
                    origin = f.metadata["origin"]
                elif "follows" in f.metadata and value == getattr(self.bootkernel, f.metadata["follows"]):
                    origin = f"follows bootkernel.{f.metadata['follows']}"
                else:
                    origin = "set, no source given"
                yield key, value, origin

    def overrides(self) -> dict[str, dict[str, int]]:
        """The values that differ from the default profile's, by section: with the name, the whole profile."""
        out: dict[str, dict[str, int]] = {}
        for section, cls in SECTIONS.items():
            base, mine = cls(), self.costs[section]
            names = [f.name for f in dataclasses.fields(cls)]
            diff = {n: getattr(mine, n) for n in names if getattr(mine, n) != getattr(base, n)}
            if diff:
                out[section] = diff
        return out

    def to_dict(self) -> dict[str, Any]:
        """What a run's JSON records of its profile: name, file and the values it changed."""
        return copy.deepcopy(self._summary)  # type: ignore[attr-defined]

    def tracked(self) -> tuple[Profile, set[str]]:
        """A copy that notes in the returned set each "section.NAME" a kernel reads from it.

        A cost no run reads cannot change that run: the sensitivity analysis skips it. The copy's
        classes are made here, so it runs in this process only (it does not pickle to a worker).
        """
        reads: set[str] = set()
        costs = {}
        for section, c in self.costs.items():
            cls = type(c)
            values = {f.name: object.__getattribute__(c, f.name) for f in dataclasses.fields(cls)}
            costs[section] = _tracking(cls, section, reads)(**values)
        out = dataclasses.replace(self, costs=costs)
        reads.clear()  # making the copy read them all
        return out, reads

    def with_values(self, name: str, values: Mapping[str, int]) -> Profile:
        """A copy with "section.NAME" keys set to `values` (each a positive whole number), named `name`."""
        by_section: dict[str, dict[str, int]] = {}
        for key, v in values.items():
            section, n = _split(key)
            by_section.setdefault(section, {})[n] = _check_value(v, key, "")
        costs = {s: dataclasses.replace(c, **by_section.get(s, {})) for s, c in self.costs.items()}
        return dataclasses.replace(self, name=name, costs=costs)

    def scaled(self, key: str, factor: float) -> Profile:
        """A copy with one cost multiplied by `factor` (rounded, at least 1 instruction)."""
        v = max(1, math.floor(self.value(key) * factor + 0.5))  # halves round up: 5 x 0.5 is 3
        return self.with_values(f"{self.name} {key}x{factor:g}", {key: v})


def _tracking(cls: type, section: str, reads: set[str]) -> type:
    """A subclass of a kernel's `Costs` whose instances note each cost read."""

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807
        if name[:1].isupper():
            reads.add(f"{section}.{name}")
        return object.__getattribute__(self, name)

    return type(f"Tracked{cls.__name__}", (cls,), {"__getattribute__": __getattribute__})


def _split(key: str) -> tuple[str, str]:
    section, _, name = key.partition(".")
    if section not in SECTIONS:
        raise ProfileError(f"unknown cost section {section!r} in {key!r} (choose from {', '.join(SECTIONS)})")
    if name not in {f.name for f in dataclasses.fields(SECTIONS[section])}:
        raise ProfileError(f"unknown cost {name!r} in section {section!r}")
    return section, name


def _check_value(v: Any, key: str, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ProfileError(f"{where}{key} must be a positive whole number of instructions, not {v!r}")
    return v


def build(
    name: str,
    values: Mapping[str, Mapping[str, int]] | None = None,
    *,
    description: str = "",
    sources: Mapping[str, str] | None = None,
    calibration: Mapping[str, int] | None = None,
    file: str | None = None,
    follow: bool = True,
) -> Profile:
    """A profile from the values it sets, by section; the rest are the defaults, and (with `follow`)
    a port's copy of a bootstrap-kernel path follows that path's value unless it is set too."""
    values = values or {}
    where = f"{file}: " if file else ""
    for section in values:
        if section not in SECTIONS:
            raise ProfileError(f"{where}unknown section [{section}] (choose from {', '.join(SECTIONS)})")
    boot = boot_costs.Costs(**values.get("bootkernel", {}))
    costs: dict[str, Any] = {"bootkernel": boot}
    for section, cls in SECTIONS.items():
        if section == "bootkernel":
            continue
        set_here = dict(values.get(section, {}))
        for f in dataclasses.fields(cls):
            if follow and f.name not in set_here and "follows" in f.metadata:
                set_here[f.name] = getattr(boot, f.metadata["follows"])
        costs[section] = cls(**set_here)
    return Profile(name, costs, description, dict(sources or {}), dict(calibration or {}), file)


DEFAULT = build(DEFAULT_NAME, description="xv6-sized path costs (the defaults)", calibration=boot_costs.CALIBRATION)


def from_dict(d: Mapping[str, Any]) -> Profile:
    """The profile a run's JSON recorded (`Profile.to_dict`): its name, file and every value it changed."""
    try:
        name, overrides, file = d["name"], d["overrides"], d.get("file")
        values = {s: {n: _check_value(v, f"{s}.{n}", "") for n, v in names.items()} for s, names in overrides.items()}
        for s, names in values.items():
            for n in names:
                _split(f"{s}.{n}")
    except (KeyError, TypeError, AttributeError) as e:
        raise ProfileError(f"not a recorded cost profile: {d!r} ({e})") from None
    return build(name, values, file=file, follow=False)  # every change is recorded


def load(spec: str | Path | Profile | None = None) -> Profile:
    """The profile `spec` names: None or "xv6" (the defaults), another built-in name
    ("linux-2.4"), a path to a TOML file, or a `Profile` (returned as it is)."""
    if spec is None or spec == DEFAULT_NAME:
        return DEFAULT
    if isinstance(spec, Profile):
        return spec
    if isinstance(spec, str) and spec in BUILTIN_FILES:
        text = resources.files(__package__).joinpath(BUILTIN_FILES[spec]).read_text()
        return parse(text, BUILTIN_FILES[spec], default_name=spec)
    if not isinstance(spec, str | Path):
        raise ProfileError(f"a cost profile is a name or a TOML file, not {spec!r}")
    path = Path(spec)
    if not path.is_file():
        raise ProfileError(f"unknown cost profile {str(spec)!r}: not a built-in ({', '.join(BUILTIN)}) nor a file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"{spec}: cannot read the cost profile ({e})") from None
    return parse(text, str(spec), default_name=path.stem)


def parse(text: str, file: str, default_name: str) -> Profile:
    """A profile from the text of a TOML file (see the module for its form)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{file}: not valid TOML ({e})") from None
    name = data.pop("name", default_name)
    description = data.pop("description", "")
    if not isinstance(name, str) or not name or not isinstance(description, str):
        raise ProfileError(f"{file}: name and description are strings")
    calibration: dict[str, int] = {}
    for key, v in (data.pop("calibration", None) or {}).items():
        if key not in CALIBRATIONS:
            raise ProfileError(f"{file}: unknown calibration {key!r} (choose from {', '.join(CALIBRATIONS)})")
        calibration[key] = _check_value(v, f"calibration.{key}", f"{file}: ")
    values: dict[str, dict[str, int]] = {}
    sources: dict[str, str] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            raise ProfileError(f"{file}: unknown section or key {section!r} (sections: {', '.join(SECTIONS)})")
        if not isinstance(table, dict):
            raise ProfileError(f"{file}: [{section}] must be a table of costs")
        known = {f.name for f in dataclasses.fields(SECTIONS[section])}
        for key, entry in table.items():
            if key not in known:
                raise ProfileError(f"{file}: unknown cost {key!r} in [{section}]")
            if isinstance(entry, dict):
                extra = set(entry) - {"value", "source"}
                if extra or "value" not in entry:
                    raise ProfileError(f'{file}: {section}.{key} is a number or {{ value = N, source = "..." }}')
                if not isinstance(entry.get("source", ""), str):
                    raise ProfileError(f"{file}: {section}.{key}: the source is a string")
                if "source" in entry:
                    sources[f"{section}.{key}"] = entry["source"]
                entry = entry["value"]
            values.setdefault(section, {})[key] = _check_value(entry, f"{section}.{key}", f"{file}: ")
    return build(name, values, description=description, sources=sources, calibration=calibration, file=file)
