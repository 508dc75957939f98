"""Pinned slugs: the slug a register name gets the first time it is seen on a meter, and never
another (README "Slugs"; kept by :class:`~gateway.mqtt.identities.RegisterIdentities`).

- **First sight of a meter** (no slug pins yet -- a new meter, or the first start after an
  upgrade from a release without slug pins): every name of the register set gets exactly the
  slug of :func:`~gateway.mqtt.topics.unique_slugs`, the rule earlier releases used on every
  start, and is pinned. So an upgrade moves no topic, unique_id or entity.
- **From then on** a pinned name keeps its slug while the pin exists, whatever appears on or
  disappears from the meter; a pinned slug is never given to another name.
- **A new name** gets its own slug (:func:`~gateway.mqtt.topics.slug`) unless that is taken;
  then ``<slug>_<first 6 hex digits of the SHA-1 of the name>`` (8, 10, ... digits when that
  is taken too). Taken means: pinned to another name, or differing from a pinned slug only by
  a trailing ``_energy`` (the entity id of a power register's energy sensor is
  ``sensor.<meter>_<slug>_energy``). New names of one register set are placed as
  ``unique_slugs`` ranks them (the name closest to the slug first), so the order in which
  the meter lists them does not matter.
- **Entities of their own** -- the import and export sensors of a register, a meter's
  diagnostic sensors -- pin the object id of their entity id the same way, under a key of
  their own (``import:<name>``, ``export:<name>``, ``diagnostic:online``, ...): the first time
  one is handed out it gets its wanted slug (``<slug>_import``, ``online``, ...) unless that is
  taken -- by a register, another such entity or the ``_energy`` rule above --, then the hash
  suffix; from then on it keeps it, and register names new to the meter never get it. They
  are kept in the pin file's ``meta`` as ``"entity:<key>": "<slug>"``.
- **Drift**: a name that was not on the meter at the last look (new, or back) standing at the
  ``idx`` and ``did`` of a name that was there and is gone now is that register renamed; a
  pinned name whose type code changed is that register retyped. Each is reported once, as a
  :class:`~gateway.model.RegisterChange`, when the pins take it in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from gateway.errors import StateFileError
from gateway.model import Identity, RegisterChange, RegisterInfo
from gateway.mqtt.topics import SLUG_RE, name_hash, slug, unique_slugs
from gateway.support import Entry, PinFile, integer

KIND: Final = "slugs"
ENERGY: Final = "_energy"
ENTITY: Final = "entity:"  # meta keys of the slugs of entities of their own
IDENTITY_FIELDS: Final = ("serial", "model", "firmware", "hostname")


@dataclass(frozen=True, slots=True)
class SlugPin:
    """One name's slug and what the register looked like when last seen."""

    slug: str
    type_code: str = ""
    idx: int | None = None
    did: int | None = None
    present: bool = True  # in the register set at the last look

    @property
    def position(self) -> tuple[int, int | None] | None:
        return None if self.idx is None or self.idx < 0 else (self.idx, self.did)


@dataclass(frozen=True, slots=True)
class Assignment:
    """What :meth:`MeterSlugs.assign` did with one register set."""

    slugs: dict[str, str]  # every name of the set -> its slug
    added: tuple[str, ...] = ()  # names pinned now
    changes: tuple[RegisterChange, ...] = ()  # renames and retypes seen now
    changed: bool = False  # the pins changed (they need writing)


def _position(reg: RegisterInfo) -> tuple[int, int | None] | None:
    return None if reg.idx < 0 else (reg.idx, reg.did)


class MeterSlugs:
    """The pinned slugs of one meter: name -> :class:`SlugPin`, in the order they were pinned,
    and the meter's identity as last seen (for ``plan`` while the meter is unreachable)."""

    def __init__(self, meter: str, pins: Mapping[str, SlugPin] | None = None,
                 identity: Mapping[str, str] | None = None,
                 entities: Mapping[str, str] | None = None) -> None:
        self.meter = meter
        self._pins: dict[str, SlugPin] = dict(pins or {})
        self.identity: dict[str, str] = dict(identity or {})
        self._entities: dict[str, str] = dict(entities or {})  # entity key -> slug

    def __contains__(self, name: object) -> bool:
        return name in self._pins

    def __len__(self) -> int:
        return len(self._pins)

    def get(self, name: str) -> SlugPin | None:
        return self._pins.get(name)

    def items(self) -> list[tuple[str, SlugPin]]:
        return list(self._pins.items())

    def copy(self) -> MeterSlugs:
        return MeterSlugs(self.meter, self._pins, self.identity, self._entities)

    @property
    def entities(self) -> dict[str, str]:
        """The pinned slugs of entities of their own: key -> slug."""
        return dict(self._entities)

    def entity(self, key: str, wanted: str) -> tuple[str, bool]:
        """The slug of the entity ``key`` (e.g. ``import:Grid``), pinned the first time
        (``wanted``, or ``wanted_<hash of the key>`` when that is taken); and whether it
        was pinned now."""
        known = self._entities.get(key)
        if known is not None:
            return known, False
        taken = self._taken()
        candidate, length = wanted, 6
        if not SLUG_RE.match(candidate):
            candidate = slug(wanted)
        base = candidate
        while _taken(candidate, taken):
            candidate = f"{base}_{name_hash(key, length)}"
            length += 2
        self._entities[key] = candidate
        return candidate, True

    def _taken(self) -> set[str]:
        return {p.slug for p in self._pins.values()} | set(self._entities.values())

    def release(self, name: str) -> SlugPin | None:
        """Forget ``name``'s pin (``pins release``): its slug is free for another name."""
        return self._pins.pop(name, None)

    def note_identity(self, identity: Identity) -> bool:
        """Remember the meter's identity; True when it differs from what was remembered."""
        seen = {k: str(getattr(identity, k)) for k in IDENTITY_FIELDS}
        if seen == self.identity:
            return False
        self.identity = seen
        return True

    def assign(self, registers: Sequence[RegisterInfo], at: float = 0.0) -> Assignment:
        """The slugs of this register set; names seen for the first time are pinned, drift
        is detected (see the module docstring)."""
        info: dict[str, RegisterInfo] = {}
        for reg in registers:
            info.setdefault(reg.name, reg)
        if not self._pins:  # first sight: exactly the rule of earlier releases
            first = unique_slugs(info)
            self._pins = {n: SlugPin(first[n], r.type_code, *_known(r)) for n, r in info.items()}
            return Assignment(first, tuple(info), (), bool(info))
        before = dict(self._pins)
        renames = self._renames(info)
        changes = renames + self._refresh(info, {c.new_name for c in renames})
        new = [n for n in info if n not in self._pins]
        for name, placed in self._place(new).items():
            reg = info[name]
            self._pins[name] = SlugPin(placed, reg.type_code, *_known(reg))
        for name, pin in self._pins.items():
            if pin.present and name not in info:
                self._pins[name] = replace(pin, present=False)
        slugs = {n: self._pins[n].slug for n in info}
        stamped = tuple(replace(c, at=at) for c in changes)
        return Assignment(slugs, tuple(new), stamped, self._pins != before)

    def _renames(self, info: Mapping[str, RegisterInfo]) -> list[RegisterChange]:
        """Names that came (new or back) where a name that went used to stand."""
        gone: dict[tuple[int, int | None], str | None] = {}
        for name, pin in self._pins.items():
            where = pin.position
            if pin.present and name not in info and where is not None:
                gone[where] = None if where in gone else name  # two at one place: unclear
        out = []
        for name, reg in info.items():
            known = self._pins.get(name)
            where = _position(reg)
            old = gone.get(where) if where is not None else None
            if (known is None or not known.present) and old is not None:
                out.append(RegisterChange(self.meter, old, name, self._pins[old].type_code,
                                          reg.type_code))
        return out

    def _refresh(self, info: Mapping[str, RegisterInfo], renamed: set[str]
                 ) -> list[RegisterChange]:
        """Known names: retypes reported (but for names just reported as a rename); type,
        position and presence brought up to date."""
        out = []
        for name, reg in info.items():
            pin = self._pins.get(name)
            if pin is None:
                continue
            code = reg.type_code or pin.type_code
            if pin.type_code and code != pin.type_code and name not in renamed:
                out.append(RegisterChange(self.meter, name, name, pin.type_code, code))
            idx, did = (reg.idx, reg.did) if reg.idx >= 0 else (pin.idx, pin.did)
            self._pins[name] = SlugPin(pin.slug, code, idx, did, True)
        return out

    def _place(self, names: Iterable[str]) -> dict[str, str]:
        """Slugs for new names, none of them taken (see the module docstring)."""
        groups: dict[str, list[str]] = {}
        for name in names:
            groups.setdefault(slug(name), []).append(name)
        taken = self._taken()
        placed: dict[str, str] = {}
        for base in sorted(groups):
            members = sorted(groups[base], key=_rank(base))
            for i, name in enumerate(members):
                candidate, length = base, 6
                if i > 0 or _taken(base, taken):
                    candidate = f"{base}_{name_hash(name, length)}"
                    while _taken(candidate, taken) or candidate in groups:
                        length += 2
                        candidate = f"{base}_{name_hash(name, length)}"
                taken.add(candidate)
                placed[name] = candidate
        return placed

    # -- the pin file -------------------------------------------------------------------------

    def to_file(self) -> PinFile:
        entries: dict[str, Entry] = {
            n: {"slug": p.slug, "type": p.type_code, "idx": p.idx, "did": p.did,
                "present": p.present} for n, p in self._pins.items()}
        meta: dict[str, str | int | float | bool | None] = dict(self.identity)
        meta.update((ENTITY + key, value) for key, value in self._entities.items())
        return PinFile(self.meter, KIND, entries, meta)

    @classmethod
    def from_file(cls, pins: PinFile, where: str) -> MeterSlugs:
        """Check a loaded pin file; :class:`StateFileError` names what is wrong."""
        out: dict[str, SlugPin] = {}
        for name, entry in pins.entries.items():
            value, code, present = entry.get("slug"), entry.get("type", ""), entry.get(
                "present", True)
            if not isinstance(value, str) or not SLUG_RE.match(value):
                raise StateFileError(where, f"not a valid pin file (entry {name!r}: slug must "
                                            "be lower-case letters, digits and _)")
            if not isinstance(code, str) or not isinstance(present, bool):
                raise StateFileError(where, f"not a valid pin file (entry {name!r}: type must "
                                            "be a string, present true or false)")
            out[name] = SlugPin(value, code, integer(entry, "idx"), integer(entry, "did"),
                                present)
        entities: dict[str, str] = {}
        for key, value in pins.meta.items():
            if not key.startswith(ENTITY):
                continue
            if not isinstance(value, str) or not SLUG_RE.match(value):
                raise StateFileError(where, f"not a valid pin file (meta {key!r}: slug must "
                                            "be lower-case letters, digits and _)")
            entities[key[len(ENTITY):]] = value
        slugs = [p.slug for p in out.values()] + list(entities.values())
        if len(set(slugs)) != len(slugs):
            raise StateFileError(where, "not a valid pin file (a slug is pinned to two names)")
        identity = {k: v for k, v in pins.meta.items() if k in IDENTITY_FIELDS
                    and isinstance(v, str)}
        return cls(pins.meter, out, identity, entities)


def _rank(base: str) -> Callable[[str], tuple[bool, bool, str]]:
    """unique_slugs' order among names of one slug: exact match, lower-case match, sorted."""
    return lambda name: (name != base, name.lower() != base, name)


def _known(reg: RegisterInfo) -> tuple[int | None, int | None]:
    return (reg.idx, reg.did) if reg.idx >= 0 else (None, None)


def _taken(candidate: str, taken: set[str]) -> bool:
    if candidate in taken or candidate + ENERGY in taken:
        return True
    return candidate.endswith(ENERGY) and candidate[: -len(ENERGY)] in taken
