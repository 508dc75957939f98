"""Request -> reply for one simulated meter: auth gate, services, faults, call recording.

HTTP statuses: 401 with ``{rlm, nnc, error: "Authentication required."}`` for a missing,
invalid, expired or revoked token and for a missing privilege; 400 for a malformed login
body; 412 ``{"error": "Precondition failed."}`` for a stale ``If-Match``; 404 for an unknown
service; 405 for a method a service does not take; 500 only as an injected fault.
Everything else that goes wrong is HTTP 200 with ``{"error": ...}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from gateway.secret import MASK, mask_text, masked_at
from gateway.simulator import commands, services, tree
from gateway.simulator.recorder import CallRecord
from gateway.simulator.register_query import register_reply
from gateway.simulator.reply import QueryError, Reply, encode, error_reply, json_reply, status_ok
from gateway.simulator.system import system_tree
from gateway.simulator.tree import Json
from gateway.support import Request

if TYPE_CHECKING:
    from gateway.simulator.meter import SimMeter

log = structlog.get_logger(__name__)

AUTH_REQUIRED = "Authentication required."
PRECONDITION_FAILED = "Precondition failed."
_INTERNAL = Reply(500, b"Internal Server Error", "text/plain")
_NEEDS = {"cmd": "save", "ctrl": "ctrl", "log": "save"}
_SAVE_TO_WRITE = frozenset({"config", "ctid", "lua"})  # GET is open, other methods need save


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a request: send ``reply`` (after ``delay_s``), or ``hang`` /
    ``reset`` without an answer."""

    action: str
    reply: Reply | None = None
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class InvalidJson:
    """A request body that is not JSON (recorded as its text)."""

    text: str


def _body(req: Request) -> Json:
    if not req.body:
        return None
    try:
        return json.loads(req.body)
    except ValueError:
        return InvalidJson(req.body.decode("utf-8", "replace"))


def respond(meter: SimMeter, req: Request) -> Outcome:
    """Answer one WebAPI request, recording it and applying the meter's faults."""
    arrived = meter.now()
    bearer = req.headers.get("authorization", "")
    token = bearer[7:].strip() if bearer[:7].lower() == "bearer " else ""
    claims = meter.authority.claims(token) if token else None
    body = _body(req)
    faults = meter.faults
    reply: Reply | None = None
    if faults.take("hang"):
        action = "hang"
    elif faults.take("reset"):
        action = "reset"
    elif faults.fails_500(meter.rng):
        action, reply = "reply", _INTERNAL
    else:
        action = "reply"
        try:
            reply = handle(meter, req, claims, body)
        except QueryError as exc:
            reply = error_reply(str(exc), exc.status)
        except Exception:
            log.exception("sim_request_failed", meter=meter.serial, path=req.path)
            reply = _INTERNAL
        if reply.status == 200 and reply.content_type == "application/json" and faults.take(
                "broken_json"):
            reply = Reply(200, reply.body[: max(1, len(reply.body) // 2)], headers=reply.headers)
    meter.recorder.add(CallRecord(req.method, req.path, req.query, _shown(req, body), arrived,
                                  claims is not None, reply.status if reply else 0))
    return Outcome(action, reply, faults.latency_s)


def _shown(req: Request, body: Json) -> Json:
    """The body as recorded: a body sent to a secret-named path all masked, secret-looking
    members at any depth masked (:func:`gateway.secret.masked_at`), invalid JSON as its text
    (all of it masked for a login)."""
    if isinstance(body, InvalidJson):
        return MASK if req.path == "/api/auth/login" else mask_text(body.text)
    return masked_at(req.path, body)


def unauthorized(meter: SimMeter) -> Reply:
    return json_reply({"rlm": meter.realm, "nnc": meter.authority.nonce(),
                       "error": AUTH_REQUIRED}, 401)


def handle(meter: SimMeter, req: Request, claims: dict[str, Json] | None,
           body: Json) -> Reply:
    if not req.path.startswith("/api/"):
        return error_reply("Not Found.", 404)
    path = tree.segments(req.path[4:])
    service = path[0] if path else ""
    if isinstance(body, InvalidJson) and service != "auth":
        if claims is None:
            return unauthorized(meter)
        raise QueryError("Invalid JSON body.")
    if service == "auth":
        return _auth(meter, req, path[1:], claims, body)
    if claims is None:
        return unauthorized(meter)
    rights = meter.rights_of(str(claims.get("usr")))
    needed = _NEEDS.get(service) or ("save" if service in _SAVE_TO_WRITE
                                      and req.method != "GET" else None)
    if needed is not None and needed not in rights:
        return unauthorized(meter)
    params = dict(req.query)
    if service in ("register", "local") and len(path) == 1:
        if req.method != "GET":
            return error_reply("Method not allowed.", 405)
        return _data(meter, service, req)
    if service == "sys":
        if req.method != "GET":
            return error_reply("Method not allowed.", 405)
        return json_reply({"result": tree.shape(tree.lookup(_sys(meter), path[1:]), params)})
    if service == "config":
        return _config(meter, req, path[1:], params, body)
    if service == "cmd" and len(path) == 2:
        if req.method != "POST":
            return error_reply("Method not allowed.", 405)
        return commands.command(meter, path[1], body)
    if service == "ctrl":
        return commands.ctrl(meter, req.method, path[1:], params, body)
    if service in services.SERVICES:
        return services.handle(meter, req, service, path[1:], body)
    return error_reply("Not Found.", 404)


def _auth(meter: SimMeter, req: Request, path: list[str], claims: dict[str, Json] | None,
          body: Json) -> Reply:
    what = path[0] if len(path) == 1 else ""
    if what == "login" and req.method == "POST":
        status, reply = meter.authority.login(
            None if isinstance(body, InvalidJson) else body, req.tls, meter.ha1_for)
        return json_reply(reply, status)
    if req.method != "GET" or what not in ("unauthorized", "logout", "rights"):
        return error_reply("Not Found.", 404)
    if claims is None:
        return unauthorized(meter)
    if what == "unauthorized":
        return json_reply({"status": "You are logged in."})
    if what == "logout":
        bearer = req.headers.get("authorization", "")
        meter.authority.revoke(bearer[7:].strip())
        return status_ok()
    usr = str(claims.get("usr"))
    return json_reply({"usr": usr, "rights": meter.rights_of(usr)})


def _data(meter: SimMeter, service: str, req: Request) -> Reply:
    """``/register`` and ``/local``, answered from a per-second cache."""
    t = meter.latest()
    ctid = meter.ctid.state
    key = (service, req.raw_query, t, meter.state_version, ctid)
    cached = meter.reply_cache.get(key)
    if cached is not None:
        return cached
    ts = meter.ts_text(t)
    if service == "register":
        value = register_reply(meter, meter.registers, req.query, ts, meter.time_context(t),
                               meter.database())
    else:
        value = meter.sensors.reply(req.query, t, ts, ctid)
    reply = Reply(200, encode(value))
    meter.reply_cache.put(key, t, reply)
    return reply


def _sys(meter: SimMeter) -> dict[str, Json]:
    return system_tree(serial=meter.serial, model=meter.model, now=meter.now(),
                       boot_time=meter.boot_time, boot_reason=meter.boot_reason,
                       user_boot=meter.user_boot, db=meter.database(),
                       ipv4=meter.config.get(["net", "ipv4"]), reboot_pending=False)


def _config(meter: SimMeter, req: Request, path: list[str], params: dict[str, str],
            body: Json) -> Reply:
    store = meter.config
    if req.method == "GET":
        value = tree.shape(store.get(path), params)
        return json_reply({"result": value}, headers=(("ETag", store.etag),))
    if req.method not in ("PUT", "POST", "DELETE"):
        return error_reply("Method not allowed.", 405)
    if not store.matches(req.headers.get("if-match")):
        return error_reply(PRECONDITION_FAILED, 412)
    if req.method != "DELETE" and not req.body:
        raise QueryError("Missing request body.")
    store.write(req.method, path, body)
    return json_reply({"status": "OK"}, headers=(("ETag", store.etag),))
