"""What producers and sinks share: the hub (latest state per meter, fan-out to the outputs)
and the poller (one task per meter). Pollers never know the sinks."""

from gateway.core.histogram import Histogram
from gateway.core.hub import Hub, MeterState, Sink, Stage
from gateway.core.poller import Poller, PollStats, registers_of

__all__ = ["Histogram", "Hub", "MeterState", "PollStats", "Poller", "Sink", "Stage", "registers_of"]
