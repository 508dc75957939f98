"""Network addresses in the configuration: lists of client networks (``modbus.allow_from``:
IPv4 and IPv6 addresses and CIDR networks, checked with :mod:`ipaddress` and kept as
normalised strings) and host names."""

from __future__ import annotations

import ipaddress

from gateway.config.schema import MISSING, Section, join


def networks(s: Section, key: str) -> tuple[str, ...] | None:
    """A non-empty list of IPv4/IPv6 networks (``10.0.0.0/8``, ``192.168.1.7``, ``fd00::/8``)
    as normalised CIDR strings; ``None`` (everyone) when absent or null."""
    value = s.raw(key)
    if value is MISSING or value is None:
        return None
    if not isinstance(value, list) or not value:
        message = "must be a non-empty list of networks such as 10.0.0.0/8 (null: everyone)"
        return s.fail(key, message, value, None)
    found: list[str] = []
    for index, item in enumerate(value):
        path = join(s.at(key), index)
        entry = s.ctx.expand(path, item) if isinstance(item, str) else item
        if entry is MISSING:
            continue
        problem = _network_problem(entry)
        if problem:
            s.ctx.problem(path, problem, entry)
        else:
            found.append(str(ipaddress.ip_network(str(entry).strip())))
    return tuple(found)


def _network_problem(entry: object) -> str:
    if not isinstance(entry, str) or not entry.strip():
        return "must be an IP address or network such as 10.0.0.0/8"
    text = entry.strip()
    try:
        ipaddress.ip_network(text)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return f"not an IP address or network ({exc})"
        return f"has host bits set (did you mean {loose}?)"
    return ""


def host_name_ok(host: str) -> bool:
    """Whether ``host`` can be looked up: ASCII, or a name IDNA can encode."""
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True
