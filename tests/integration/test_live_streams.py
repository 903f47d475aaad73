"""Live quotes, both transports, against gunicorn (gevent workers), a real redis-server and the
fake provider: snapshot, updates, errors, heartbeat, reconnect, limits (docs/api.md, "Live quotes")."""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import socket
import time
from collections.abc import Iterator

import pytest
import requests
from simple_websocket import Client, ConnectionClosed
from simple_websocket.errors import ConnectionError as HandshakeRefused
from wsproto import ConnectionType, WSConnection
from wsproto.events import Ping, Request

from tests.fakes.provider_server import FakeProviderServer
from tests.servers import Gunicorn, RedisServer, wait_until
from tests.streams_client import SseStream

pytestmark = pytest.mark.slow

HEARTBEAT = 1
MAX_PER_CLIENT = 3
ALLOWED = "http://localhost:3000"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(fake: FakeProviderServer) -> Iterator[Gunicorn]:
    env = {
        **fake.service_env(),
        "QUOTE_TTL": "1",
        "STREAM_HEARTBEAT": str(HEARTBEAT),
        "STREAM_MAX_PER_CLIENT": str(MAX_PER_CLIENT),
    }
    with (
        RedisServer() as redis_server,
        Gunicorn({**env, "REDIS_URL": redis_server.url}, workers=2) as gunicorn,
    ):
        yield gunicorn


@pytest.fixture(autouse=True)
def no_streams_left(server: Gunicorn, fake: FakeProviderServer) -> Iterator[None]:
    """Every test starts with the fleet's slots free and the fake's prices as in its table."""
    fake.move_price("RELIANCE", 0.0)
    wait_until(lambda: open_streams(server) == 0, timeout=10, what="streams from the last test closed")
    yield


def open_streams(server: Gunicorn) -> int:
    return requests.get(f"{server.url}/stock/service/status", timeout=5).json()["status"]["streams"]["open"]


def sse(server: Gunicorn, query: str, headers: dict[str, str] | None = None) -> SseStream:
    return SseStream(server.url, f"/stock/stream?{query}", headers)


def quote_without_serving_fields(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("service_info", "timestamp")}


# ---- Server-Sent Events -----------------------------------------------------------------------


def test_a_stream_starts_with_retry_then_one_snapshot_per_instrument_as_get_serves_it(server):
    with sse(server, "symbols=RELIANCE,reliance.ns,TCS:NSE", {"Origin": ALLOWED}) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["Cache-Control"] == "no-cache"
        assert stream.headers["X-Accel-Buffering"] == "no"
        assert stream.headers["Access-Control-Allow-Origin"] == ALLOWED

        assert stream.next().retry == "3000"
        first, second = stream.next_named("quote"), stream.next_named("quote")

    assert (first.id, second.id) == ("1", "2")
    assert "\n" not in first.data
    by_symbol = {event.json()["symbol"]: event.json() for event in (first, second)}
    assert set(by_symbol) == {"RELIANCE", "TCS"}, "spellings of one instrument collapse to one"
    served = requests.get(f"{server.url}/stock/RELIANCE", timeout=5).json()
    assert quote_without_serving_fields(by_symbol["RELIANCE"]) == quote_without_serving_fields(served)
    assert by_symbol["RELIANCE"]["isDemoData"] is False


def test_a_price_change_upstream_is_pushed_and_ids_keep_increasing(server, fake):
    with sse(server, "symbols=RELIANCE") as stream:
        snapshot = stream.next_named("quote")
        fake.move_price("RELIANCE", 40.0)
        moved = stream.next_named("quote", timeout=1 + 1 + 3)  # QUOTE_TTL + 1 s, and slack

    assert int(moved.id) > int(snapshot.id)
    assert round(moved.json()["currentPrice"] - snapshot.json()["currentPrice"], 2) == 40.0


def test_an_unchanged_quote_is_not_sent_again_but_heartbeats_keep_the_stream_alive(server):
    with sse(server, "symbols=INFY") as stream:
        stream.next_named("quote")
        seen = [stream.next(timeout=HEARTBEAT * 3) for _ in range(3)]  # several QUOTE_TTL windows

    assert [event.comment for event in seen] == ["keep-alive"] * 3


def test_an_unknown_instrument_gets_an_error_event_and_the_others_go_on(server):
    with sse(server, "symbols=NOSUCHCO,TCS") as stream:
        events = [stream.next_event(), stream.next_event()]  # in either order
        events.sort(key=lambda event: event.event)
        alive = stream.next(timeout=HEARTBEAT * 3)

    error = events[0].json()
    assert (error["symbol"], error["status"]) == ("NOSUCHCO", 404)
    assert error["detail"]["message"]
    assert events[1].json()["symbol"] == "TCS"
    assert alive.comment == "keep-alive"


def test_a_stream_whose_every_instrument_fails_stays_open(server):
    with sse(server, "symbols=NOSUCHCO") as stream:
        assert stream.next_named("error").json()["status"] == 404
        assert stream.next(timeout=HEARTBEAT * 3).comment == "keep-alive"


def test_a_reconnect_gets_a_fresh_snapshot_numbered_from_one(server):
    with sse(server, "symbols=RELIANCE") as stream:
        stream.next_named("quote")
    with sse(server, "symbols=RELIANCE", {"Last-Event-ID": "7"}) as again:
        snapshot = again.next_named("quote")
    assert snapshot.id == "1"


@pytest.mark.parametrize(
    "query",
    ["symbols=BAD!!,TCS", "symbols=", "", "symbols=" + ",".join(f"SYN{n:02d}" for n in range(1, 22))],
)
def test_a_malformed_symbol_list_is_a_json_400_not_a_stream(server, query):
    with sse(server, query) as stream:
        assert stream.status == 400
        assert stream.headers["Content-Type"] == "application/json"
        assert stream.body()["detail"]["message"]


def test_reserved_words_are_not_symbols(server):
    for path in ("/stock/STREAM", "/stock/ws/profile", "/stock/Stream/historical"):
        assert requests.get(f"{server.url}{path}", timeout=5).status_code == 400, path


def test_too_many_streams_for_one_client_is_a_429_across_workers_until_one_closes(server):
    streams = [sse(server, "symbols=RELIANCE") for _ in range(MAX_PER_CLIENT)]
    try:
        for stream in streams:
            assert stream.status == 200
            stream.next_named("quote")
        with sse(server, "symbols=TCS") as refused:
            assert refused.status == 429
            assert refused.headers["Retry-After"]
            assert "streams" in refused.body()["detail"]["message"]
        assert open_streams(server) == MAX_PER_CLIENT
    finally:
        streams.pop().close()
    try:
        wait_until(
            lambda: open_streams(server) == MAX_PER_CLIENT - 1, timeout=HEARTBEAT * 5, what="slot freed"
        )
        with sse(server, "symbols=TCS") as admitted:
            assert admitted.status == 200
    finally:
        for stream in streams:
            stream.close()


def test_status_and_metrics_count_streams_instruments_and_pushes(server):
    with sse(server, "symbols=RELIANCE,TCS") as first, sse(server, "symbols=TCS") as second:
        first.next_named("quote")
        second.next_named("quote")
        streams = requests.get(f"{server.url}/stock/service/status", timeout=5).json()["status"]["streams"]
        wait_until(
            lambda: "quantpulse_stream_pushes_total" in requests.get(f"{server.url}/metrics", timeout=5).text,
            timeout=5,
            what="metrics",
        )
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text

    assert streams["open"] == 2 and streams["instruments"] == 2
    assert streams["pushes"] >= 3 - 1  # counted per worker, flushed every 0.5 s
    assert "quantpulse_streams_open 2.0" in metrics


# ---- WebSocket ----------------------------------------------------------------------------------


def ws_url(server: Gunicorn) -> str:
    return server.url.replace("http://", "ws://") + "/stock/ws"


def receive(ws: Client, timeout: float = 10) -> dict:
    message = ws.receive(timeout=timeout)
    assert message is not None, f"no message within {timeout} s"
    return json.loads(message)


def receive_type(ws: Client, kind: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = receive(ws, left)
        if message["type"] == kind:
            return message
    raise TimeoutError(f"no {kind} message")


@pytest.fixture
def ws(server: Gunicorn) -> Iterator[Client]:
    client = Client.connect(ws_url(server))
    yield client
    with contextlib.suppress(ConnectionClosed):
        client.close()


def test_subscribe_confirms_every_watched_instrument_then_sends_snapshots(ws):
    ws.send(json.dumps({"action": "subscribe", "symbols": ["RELIANCE", "tcs.ns", "BAD!!"]}))
    messages = [receive(ws) for _ in range(4)]

    error = next(m for m in messages if m["type"] == "error")
    assert (error["symbol"], error["status"]) == ("BAD!!", 400)
    subscribed = next(m for m in messages if m["type"] == "subscribed")
    assert subscribed["symbols"] == ["RELIANCE:NSE", "TCS:NSE"]
    quotes = {m["symbol"]: m for m in messages if m["type"] == "quote"}
    assert set(quotes) == {"RELIANCE", "TCS"}
    assert quotes["TCS"]["exchange"] == "NSE" and quotes["TCS"]["data"]["symbol"] == "TCS"


def test_a_socket_gets_updates_and_stops_getting_them_after_unsubscribing(ws, fake):
    ws.send(json.dumps({"action": "subscribe", "symbols": ["RELIANCE"]}))
    before = receive_type(ws, "quote")["data"]["currentPrice"]
    fake.move_price("RELIANCE", 15.0)
    after = receive_type(ws, "quote", timeout=5)["data"]["currentPrice"]
    assert round(after - before, 2) == 15.0

    ws.send(json.dumps({"action": "unsubscribe", "symbols": ["RELIANCE"]}))
    assert receive_type(ws, "unsubscribed")["symbols"] == ["RELIANCE:NSE"]
    fake.move_price("RELIANCE", 30.0)
    assert ws.receive(timeout=3) is None


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        json.dumps({"action": "dance", "symbols": ["TCS"]}),
        json.dumps({"action": "subscribe"}),
        json.dumps({"action": "subscribe", "symbols": "TCS"}),
        json.dumps(["subscribe"]),
        json.dumps({"action": "subscribe", "symbols": [f"SYN{n:02d}" for n in range(1, 22)]}),
    ],
)
def test_a_malformed_message_is_rejected_whole_and_the_socket_stays_open(ws, message):
    ws.send(message)
    error = receive(ws)
    assert (error["type"], error["status"], error["symbol"]) == ("error", 400, None)

    ws.send(json.dumps({"action": "subscribe", "symbols": ["TCS"]}))
    assert receive_type(ws, "subscribed")["symbols"] == ["TCS:NSE"]


def test_a_message_over_4_kib_closes_the_socket_with_1009(ws):
    ws.send(json.dumps({"action": "subscribe", "symbols": ["X" * 5000]}))
    with pytest.raises(ConnectionClosed):
        while True:
            ws.receive(timeout=5)
    assert ws.close_reason == 1009


def test_the_websocket_route_checks_the_browser_origin(server):
    with pytest.raises(HandshakeRefused) as refused:
        Client.connect(ws_url(server), headers={"Origin": "https://evil.example"})
    assert refused.value.status_code == 403

    allowed = Client.connect(ws_url(server), headers={"Origin": ALLOWED})
    allowed.send(json.dumps({"action": "subscribe", "symbols": ["TCS"]}))
    assert receive_type(allowed, "subscribed")["symbols"] == ["TCS:NSE"]
    allowed.close()


def test_a_plain_get_on_the_websocket_route_is_a_json_400(server):
    answer = requests.get(ws_url(server).replace("ws://", "http://"), timeout=5)
    assert answer.status_code == 400
    assert answer.json()["detail"]["message"]


def test_sockets_and_event_streams_share_the_per_client_limit(server):
    streams = [sse(server, "symbols=TCS") for _ in range(MAX_PER_CLIENT)]
    try:
        for stream in streams:
            stream.next_named("quote")
        with pytest.raises(HandshakeRefused) as refused:
            Client.connect(ws_url(server))
        assert refused.value.status_code == 429
    finally:
        for stream in streams:
            stream.close()


# ---- shutdown -----------------------------------------------------------------------------------


def test_a_stopping_worker_ends_its_streams_at_once_so_clients_reconnect(fake):
    """One worker, so both streams are on the worker told to stop; the socket watches nothing."""
    with (
        RedisServer() as redis_server,
        Gunicorn({**fake.service_env(), "REDIS_URL": redis_server.url}, workers=1) as own,
    ):
        stream = sse(own, "symbols=TCS")
        stream.next_named("quote")
        idle_socket = Client.connect(ws_url(own))
        started = time.monotonic()
        own._process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        with pytest.raises(ConnectionError):
            while True:
                stream.next(timeout=8)
        ended = time.monotonic() - started
        with pytest.raises(ConnectionClosed):
            while True:
                idle_socket.receive(timeout=8)
        socket_ended = time.monotonic() - started
        stream.close()

    assert ended < 5, f"the stream lasted {ended:.1f} s into the shutdown (graceful_timeout is 10 s)"
    assert socket_ended < 5 and idle_socket.close_reason == 1001, (socket_ended, idle_socket.close_reason)


@pytest.mark.parametrize(
    "headers",
    [
        {"Upgrade": "websocket", "Connection": "keep-alive", "Sec-WebSocket-Version": "13"},
        {"Upgrade": "websocket", "Connection": "Upgrade"},
        {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8"},
    ],
    ids=["no-connection-upgrade", "no-version", "old-version"],
)
def test_an_incomplete_upgrade_is_a_json_400_not_a_500(server, headers):
    headers = {**headers, "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    answer = requests.get(ws_url(server).replace("ws://", "http://"), headers=headers, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["detail"]["message"]


def test_an_open_stream_counts_once_against_the_rate_limit(fake):
    """RATE_LIMIT applies per route (Flask-Limiter's default limits): opening a stream is one
    request of the stream route, however long it stays open. A day's window, so that no window
    boundary (where the sliding-window counter forgives a little) falls inside the test."""
    env = {
        **fake.service_env(),
        "RATE_LIMIT": "3/day",
        "STREAM_MAX_PER_CLIENT": "2",
        "STREAM_HEARTBEAT": str(HEARTBEAT),
    }
    with RedisServer() as redis_server, Gunicorn({**env, "REDIS_URL": redis_server.url}) as own:
        first = sse(own, "symbols=TCS")
        assert (first.status, first.headers["X-RateLimit-Remaining"]) == (200, "2")
        first.next_named("quote")
        for _ in range(3):  # open for several heartbeats, and quotes, without spending the limit
            assert first.next(timeout=HEARTBEAT * 3).comment == "keep-alive"
        second = sse(own, "symbols=TCS")
        assert (second.status, second.headers["X-RateLimit-Remaining"]) == (200, "1")
        with sse(own, "symbols=TCS") as over_streams:  # the per-client stream cap answers first
            assert over_streams.status == 429
            assert over_streams.headers["Retry-After"] == "5", "its own Retry-After, not the limiter's"
            assert "streams" in over_streams.body()["detail"]["message"]
        with sse(own, "symbols=TCS") as over_limit:  # now the rate limit itself
            assert over_limit.status == 429
            assert int(over_limit.headers["Retry-After"]) > 60
            assert "Too many requests" in over_limit.body()["detail"]["message"]
        first.close()
        second.close()


def test_the_server_pings_a_socket_every_heartbeat(server):
    """Read at the protocol level (wsproto, beneath simple-websocket), where pings are visible."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(connection.send(Request(host=host, target="/stock/ws")))
        pings: list[float] = []
        started = time.monotonic()
        while len(pings) < 3 and time.monotonic() - started < HEARTBEAT * 6:
            connection.receive_data(sock.recv(4096))
            for event in connection.events():
                if isinstance(event, Ping):
                    pings.append(time.monotonic() - started)
                    sock.sendall(connection.send(event.response()))

    assert len(pings) == 3, pings
    assert all(later - earlier < HEARTBEAT * 2 for earlier, later in itertools.pairwise(pings))


# ---- keyed streams --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(fake: FakeProviderServer) -> Iterator[Gunicorn]:
    """API keys required: a browser's stream needs a stream token."""
    env = {
        **fake.service_env(),
        "API_KEYS": "required",
        "ADMIN_TOKEN": "admin-secret",
        "STREAM_HEARTBEAT": str(HEARTBEAT),
        "STREAM_MAX_PER_CLIENT": "2",
    }
    with (
        RedisServer() as redis_server,
        Gunicorn({**env, "REDIS_URL": redis_server.url}, workers=2) as gunicorn,
    ):
        yield gunicorn


def new_key(server: Gunicorn) -> dict:
    answer = requests.post(
        f"{server.url}/admin/keys",
        json={"name": "acme"},
        headers={"Authorization": "Bearer admin-secret"},
        timeout=5,
    )
    assert answer.status_code == 201
    return answer.json()


def stream_token(server: Gunicorn, key: str) -> str:
    answer = requests.post(f"{server.url}/stream-token", headers={"X-API-Key": key}, timeout=5)
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def test_a_keyed_browser_opens_its_stream_with_a_single_use_token(keyed):
    key = new_key(keyed)["key"]
    with sse(keyed, "symbols=TCS") as anonymous:
        assert anonymous.status == 401
    token = stream_token(keyed, key)

    with sse(keyed, f"symbols=TCS&token={token}") as stream:
        assert stream.status == 200
        stream.next_named("quote")
        with sse(keyed, f"symbols=TCS&token={token}") as again:
            assert again.status == 401, "a token opens one stream"
        with sse(keyed, f"symbols=TCS&token={token}", {"Last-Event-ID": "3"}) as reconnect:
            assert reconnect.status == 200, "the browser's own reconnect of it"
    assert requests.post(f"{keyed.url}/stream-token", timeout=5).status_code == 401


def test_a_keyed_clients_streams_count_under_its_key_not_its_address(keyed):
    first, second = new_key(keyed)["key"], new_key(keyed)["key"]
    opened = [sse(keyed, f"symbols=TCS&token={stream_token(keyed, first)}") for _ in range(2)]
    try:
        assert all(stream.status == 200 for stream in opened)
        with sse(keyed, f"symbols=TCS&token={stream_token(keyed, first)}") as third:
            assert third.status == 429
        with sse(keyed, f"symbols=TCS&token={stream_token(keyed, second)}") as other_key:
            assert other_key.status == 200, "same address, another key: its own slots"
    finally:
        for stream in opened:
            stream.close()


def test_a_revoked_keys_streams_end_and_its_sockets_close_with_1008(keyed):
    issued = new_key(keyed)
    stream = sse(keyed, f"symbols=TCS&token={stream_token(keyed, issued['key'])}")
    stream.next_named("quote")
    socket_ = Client.connect(f"{ws_url(keyed)}?token={stream_token(keyed, issued['key'])}")
    socket_.send(json.dumps({"action": "subscribe", "symbols": ["TCS"]}))
    receive_type(socket_, "quote")

    started = time.monotonic()
    revoked = requests.delete(
        f"{keyed.url}/admin/keys/{issued['id']}", headers={"Authorization": "Bearer admin-secret"}, timeout=5
    )
    assert revoked.status_code == 200
    with pytest.raises(ConnectionError):
        while True:
            stream.next(timeout=5)
    stream_ended = time.monotonic() - started
    with pytest.raises(ConnectionClosed):
        while True:
            socket_.receive(timeout=5)
    socket_ended = time.monotonic() - started
    stream.close()

    assert socket_.close_reason == 1008
    # within a second of the key being read again (at most a second old): 2 s, with slack
    assert stream_ended < 3 and socket_ended < 3, (stream_ended, socket_ended)
