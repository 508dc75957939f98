"""The status page at ``/``: the outputs, and per meter its own health, the age of its data,
its Modbus unit id, the registers seen renamed or retyped on the meter, its latest values
(rounded as their type says; a total only for registers whose time integral means something
-- energy, volume, ... -- none for volts, hertz or degrees; the import and export counters
where they exist) and its charts (recent power, the last capture; ``panels``). Plain HTML
and SVG (no scripts), every text escaped and masked by the secret vocabulary of
:mod:`gateway.secret`, refreshed every 5 s."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence

from gateway import __version__
from gateway.meter import type_code
from gateway.model import RegisterChange, RegisterValue
from gateway.observe.health import readiness
from gateway.observe.panels import STYLE, charts_html, fleet_summary, health_html, value_text
from gateway.observe.view import GatewayView, MeterStatus, OutputStatus
from gateway.secret import mask_text

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}.on{color:#070}
.off{color:#b00}.unk{color:#777}.warn{color:#a60}""" + STYLE


def e(value: object) -> str:
    """A text for the page: tokens masked (:func:`gateway.secret.mask_text`), HTML-escaped."""
    return html.escape(mask_text(str(value)), quote=True)


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:.10g}"


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "no data yet"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def render_status(view: GatewayView, now: float) -> bytes:
    ready = readiness(view, now)
    gateway_id = view.config.gateway.id
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta http-equiv="refresh" content="5">',
        f"<title>egauge-gateway {e(gateway_id)}</title><style>{_STYLE}</style>",
        f"</head><body><h1>egauge-gateway <small>{e(gateway_id)}</small></h1>",
        f"<p>version {e(__version__)} &middot; ",
        "<span class=on>ready</span>" if ready.ready else
        "<span class=off>not ready</span>: " + e("; ".join(ready.reasons)),
        " &middot; ", fleet_summary(meters := view.meters(charts=True), now),
        "</p>", _outputs(view.outputs()),
    ]
    unit_ids = view.config.modbus.enabled
    for meter in meters:
        parts.append(_meter(meter, now, unit_ids))
    parts.append("</body></html>")
    return "".join(parts).encode("utf-8")


def _outputs(rows: Sequence[OutputStatus]) -> str:
    if not rows:
        return "<p>No outputs enabled.</p>"
    body = "".join(f"<tr><td>{e(o.name)}</td><td>{e(o.address)}</td>"
                   f"<td class={'on' if o.up else 'off'}>{e(o.state)}</td></tr>" for o in rows)
    return ("<h2>Outputs</h2><table><tr><th>output</th><th>address</th><th>state</th></tr>"
            f"{body}</table>")


def _meter(meter: MeterStatus, now: float, unit_ids: bool = False) -> str:
    m, state, stats = meter.config, meter.state, meter.stats
    avail = state.availability
    reading = state.reading
    age = None if reading is None else max(0.0, now - reading.ts)
    ident = state.identity
    facts = [f"{e(m.url)}", health_html(meter, now), f"data age {e(age_text(age))}"]
    if unit_ids:
        facts.append(f"Modbus unit {m.modbus_unit_id}")
    if ident is not None:
        facts.append(f"{e(ident.model)} {e(ident.serial)}, firmware {e(ident.firmware)}")
    if stats is not None:
        facts.append(f"polls {stats.polls_ok} ok, {stats.polls_failed} failed")
        if stats.last_error and avail is not None and not avail.online:
            facts.append(f"last error: {e(stats.last_error)}")
    head = f"<h2>{e(m.id)}</h2><p>" + " &middot; ".join(facts) + "</p>" + _changes(meter)
    if reading is None:
        return head + charts_html(meter)
    rows = "".join(_register_row(v) for v in reading.registers)
    return (head + "<table><tr><th>register</th><th>rate</th><th>unit</th><th>cumulative</th>"
            f"<th>unit</th><th>import</th><th>export</th></tr>{rows}</table>"
            + charts_html(meter))


def _register_row(v: RegisterValue) -> str:
    """One register: its rate; its total and counters only where they mean something."""
    code = v.type_code
    cells = [f"<td>{e(v.name)}</td><td class=n>{e(value_text(code, v.rate))}</td>",
             f"<td>{e(v.unit)}</td>"]
    if type_code(code).integrable:
        cells.append(f"<td class=n>{e(value_text(code, v.cumulative, cumulative=True))}"
                     f"</td><td>{e(v.cumulative_unit)}</td>")
    else:
        cells.append("<td class=n>–</td><td></td>")
    energy = v.energy
    if energy is None:
        cells.append("<td class=n>–</td><td class=n>–</td>")
    else:
        for value in (energy.import_value, energy.export_value):
            cells.append(f"<td class=n>{e(value_text(code, value, cumulative=True))}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


def change_text(change: RegisterChange) -> str:
    """One register change in words: ``'Panel A/B' renamed to 'Panel AB'``, ``'Grid' retyped
    P -> V``."""
    parts = []
    if change.renamed:
        parts.append(f"{change.old_name!r} renamed to {change.new_name!r}")
    if change.retyped:
        who = "" if change.renamed else f"{change.new_name!r} "
        parts.append(f"{who}retyped {change.old_type or '?'} -> {change.new_type or '?'}")
    return ", ".join(parts)


def _changes(meter: MeterStatus) -> str:
    if not meter.register_changes:
        return ""
    items = "".join(
        f"<li>{e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(c.at)))}: "
        f"{e(change_text(c))}</li>" for c in meter.recent_changes)
    return (f"<p class=warn>register changes on the meter: {meter.register_changes} "
            "(addresses, topics and entities of the old names are kept; see the log event "
            f"register_changed)</p><ul>{items}</ul>")

