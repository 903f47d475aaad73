"""gunicorn settings, picked up automatically from the repository root.

Greenlets (gevent) let a worker keep answering while some of its requests wait on an upstream
fill or hold a live-quote stream open.
The app is built after the fork (no preload), so every worker opens its own Redis pool.
``.env`` in the working directory is read first, as ``wsgi.py`` reads it, and the real
environment wins over it: ``PORT=8766 make run`` listens on 8766 whatever the file says.
"""

import os

from dotenv import load_dotenv
from gunicorn.glogging import Logger

load_dotenv(".env", override=False)


def setting(name: str, default: str) -> str:
    """A variable's value; blank counts as unset, as everywhere in QuantPulse (compose passes blanks)."""
    return os.environ.get(name) or default


bind = f"0.0.0.0:{setting('PORT', '8000')}"
workers = int(setting("WEB_CONCURRENCY", "2"))
# gevent: an open live-quote stream is a parked greenlet, not a thread, so a worker holds
# hundreds of streams while it goes on answering REST requests (docs/architecture.md, "Worker model").
worker_class = "gevent"
worker_connections = int(setting("GUNICORN_CONNECTIONS", "1000"))
timeout = int(setting("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
keepalive = 5
# The app writes one JSON line per request (quantpulse.access); gunicorn's own access log would
# only repeat it in another format.
accesslog = None
errorlog = "-"
loglevel = setting("LOG_LEVEL", "info").lower()
# gunicorn's own lines (boot, workers, signals) in the app's JSON format, on the same stream.
# Resolving the formatter imports the quantpulse package in the master. The root logger is
# left to the app, which writes its lines from a queue in each worker, off the request threads.
logconfig_dict = {
    "formatters": {"json": {"()": "quantpulse.logs.JsonFormatter"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        "discard": {"class": "logging.NullHandler"},
    },
    "root": {"level": loglevel.upper(), "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["stderr"], "propagate": False},
        # A logging config switches gunicorn's access log on; it stays off, as accesslog says.
        "gunicorn.access": {"handlers": ["discard"], "propagate": False},
    },
}


class AccessLogOff(Logger):
    """gunicorn's logger with its access log off as ``accesslog`` says.

    With a logging config (ours makes the error log JSON) gunicorn would still build every
    request's access-log fields for the discarding handler above: 5 % of a worker's samples
    under load (py-spy). The app logs each request itself (quantpulse/api/request_log.py)."""

    @property
    def access_log_enabled(self) -> bool:
        return bool(self.cfg.accesslog)


logger_class = AccessLogOff
# gunicorn answers an over-long request line with an HTML 414 before the app sees it; allow its
# maximum so a silly symbol reaches the app and gets a JSON 400 instead.
limit_request_line = 8190
# gunicorn 27's control socket defaults to one path per user, which two instances on one
# machine would fight over; the platform manages processes, so it is not needed.
control_socket_disable = True


def post_worker_init(worker: object) -> None:
    """Live streams end as soon as the worker is told to stop (a deploy, a scale-down), not at
    ``graceful_timeout``: their clients reconnect at once, to a worker that stays."""
    import threading
    import time

    from quantpulse.app import close_streams

    def watch() -> None:
        while worker.alive:  # type: ignore[attr-defined]
            time.sleep(0.25)
        close_streams(worker.wsgi)  # type: ignore[attr-defined]

    threading.Thread(target=watch, name="stream-closer", daemon=True).start()


def worker_exit(server: object, worker: object) -> None:
    """Counts gathered since the last flush (statistics, usage) are written before the worker goes."""
    from quantpulse.app import flush_counters

    wsgi = getattr(worker, "wsgi", None)
    if wsgi is not None:
        flush_counters(wsgi)
