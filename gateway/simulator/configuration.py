"""``/api/config``: the meter's configuration tree (egauge-webapi §5).

GET returns ``{"result": ...}`` with an ETag; PUT replaces, POST merges objects and appends
to arrays, DELETE resets a node to its default (or removes a member that has none).
Writes are checked against the current tree (types, known members, a few value rules)
and applied all or nothing. New members may only be created below the open containers
(``var``, ``var/<section>``, ``user``, ``remote``, ``modbus/client/map``). Write-only leaves
(user ``hash``, the TLS ``certificate``, the push ``password``) are never returned.
``/config/register`` mirrors the simulated register set and is read-only here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Sequence

from gateway.simulator import tree
from gateway.simulator.reply import QueryError
from gateway.simulator.timezone import PosixTz
from gateway.simulator.tree import Json

WRITE_ONLY = (("user", "*", "hash"), ("net", "http", "certificate"), ("push", "password"))
OPEN = (("var",), ("var", "*"), ("user",), ("remote",), ("modbus", "client", "map"))
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_HASH = re.compile(r"^(?:[0-9a-f]{32})?$")


def _matches(path: Sequence[str], pattern: Sequence[str]) -> bool:
    return len(path) == len(pattern) and all(p in ("*", k) for k, p in zip(path, pattern,
                                                                              strict=True))


def _strip_write_only(value: Json, path: tuple[str, ...]) -> Json:
    if not isinstance(value, dict):
        return value
    return {k: _strip_write_only(v, (*path, k)) for k, v in value.items()
            if not any(_matches((*path, k), p) for p in WRITE_ONLY)}


def _kind(value: Json) -> str:
    return "number" if type(value) in (int, float) else type(value).__name__


def _check(path: tuple[str, ...], old: Json, new: Json) -> None:
    """Reject a value whose shape does not fit what is at ``path`` now."""
    where = "/" + "/".join(path)
    if old is not None and _kind(old) != _kind(new):
        raise QueryError(f"Invalid value for {where}: expected {_kind(old)}.")
    if isinstance(new, dict):
        is_open = any(_matches(path, p) for p in OPEN)
        for key, value in new.items():
            known = isinstance(old, dict) and key in old
            if not known and not is_open and old is not None:
                raise QueryError(f"Unknown path: {where}/{key}.")
            _check((*path, key), old[key] if known else None, value)
    _check_leaf(path, new)


def _check_leaf(path: tuple[str, ...], value: Json) -> None:
    where = "/" + "/".join(path)
    if path == ("net", "hostname") and not _HOSTNAME.match(str(value)):
        raise QueryError(f"Invalid value for {where}: letters, digits and dashes only.")
    if path == ("db", "epoch") and not (isinstance(value, str) and value.isdigit()):
        raise QueryError(f"Invalid value for {where}: expected a Unix timestamp string.")
    if path == ("time", "zone"):
        try:
            PosixTz(str(value))
        except ValueError as exc:
            raise QueryError(f"Invalid value for {where}: {exc}.") from exc
    if len(path) == 3 and path[0] == "user" and path[2] == "hash" and not (
            isinstance(value, str) and _HASH.match(value)):
        raise QueryError(f"Invalid value for {where}: expected 32 lowercase hex digits.")
    if len(path) == 3 and path[0] == "var" and not isinstance(value, str):
        raise QueryError(f"Invalid value for {where}: expected a string.")


class ConfigStore:
    """The configuration of one meter; ``registers`` renders ``/config/register``."""

    def __init__(self, defaults: dict[str, Json], registers: Callable[[], Json]) -> None:
        self._defaults = copy.deepcopy(defaults)
        self._tree: dict[str, Json] = copy.deepcopy(defaults)
        self._registers = registers
        self._etag = self._digest()
        self.version = 0

    def _digest(self) -> str:
        text = json.dumps(self._tree, sort_keys=True, separators=(",", ":"))
        return '"' + hashlib.sha256(text.encode()).hexdigest()[:20] + '"'

    @property
    def etag(self) -> str:
        return self._etag

    def value(self, *path: str) -> Json:
        """A leaf for the meter's own use (write-only ones included)."""
        return tree.lookup(self._tree, path)

    def get(self, path: Sequence[str]) -> Json:
        visible = _strip_write_only({**self._tree, "register": self._registers()}, ())
        return copy.deepcopy(tree.lookup(visible, path))

    def matches(self, if_match: str | None) -> bool:
        if if_match is None:
            return True
        tags = [t.strip() for t in if_match.split(",")]
        return "*" in tags or self._etag in tags or self._etag.strip('"') in tags

    def write(self, method: str, path: Sequence[str], body: Json) -> None:
        """Apply a PUT, POST or DELETE; nothing changes when it fails."""
        key = tuple(path)
        if key[:1] == ("register",):
            raise QueryError("Read-only in the simulator: /config/register.")
        new = copy.deepcopy(self._tree)
        if method == "DELETE":
            new = self._reset(new, key)
        elif not key:
            merged = copy.deepcopy(self._defaults) if method == "PUT" else new
            if not isinstance(body, dict):
                raise QueryError("Invalid value for /: expected dict.")
            _check((), merged, body)
            merged.update(copy.deepcopy(body))
            new = merged
        else:
            self._set(new, key, body, merge=method == "POST")
        self._tree = new
        digest = self._digest()
        if digest != self._etag:
            self._etag = digest
            self.version += 1

    def _set(self, root: dict[str, Json], key: tuple[str, ...], body: Json, merge: bool) -> None:
        parent_key, name = key[:-1], key[-1]
        parent = tree.lookup(root, parent_key) if tree.exists(root, parent_key) else None
        if not isinstance(parent, (dict, list)):
            raise QueryError(f"Unknown path: /{'/'.join(key)}.")
        present = tree.exists(root, key)
        if not present and not (isinstance(parent, dict)
                                and any(_matches(parent_key, p) for p in OPEN)):
            raise QueryError(f"Unknown path: /{'/'.join(key)}.")
        old = tree.lookup(root, key) if present else None
        if merge and isinstance(old, list):
            value: Json = old + (body if isinstance(body, list) else [body])
            _check(key, old, value)
        elif merge and isinstance(old, dict):
            _check(key, old, body)
            value = {**old, **body}
        else:
            _check(key, old, body)
            value = body
        if isinstance(parent, list):
            parent[int(name)] = copy.deepcopy(value)
        else:
            parent[name] = copy.deepcopy(value)

    def _reset(self, root: dict[str, Json], key: tuple[str, ...]) -> dict[str, Json]:
        if not key:
            return copy.deepcopy(self._defaults)
        if not tree.exists(root, key):
            raise QueryError(f"Unknown path: /{'/'.join(key)}.")
        parent = tree.lookup(root, key[:-1])
        if tree.exists(self._defaults, key):
            default = copy.deepcopy(tree.lookup(self._defaults, key))
            if isinstance(parent, list):
                parent[int(key[-1])] = default
            else:
                parent[key[-1]] = default
        elif isinstance(parent, list):
            del parent[int(key[-1])]
        else:
            del parent[key[-1]]
        return root


def default_tree(hostname: str, epoch: int, username: str, privs: list[str],
                 user_hash: str) -> dict[str, Json]:
    """A new meter's configuration tree."""
    return {
        "net": {
            "hostname": hostname,
            "ipv4": {"dhcp": True, "address": "192.168.1.88", "broadcast": "192.168.1.255",
                     "netmask": "255.255.255.0", "network": "192.168.1.0",
                     "gateway": "192.168.1.1"},
            "nameserver": {"server": ["192.168.1.1"]},
            "ntp": {"server": ["pool.ntp.org"]},
            "http": {"cgi-bin": "user-required", "client": {"insecure": False},
                     "certificate": ""},
            "option": {"secure_only": False},
            "proxy": {"enable": False, "server": "d.egauge.net"},
        },
        "db": {"epoch": str(epoch)},
        "time": {"zone": "UTC0"},
        "local": {"gain": "normal", "update-interval": 1000},
        "var": {"global": {"billing.start_day": "1", "billing.interval": "1",
                           "default.currency_symbol": "$"}},
        "user": {username: {"priv": privs, "hash": user_hash}},
        "remote": {},
        "modbus": {"server": {"enable": [], "id": 1, "tcp": {"port": 502}},
                   "client": {"map": {}}},
        "push": {"interval": 60, "options": "json,gzip,epoch,sec,skip=59", "service": "",
                 "uri": "", "user": "", "password": ""},
        "alert": {"custom": []},
        "language_code": "en_GB",
    }
