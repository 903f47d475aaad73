"""The log writer: lines gathered from request threads, written in batches, none lost at stop."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

from quantpulse.logs import BatchedLines, JsonFormatter


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("quantpulse.test", level, __file__, 1, message, (), None)


def test_lines_from_many_threads_are_written_in_few_writes_and_none_is_lost():
    stream = CountingStream()
    lines = BatchedLines(stream, JsonFormatter(), interval=0.05)
    senders = [
        threading.Thread(target=lambda n=n: [lines.handle(record(f"t{n} line {i}")) for i in range(250)])
        for n in range(4)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    lines.stop()
    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert sorted(messages) == sorted(f"t{n} line {i}" for n in range(4) for i in range(250))
    assert stream.writes < 100  # a write per batch, not per line


def test_a_line_shows_within_the_interval_without_a_stop():
    stream = CountingStream()
    lines = BatchedLines(stream, JsonFormatter(), interval=0.05)
    lines.handle(record("hello"))
    deadline = time.monotonic() + 2
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert json.loads(stream.getvalue())["message"] == "hello"
    lines.stop()


def test_the_handler_level_and_filters_still_apply():
    stream = CountingStream()
    lines = BatchedLines(stream, JsonFormatter(), interval=10)
    lines.addFilter(lambda r: "secret" not in r.getMessage())
    logger = logging.Logger("quantpulse.isolated", logging.DEBUG)
    lines.setLevel(logging.INFO)
    logger.addHandler(lines)
    logger.debug("too quiet")
    logger.info("a secret thing")
    logger.warning("kept")
    lines.stop()
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["kept"]


def test_a_record_that_cannot_be_formatted_is_skipped_and_the_writer_goes_on(capsys):
    stream = CountingStream()
    lines = BatchedLines(stream, JsonFormatter(), interval=0.02)
    broken = record("broken")
    broken.fields = "not a mapping"  # JsonFormatter cannot merge it
    lines.handle(broken)
    time.sleep(0.1)
    lines.handle(record("after"))
    lines.stop()
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["after"]
    assert "broken" in capsys.readouterr().err  # reported as logging reports handler errors
