"""The command tally: the audit sink that counts outcomes for /metrics."""

from __future__ import annotations

from gateway.commands import ACTIONS, CommandTally


def test_command_tally_counts_and_forwards() -> None:
    forwarded: list[dict[str, object]] = []
    tally = CommandTally(forwarded.append)
    known = ACTIONS[0]
    events = [
        {"meter": "main", "action": known, "outcome": "ok"},
        {"meter": "main", "action": known, "outcome": "ok"},
        {"meter": "main", "action": known, "outcome": "not_allowed"},
        {"meter": "main", "action": "no-such-action-1", "outcome": "unknown_action"},
        {"meter": "main", "action": "no-such-action-2", "outcome": "unknown_action"},
    ]
    for event in events:
        tally(event)
    assert forwarded == events
    assert tally.counts == {
        ("main", known, "ok"): 2,
        ("main", known, "not_allowed"): 1,
        ("main", "other", "unknown_action"): 2,  # strangers cannot grow the label set
    }


def test_command_tally_without_forward() -> None:
    tally = CommandTally()
    assert tally({"meter": "m", "action": "x", "outcome": "invalid"}) is None
    assert sum(tally.counts.values()) == 1
