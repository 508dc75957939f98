"""The benchmark's MQTT subscriber, in a process of its own.

    python bench/subscriber.py --port P --filter 'bench/x/+/state' --expect N --out FILE

Records, for every message on ``--filter``, the wall-clock time it arrived, the meter (the
topic level before ``state``), the meter timestamp ``ts`` of the payload (the first
``"ts"`` member: the gateway's state JSON and a raw ``/register`` reply both start with it)
and the gateway's ``age`` that follows it (so ``ts + age`` is when the gateway built it).
Prints ``ready`` once subscribed and ``all`` once ``--expect`` meters were heard from. Stops
at the end of stdin and writes everything to ``--out`` as JSON.

``--history FILTER`` also records the rows of history messages (when they arrived, their
meter and each row's ``ts``); ``--session ID`` subscribes with that client id and a
persistent session at QoS 1, so that what is published while it reconnects (a broker
restart) waits for it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

_TS = re.compile(rb'"ts":"?([0-9.]+)')
_AGE = re.compile(rb'"age":([0-9.]+)')


class Recorder:
    """Collects arrivals on paho's network thread; parses as little as possible there."""

    def __init__(self, expect: int, history: str | None = None) -> None:
        self.expect = expect
        self.history_filter = history
        self.history: list[tuple[float, str, list[int]]] = []
        self.arrivals: list[tuple[float, str, float, float | None]] = []
        self.meters: set[str] = set()
        self.unparsed = 0
        self.subscribed = threading.Event()
        self.everyone = threading.Event()

    def on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.time()
        if msg.retain:  # a retained message from before this subscriber started
            return
        if self.history_filter and paho.topic_matches_sub(self.history_filter, msg.topic):
            data = json.loads(msg.payload)
            self.history.append((now, str(data["meter"]), [int(r["ts"]) for r in data["rows"]]))
            return
        found = _TS.search(msg.payload, 0, 200)
        if found is None:
            self.unparsed += 1
            return
        meter = msg.topic.rsplit("/", 2)[-2]
        age = _AGE.search(msg.payload, found.end(), found.end() + 40)
        self.arrivals.append((now, meter, float(found.group(1)),
                              float(age.group(1)) if age else None))
        if meter not in self.meters:
            self.meters.add(meter)
            if len(self.meters) >= self.expect:
                self.everyone.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--filter", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--history", default=None, metavar="FILTER")
    parser.add_argument("--session", default=None, metavar="ID")
    args = parser.parse_args()

    rec = Recorder(args.expect, args.history)
    persistent = args.session is not None
    client = paho.Client(CallbackAPIVersion.VERSION2,
                         client_id=args.session or f"bench-sub-{time.time_ns()}",
                         clean_session=not persistent)
    client.on_message = rec.on_message
    client.on_subscribe = lambda *_a: rec.subscribed.set()
    filters = [(args.filter, 1 if persistent else 0)]
    if args.history:
        filters.append((args.history, 1))
    client.on_connect = lambda c, *_a: c.subscribe(filters)
    client.reconnect_delay_set(1, 2)
    client.connect(args.host, args.port, keepalive=60)
    client.loop_start()
    if not rec.subscribed.wait(10):
        print("no SUBACK from the broker", file=sys.stderr)
        return 1
    print("ready", flush=True)
    threading.Thread(target=_announce_everyone, args=(rec,), daemon=True).start()
    sys.stdin.read()  # until the benchmark closes our stdin
    client.disconnect()
    client.loop_stop()
    data = {"arrivals": rec.arrivals, "unparsed": rec.unparsed, "history": rec.history}
    Path(args.out).write_text(json.dumps(data))
    return 0


def _announce_everyone(rec: Recorder) -> None:
    rec.everyone.wait()
    print("all", flush=True)


if __name__ == "__main__":
    sys.exit(main())
