"""The numbers of the state JSON: each value rounded as :func:`gateway.meter.quantized` says,
whatever the value and the type code (the plan rounds with digits it looked up once)."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import MeterConfig
from gateway.meter import quantized
from gateway.model import EnergyCount, Reading, RegisterInfo, RegisterValue
from gateway.mqtt import Topics
from gateway.mqtt.plan import MeterPlan
from gateway.secret import Secret

METER = MeterConfig("main", "http://egauge1.local", "owner", Secret("pw"))
CODES = ("P", "V", "I", "F", "T", "#", "#3", "d", "Qv", "$", "S", "var", "PQ", "Ee", "X?", "")
VALUES = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-(2**63), 2**63 - 1))


def expected(code: str, value: float | None, *, cumulative: bool = False) -> object:
    """What a JSON reader finds for ``value``: the quantized number, null where none is."""
    q = quantized(code, value, cumulative=cumulative)
    return None if q is None or not math.isfinite(q) else q


@settings(max_examples=300, deadline=None)
@given(code=st.sampled_from(CODES), rate=VALUES, cumulative=VALUES,
       imported=st.integers(0, 2**62), exported=st.integers(0, 2**62))
def test_every_number_is_the_quantized_value(code: str, rate: float | None,
                                             cumulative: float | None, imported: int,
                                             exported: int) -> None:
    plan = MeterPlan(METER, Topics("egauge", "homeassistant"))
    plan.set_registers((RegisterInfo("Plain", code, 0, 0), RegisterInfo("Counted", code, 1, 1)))
    counts = EnergyCount(imported, exported, 1700000000, 1 / 3.6e6, "kWh")
    values = (RegisterValue("Plain", code, "", rate, cumulative, ""),
              RegisterValue("Counted", code, "", rate, cumulative, "", None, counts))
    for _ in range(2):  # the second time from the digits the plan keeps
        state = json.loads(plan.state_json(Reading("main", 1700000000.5, values), 1700000001.0))
        for slug in ("plain", "counted"):
            entry = state["registers"][slug]
            assert entry["rate"] == expected(code, rate)
            assert type(entry["rate"]) is type(expected(code, rate))
            assert entry["cumulative"] == expected(code, cumulative, cumulative=True)
        counted = state["registers"]["counted"]
        assert counted["import"] == expected(code, counts.import_value, cumulative=True)
        assert counted["export"] == expected(code, counts.export_value, cumulative=True)
