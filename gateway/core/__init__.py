"""What producers and sinks share: the hub (latest state per meter, fan-out to the outputs),
the poller (one task per meter), the loop's lateness, and the catch-up budget that live
polling sets for the services reading the meters' databases behind it. Pollers never know
the sinks."""

from gateway.core.budget import Budget, Pace
from gateway.core.histogram import Histogram
from gateway.core.hub import Hub, MeterState, Sink, Stage
from gateway.core.lag import LoopLag
from gateway.core.poller import Poller, PollStats, registers_of

__all__ = ["Budget", "Histogram", "Hub", "LoopLag", "MeterState", "Pace", "PollStats", "Poller",
           "Sink", "Stage", "registers_of"]
