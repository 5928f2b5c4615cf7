"""The client's errors: each one is a sentence a command line can print as is.

Shaped after sigstore-python's ``sigstore/errors.py``: one base class, so the
CLIs catch one type and print ``str(exc)``; the traceback is for ``--debug``.
"""

from __future__ import annotations

__all__ = ["ClientError", "HubError", "HubUnreachable", "RateLimited"]


class ClientError(Exception):
    """A failure the user should read: ``str(exc)`` is one sentence."""


class HubUnreachable(ClientError):
    """The hub could not be reached (refused, reset, timed out), after retries."""


class HubError(ClientError):
    """The hub answered with an error (RFC 9457 problem details, PROTOCOL.md 3)."""

    status: int
    code: str
    detail: str
    retry_after: float | None
    body: object

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        retry_after: float | None = None,
        body: object = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        self.body = body
        text = detail.strip() or f"HTTP {status}"
        if not text.endswith((".", "!", "?")):
            text += "."
        super().__init__(f"the hub refused the request ({status} {code}): {text}")

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (429, 502, 503, 504)."""
        return self.status in (429, 502, 503, 504)


class RateLimited(HubError):
    """429, or 503, whose ``Retry-After`` is longer than the client may wait."""
