"""A catalogue of hostile requests for the fault suite: each should get a 4xx, never a 5xx.

Kinds: bad symbols, bad JSON bodies, deep nesting (inside the 16 KiB body limit), query strings
just under gunicorn's 8 KiB request line, and bodies over MAX_CONTENT_LENGTH (16 KiB). Requests
are sent byte for byte as written here (no client-side URL normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.fleet import Call

JSON = {"Content-Type": "application/json"}
BODY_LIMIT = 16 * 1024
REQUEST_LINE_LIMIT = 8190  # gunicorn.conf.py limit_request_line
_ROOM = REQUEST_LINE_LIMIT - 200  # what a path and query may take, leaving room for method and version

BAD_SYMBOL_PATHS = (
    "/stock/bad!",
    "/stock/RELIANCE:NYSE",
    "/stock/%00",
    "/stock/" + "A" * 25,
    "/stock/..%2F..%2Fetc%2Fpasswd",
    "/stock/%E2%82%B9",
    "/stock/QUOTES",
    "/stock/A%0D%0AX-Injected:%201",
    "/stock/ZZZZZZ",  # well formed, unknown everywhere: one upstream verdict, then the negative cache
    "/stock/RELIANCE/historical?period=2w",
)
BAD_JSON_BODIES = (
    b'{"symbols": [',
    b"not json",
    b'{"symbols": "RELIANCE"}',
    b'{"symbols": [1, 2]}',
    b"[]",
    b"null",
    b'{"symbols": []}',
    b'{"symbols": ["\xff\xfe"]}',
    b'{"symbols": [' + b",".join(f'"S{i:04d}"'.encode() for i in range(21)) + b"]}",
)


def malformed_calls(urls: Sequence[str]) -> list[tuple[str, Call]]:
    """(kind, request) pairs, alternating over ``urls``."""
    requests = [
        *(("bad symbol", "GET", path, b"", {}) for path in BAD_SYMBOL_PATHS),
        *(("bad JSON", "POST", "/stock/quotes", body, JSON) for body in BAD_JSON_BODIES),
        ("bad JSON", "POST", "/stock/quotes", b'{"symbols": ["ITC"]}', {"Content-Type": "text/plain"}),
        *(("deep nesting", "POST", "/stock/quotes", body, JSON) for body in _deep_bodies()),
        *(("long query", method, path, b"", {}) for method, path in _long_queries()),
        ("long unknown parameter (ignored)", "GET", "/stock/RELIANCE?x=" + "a" * _ROOM, b"", {}),
        *(("oversize body", method, path, body, JSON) for method, path, body in _oversize()),
    ]
    return [
        (kind, Call(f"{urls[index % len(urls)]}{path}", method, body, headers))
        for index, (kind, method, path, body, headers) in enumerate(requests)
    ]


def _deep_bodies() -> list[bytes]:
    bodies = [
        b'{"symbols": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"a": ' * 2000 + b"1" + b"}" * 2000,
        b'{"symbols": ["ITC"], "x": ' + b'{"y": ' * 1500 + b"0" + b"}" * 1500 + b"}",
    ]
    assert all(len(body) <= BODY_LIMIT for body in bodies)
    return bodies


def _long_queries() -> list[tuple[str, str]]:
    """Each request line stays under gunicorn's limit, so the app itself has to answer."""
    room = _ROOM
    distinct = ",".join(f"S{i:04d}" for i in range(room // 6))
    repeated = "&".join(f"symbols=S{i:04d}" for i in range(room // 14))
    queries = [
        ("GET", "/stock/" + "A" * room),
        ("GET", "/stock/RELIANCE/historical?period=" + "1d" * (room // 2)),
        ("POST", f"/stock/quotes?symbols={distinct}"),
        ("POST", f"/stock/quotes?{repeated}"),
    ]
    assert all(len(f"{method} {path} HTTP/1.1") < REQUEST_LINE_LIMIT for method, path in queries)
    return queries


def _oversize() -> list[tuple[str, str, bytes]]:
    padding = b'{"symbols": ["ITC"], "padding": "' + b"x" * BODY_LIMIT + b'"}'
    return [
        ("POST", "/stock/quotes", padding),
        ("POST", "/stock/quotes", b'{"symbols": ["' + b"A" * (4 * BODY_LIMIT) + b'"]}'),
        ("GET", "/stock/RELIANCE", padding),
    ]
