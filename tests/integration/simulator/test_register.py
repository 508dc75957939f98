"""/api/register of the simulated meter over real HTTP, against its value functions.

The meter's clock is injected: T = 1_700_000_000 (2023-11-14 22:13:20 UTC) is the newest
stored second, the 1-second level holds 120 rows (T-119 .. T), minute rows lie below.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.simulator import SimMeter
from tests.support.simulator import SIM_PASSWORD, ManualClock, served_client

pytestmark = pytest.mark.integration

T = 1_700_000_000
PHYSICAL = ["Grid", "Solar+", "Panel A/B", "Amps #1", "Temp Büro", "Voltage L1", "Frequency",
            "Reactive", "Apparent"]


@pytest.fixture
def meter() -> SimMeter:
    return SimMeter(password=SIM_PASSWORD, clock=ManualClock(T + 0.25), fine_history_s=120)


@pytest.fixture
async def client(meter: SimMeter) -> AsyncIterator[httpx.AsyncClient]:
    async with served_client(meter) as c:
        yield c


async def get(client: httpx.AsyncClient, query: str | dict[str, str]) -> Any:
    """``query`` as a string goes on the wire as written; a dict is percent-encoded."""
    if isinstance(query, str):
        reply = await client.get("/register?" + query)
    else:
        reply = await client.get("/register", params=query)
    assert reply.status_code == 200
    return reply.json()


def rel(meter: SimMeter, names: list[str], t: int) -> list[str]:
    """Row values as the spec defines them: raw accumulator minus its value at the epoch."""
    return [str(meter.raw(n, t) - meter.raw(n, meter.epoch)) for n in names]


async def test_registers_and_rates(client: httpx.AsyncClient, meter: SimMeter) -> None:
    body = await get(client, "rate")
    assert int(float(body["ts"])) == T
    regs = body["registers"]
    assert [r["name"] for r in regs] == PHYSICAL  # virtual ones are left out
    assert [r["idx"] for r in regs] == sorted(r["idx"] for r in regs)
    for r in regs:
        assert r["rate"] == meter.rate(r["name"], T)
        assert r["did"] == meter.register(r["name"]).did != r["idx"]
        assert r["type"] == meter.register(r["name"]).type_code
    assert "ranges" not in body
    assert await get(client, "reg=none") == {"ts": body["ts"]}


async def test_now_row_relative_and_raw(client: httpx.AsyncClient, meter: SimMeter) -> None:
    body = await get(client, "time=now")
    assert body["ranges"] == [{"ts": str(T), "delta": 1, "rows": [rel(meter, PHYSICAL, T)]}]
    raw = await get(client, "time=now&raw")
    assert raw["ranges"][0]["rows"] == [[str(meter.raw(n, T)) for n in PHYSICAL]]
    at_epoch = await get(client, "time=epoch")
    assert at_epoch["ranges"][0]["rows"] == [["0"] * len(PHYSICAL)]


async def test_virtual_modes(client: httpx.AsyncClient, meter: SimMeter) -> None:
    formula = await get(client, "virtual=formula&reg=0:5&time=now")
    regs = formula["registers"]
    assert regs[:2] == [
        {"name": "use", "type": "P", "idx": 0, "formula": '+"Grid"+"Solar+"'},
        {"name": "gen", "type": "P", "idx": 1, "formula": '+"Solar+"'},
    ]
    assert formula["ranges"][0]["rows"] == [rel(meter, ["Grid", "Solar+"], T)]
    value = await get(client, "virtual=value&reg=0:5&time=now&rate")
    assert [r["name"] for r in value["registers"]] == ["use", "gen", "Grid", "Solar+"]
    row = value["ranges"][0]["rows"][0]
    assert int(row[0]) == int(row[2]) + int(row[3])  # use = Grid + Solar+
    assert int(row[1]) == int(row[3])
    assert value["registers"][0]["rate"] == pytest.approx(
        meter.rate("Grid", T) + meter.rate("Solar+", T))


@pytest.mark.parametrize(
    ("reg", "names"),
    [
        ("3+9", ["Grid", "Temp Büro"]),
        ("all-0:7", ["Amps #1", "Temp Büro", "Voltage L1", "Frequency", "Reactive", "Apparent"]),
        ("none+14", ["Reactive"]),
        ("3:6-5", ["Grid", "Panel A/B"]),
    ],
)
async def test_reg_selection(client: httpx.AsyncClient, meter: SimMeter, reg: str,
                             names: list[str]) -> None:
    body = await get(client, {"reg": reg, "time": "now"})
    assert [r["name"] for r in body["registers"]] == names
    assert body["ranges"][0]["rows"] == [rel(meter, names, T)]
    literal = await get(client, f"reg={reg}&time=now")  # a literal + is the WebAPI's +
    assert literal == body


async def test_range_across_granularity(client: httpx.AsyncClient, meter: SimMeter) -> None:
    body = await get(client, "reg=3&time=now-200:1:now")
    fine, coarse = body["ranges"]
    assert (fine["ts"], fine["delta"], len(fine["rows"])) == (str(T), 1, 120)
    assert fine["rows"] == [rel(meter, ["Grid"], T - i) for i in range(120)]
    # T-120 .. T-200 round down to the minute rows 1699999860 and 1699999800
    assert coarse == {"ts": "1699999860", "delta": 60,
                      "rows": [rel(meter, ["Grid"], 1_699_999_860),
                               rel(meter, ["Grid"], 1_699_999_800)]}


async def test_rounding_delta_and_max_rows(client: httpx.AsyncClient, meter: SimMeter) -> None:
    down = await get(client, "reg=3&time=now-150")
    up = await get(client, "reg=3&time=%2Bnow-150")
    assert down["ranges"][0]["ts"] == "1699999800"
    assert up["ranges"][0]["ts"] == "1699999860"
    delta = await get(client, "reg=3&time=now-3:1:now&delta")
    rows = [int(r[0]) for r in delta["ranges"][0]["rows"]]
    absolute = [int(v[0]) for v in (rel(meter, ["Grid"], T - i) for i in range(4))]
    assert rows[0] == absolute[0]
    assert rows[1:] == [absolute[i] - absolute[i - 1] for i in range(1, 4)]
    capped = await get(client, "reg=3&time=now-100:1:now,epoch&max-rows=5")
    assert [len(r["rows"]) for r in capped["ranges"]] == [5]
    two = await get(client, "reg=3&time=now,now-60")
    assert [r["ts"] for r in two["ranges"]] == [str(T), str(T - 60)]


async def test_start_of_day_in_the_meter_zone(client: httpx.AsyncClient) -> None:
    utc_midnight = int(dt.datetime(2023, 11, 14, tzinfo=dt.UTC).timestamp())
    assert (await get(client, "reg=3&time=sod"))["ranges"][0]["ts"] == str(utc_midnight)
    etag = (await client.get("/config/time/zone")).headers["etag"]
    put = await client.put("/config/time/zone", json="EST5EDT,M3.2.0,M11.1.0",
                           headers={"If-Match": etag})
    assert put.json() == {"status": "OK"}
    ny = zoneinfo.ZoneInfo("America/New_York")
    ny_midnight = int(dt.datetime(2023, 11, 14, tzinfo=ny).timestamp())
    assert (await get(client, "reg=3&time=sod"))["ranges"][0]["ts"] == str(ny_midnight)
    hour = await get(client, "reg=3&time=soh-1h:15M:soh")
    assert [r["ts"] for r in hour["ranges"]] == [str(T // 3600 * 3600)]
    assert len(hour["ranges"][0]["rows"]) == 5


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("bogus", "Invalid query option: bogus."),
        ("reg=abc", "Invalid register selection: reg='abc'."),
        ("time=yesterday", "Invalid time expression: 'yesterday'."),
        ("virtual=maybe", "Invalid virtual option: 'maybe'."),
        ("time=now&max-rows=0", "Invalid max-rows: '0'."),
        ("format=csv", "Only format=json is supported."),
    ],
)
async def test_bad_parameters_answer_200_with_error(client: httpx.AsyncClient, query: str,
                                                    error: str) -> None:
    reply = await client.get("/register?" + query)
    assert (reply.status_code, reply.json()) == (200, {"error": error})


async def test_register_set_changes_move_idx_not_values(client: httpx.AsyncClient,
                                                        meter: SimMeter) -> None:
    before = {r["name"]: r["idx"] for r in (await get(client, ""))["registers"]}
    meter.reorder_registers(["Apparent", "Reactive", "Frequency"])
    after = await get(client, "time=now")
    moved = {r["name"]: r["idx"] for r in after["registers"]}
    assert set(moved) == set(before)
    assert moved["Apparent"] < moved["Grid"]
    assert moved["Apparent"] != before["Apparent"]
    names = [r["name"] for r in after["registers"]]
    assert after["ranges"][0]["rows"] == [rel(meter, names, T)]
    meter.remove_registers(["Frequency"])
    assert "Frequency" not in [r["name"] for r in (await get(client, ""))["registers"]]
