"""The malformed-request filter on aiohttp's server logger (logs.py)."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage

from honeymesh_hub.logs import MalformedRequestFilter


def _record(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("192.0.2.1",),
        (type(exc), exc, exc.__traceback__),
    )


def test_one_warning_per_interval_with_the_count_suppressed() -> None:
    now = [0.0]
    quiet = MalformedRequestFilter(10.0, clock=lambda: now[0])
    first = _record(BadHttpMessage("bad"))
    assert quiet.filter(first)
    assert (first.levelno, first.levelname, first.exc_info) == (logging.WARNING, "WARNING", None)
    assert first.getMessage().startswith("malformed HTTP request from 192.0.2.1 (BadHttpMessage)")
    now[0] = 9.9
    assert not any(quiet.filter(_record(BadHttpMessage("bad"))) for _ in range(7))
    now[0] = 10.0
    later = _record(BadHttpMessage("bad"))
    assert quiet.filter(later)
    assert later.__dict__["fields"] == {"suppressed": 7}


def test_other_records_pass_unchanged() -> None:
    quiet = MalformedRequestFilter(10.0, clock=lambda: 0.0)
    for _ in range(3):
        crash = _record(RuntimeError("handler bug"))
        assert quiet.filter(crash)
        assert crash.levelno == logging.ERROR and crash.exc_info is not None
