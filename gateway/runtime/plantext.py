"""The text of ``egauge-gateway plan``: the plan itself (tables per meter) and ``--diff``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.config import Config
from gateway.runtime.plan import InstanceReport, MeterReport, entity_conflicts


def table(rows: Iterable[Sequence[object]], indent: str = "    ") -> list[str]:
    """Rows as left-aligned columns (the first row is the heading)."""
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    if not cells:
        return []
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(cells[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
            for row in cells]


def source_text(report: MeterReport) -> str:
    source = report.source
    if source.live:
        return f"read from the meter at {source.detail}"
    return f"from the pins ({source.detail})"


def plan_text(config: Config, instances: Sequence[InstanceReport],
              reports: Sequence[MeterReport]) -> str:
    lines: list[str] = []
    count = config.shard.count
    for inst in instances:
        where = f" (instance {inst.index} of {count})" if count > 1 else ""
        outputs = [f"Modbus {inst.modbus_listen}" if inst.modbus_listen else "Modbus off",
                   f"HTTP {inst.http_listen}" if inst.http_listen else "HTTP off"]
        lines.append(f"gateway {inst.name}{where}: " + ", ".join(outputs))
        lines += table([("retained" if t.retained else "", t.topic, t.content)
                        for t in inst.topics], "  ")
        if inst.entity is not None:
            lines.append(f"  Home Assistant: {inst.entity.entity_id} "
                         f"(unique_id {inst.entity.unique_id})")
        lines.append("")
    for report in reports:
        lines += meter_lines(report, count)
    conflicts = entity_conflicts(reports)
    for entity_id, meters in sorted(conflicts.items()):
        lines.append(f"warning: {entity_id} is claimed by meters {', '.join(meters)}: Home "
                     "Assistant gives the second one another entity id")
    return "\n".join(lines).rstrip("\n") + "\n"


def meter_lines(report: MeterReport, count: int) -> list[str]:
    where = f", instance {report.instance}" if count > 1 else ""
    lines = [f"meter {report.meter}{where}: {source_text(report)}"]
    if not report.source.live and not report.registers:
        lines.append("  no pins yet: nothing is known about its registers")
    ident = report.source.identity
    if ident is not None:
        lines.append(f"  identity: serial {ident.serial}, model {ident.model}, firmware "
                     f"{ident.firmware}, hostname {ident.hostname}")
    new = set(report.changes.new)
    lines.append(f"  registers ({len(report.registers)}):")
    lines += table([("name", "type", "unit", "slug", "modbus", "")] + [
        (repr(r.name), r.type_code, r.unit, r.slug, r.slot_address,
         "new: not pinned yet" if r.name in new else "") for r in report.registers])
    if report.topics:
        lines.append("  MQTT topics:")
        lines += table([("retained" if t.retained else "-", t.topic, t.content)
                        for t in report.topics])
    if report.entities:
        lines.append("  Home Assistant entities:")
        lines += table([("entity id", "device class", "state class", "unit", "unique_id")] + [
            (e.entity_id, e.device_class or "-", e.state_class or "-", e.unit or "-",
             e.unique_id) for e in report.entities])
    unit = report.modbus
    if unit is not None:
        lines.append(f"  Modbus TCP unit {unit.unit_id} at {unit.listen}, map {unit.mapping}:")
        lines += table([("address", "count", "type", "order", "scale", "unit", "source",
                         "name")] + [
            (a.address, a.registers, a.type, a.word_order, f"{a.scale:g}", a.unit or "-",
             a.source, a.name) for a in unit.addresses])
    if report.history_topic:
        lines.append(f"  history: {report.history_topic}")
    if report.sparkplug:
        topic = report.sparkplug[0]["topic"]
        lines.append(f"  Sparkplug B device ({topic}):")
        lines += table([("alias", "metric", "datatype", "unit")] + [
            (m["alias"] if m["alias"] is not None else "new", m["name"], m["datatype"],
             _unit(m["properties"])) for m in report.sparkplug])
    if report.changes.any:
        lines.append("  differs from the pins (plan --diff):")
        lines += ["    " + line for line in change_lines(report)]
    lines.append("")
    return lines


def change_lines(report: MeterReport) -> list[str]:
    """One line per difference between the meter and its pins."""
    c = report.changes
    regs = {r.name: r for r in report.registers}
    entities: dict[str, str] = {}
    for e in report.entities:
        if e.register is not None:
            entities.setdefault(e.register, e.entity_id)
    topics = {t.content: t.topic for t in report.topics}
    out = []
    if c.first_run:
        out.append(f"no slug pins yet: the next start pins {len(c.new)} names, each with the "
                   "slug it has always had")
    for name in () if c.first_run else c.new:
        reg = regs.get(name)
        bits = [f"slug {report.slugs.get(name)}"]
        topic = next((t for k, t in topics.items() if k.startswith(f"rate of {name!r}")), None)
        if topic:
            bits.append(f"topic {topic}")
        if name in entities:
            bits.append(entities[name])
        if reg is not None and reg.slot_address is not None and name in c.modbus_new:
            bits.append(f"Modbus {reg.slot_address}")
        out.append(f"new      {name!r}: " + ", ".join(bits))
    for name in c.gone:
        out.append(f"gone     {name!r}: keeps slug {report.slugs.get(name) or '(pinned)'} and "
                   "its Modbus address (reading NaN); its topics and entities are cleared")
    for x in c.changed:
        if x.renamed:
            out.append(f"renamed  {x.old_name!r} -> {x.new_name!r} (same idx and did): the "
                       f"values move from the identities of {x.old_name!r} to those of "
                       f"{x.new_name!r}")
        else:
            out.append(f"retyped  {x.new_name!r}: {x.old_type} -> {x.new_type} (unit, device "
                       "class and Modbus unit follow the new type)")
    for name in c.modbus_new:
        if name not in c.new:
            reg = regs.get(name)
            where = f" at {reg.slot_address}" if reg and reg.slot_address is not None else ""
            out.append(f"modbus   {name!r}: gets a Modbus slot{where}")
    for name in c.modbus_dropped:
        out.append(f"moved    {name!r}: its pinned Modbus slot overlaps a point of the map: "
                   "not served")
    return out


def diff_text(reports: Sequence[MeterReport]) -> str:
    lines = []
    for report in reports:
        if not report.source.live:
            lines.append(f"{report.meter}: cannot compare: {report.source.detail}")
            continue
        found = change_lines(report)
        if not found:
            lines.append(f"{report.meter}: no changes ({source_text(report)})")
            continue
        lines.append(f"{report.meter}: differs from the pins ({source_text(report)})")
        lines += ["  " + line for line in found]
    return "\n".join(lines) + "\n"


def _unit(properties: object) -> str:
    unit = properties.get("engUnit") if isinstance(properties, dict) else None
    return str(unit) if unit else "-"
