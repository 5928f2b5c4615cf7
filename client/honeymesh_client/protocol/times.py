"""RFC 3339 times as they travel (PROTOCOL.md section 3): the one reader. Pure.

Section 5.6 ``date-time`` exactly: ASCII digits, a ``T`` (or ``t``) between date
and time, optional fraction digits, and ``Z`` (or ``z``) or a numeric offset with
its colon. A naive time, ``+0100``, a space for ``T`` or non-ASCII digits are
refused. The calendar is checked too (30 February is refused). A leap second
(``23:59:60``) is valid RFC 3339 and read as ``23:59:59``; ``-00:00`` ("offset
unknown") is read as UTC. A time datetime cannot hold in UTC (year 1 with a
positive offset) is refused, never an OverflowError.

:data:`RFC3339_DATE_TIME` is the same grammar as a regular expression, for the
hub's JSON Schema ``date-time`` format (fastjsonschema's own accepts ``+0100`` and
non-ASCII digits).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["RFC3339_DATE_TIME", "read_rfc3339"]

RFC3339_DATE_TIME = (
    r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z"
)
_DATE_TIME = re.compile(RFC3339_DATE_TIME)


def read_rfc3339(text: str) -> datetime:
    """RFC 3339 ``date-time`` text -> aware UTC datetime; ValueError with a short
    sentence for anything else."""
    if not isinstance(text, str) or not _DATE_TIME.match(text):
        raise ValueError("not an RFC 3339 time with Z or an offset")
    # fromisoformat reads every string of the grammar once t/z are upper case,
    # except a leap second.
    text = text.upper()
    if text[17:19] == "60":
        text = text[:17] + "59" + text[19:]
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise ValueError("not a calendar date and time") from None
    except OverflowError:
        raise ValueError("out of the range of times") from None
