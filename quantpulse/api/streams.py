"""Live quotes: ``GET /stock/stream`` (Server-Sent Events), ``GET /stock/ws`` (WebSocket) and the
``/live`` page, all fed by the worker's one ``QuoteHub`` (docs/api.md, "Live quotes").

Everything a client can get wrong is answered before the stream starts, as the usual JSON
error: a bad symbol list (400), a plain GET on the WebSocket route (400), a browser origin not
allowed (403), one stream too many for this client (429). Each open stream holds one slot in the
fleet-wide ``StreamRegistry``, given back when it ends however it ends.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from flask import Blueprint, Response, g, request
from simple_websocket import ConnectionClosed, Server
from wsproto.utilities import RemoteProtocolError

from quantpulse.api import components
from quantpulse.api.rendering import body
from quantpulse.api.request_log import answered
from quantpulse.errors import (
    BadRequest,
    Forbidden,
    QuantPulseError,
    ServiceUnavailable,
    TooManyStreams,
    error_body,
)
from quantpulse.service import MAX_BATCH_INSTRUMENTS, StockService
from quantpulse.streaming import LiveQuotes
from quantpulse.streaming.hub import QuoteHub, Subscriber, Update, label
from quantpulse.streaming.registry import Slot, StreamRegistry
from quantpulse.symbols import Instrument, parse_symbol

blp = Blueprint("streams", __name__)

SSE_RETRY_MS = 3000
MAX_MESSAGE = 4096  # bytes a WebSocket client message may have; more closes the socket (1009)
GOING_AWAY = 1001
TOO_SLOW = REVOKED = 1008  # policy violation: updates not read, or the stream's key revoked
KEY_CHECK = 1.0  # seconds between checks that a keyed stream's key is still good
SYMBOLS_HINT = "Send symbols=A,B (or symbols=A&symbols=B), at most 20 instruments."
LIVE_PAGE = resources.files("quantpulse.api").joinpath("live.html").read_bytes()


@blp.get("/stock/stream")
def sse() -> Response:
    parts = components()
    raw = [part for item in request.args.getlist("symbols") for part in item.split(",") if part.strip()]
    if not raw:
        raise BadRequest("No symbols given.", hint=SYMBOLS_HINT)
    watched = resolve(parts.service, raw, limit=MAX_BATCH_INSTRUMENTS)
    who = holder()
    stream = EventStream(
        parts.streams.hub,
        parts.streams.registry,
        open_slot(parts.streams, who),
        watched,
        who,
        sock=request.environ.get("gunicorn.socket"),
        heartbeat=parts.streams.heartbeat,
    )
    return Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@blp.get("/stock/ws")
@blp.get("/stock/ws", websocket=True)  # Werkzeug routes upgrades only to rules that say so
def websocket() -> Response:
    parts = components()
    if not _upgrading(request.headers) or "gunicorn.socket" not in request.environ:
        raise BadRequest(
            "This route speaks WebSocket; use GET /stock/stream for Server-Sent Events.",
            hint="Connect with a WebSocket client (Upgrade: websocket, Sec-WebSocket-Version: 13).",
        )
    check_origin(request.headers.get("Origin"), parts.service.settings.allowed_origins)
    who = holder()
    slot = open_slot(parts.streams, who)
    sock = request.environ["gunicorn.socket"]
    # No hang-up on a drop here: the session closes a slow socket with 1008 itself, and a send
    # stuck on it ends at the write bound.
    bounded_writes(sock, parts.streams.heartbeat)
    session = SocketSession(parts.service, parts.streams.hub, parts.streams.heartbeat, who)
    try:
        session.run({**request.environ, "gunicorn.socket": OneWriter(sock)})
    finally:
        parts.streams.registry.close(slot)
    return _SocketDone()


@blp.get("/live")
def live() -> Response:
    """A page that shows the quotes of ``?symbols=`` updating (plain HTML + EventSource)."""
    return Response(LIVE_PAGE, mimetype="text/html")


def bounded_writes(sock: socket.socket | None, heartbeat: float) -> Callable[[], None]:
    """A write to the client that cannot finish within two heartbeats means it stopped reading:
    the write fails and the stream ends. Returns what breaks a write stuck on that client now
    (for a stream the hub drops as too slow)."""
    if sock is None:  # a server that lends no socket (a test client)
        return lambda: None
    sock.settimeout(heartbeat * 2)

    def hang_up() -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    return hang_up


def _upgrading(headers: Any) -> bool:
    """A complete WebSocket upgrade request (RFC 6455, 4.1), checked before the handshake."""
    return (
        headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in headers.get("Connection", "").lower()
        and bool(headers.get("Sec-WebSocket-Key"))
        and headers.get("Sec-WebSocket-Version") == "13"
    )


class OneWriter:
    """gunicorn's socket for simple-websocket, whose ping greenlet and the session both write to
    it: one writer at a time (gevent refuses two), each frame written whole (``sendall``)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._writing = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._writing:
            self._sock.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def resolve(service: StockService, raw_symbols: list[str], *, limit: int) -> dict[Instrument, str]:
    """Each instrument once, with the first spelling that named it; a bad one is a 400."""
    watched: dict[Instrument, str] = {}
    for raw in raw_symbols:
        watched.setdefault(service.instrument(parse_symbol(raw)), raw)
    if len(watched) > limit:
        raise BadRequest(
            f"{len(watched)} instruments requested; at most {limit} per stream.", hint=SYMBOLS_HINT
        )
    return watched


def check_origin(origin: str | None, allowed: tuple[str, ...]) -> None:
    """A browser's page must come from an allowed origin; a client without one (a server, a
    script) is not a browser and may connect."""
    if origin is not None and "*" not in allowed and origin not in allowed:
        raise Forbidden(f"Origin {origin} may not open a WebSocket here.", hint="See ALLOWED_ORIGINS.")


@dataclass(frozen=True)
class Holder:
    """Who holds a stream: the name its slot counts under (its API key's id when it came with
    one, else its address), and whether that key is still good (checked every ``check_every``
    seconds: a revoked key's streams end within about a second)."""

    name: str
    alive: Callable[[], bool]
    check_every: float


def holder() -> Holder:
    principal = g.get("principal")
    keys = components().keys
    if principal is None or keys is None:
        return Holder(client_address(), lambda: True, math.inf)
    return Holder(f"key:{principal.key_id}", lambda: keys.live(principal.key_id), KEY_CHECK)


def open_slot(streams: LiveQuotes, who: Holder) -> Slot:
    if streams.hub.closing:
        raise ServiceUnavailable("This worker is shutting down; connect again.", retry_after=1)
    slot = streams.registry.open(who.name)
    if slot is None:
        raise TooManyStreams(
            f"This client already has {streams.max_per_client} live streams open.",
            hint="Close one, or watch several instruments on one stream.",
        )
    return slot


def client_address() -> str:
    """The client as the rate limiter sees it (after ``ProxyFix``)."""
    return request.remote_addr or "unknown"


def error_document(raw: str | None, error: QuantPulseError) -> dict[str, Any]:
    """``{"symbol": <as sent>, "status", "detail"}``: an instrument's error, on either transport."""
    return {"symbol": raw, "status": error.status, **error_body(error.title, error.message, error.hint)}


def quote_json(update: Update) -> str:
    """The quote body exactly as ``GET /stock/{symbol}`` would serve it now, on one line."""
    return body(update.outcome, "quote").decode().rstrip("\n")  # type: ignore[arg-type]


# ---- Server-Sent Events ---------------------------------------------------------------------


class EventStream:
    """The body of one SSE response. ``close`` (called by the server however the response ends,
    iterated or not) stops watching and frees the slot."""

    def __init__(
        self,
        hub: QuoteHub,
        registry: StreamRegistry,
        slot: Slot,
        watched: dict[Instrument, str],
        who: Holder,
        *,
        sock: socket.socket | None,
        heartbeat: float,
    ) -> None:
        """``sock``: the client's socket, when the server lends it (gunicorn does): writes are
        bounded (``bounded_writes``) and a client that hangs up is noticed at once, not at the
        next write."""
        self._hub = hub
        self._registry = registry
        self._slot = slot
        self._watched = watched
        self._who = who
        self._heartbeat = heartbeat
        self._socket = sock
        self._subscriber = Subscriber(on_drop=bounded_writes(sock, heartbeat))
        self._closed = False
        # The body is iterated after the request's hooks have run: its snapshot (a cold one is a
        # fill) is read in the request's context, so usage charges it to the stream's client.
        self._context = contextvars.copy_context()

    def __iter__(self) -> Iterator[bytes]:
        yield f"retry: {SSE_RETRY_MS}\n\n".encode()
        self._hub.open(self._subscriber)
        if self._socket is not None:
            threading.Thread(target=self._watch_hangup, name="sse-hangup", daemon=True).start()
        self._context.run(self._hub.subscribe, self._subscriber, list(self._watched))
        number, written = 0, time.monotonic()
        while not self._subscriber.closed and self._who.alive():
            updates = self._subscriber.take()
            for update in updates:
                number += 1
                yield self._event(number, update)
                written = time.monotonic()
            quiet = not updates and not self._subscriber.wake.wait(
                min(self._heartbeat, self._who.check_every)
            )
            if quiet and time.monotonic() - written >= self._heartbeat:
                yield b": keep-alive\n\n"
                written = time.monotonic()
            self._subscriber.wake.clear()

    def _event(self, number: int, update: Update) -> bytes:
        if isinstance(update.outcome, QuantPulseError):
            name, data = (
                "error",
                json.dumps(error_document(self._watched.get(update.instrument), update.outcome)),
            )
        else:
            name, data = "quote", quote_json(update)
        return f"id: {number}\nevent: {name}\ndata: {data}\n\n".encode()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.close(self._subscriber)
        self._registry.close(self._slot)

    def _watch_hangup(self) -> None:
        """Ends the stream when the client closes its side (a greenlet under gevent, parked on
        the socket): the hub stops polling what nobody watches within seconds, not heartbeats."""
        assert self._socket is not None
        while not self._subscriber.closed:
            try:
                sent = self._socket.recv(1, socket.MSG_PEEK)
            except TimeoutError:
                continue
            except OSError:
                sent = b""
            if sent:  # the client is talking (a pipelined request): only writes can tell now
                return
            self._subscriber.close()


# ---- WebSocket ------------------------------------------------------------------------------


class SocketSession:
    """One WebSocket connection: its subscriptions, the client's messages and the hub's pushes,
    all handled on the request's own greenlet (woken by either)."""

    def __init__(self, service: StockService, hub: QuoteHub, heartbeat: float, who: Holder) -> None:
        self._service = service
        self._hub = hub
        self._heartbeat = heartbeat
        self._who = who
        self._subscriber = Subscriber()
        self._watched: dict[Instrument, str] = {}
        self._ws: Server | None = None

    def run(self, environ: dict[str, Any]) -> None:
        """The whole session. Whatever ends it (the client, a failed or timed-out write, the
        worker stopping) it ends here, never as an HTTP error on an upgraded socket."""
        try:
            # The socket's reader wakes the same event as the hub's pushes: one wait for both.
            ws = Server(
                environ,
                ping_interval=self._heartbeat,
                max_message_size=MAX_MESSAGE,
                event_class=lambda: self._subscriber.wake,
            )
        except RemoteProtocolError as error:
            raise BadRequest(f"Not a valid WebSocket handshake: {error}") from None
        self._ws = ws
        answered()  # the handshake is the answer; the session's length is not a latency
        self._hub.open(self._subscriber)
        try:
            self._converse(ws)
        except (ConnectionClosed, OSError):
            pass
        finally:
            self._hub.close(self._subscriber)

    def _converse(self, ws: Server) -> None:
        while ws.connected and not self._subscriber.closed:
            if not self._who.alive():
                ws.close(REVOKED, "API key revoked")
                return
            self._subscriber.wake.clear()
            while (message := ws.receive(timeout=0)) is not None:
                self._handle(message)
                self._send_updates()  # a burst of messages must not fill the mailbox
            self._send_updates()
            self._subscriber.wake.wait(min(self._heartbeat, self._who.check_every))
        if self._subscriber.dropped and ws.connected:
            ws.close(TOO_SLOW, "too slow: updates were not read")
        elif self._subscriber.closed and ws.connected:
            ws.close(GOING_AWAY, "server going away; connect again")

    def _send_updates(self) -> None:
        assert self._ws is not None
        for update in self._subscriber.take():
            if update.instrument in self._watched:  # not one unsubscribed meanwhile
                self._ws.send(self._message(update))

    def _handle(self, message: str | bytes) -> None:
        try:
            action, raw_symbols = parse_message(message)
        except BadRequest as error:
            self._send_error(None, error)
            return
        wanted: dict[Instrument, str] = {}
        refused: list[tuple[str, QuantPulseError]] = []
        for raw in raw_symbols:
            try:
                wanted.setdefault(self._service.instrument(parse_symbol(raw)), raw)
            except QuantPulseError as error:
                refused.append((raw, error))
        new = {i: raw for i, raw in wanted.items() if i not in self._watched}
        if action == "subscribe" and len(self._watched) + len(new) > MAX_BATCH_INSTRUMENTS:
            limit = f"A socket watches at most {MAX_BATCH_INSTRUMENTS} instruments."
            self._send_error(None, BadRequest(limit, hint=SYMBOLS_HINT))
            return
        for raw, error in refused:
            self._send_error(raw, error)
        if action == "subscribe":
            self._subscribe(new)
        else:
            self._unsubscribe(wanted)

    def _subscribe(self, new: dict[Instrument, str]) -> None:
        self._watched.update(new)
        self._send({"type": "subscribed", "symbols": [label(i) for i in self._watched]})
        if new:
            self._hub.subscribe(self._subscriber, list(new))

    def _unsubscribe(self, wanted: dict[Instrument, str]) -> None:
        gone = [i for i in wanted if i in self._watched]
        for instrument in gone:
            del self._watched[instrument]
        self._hub.unsubscribe(self._subscriber, gone)
        self._send({"type": "unsubscribed", "symbols": [label(i) for i in gone]})

    def _message(self, update: Update) -> str:
        if isinstance(update.outcome, QuantPulseError):
            raw = self._watched.get(update.instrument)
            return json.dumps({"type": "error", **error_document(raw, update.outcome)})
        instrument = update.instrument
        return (
            f'{{"type":"quote","symbol":{json.dumps(instrument.ticker)},'
            f'"exchange":{json.dumps(instrument.exchange)},"data":{quote_json(update)}}}'
        )

    def _send_error(self, raw: str | None, error: QuantPulseError) -> None:
        self._send({"type": "error", **error_document(raw, error)})

    def _send(self, document: dict[str, Any]) -> None:
        assert self._ws is not None
        self._ws.send(json.dumps(document))


def parse_message(message: str | bytes) -> tuple[str, list[str]]:
    """``{"action": "subscribe"|"unsubscribe", "symbols": [...]}``; anything else is a 400."""
    try:
        document = json.loads(message)
    except (ValueError, RecursionError):
        raise BadRequest("The message is not JSON.", hint=MESSAGE_HINT) from None
    if not isinstance(document, dict) or document.get("action") not in ("subscribe", "unsubscribe"):
        raise BadRequest('The action must be "subscribe" or "unsubscribe".', hint=MESSAGE_HINT)
    symbols = document.get("symbols")
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
        raise BadRequest("symbols must be a non-empty list of strings.", hint=MESSAGE_HINT)
    if len(symbols) > MAX_BATCH_INSTRUMENTS * 4:
        raise BadRequest(f"At most {MAX_BATCH_INSTRUMENTS} instruments per socket.", hint=MESSAGE_HINT)
    return document["action"], symbols


MESSAGE_HINT = '{"action": "subscribe", "symbols": ["RELIANCE", "TCS"]}'


class _SocketDone(Response):
    """The socket spoke for itself: gunicorn must write nothing more (flask-sock's way out)."""

    def __init__(self) -> None:
        super().__init__(status=101)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        raise StopIteration()
