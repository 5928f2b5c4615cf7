"""Signed requests (PROTOCOL.md section 2) through HTTP: every refusal with its code,
identity settled first, and an independent RFC 9421 implementation accepted.

The tests share one database (foundation.shared_database); each enrolls its own nodes.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator

import pytest
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from honeymesh_client.protocol.keys import NodeKey
from honeymesh_client.protocol.signing import content_digest, sign_request
from tests.conftest import Services
from tests.integration.foundation import (
    assert_problem,
    dumps,
    rotation_body,
    send,
    shared_database,
    snapshot,
)
from tests.support import Hub, Node, Reply

SELF = "/v1/nodes/self"


@pytest.fixture(scope="module")
def database_url(services: Services, template_db: str) -> Iterator[str]:
    yield from shared_database(services, template_db)


def _headers(node: Node, method: str, path: str, body: bytes | None, **kw: int) -> dict[str, str]:
    target, _, query = path.partition("?")
    created = kw.pop("created", int(node.hub.now()))
    headers = sign_request(node.key, method, target, query, body, created=created, **kw)
    if body is not None:
        headers["Content-Type"] = "application/json"
    return headers


Edit = Callable[[dict[str, str]], None]


def _set(name: str, value: str) -> Edit:
    return lambda h: h.__setitem__(name, value)


def _drop(*names: str) -> Edit:
    def edit(h: dict[str, str]) -> None:
        for name in names:
            h.pop(name, None)

    return edit


def _input(old: str, new: str) -> Edit:
    return lambda h: h.__setitem__("Signature-Input", h["Signature-Input"].replace(old, new))


# Header edits of a GET /v1/nodes/self signed by the node; (edit, code).
GET_CASES: list[tuple[str, Edit, str]] = [
    ("no-headers", _drop("Signature-Input", "Signature"), "missing_signature"),
    ("no-signature", _drop("Signature"), "missing_signature"),
    ("no-signature-input", _drop("Signature-Input"), "missing_signature"),
    ("garbage-input", _set("Signature-Input", "hm=<<garbage>>"), "missing_signature"),
    ("garbage-signature", _set("Signature", "hm=not base64"), "missing_signature"),
    ("other-label", _input("hm=", "sig1="), "missing_signature"),
    ("not-inner-list", _set("Signature-Input", 'hm="@method"'), "missing_signature"),
    ("no-@query", _input(' "@query"', ""), "invalid_signature"),
    ("no-@path", _input(' "@path"', ""), "invalid_signature"),
    ("no-@method", _input('"@method" ', ""), "invalid_signature"),
    ("extra-component", _input('"@query"', '"@query" "@authority"'), "invalid_signature"),
    ("component-param", _input('"@path"', '"@path";req'), "invalid_signature"),
    ("no-created", _input(";created=", ";xcreated="), "invalid_signature"),
    ("created-string", _input(";created=", ';created="1"+'), "missing_signature"),
    ("no-keyid", _input(";keyid=", ";xkeyid="), "invalid_signature"),
    ("keyid-upper", lambda h: _up_keyid(h), "invalid_signature"),
    ("no-nonce", _input(";nonce=", ";xnonce="), "invalid_signature"),
    ("short-nonce", lambda h: _nonce(h, "short"), "invalid_signature"),
    ("nonce-chars", lambda h: _nonce(h, "nonce.with.dots.0123"), "invalid_signature"),
    ("alg-rsa", _input('alg="ed25519"', 'alg="rsa-pss-sha512"'), "invalid_signature"),
    ("alg-hmac", _input('alg="ed25519"', 'alg="hmac-sha256"'), "invalid_signature"),
    ("tag", _input('alg="ed25519"', 'alg="ed25519";tag="x"'), "invalid_signature"),
    ("bad-signature-bytes", _set("Signature", "hm=:" + "A" * 88 + ":"), "invalid_signature"),
]


def _up_keyid(h: dict[str, str]) -> None:
    start = h["Signature-Input"].index('keyid="') + 7
    keyid = h["Signature-Input"][start : start + 64]
    h["Signature-Input"] = h["Signature-Input"].replace(keyid, keyid.upper())


def _nonce(h: dict[str, str], nonce: str) -> None:
    value = h["Signature-Input"]
    start = value.index('nonce="') + 7
    end = value.index('"', start)
    h["Signature-Input"] = value[:start] + nonce + value[end:]


@pytest.mark.parametrize(("_name", "edit", "code"), GET_CASES, ids=[c[0] for c in GET_CASES])
async def test_malformed_signatures(hub: Hub, _name: str, edit: Edit, code: str) -> None:
    node = await hub.enroll()
    headers = _headers(node, "GET", SELF, None)
    edit(headers)
    assert_problem(await send(hub, "GET", SELF, headers=headers), 401, code)


@pytest.mark.parametrize(
    ("offset", "code"),
    [(-301, "signature_expired"), (61, "signature_expired"), (-300, None), (60, None)],
)
async def test_created_window(hub: Hub, offset: int, code: str | None) -> None:
    node = await hub.enroll()
    now = int(hub.now())
    hub.clock.now = float(now)  # whole seconds, so the bounds are exact
    reply = await node.request("GET", SELF, created=now + offset)
    if code is None:
        assert reply.status == 200, reply.body
    else:
        assert_problem(reply, 401, code)


@pytest.mark.parametrize(("offset", "ok"), [(-1, False), (0, True), (30, True)])
async def test_expires_is_honoured(hub: Hub, offset: int, ok: bool) -> None:
    node = await hub.enroll()
    now = int(hub.now())
    hub.clock.now = float(now)
    headers = _headers(node, "GET", SELF, None, expires=now + offset)
    reply = await send(hub, "GET", SELF, headers=headers)
    if ok:
        assert reply.status == 200, reply.body
    else:
        assert_problem(reply, 401, "signature_expired")


async def test_unknown_key(hub: Hub) -> None:
    stranger = Node(hub, NodeKey.generate())
    assert_problem(await stranger.request("GET", SELF), 401, "unknown_key")


async def test_signature_by_another_key(hub: Hub) -> None:
    node = await hub.enroll()
    other = await hub.enroll()
    # keyid names `node`; the signature is `other`'s.
    headers = _headers(node, "GET", SELF, None)
    forged = _headers(other, "GET", SELF, None)
    headers["Signature"] = forged["Signature"]
    assert_problem(await send(hub, "GET", SELF, headers=headers), 401, "invalid_signature")


@pytest.mark.parametrize(
    ("signed_path", "sent_path", "code"),
    [
        (SELF, SELF + "?x=1", "invalid_signature"),
        (SELF + "?x=1", SELF + "?x=2", "invalid_signature"),
        (SELF + "?x=1", SELF, "invalid_signature"),
        ("/v1/keys/" + "0" * 64, SELF, "invalid_signature"),
    ],
)
async def test_tampered_request_line(hub: Hub, signed_path: str, sent_path: str, code: str) -> None:
    node = await hub.enroll()
    headers = _headers(node, "GET", signed_path, None)
    assert_problem(await send(hub, "GET", sent_path, headers=headers), 401, code)


async def test_tampered_method(hub: Hub) -> None:
    node = await hub.enroll()
    body = dumps(rotation_body(node, NodeKey.generate()))
    headers = _headers(node, "PUT", "/v1/nodes/self/keys", body)
    reply = await send(hub, "POST", "/v1/nodes/self/keys", data=body, headers=headers)
    assert_problem(reply, 401, "invalid_signature")


async def test_tampered_body_is_a_digest_mismatch(hub: Hub) -> None:
    node = await hub.enroll()
    new = NodeKey.generate()
    body = dumps(rotation_body(node, new))
    headers = _headers(node, "POST", "/v1/nodes/self/keys", body)
    before = await snapshot(hub.database_url)
    tampered = body.replace(b'"proof"', b' "proof"')
    reply = await send(hub, "POST", "/v1/nodes/self/keys", data=tampered, headers=headers)
    assert_problem(reply, 401, "digest_mismatch")
    # A Content-Digest rewritten for the new body breaks the signature instead.
    headers["Content-Digest"] = content_digest(tampered)
    reply = await send(hub, "POST", "/v1/nodes/self/keys", data=tampered, headers=headers)
    assert_problem(reply, 401, "invalid_signature")
    assert await snapshot(hub.database_url) == before


async def test_a_body_needs_a_covered_digest(hub: Hub) -> None:
    node = await hub.enroll()
    body = dumps(rotation_body(node, NodeKey.generate()))
    headers = _headers(node, "POST", "/v1/nodes/self/keys", None)  # signed without a body
    headers["Content-Type"] = "application/json"
    reply = await send(hub, "POST", "/v1/nodes/self/keys", data=body, headers=headers)
    assert_problem(reply, 401, "invalid_signature")


async def test_replayed_nonce(hub: Hub) -> None:
    node = await hub.enroll()
    headers = _headers(node, "GET", SELF, None)
    assert (await send(hub, "GET", SELF, headers=headers)).status == 200
    assert_problem(await send(hub, "GET", SELF, headers=headers), 401, "replayed_request")
    # The same nonce signed afresh is still a replay; another node may use it.
    nonce = "shared-nonce-0123456789"
    other = await hub.enroll()
    assert (await node.request("GET", SELF, nonce=nonce)).status == 200
    hub.clock.advance(1)
    assert_problem(await node.request("GET", SELF, nonce=nonce), 401, "replayed_request")
    assert (await other.request("GET", SELF, nonce=nonce)).status == 200


async def test_a_refused_signature_spends_no_nonce(hub: Hub) -> None:
    node = await hub.enroll()
    nonce = "not-spent-by-failure-01"
    headers = _headers(node, "GET", SELF, None, nonce=nonce)  # type: ignore[arg-type]
    sent = dict(headers, Signature=_headers(await hub.enroll(), "GET", SELF, None)["Signature"])
    assert_problem(await send(hub, "GET", SELF, headers=sent), 401, "invalid_signature")
    assert (await send(hub, "GET", SELF, headers=headers)).status == 200


async def test_identity_is_settled_before_node_state(hub: Hub) -> None:
    """A revoked node's broken request learns the signature error, not node_revoked."""
    node = await hub.enroll()
    assert (await hub.call("POST", f"/v1/admin/nodes/{node.node_id}/revoke")).status == 200
    bad = _headers(node, "GET", SELF, None)
    bad["Signature"] = _headers(Node(hub, NodeKey.generate()), "GET", SELF, None)["Signature"]
    assert_problem(await send(hub, "GET", SELF, headers=bad), 401, "invalid_signature")
    stale = await node.request("GET", SELF, created=int(hub.now()) - 400)
    assert_problem(stale, 401, "signature_expired")
    assert_problem(await node.request("GET", SELF), 403, "node_revoked")
    # Same for a suspended tenant's node.
    other = await hub.enroll()
    await hub.call("PATCH", f"/v1/admin/tenants/{other.tenant_id}", {"status": "suspended"})
    bad = _headers(other, "GET", SELF, None)
    bad["Signature"] = _headers(node, "GET", SELF, None)["Signature"]
    assert_problem(await send(hub, "GET", SELF, headers=bad), 401, "invalid_signature")
    assert_problem(await other.request("GET", SELF), 403, "tenant_suspended")


async def test_components_in_another_order(hub: Hub) -> None:
    """The hub rebuilds the base in the order Signature-Input lists the components."""
    node = await hub.enroll()
    body = dumps(rotation_body(node, NodeKey.generate()))
    reply = await _their_request(
        hub,
        node,
        "POST",
        "/v1/nodes/self/keys",
        body,
        components=("content-digest", "@query", "@path", "@method"),
    )
    assert reply.status == 200, reply.body


# -- interoperability with http-message-signatures ---------------------------------------


class _Message:
    """The request shape http-message-signatures reads: method, url, headers."""

    def __init__(self, method: str, url: str) -> None:
        self.method = method
        self.url = url
        self.headers: dict[str, str] = {}


async def _their_request(
    hub: Hub,
    node: Node,
    method: str,
    path: str,
    body: bytes | None,
    *,
    key: NodeKey | None = None,
    components: tuple[str, ...] = ("@method", "@path", "@query"),
) -> Reply:
    """Sign with the independent `http-message-signatures` package, label `hm`."""
    key = key or node.key
    resolver = MappingKeyResolver(public_keys={}, private_keys={key.keyid: key.private_pem()})
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
    message = _Message(method, str(hub.client.make_url(path)))
    signer.sign(
        message,
        key_id=key.keyid,
        created=datetime.datetime.fromtimestamp(int(hub.now()), tz=datetime.UTC),
        nonce="interop-" + NodeKey.generate().keyid[:24],
        label="hm",
        covered_component_ids=components,
        body=body,
    )
    headers = dict(message.headers)
    if body is not None:
        headers["Content-Type"] = "application/json"
    return await send(hub, method, path, data=body, headers=headers)


async def test_their_signatures_are_accepted(hub: Hub) -> None:
    node = await hub.enroll()
    me = await _their_request(hub, node, "GET", SELF, None)
    assert me.status == 200, me.body
    assert me.body["node_id"] == node.node_id

    looked = await _their_request(hub, node, "GET", f"/v1/keys/{node.key.keyid}?x=a%2Fb", None)
    assert looked.status == 200, looked.body

    new = NodeKey.generate()
    body = json.dumps(rotation_body(node, new)).encode()
    rotated = await _their_request(hub, node, "POST", "/v1/nodes/self/keys", body)
    assert rotated.status == 200, rotated.body
    assert rotated.body == {"keyid": new.keyid}
    after = await _their_request(hub, node, "GET", SELF, None, key=new)
    assert after.body["keyid"] == new.keyid


async def test_their_enrollment_is_accepted(hub: Hub) -> None:
    token = await hub.enrollment_token(await hub.tenant())
    node = Node(hub, NodeKey.generate())
    body = json.dumps({"token": token, "public_key": node.key.public_b64, "name": "n"}).encode()
    reply = await _their_request(hub, node, "POST", "/v1/nodes/enroll", body)
    assert reply.status == 201, reply.body
    assert reply.body["keyid"] == node.key.keyid


async def test_their_tampered_body_is_refused(hub: Hub) -> None:
    node = await hub.enroll()
    body = json.dumps(rotation_body(node, NodeKey.generate())).encode()
    key = node.key
    resolver = MappingKeyResolver(public_keys={}, private_keys={key.keyid: key.private_pem()})
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
    message = _Message("POST", str(hub.client.make_url("/v1/nodes/self/keys")))
    signer.sign(
        message,
        key_id=key.keyid,
        created=datetime.datetime.fromtimestamp(int(hub.now()), tz=datetime.UTC),
        nonce="interop-tampered-0001",
        label="hm",
        covered_component_ids=("@method", "@path", "@query"),
        body=body,
    )
    headers = dict(message.headers, **{"Content-Type": "application/json"})
    reply = await send(hub, "POST", "/v1/nodes/self/keys", data=body + b" ", headers=headers)
    assert_problem(reply, 401, "digest_mismatch")
