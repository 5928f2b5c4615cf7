"""Structured JSON logs with the request id carried through asyncio by a contextvar.

Log lines never carry a token, a signature or a body: callers pass only the fields
they mean to show.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    install_malformed_request_filter()


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse at error level with a traceback, once per
    request: a lever for flooding the log. Such a record (its exception an aiohttp
    `HttpProcessingError`; the client still gets its 400) becomes one warning without
    the traceback, at most once per `interval` seconds, counting those suppressed.
    Anything else on the logger, a real 500 included, passes unchanged."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._suppressed = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno < logging.WARNING or not isinstance(exc, HttpProcessingError):
            return True
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._suppressed += 1
                return False
            suppressed, self._suppressed, self._next = self._suppressed, 0, now + self._interval
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.msg = "malformed HTTP request from %s (%s); %d more since the last such line"
        record.args = (remote, type(exc).__name__, suppressed)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.__dict__["fields"] = {"suppressed": suppressed}
        return True


def install_malformed_request_filter() -> MalformedRequestFilter:
    """Put the filter on aiohttp's server logger, once; return the one installed."""
    server = logging.getLogger("aiohttp.server")
    for existing in server.filters:
        if isinstance(existing, MalformedRequestFilter):
            return existing
    installed = MalformedRequestFilter()
    server.addFilter(installed)
    return installed
