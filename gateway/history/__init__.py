"""Gap-free history: gaps in what the broker has taken, filled from the meter's database.

Modules: ``coverage`` (which meter seconds are on the broker), ``backfill`` (one meter's
requests behind live polling), ``rows`` (stored rows as published values), ``watermarks``
(the state file), ``service`` (the hub sink and service that owns every meter's backfill and
writes the watermarks)."""

from gateway.history.backfill import Annotate, HistoryOutput, HistorySource, Lane
from gateway.history.rows import HistoryRow
from gateway.history.service import STATE_FILE, History

__all__ = ["STATE_FILE", "Annotate", "History", "HistoryOutput", "HistoryRow", "HistorySource",
           "Lane"]
