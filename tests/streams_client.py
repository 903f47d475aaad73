"""A small Server-Sent Events client for tests: reads one stream event by event, with deadlines."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Event:
    """One SSE block: its fields, or a comment line (``: keep-alive``)."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    retry: str | None = None
    comment: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.data)


class SseStream:
    """``GET path`` on ``base_url``, kept open; ``next`` reads the following event."""

    def __init__(
        self, base_url: str, path: str, headers: dict[str, str] | None = None, timeout: float = 15
    ) -> None:
        parts = urlsplit(base_url)
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self._connection.request("GET", path, headers=headers or {})
        self.response = self._connection.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers

    def body(self) -> Any:
        """The whole body, as JSON (for an answer that is not a stream)."""
        return json.loads(self.response.read())

    def next(self, timeout: float = 10) -> Event:
        """The next event or comment; ``TimeoutError`` when none arrives in time."""
        self._connection.sock.settimeout(timeout)  # type: ignore[union-attr]
        event = Event()
        try:
            while True:
                line = self.response.readline()
                if not line:
                    raise ConnectionError("the stream ended")
                text = line.decode().rstrip("\r\n")
                if text.startswith(":"):
                    return Event(comment=text[1:].strip())
                if not text:
                    if event.fields:
                        return event
                    continue
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                event.fields[name] = value
                if name in ("event", "id", "retry"):
                    setattr(event, name, value)
                elif name == "data":
                    event.data = f"{event.data}\n{value}" if event.data else value
        except OSError as error:
            if "timed out" in str(error):  # a read that timed out leaves http.client unusable
                raise TimeoutError(str(error)) from None
            raise

    def next_event(self, timeout: float = 10) -> Event:
        """The next named event, whatever its name (comments and ``retry:`` skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            event = self.next(left)
            if event.event is not None:
                return event
        raise TimeoutError(f"no event within {timeout} s")

    def next_named(self, name: str, timeout: float = 10) -> Event:
        """The next event called ``name`` (others and comments skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            event = self.next(left)
            if event.event == name:
                return event
        raise TimeoutError(f"no {name} event within {timeout} s")

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> SseStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
