"""Where a password comes from: ``password``, ``password_file`` or ``password_credential``.

- ``password: ${EGAUGE_PASSWORD}`` (or a literal, refused in a world-readable file);
- ``password_file: PATH``, relative to the configuration file's directory;
- ``password_credential: NAME``, the file ``$CREDENTIALS_DIRECTORY/NAME`` that systemd's
  ``LoadCredential=`` provides.

A file's content loses one trailing newline (``\\n`` or ``\\r\\n``); nothing else is stripped.
"""

from __future__ import annotations

import re
from typing import Final

from gateway.config.files import read_regular
from gateway.config.schema import MISSING, Expanded, Section
from gateway.secret import Secret

KEYS: Final = ("password", "password_file", "password_credential")
_CREDENTIAL_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
MAX_PASSWORD_FILE: Final = 64 * 1024  # characters read of a password file (/dev/zero ends)


def password(section: Section, required: bool) -> Secret | None:
    """The password a section names, or ``None`` (absent, or a problem was recorded).

    A literal ``password`` (not from ``${...}``) is noted in ``ctx.plain_secrets``."""
    given = [key for key in KEYS if section.has(key)]
    if len(given) > 1:
        section.ctx.problem(section.at(given[1]), f"give only one of {', '.join(KEYS)}")
        return None
    if not given:
        if required:
            section.ctx.problem(section.at("password"),
                                f"required key missing (or {KEYS[1]} / {KEYS[2]})")
        return None
    key = given[0]
    value = section.raw(key)
    if value is MISSING:
        return None
    if key == "password":
        if not isinstance(value, str) or not value:
            what = "must be a non-empty string (quote it in YAML)"
            return section.fail(key, what, value, None, secret=True)
        if not isinstance(value, Expanded):
            section.ctx.plain_secrets.append(section.at(key))
        return Secret(str(value))
    if not isinstance(value, str) or not value:
        return section.fail(key, "must be a non-empty string", value, None)
    if key == "password_file":
        return _read(section, key, value, str(section.ctx.resolve(value)))
    directory = section.ctx.env.get("CREDENTIALS_DIRECTORY", "")
    if not directory:
        message = "$CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)"
        return section.fail(key, message, value, None)
    if not _CREDENTIAL_NAME.fullmatch(value):
        return section.fail(key, f"must match {_CREDENTIAL_NAME.pattern}", value, None)
    return _read(section, key, value, f"{directory}/{value}")


def _read(section: Section, key: str, value: str, path: str) -> Secret | None:
    most = 4 * MAX_PASSWORD_FILE  # bytes: UTF-8 takes at most four a character
    try:
        raw = read_regular(path, most + 1)
        text = "" if len(raw) > most else raw.decode("utf-8")
    except UnicodeDecodeError:
        return section.fail(key, f"{path} is not UTF-8 text", value, None)
    except ValueError:  # a NUL in the name (from the environment)
        return section.fail(key, "not a usable file name", value, None)
    except OSError as exc:
        return section.fail(key, f"cannot read {path}: {exc.strerror or exc}", value, None)
    if len(raw) > most or len(text) > MAX_PASSWORD_FILE:
        return section.fail(key, f"{path} is larger than {MAX_PASSWORD_FILE} characters",
                            value, None)
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            text = text[: -len(ending)]
            break
    if not text:
        return section.fail(key, f"{path} is empty", value, None)
    return Secret(text)
