"""The benchmark's MQTT subscriber, in a process of its own.

    python bench/subscriber.py --port P --filter 'bench/x/+/state' --expect N --out FILE

Records, for every message on ``--filter``, the wall-clock time it arrived, the meter (the
topic level before ``state``), the meter timestamp ``ts`` of the payload (the first
``"ts"`` member: the gateway's state JSON and a raw ``/register`` reply both start with it)
and the gateway's ``age`` that follows it (so ``ts + age`` is when the gateway built it).
Prints ``ready`` once subscribed and ``all`` once ``--expect`` meters were heard from. Stops
at the end of stdin and writes everything to ``--out`` as JSON.
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

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.arrivals: list[tuple[float, str, float, float | None]] = []
        self.meters: set[str] = set()
        self.unparsed = 0
        self.subscribed = threading.Event()
        self.everyone = threading.Event()

    def on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.time()
        if msg.retain:  # a retained message from before this subscriber started
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
    args = parser.parse_args()

    rec = Recorder(args.expect)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{time.time_ns()}")
    client.on_message = rec.on_message
    client.on_subscribe = lambda *_a: rec.subscribed.set()
    client.connect(args.host, args.port, keepalive=60)
    client.subscribe(args.filter, 0)
    client.loop_start()
    if not rec.subscribed.wait(10):
        print("no SUBACK from the broker", file=sys.stderr)
        return 1
    print("ready", flush=True)
    threading.Thread(target=_announce_everyone, args=(rec,), daemon=True).start()
    sys.stdin.read()  # until the benchmark closes our stdin
    client.disconnect()
    client.loop_stop()
    data = {"arrivals": rec.arrivals, "unparsed": rec.unparsed}
    Path(args.out).write_text(json.dumps(data))
    return 0


def _announce_everyone(rec: Recorder) -> None:
    rec.everyone.wait()
    print("all", flush=True)


if __name__ == "__main__":
    sys.exit(main())
