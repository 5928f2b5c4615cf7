"""The hub's error tree: each class knows its problem code and HTTP status.

Below the routes, code raises a HubError; middleware.py turns it into RFC 9457
problem+json once (PROTOCOL.md section 3). Anything else is a logged 500.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class HubError(Exception):
    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors)
        self.headers = dict(headers or {})
        if code is not None:
            self.code = code
        self.extra = dict(extra or {})

    def with_status(self, status: int) -> HubError:
        self.status = status
        return self


class InvalidJSON(HubError):
    status, code, title = 400, "invalid_json", "Invalid JSON"


class BadRequest(HubError):
    """A malformed query parameter or cursor: 400 validation_failed (PROTOCOL.md 8)."""

    status, code, title = 400, "validation_failed", "Validation failed"


class Unauthorized(HubError):
    """401; `code` may be one of section 2's signature codes."""

    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(HubError):
    """403; `code` may be not_entitled, tenant_suspended, node_revoked, ..."""

    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(HubError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(HubError):
    status, code, title = 409, "conflict", "Conflict"


class CursorExpired(HubError):
    status, code, title = 410, "cursor_expired", "Cursor expired"


class PayloadTooLarge(HubError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(HubError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class ValidationFailed(HubError):
    status, code, title = 422, "validation_failed", "Validation failed"


class RateLimited(HubError):
    status, code, title = 429, "rate_limited", "Too many requests"


class ServiceUnavailable(HubError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


TITLES: dict[str, str] = {
    "missing_signature": "Missing signature",
    "invalid_signature": "Invalid signature",
    "signature_expired": "Signature expired",
    "unknown_key": "Unknown key",
    "digest_mismatch": "Digest mismatch",
    "replayed_request": "Replayed request",
    "not_entitled": "Not entitled",
    "tenant_suspended": "Tenant suspended",
    "entitlement_expired": "Entitlement expired",
    "node_revoked": "Node revoked",
    "node_limit_reached": "Node limit reached",
}


def title_of(error: HubError) -> str:
    return TITLES.get(error.code, error.title)
