"""The fleet benchmark in its smoke mode (3 meters, seconds, high ports), so it cannot rot.

Only that it runs end to end and that its figures are consistent is checked here; the real
numbers come from the full run (bench/RESULTS.md), never from a timed test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.simulator import default_registers
from tests.support.broker import require_binary

REPO = Path(__file__).resolve().parents[3]
METERS = 3  # the smoke mode's fleet


def test_the_benchmark_runs_every_subject_and_keeps_the_page_around_its_results(
        tmp_path: Path) -> None:
    require_binary("mosquitto")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nWritten by hand.\n\n<!-- fleet:begin -->\nold\n"
                       "<!-- fleet:end -->\n\nAlso by hand.\n", encoding="utf-8")
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "bench/fleet.py", "--smoke", "--json", str(out), "--results",
         str(results), "--work", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    figures = json.loads(out.read_text())
    phases = {p["subject"]: p for p in figures["phases"]}
    assert set(phases) == {"gateway", "floor", "peer", "workers"}
    for subject, p in phases.items():
        assert p["meters"] == METERS, subject
        assert p["polls"] >= METERS, f"{subject}: every meter polled at least once"
        assert p["registers"] == len(default_registers())
        assert p["peak_rss_mb"] > 0
        assert p["note"] == "", f"{subject} did not stop cleanly: {p['note']}"
    for subject in ("gateway", "floor", "workers"):  # those that publish to MQTT
        p = phases[subject]
        assert p["on_schedule"] > 0, subject
        p50, p99 = p["latency_ms"]
        assert 0 < p50 <= p99 < 1000 * 1.0, f"{subject}: within one poll interval"
    gateway = phases["gateway"]
    counted = gateway["counters"]
    assert counted["egauge_meter_polls"] > 0
    assert counted["egauge_meter_poll_errors"] == 0
    # one state per poll plus the register values: never fewer messages than polls
    assert counted["egauge_mqtt_published"] >= counted["egauge_meter_polls"]
    p50, p99 = gateway["inside_ms"]
    assert p50 <= p99 <= gateway["latency_ms"][1] + 1, "building the state precedes delivery"
    assert math.isfinite(gateway["cpu_s"])
    assert gateway["cpu_s"] >= 0

    page = results.read_text(encoding="utf-8")
    assert page.startswith("# Results\n\nWritten by hand.\n")
    assert page.rstrip().endswith("Also by hand.")
    assert "\nold\n" not in page
    assert "python bench/fleet.py --smoke" in page
    assert "Machine: cpu " in page
    for subject in ("gateway", "floor", "peer", "workers"):
        assert f"| {METERS} | {subject} |" in page
    # every request besides the polls is a kind of request, and the page lists them
    others = {s: p["other_requests"] for s, p in phases.items() if p["other_requests"]}
    for subject, kinds in others.items():
        assert all(k.split(" ", 1)[0] in ("GET", "POST", "PUT", "DELETE") for k in kinds)
        assert all(isinstance(n, int) and n > 0 for n in kinds.values())
        assert not {"GET /api/register?time=now", "GET /api/register?time=now-1:1:now"} & set(
            kinds), f"{subject}: a poll is not a request besides the polls"
        assert f"- {METERS} meters, {subject}: " in page
    if not others:
        assert "Requests besides the polls in the measured windows: none." in page
    assert f"| {METERS} | workers | " in page.split("against the floor and the peer")[1]

    # the workers subject is a supervisor with worker processes, measured as a whole
    workers = phases["workers"]
    assert workers["counters"]["egauge_meter_polls"] > 0, "its /metrics merges the workers'"
    assert workers["counters"]["egauge_meter_poll_errors"] == 0
    logs = (tmp_path / "work").glob(f"workers-{METERS}.log")
    log = next(logs).read_text()
    assert '"worker_started"' in log
    assert '"worker": 1' in log, "two worker processes ran"
    assert '"supervisor_stopped"' in log



def test_the_outage_benchmark_runs_and_finds_every_meter_second(tmp_path: Path) -> None:
    """A 3 s broker outage at 3 meters, with a queue too small to hold it: the gap comes back
    as history rows and no meter second is missing (a full run: bench/RESULTS.md)."""
    require_binary("mosquitto")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n<!-- outage:begin -->\nold\n<!-- outage:end -->\n",
                       encoding="utf-8")
    out = tmp_path / "outage.json"
    done = subprocess.run(
        [sys.executable, "bench/outage.py", "--smoke", "--gateway",
         '{"mqtt": {"queue_limit": 5}}', "--json", str(out), "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["meters"] == METERS
    assert figures["seconds_checked"] > 0
    assert figures["missing"] == 0
    assert figures["dropped"] > 0, "the queue overflowed: the outage needed the history"
    assert figures["history_rows"] > 0
    assert figures["drain_s"] is not None
    assert figures["exit"] == 0
    page = results.read_text(encoding="utf-8")
    assert "\nold\n" not in page
    assert "meter-seconds missing from state plus history | 0 |" in page


def test_the_merge_benchmark_runs_and_both_merges_agree() -> None:
    done = subprocess.run(
        [sys.executable, "bench/merge.py", "--meters", "5", "--workers", "3", "--repeat", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "same bytes: yes" in done.stdout
    assert "3 workers x 5 meters" in done.stdout


def test_the_side_by_side_benchmark_runs_two_revisions_over_the_same_windows(
        tmp_path: Path) -> None:
    figures, results, work = marked_run(tmp_path, "pair", "--a", "HEAD", "--b", ".",
                                        "--smoke", "--pin", "0")
    assert figures["meters"] == METERS
    assert figures["cpus"] == {"a": "0", "b": "0"}, "both gateways pinned to CPU 0"
    assert len(figures["windows"]) == 2
    for window in figures["windows"]:
        assert set(window) == {"a", "b"}
        assert all(math.isfinite(v) and v >= 0 for v in window.values())
        assert window["a"] > 0, "every window counted polls and CPU"
    ratios = sorted(w["b"] / w["a"] for w in figures["windows"])
    assert (figures["min_ratio"], figures["max_ratio"]) == (ratios[0], ratios[-1])
    assert figures["median_ratio"] == sum(ratios) / 2
    # a ran in the tree git exported, b in this checkout: each its own gateway, both polling
    assert (work / "tree-a" / "gateway" / "__main__.py").is_file()
    for side in ("a", "b"):
        assert '"gateway_started"' in (work / f"{side}.log").read_text(), side
    page = results.read_text(encoding="utf-8")
    assert "python bench/pair.py --a HEAD --b . --smoke --pin 0" in page
    assert "| 2 |" in page, "one row per window"


def test_the_heap_benchmark_measures_every_size_and_finds_the_gateways_own_objects(
        tmp_path: Path) -> None:
    figures, results, work = marked_run(tmp_path, "heap", "--smoke")
    sizes = figures["sizes"]
    assert [s["meters"] for s in sizes] == [2, 4]
    for s in sizes:
        assert s["polled"] == s["meters"], "every meter polled before the measurement"
        assert 0 < s["VmRSS"] <= s["VmHWM"]
        small = s["pymalloc"]  # the small-object allocator's live and free blocks, in all
        assert small["live"] > 0
        assert small["free"] >= 0
        assert small["live"] + small["free"] <= small["total"] <= s["VmRSS"]
    assert math.isfinite(figures["rss_kib_per_meter"])
    heap = figures["heap"]
    assert (heap["from"], heap["to"]) == (2, 4)
    assert heap["bytes_per_meter"] > 0, "two more meters hold more objects"
    # the objects per meter are the gateway's: its pollers, plans and images among them
    files = {r["where"] for r in heap["by_file"]}
    assert any(f.startswith("gateway/") for f in files), files
    assert all(r["code"] for r in heap["by_line"]), "each line's source shown"
    for kind in ("rss", "trace"):  # each size in a child of its own, untraced and traced
        assert (work / f"{kind}-4.json").is_file(), kind
    page = results.read_text(encoding="utf-8")
    assert "python bench/heap.py --smoke" in page
    assert "| 4 | 4 |" in page, "one row per size"


def marked_run(tmp_path: Path, bench: str, *args: str) -> tuple[dict[str, Any], Path, Path]:
    """Run ``bench/<bench>.py`` with ``args`` on a page whose ``<bench>`` markers hold an old
    section between text written by hand; check that only the section was replaced. The
    figures it wrote, the page and its work directory."""
    require_binary("mosquitto")
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Results\n\n<!-- {bench}:begin -->\nold\n<!-- {bench}:end -->\n\n"
                       "Kept.\n", encoding="utf-8")
    out, work = tmp_path / f"{bench}.json", tmp_path / "work"
    done = subprocess.run(
        [sys.executable, f"bench/{bench}.py", *args, "--json", str(out), "--results",
         str(results), "--work", str(work)],
        cwd=REPO, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    page = results.read_text(encoding="utf-8")
    assert "\nold\n" not in page
    assert page.rstrip().endswith("Kept.")
    return json.loads(out.read_text()), results, work
