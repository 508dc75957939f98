"""The MQTT topic table (DESIGN.md §4) and the slugs that turn register names into topic levels.

Slug rules (the README repeats them):

- lower-case ASCII letters, digits and ``_`` only, so a slug is a valid MQTT topic level (no
  ``+``, ``#``, ``/``, NUL or leading ``$``) and a valid Home Assistant object id;
- accents are dropped (``Temp Büro`` -> ``temp_buro``), a few letters are spelled out
  (``ß`` -> ``ss``, ``æ`` -> ``ae``, ``ø`` -> ``o``);
- meaningful symbols become words: ``+`` -> ``plus``, ``&`` -> ``and``, ``%`` -> ``pct``,
  ``@`` -> ``at`` (``Solar+`` -> ``solar_plus``); every other run of characters becomes one
  ``_`` (``Panel A/B`` -> ``panel_a_b``, ``Amps #1`` -> ``amps_1``);
- a name with nothing left (``日本``) becomes ``reg_`` + a hash of the name; a slug longer
  than 48 characters is cut and gets the hash as well;
- :func:`slug` of a name is always the same. :func:`unique_slugs` settles one set of names:
  when two names give the same slug, the name closest to the slug keeps it (exact match,
  then a lower-case match, then the name that sorts first) and the others get ``_`` + the
  first 6 hex digits of the SHA-1 of the name. Alone it would let a name added later take a
  slug from another (its result depends on the other names of a collision), so the gateway
  uses it only the first time it sees a meter and pins the slugs from then on
  (:mod:`gateway.mqtt.slugs`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

MAX_SLUG = 48
_WORDS = {"+": " plus ", "&": " and ", "%": " pct ", "@": " at "}
_LETTERS = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "đ": "d",
     "Đ": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "TH", "ð": "d", "Ð": "D", "ı": "i"}
)
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
SLUG_RE = re.compile(r"^[a-z0-9_]+$")


def name_hash(name: str, length: int = 6) -> str:
    """A short, stable hex digest of a name (not for security)."""
    return hashlib.sha1(name.encode("utf-8"), usedforsecurity=False).hexdigest()[:length]


def slug(name: str) -> str:
    """The slug of one register name, without regard to the meter's other names."""
    text = unicodedata.normalize("NFKD", name.translate(_LETTERS))
    text = "".join(c for c in text if not unicodedata.combining(c))
    for symbol, word in _WORDS.items():
        text = text.replace(symbol, word)
    base = _NOT_SLUG.sub("_", text.lower()).strip("_")
    if not base:
        return "reg_" + name_hash(name)
    if len(base) > MAX_SLUG:
        return base[: MAX_SLUG - 7].rstrip("_") + "_" + name_hash(name)
    return base


def unique_slugs(names: Iterable[str]) -> dict[str, str]:
    """Map each distinct name to a slug that is unique among these names."""
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):
        groups.setdefault(slug(name), []).append(name)
    result: dict[str, str] = {}
    taken = set(groups)
    for base, members in groups.items():
        members.sort(key=lambda n: (n != base, n.lower() != base, n))
        result[members[0]] = base
        for name in members[1:]:
            length = 6
            candidate = f"{base}_{name_hash(name, length)}"
            while candidate in taken:
                length += 2
                candidate = f"{base}_{name_hash(name, length)}"
            taken.add(candidate)
            result[name] = candidate
    return result


def safe_level(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9_-]`` (for serial numbers in ids and topics)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "unknown"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` as a broker matches a subscription: ``+``
    one whole level, ``#`` (last) the parent level and everything below it, and a topic
    starting with ``$`` matched by no filter that starts with a wildcard."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    wanted, levels = topic_filter.split("/"), topic.split("/")
    for index, part in enumerate(wanted):
        if part == "#":
            return True
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(wanted) == len(levels)


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the gateway uses, under one base topic and one discovery prefix.
    ``bridge`` is the level(s) of the gateway's own topics (``bridge/<id>-<index>`` for one
    instance of a sharded fleet, see :mod:`gateway.config.shard`)."""

    base: str = "egauge"
    discovery_prefix: str = "homeassistant"
    bridge: str = "bridge"

    @property
    def bridge_state(self) -> str:
        return f"{self.base}/{self.bridge}/state"

    @property
    def bridge_info(self) -> str:
        return f"{self.base}/{self.bridge}/info"

    @property
    def bridge_audit(self) -> str:
        return f"{self.base}/{self.bridge}/audit"

    @property
    def discovery_status(self) -> str:
        """Home Assistant's birth/last-will topic."""
        return f"{self.discovery_prefix}/status"

    def availability(self, meter: str) -> str:
        return f"{self.base}/{meter}/availability"

    def state(self, meter: str) -> str:
        return f"{self.base}/{meter}/state"

    def device(self, meter: str) -> str:
        return f"{self.base}/{meter}/device"

    def history(self, meter: str) -> str:
        return f"{self.base}/{meter}/history"

    def alert(self, meter: str) -> str:
        """New entries of the meter's alert log, one event each."""
        return f"{self.base}/{meter}/alert"

    def register(self, meter: str, register_slug: str) -> str:
        return f"{self.base}/{meter}/register/{register_slug}"

    def register_part(self, meter: str, register_slug: str, part: str) -> str:
        """A register's further values: ``.../register/<slug>/energy`` (its cumulative energy),
        ``/import`` and ``/export`` (its counters)."""
        return f"{self.base}/{meter}/register/{register_slug}/{part}"

    def diagnostics(self, meter: str) -> str:
        return f"{self.base}/{meter}/diagnostics"

    def request(self, meter: str, action: str) -> str:
        return f"{self.base}/{meter}/request/{action}"

    def response(self, meter: str, action: str) -> str:
        return f"{self.base}/{meter}/response/{action}"

    def request_filter(self) -> str:
        """One subscription for every meter's requests (``<base>/+/request/#``)."""
        return f"{self.base}/+/request/#"

    def own_filters(self, meters: Iterable[str]) -> tuple[str, ...]:
        """Filters covering every topic the gateway publishes or answers on: the bridge's
        level (of every shard instance), each of ``meters`` as a whole, every meter-shaped
        topic family (``<base>/+/state``, ``.../request/#``, ``.../response/#``, ...) and the
        discovery prefix."""
        families = ("availability", "device", "state", "history", "register/#", "request/#",
                    "response/#")
        return (f"{self.base}/{self.bridge.split('/')[0]}/#",
                *(f"{self.base}/+/{family}" for family in families),
                *(f"{self.base}/{meter}/#" for meter in meters),
                f"{self.discovery_prefix}/#")

    def discovery(self, component: str, node_id: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{node_id}/{object_id}/config"
