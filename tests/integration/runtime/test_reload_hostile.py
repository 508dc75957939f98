"""A configuration reload (what SIGHUP does) with a hostile file: refused with its problem,
the running configuration kept, and the event loop turning all the while -- the file is read
and checked off the loop, so even the largest file it may be does not stop the polls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from gateway.config import load_config
from gateway.config.bounds import MAX_FILE_BYTES
from gateway.runtime import App
from gateway.simulator import SimMeter, SimServer
from tests.support.simulator import SIM_PASSWORD
from tests.support.waiting import LoopTurns, async_wait_until

pytestmark = pytest.mark.integration

BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{b}' if b else 'x'] * 9)}]\n"
               for a, b in zip("abcdefghi", [None, *"abcdefgh"], strict=True)) + "meters: *i\n"
HOSTILE = {
    "a_million_values": "meters: [" + ",".join(["1"] * (MAX_FILE_BYTES // 2 - 8)) + "]\n",
    "alias_bomb": BOMB,
    "deep_nesting": "meters: " + "[" * 50_000,
    "not_text": "meters: [{id: \"\\udc80\"}]\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_a_hostile_file_is_refused_while_the_loop_keeps_turning(
        tmp_path: Path, sim_server: SimServer, sim_meter: SimMeter, name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_PW", SIM_PASSWORD)
    path = tmp_path / "gateway.yaml"
    path.write_text(f"""
gateway: {{id: reload, state_dir: "{tmp_path / 'state'}", shutdown_timeout_s: 5}}
meters:
  - {{id: main, url: "{sim_server.url_for(sim_meter)}", username: owner,
     password: "${{SIM_PW}}", poll_interval_s: 0.25}}
mqtt: {{enabled: false}}
modbus: {{enabled: false}}
http: {{enabled: false}}
""")
    app = App(load_config(path))
    task = asyncio.create_task(app.run(), name="app")
    turns = await LoopTurns(0.01).start()
    try:
        await async_wait_until(lambda: app.pollers and app.pollers["main"].stats.online,
                               what="the meter online")
        stats = app.pollers["main"].stats
        skipped = stats.polls_skipped
        path.write_text(HOSTILE[name], encoding="utf-8", errors="surrogatepass")
        before = turns.count
        with structlog.testing.capture_logs() as logs:
            assert await app.reload() is False
        refused = [e for e in logs if e["event"] == "config_reload_refused"]
        assert len(refused) == 1
        assert refused[0]["problems"][0].startswith(f"{path}:")
        if name == "a_million_values":  # seconds of parsing: the loop turned meanwhile
            assert turns.count > before + 10
        assert app.config.meters[0].id == "main"  # the running configuration kept
        polls = stats.polls_ok
        await async_wait_until(lambda: stats.polls_ok > polls + 2, what="polls going on")
        assert stats.polls_skipped == skipped
    finally:
        turns.stop()
        app.request_stop()
        assert await asyncio.wait_for(task, 15) == 0
