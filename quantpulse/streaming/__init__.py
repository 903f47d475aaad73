"""Live quotes: one hub per worker (``hub.py``) and the fleet's record of open streams
(``registry.py``). Transports (Server-Sent Events, WebSocket) live in the HTTP layer,
``api/streams.py``; nothing here knows HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from quantpulse.streaming.hub import QuoteHub
from quantpulse.streaming.registry import StreamRegistry


@dataclass(frozen=True)
class LiveQuotes:
    """What the transports need: the worker's hub, the fleet's registry and the limits."""

    hub: QuoteHub
    registry: StreamRegistry
    heartbeat: float
    max_per_client: int
