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
content_type_conformance, response_schema_conformance, response_headers_conformance
(every status, body and header documented), positive_data_acceptance (a schema-valid
request is not refused with 400 or 422, but for `SEMANTIC_REFUSALS`) and
negative_data_rejection (a schema-violating one is refused). Bounded and reproducible:
a fixed seed, derandomized Hypothesis and a fixed number of examples per operation,
no stateful phase (about 15 s on two cores).

Enrollments and key rotations of positive cases carry a real fresh key (and proof),
put in place of the generated one by `_Credentials`, since a made-up key has no
private half. Path ids are random or, in some cases, those of spare resources
(`FuzzHub.path_ids`), so routes on one resource are also fuzzed past 404.

Not run: ignored_auth and missing_required_header (the hook authenticates every
request, so they would only see it do so; tests/integration/test_signed_requests.py
and the review and admin tests cover refusals of credentials), and the stateful
phase (link-driven sequences, open-ended in time).
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import sign_request
from tests.fuzz.conftest import FuzzHub

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "openapi.yaml"
# Fixed for make test; HONEYMESH_FUZZ_EXAMPLES / HONEYMESH_FUZZ_SEED for a longer or
# other search by hand.
MAX_EXAMPLES = int(os.environ.get("HONEYMESH_FUZZ_EXAMPLES", "15"))
SEED = int(os.environ.get("HONEYMESH_FUZZ_SEED", "9421"))


# Schema-valid requests the hub may still refuse with 400/422, for what no JSON Schema
# can say, by operation and the refusal's pointer: an opaque cursor the hub did not
# issue (MAC-checked, PROTOCOL.md sections 7 and 8), a CIDR with host bits set, a
# reviewer scope naming no tenant, more uses than the tenant's max_nodes, a time the
# schema's pattern admits that is no calendar day (30 February) or leaves 1970 to 9998
# once moved to UTC, a token expiry in the past. Any other refusal of a schema-valid
# request fails.
_TIME = "^(not an RFC 3339 time|must be between 1970 and 9999|must be in the future)$"
SEMANTIC_REFUSALS: dict[str, dict[str, str]] = {
    # operationId: {pointer: what the detail says (a regular expression)}
    "addAllowlist": {"/cidr": ""},
    "listCandidates": {"/query/after": ""},
    "feed": {"/query/cursor": ""},
    "createToken": {"/scope": "^no such tenant$", "/expires_at": _TIME},
    # At most the tenant's effective max_nodes, a per-tenant limit (x-decisions).
    "createEnrollmentToken": {"/max_uses": "max_nodes"},
    "createTenant": {"/expires_at": _TIME},
    "createReaderKey": {"/expires_at": _TIME},
    "patchTenant": {"/expires_at": _TIME},
    # An address or CIDR that is none (PROTOCOL.md 13.1): CrowdSec's 400 `{"message"}`
    # carries no pointer, so any 400 of this lookup is taken as that one.
    "crowdsecDecisions": {"": ""},
}


@schemathesis.check
def schema_valid_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance, but for the refusals of `SEMANTIC_REFUSALS`."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        allowed = SEMANTIC_REFUSALS.get(case.operation.definition.raw.get("operationId", ""))
        if allowed and all(
            pointer in allowed and re.search(allowed[pointer], detail)
            for pointer, detail in _errors(response)
        ):
            return None
        raise


def _errors(response: Any) -> list[tuple[str, str]]:
    try:
        errors = json.loads(response.content).get("errors") or [{}]
    except (ValueError, AttributeError):
        return [("", "")]
    return [(str(e.get("pointer", "")), str(e.get("detail", ""))) for e in errors]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    schema_valid_accepted,
    response_headers_conformance,
    negative_data_rejection,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            # U+0000 in a string is refused by design (x-decisions: no-nul-characters).
            "allow-x00": False,
            # Credentials are `_Credentials`' business, never generated (or mutated).
            "with-security-parameters": False,
        },
        "phases": {"stateful": {"enabled": False}},
        "suppress-health-check": ["all"],
        "operations": [
            {
                # A batch is 202 with a result per envelope, rejected ones included
                # (PROTOCOL.md section 6); only a body of the wrong shape is a 4xx.
                "include-operation-id": "publishSignals",
                "checks": {"negative_data_rejection": {"expected-statuses": ["202", "4xx"]}},
            }
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

    def __init__(self, hub: FuzzHub, operation: Any, *, positive: bool) -> None:
        self.hub = hub
        self.positive = positive
        self.new_key: NodeKey | None = None
        self.path = operation.path
        self.security = _security(operation)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["X-Forwarded-For"] = self.hub.next_address()
        if "httpSignature" in self.security:
            self._sign(r)
        elif "readerKey" in self.security:
            r.headers["X-Api-Key"] = self.hub.reader_key
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
        if not self.positive:
            pass  # a schema-violating body stays as generated, key material included
        elif self.path == "/v1/nodes/enroll":
            # Proof of possession: signed by the key it enrolls.
            key = NodeKey.generate()
            body = _with_new_key(body, key, None)
        elif self.path == "/v1/nodes/self/keys":
            self.new_key = NodeKey.generate()
            message = f"honeymesh-key-rotation:v1:{self.hub.node_id}:{key.keyid}".encode()
            body = _with_new_key(body, self.new_key, message)
        if body is not r.body:
            r.prepare_body(body, None)
        target, _, query = (r.path_url or "/").partition("?")
        for name in ("Signature", "Signature-Input", "Content-Digest"):
            r.headers.pop(name, None)
        r.headers.update(sign_request(key, r.method or "GET", target, query, body))


def _with_new_key(body: bytes | None, key: NodeKey, proof_of: bytes | None) -> bytes | None:
    """The generated body with `public_key` (and `proof`, over `proof_of`) made real.

    A generated key has no private half, so without this every enrollment would be
    `invalid_signature` and every rotation a bad proof: the fuzzer would never pass them.
    """
    if not body:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict):
        return body
    if isinstance(data.get("public_key"), str):
        data["public_key"] = key.public_b64
    if proof_of is not None and isinstance(data.get("proof"), str):
        data["proof"] = base64.b64encode(key.sign(proof_of)).decode()
    return json.dumps(data).encode()


# Loaded at import (no server needed); the hub's address is given per call. (The lazy
# `schemathesis.pytest.from_fixture` loader breaks on pytest 9: it renames `_nodeid`.)
schema = schemathesis.openapi.from_path(SCHEMA_PATH, config=CONFIG)
# The ids of the module's hub, for `flatmap_path_parameters` (set by `test_api`).
PATH_IDS: dict[str, dict[str, str]] = {}


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Some cases name a real resource (FuzzHub.path_ids), so they get past 404."""
    real = PATH_IDS.get(context.operation.path)
    if not real or not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, **real}])


@schema.parametrize()
def test_api(case: Any, fuzz_hub: FuzzHub) -> None:
    PATH_IDS.update(fuzz_hub.path_ids)
    session = requests.Session()
    session.auth = credentials = _Credentials(
        fuzz_hub,
        case.operation,
        positive=case.meta is None or case.meta.generation.mode.is_positive,
    )
    try:
        response = case.call_and_validate(
            base_url=fuzz_hub.base_url, session=session, checks=CHECKS, timeout=30
        )
        if credentials.new_key is not None and response.status_code == 200:
            fuzz_hub.node_key = credentials.new_key  # rotated: sign with the new key now
    finally:
        session.close()
