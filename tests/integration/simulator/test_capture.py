"""/api/capture of the simulated meter over real HTTP: channel info, the arm/progress/full
handshake, the waveform (frequency, amplitude, phase), triggers, a busy interface, reset."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.simulator import SimMeter
from tests.support.simulator import SIM_PASSWORD, ManualClock, served_client

pytestmark = pytest.mark.integration

T = 1_700_000_000 + 13 * 3600  # mid-day: every CT carries current


@pytest.fixture
def meter() -> SimMeter:
    return SimMeter(password=SIM_PASSWORD, clock=ManualClock(T + 0.25))


@pytest.fixture
async def client(meter: SimMeter) -> AsyncIterator[httpx.AsyncClient]:
    async with served_client(meter) as c:
        yield c


async def get(client: httpx.AsyncClient, query: str) -> Any:
    reply = await client.get("/capture?" + query)
    assert reply.status_code == 200
    return reply.json()


Samples = list[tuple[float, float]]


def channels_of(full: dict[str, Any], names: dict[int, str]) -> dict[str, Samples]:
    """Each channel's ``(seconds after the first sample, value)`` pairs, read the way §8
    describes the reply: ``t`` counts ticks since the previous entry, values cycle through
    the channels of ``ch_mask`` in ascending order."""
    mask = full["ch_mask"][0] | full["ch_mask"][1] << 32
    order = [names[ch] for ch in range(64) if mask >> ch & 1]
    out: dict[str, Samples] = {n: [] for n in order}
    ticks, k = 0, 0
    for i, entry in enumerate(full["r"]):
        ticks += entry["t"] if i else 0
        for value in entry["d"]:
            out[order[k % len(order)]].append((ticks / full["ts_freq"], value))
            k += 1
    return out


def rising_crossings(samples: Samples) -> list[float]:
    found = []
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        if v0 < 0 <= v1:
            found.append(t0 + (t1 - t0) * -v0 / (v1 - v0))
    return found


async def capture(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    armed = await get(client, query)
    assert armed["state"] == "armed"
    assert isinstance(armed["cookie"], int)
    progress = await get(client, f"n={armed['cookie']}")
    assert progress["state"] == "capturing"
    assert 0 < progress["count"] < progress["max_count"]
    full = await get(client, f"n={armed['cookie']}")
    assert full["state"] == "full"
    return full


async def test_channel_info(client: httpx.AsyncClient) -> None:
    info = await get(client, "i")
    assert info == {"channels": {"0": {"name": "L1", "unit": "V"}, "1": {"name": "L2", "unit": "V"},
                                 "4": {"name": "S1", "unit": "A"}, "5": {"name": "S2", "unit": "A"},
                                 "6": {"name": "S3", "unit": "A"}, "7": {"name": "S4", "unit": "A"},
                                 "8": {"name": "S5", "unit": "A"}}}


async def test_waveform_frequency_amplitude_and_phase(client: httpx.AsyncClient,
                                                      meter: SimMeter) -> None:
    full = await capture(client, "n&d=0.1&c=0&c=4")
    assert full["ts_freq"] == 1_000_000
    assert full["ch_mask"] == [1 | 1 << 4, 0]
    assert float(full["first_sample"]) == pytest.approx(T + 0.25, abs=1e-6)
    assert len(full["r"]) == 800  # 0.1 s at 8000 samples per second
    waves = channels_of(full, {0: "L1", 4: "S1"})
    line_hz = meter.local_rate("L1", T, "f")
    for name in ("L1", "S1"):
        samples = waves[name]
        ups = rising_crossings(samples)
        assert len(ups) >= 5
        assert (len(ups) - 1) / (ups[-1] - ups[0]) == pytest.approx(line_hz, abs=0.01)
        cycles = [v for t, v in samples if ups[0] <= t < ups[-1]]
        rms = math.sqrt(sum(v * v for v in cycles) / len(cycles))
        assert rms == pytest.approx(meter.local_rate(name, T), rel=0.005)
    assert math.sqrt(2) * meter.local_rate("L1", T) == pytest.approx(170, abs=3)
    assert 1 < meter.local_rate("S1", T) < 20
    # the load current lags its line by the power factor's angle (0.95: 18.2 degrees)
    l1, s1 = rising_crossings(waves["L1"])[0], rising_crossings(waves["S1"])[0]
    lag = ((s1 - l1) * line_hz) % 1.0 * 360
    assert lag == pytest.approx(math.degrees(math.acos(0.95)), abs=1.0)


async def test_trigger_with_pretrigger_and_the_progress_only_query(
        client: httpx.AsyncClient) -> None:
    armed = await get(client, "n&d=0.05&c=0&C=0&M=rise&L=0&p=0.002&T=100")
    cookie = armed["cookie"]
    assert await get(client, f"q&n={cookie}") == {"state": "capturing", "count": 200,
                                                  "max_count": 400}
    assert await get(client, f"q&n={cookie}") == {"state": "full", "count": 400,
                                                  "max_count": 400}
    full = await get(client, f"n={cookie}")
    marked = [i for i, e in enumerate(full["r"]) if e.get("trigger")]
    assert marked == [16]  # 2 ms of samples at 125 us precede the trigger
    values = [e["d"][0] for e in full["r"]]
    assert values[15] < 0 <= values[16]  # a rising edge through level 0


async def test_a_trigger_that_never_comes(client: httpx.AsyncClient, meter: SimMeter) -> None:
    timed = await get(client, "n&d=0.01&c=0&C=0&M=gt&L=1000&T=50")
    await get(client, f"n={timed['cookie']}")
    full = await get(client, f"n={timed['cookie']}")
    assert float(full["first_sample"]) == pytest.approx(T + 0.25 + 0.05, abs=1e-6)
    assert not any(e.get("trigger") for e in full["r"])  # fired by the timeout
    waiting = await get(client, "n&C=0&M=gt&L=1000")  # no timeout: stays armed
    assert await get(client, f"n={waiting['cookie']}") == {"state": "armed"}
    assert meter.capturer.busy()


async def test_a_second_capture_finds_the_interface_busy_until_reset(
        client: httpx.AsyncClient) -> None:
    first = await get(client, "n&C=0&M=gt&L=1000")
    busy = await get(client, "n&d=0.01")
    assert busy["error"].startswith("Capture interface is busy")
    assert await get(client, "R") == {"state": "available"}
    assert await get(client, f"n={first['cookie']}") == {"state": "available"}
    full = await capture(client, "n&d=0.01&c=1")
    assert full["ch_mask"] == [2, 0]
    again = await get(client, "n&d=0.01")  # a full capture no longer holds the interface
    assert again["state"] == "armed"
    assert again["cookie"] != first["cookie"]


async def test_raw_samples_and_bad_queries(client: httpx.AsyncClient) -> None:
    armed = await get(client, "n&d=0.01&c=4&r")
    await get(client, f"n={armed['cookie']}")
    full = await get(client, f"n={armed['cookie']}")
    assert all(isinstance(e["d"][0], int) for e in full["r"])  # ADC counts, mA here
    for query, error in (("n&c=3", "Invalid channel: '3'."),
                         ("n&M=up&C=0", "Invalid trigger mode: 'up'."),
                         ("n&d=-1", "Invalid d: '-1'."),
                         ("n=abc", "Invalid cookie: 'abc'."),
                         ("bogus", "Invalid query option: bogus.")):
        assert await get(client, query) == {"error": error}
    assert (await client.post("/capture?n", json={})).status_code == 405
    client.headers.pop("Authorization")
    assert (await client.get("/capture?i")).status_code == 401
