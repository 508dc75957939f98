"""MQTT topics and topic filters in the configuration (``mqtt.base_topic``,
``homeassistant.prefix``, ``mqtt.response_topics``): the typed reads and their checks."""

from __future__ import annotations

import re
from typing import Final

from gateway.config.schema import MISSING, Section, join

_TOPIC: Final = re.compile(r"[^/+#$\x00][^/+#\x00]*(/[^/+#\x00]+)*")


def topic(s: Section, key: str, default: str) -> str:
    """A topic (for publishing): no wildcards, empty levels, leading ``$`` or ``/``."""
    value = s.string(key, default)
    if not _TOPIC.fullmatch(value):
        message = "must be an MQTT topic without +, #, empty levels or a leading $ or /"
        return s.fail(key, message, value, default)
    return value


def topic_filters(s: Section, key: str) -> tuple[str, ...] | None:
    """A list of MQTT topic filters (``+`` a whole level, ``#`` only as the last level, no
    leading ``$``); absent or null: ``None`` (the default of the type)."""
    value = s.raw(key)
    if value is MISSING or value is None:
        return None
    if not isinstance(value, list):
        return s.fail(key, "must be a list of MQTT topic filters (an empty list: none)",
                      value, None)
    filters: list[str] = []
    for index, item in enumerate(value):
        path = join(s.at(key), index)
        text = s.ctx.expand(path, item) if isinstance(item, str) else item
        if text is MISSING:
            continue
        if not isinstance(text, str) or not is_topic_filter(text):
            s.ctx.problem(path, "must be an MQTT topic filter such as egauge/clients/# "
                          "(+ for one whole level, # only last, no leading $)", text)
        else:
            filters.append(str(text))
    return tuple(filters)


def is_topic_filter(text: str) -> bool:
    if not text or text.startswith("$") or "\x00" in text:
        return False
    try:
        if len(text.encode("utf-8")) > 65535:
            return False
    except UnicodeEncodeError:  # a lone surrogate
        return False
    levels = text.split("/")
    for position, level in enumerate(levels):
        if "#" in level and (level != "#" or position != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True
