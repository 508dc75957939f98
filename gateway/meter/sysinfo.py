"""Identity (``/sys``, ``/config/net/hostname``) and sensors (``/local``) from meter replies."""

from __future__ import annotations

from typing import Any

from gateway.meter.fields import Fields
from gateway.meter.units import type_code
from gateway.model import Identity, LocalValue


def parse_identity(f: Fields, sys_reply: dict[str, Any], net_reply: dict[str, Any]) -> Identity:
    """``{"result": {sn, model, version: {firmware, ...}, uptime}}`` + ``{"result": hostname}``."""
    sys = f.obj(sys_reply.get("result"), "result")
    version = f.obj(sys.get("version"), "result.version")
    extra = {
        key: value
        for key, value in version.items()
        if key != "firmware" and isinstance(value, str)
    }
    return Identity(
        serial=f.text(sys.get("sn"), "result.sn"),
        model=f.text(sys.get("model"), "result.model"),
        firmware=f.text(version.get("firmware"), "result.version.firmware"),
        hostname=f.text(net_reply.get("result"), "result"),
        uptime_s=f.optional_number(sys.get("uptime"), "result.uptime"),
        extra=extra,
    )


def parse_local(f: Fields, reply: dict[str, Any]) -> tuple[LocalValue, ...]:
    """The ``values`` section of a ``/local`` reply, one LocalValue per sensor."""
    section = f.obj(reply.get("values"), "values")
    out = []
    for name, entry in section.items():
        where = f"values.{name}"
        e = f.obj(entry, where)
        code = f.text(e.get("type"), where + ".type")
        rate = e.get("rate")
        rates = {} if rate is None else f.obj(rate, where + ".rate")
        out.append(
            LocalValue(
                name=name,
                type_code=code,
                unit=type_code(code).unit,
                normal=f.optional_number(rates.get("n"), where + ".rate.n"),
                mean=f.optional_number(rates.get("m"), where + ".rate.m"),
                freq=f.optional_number(rates.get("f"), where + ".rate.f"),
            )
        )
    return tuple(out)
