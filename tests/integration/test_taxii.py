"""TAXII 2.1 (PROTOCOL.md 14 r2) against the real hub: the real `taxii2-client` pages
every collection with Basic and with Token auth; raw HTTP for the rest of the rules
(media types, 406, 405, TAXII errors, `next` carrying the whole query, the date
headers and resuming from them, filters, an object and its versions, revocation,
foreign tenants and bad keys)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from taxii2client.common import TokenAuth
from taxii2client.v21 import Server, as_pages

from tests.support import Hub, approve, trusted
from tests.support import sequenced as _sequenced

TAXII = "application/taxii+json;version=2.1"
ROOT = "/taxii2/honeymesh/"


async def _key(hub: Hub, tenant: str) -> str:
    reply = await hub.call("POST", f"/v1/admin/tenants/{tenant}/reader-keys", {"name": "taxii"})
    assert reply.status == 201, reply.body
    return str(reply.body["key"])


async def _get(
    hub: Hub, path: str, key: str | None, *, accept: str | None = TAXII, **params: str
) -> tuple[int, Any, Any]:
    headers = {}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if accept is not None:
        headers["Accept"] = accept
    resp = await hub.client.get(path, headers=headers, params=params)
    raw = await resp.read()
    return resp.status, resp.headers, json.loads(raw) if raw else None


def _url(hub: Hub, path: str) -> str:
    return str(hub.client.make_url(path))


@pytest.fixture
async def world(hub: Hub) -> dict[str, Any]:
    tenant = await hub.tenant()
    node = await trusted(hub, tenant)
    ids = [await approve(node, f"203.0.113.{i}") for i in range(1, 6)]
    ids.append(await approve(node, "198.51.100.0/24", kind="cidr"))
    await _sequenced(hub)
    key = await _key(hub, tenant)
    status, _, body = await _get(hub, ROOT + "collections/", key)
    assert status == 200, body
    [mesh] = [c["id"] for c in body["collections"] if c["id"] != tenant]
    return {
        "tenant": tenant,
        "mesh": mesh,
        "node": node,
        "ids": ids,
        "key": key,
        "collections": body,
    }


def _pull_all(url: str, **auth: Any) -> list[dict[str, Any]]:
    """What a TAXII client does: discovery, the API root, each collection, every page."""
    server = Server(url, **auth)
    [root] = server.api_roots
    assert root.url == server.default.url
    objects: list[dict[str, Any]] = []
    for collection in root.collections:
        assert collection.can_read and not collection.can_write
        for envelope in as_pages(collection.get_objects, per_request=2):
            objects.extend(envelope.get("objects", []))
    return objects


async def test_taxii2_client_pages_every_collection_with_basic_and_token(
    hub: Hub, world: dict[str, Any]
) -> None:
    url = _url(hub, "/taxii2/")
    key = world["key"]
    for auth in ({"user": "reader", "password": key}, {"auth": TokenAuth(key)}):
        objects = await asyncio.to_thread(_pull_all, url, **auth)
        indicators = [o for o in objects if o["type"] == "indicator"]
        identities = [o for o in objects if o["type"] == "identity"]
        assert sorted(o["id"] for o in indicators) == sorted(
            f"indicator--{i}" for i in world["ids"]
        )
        # one identity per collection the key sees (mesh and its tenant's)
        assert len(identities) == len(world["collections"]["collections"])
        assert len({o["id"] for o in identities}) == 1


async def test_every_answer_is_exactly_the_taxii_type_and_errors_are_taxii_errors(
    hub: Hub, world: dict[str, Any]
) -> None:
    key = world["key"]
    collection = world["collections"]["collections"][0]["id"]
    for path in ("/taxii2/", ROOT, ROOT + "collections/", f"{ROOT}collections/{collection}/"):
        status, headers, _ = await _get(hub, path, key)
        assert status == 200 and headers["Content-Type"] == TAXII
    for accept in ("*/*", "application/taxii+json", "application/json, */*;q=0.1", None):
        status, _, _ = await _get(hub, ROOT, key, accept=accept)
        assert status == 200, accept
    for accept in ("application/json", "application/taxii+json;version=2.0", "*/*;q=0"):
        status, headers, body = await _get(hub, ROOT, key, accept=accept)
        assert status == 406 and headers["Content-Type"] == TAXII
        assert body["http_status"] == "406" and body["title"]
    status, headers, body = await _get(hub, ROOT, None)
    assert status == 401 and headers["Content-Type"] == TAXII and body["http_status"] == "401"
    status, _, body = await _get(hub, ROOT, "hmr_" + "x" * 40)
    assert status == 401
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        resp = await hub.client.request(
            method,
            f"{ROOT}collections/{collection}/objects/",
            headers={"Authorization": f"Bearer {key}", "Accept": TAXII},
            data=b"{}",
        )
        assert resp.status == 405 and resp.headers["Content-Type"] == TAXII
        assert (await resp.json(content_type=None))["http_status"] == "405"
    status, headers, body = await _get(
        hub, f"{ROOT}collections/{'0' * 8}-0000-4000-8000-{'0' * 12}/", key
    )
    assert status == 404 and headers["Content-Type"] == TAXII and body["http_status"] == "404"


async def test_next_carries_the_whole_query_and_headers_resume_without_a_gap(
    hub: Hub, world: dict[str, Any]
) -> None:
    key = world["key"]
    mesh = world["mesh"]
    path = f"{ROOT}collections/{mesh}/objects/"
    status, headers, first = await _get(hub, path, key, limit="2", **{"match[type]": "indicator"})
    assert status == 200 and first["more"] is True and len(first["objects"]) == 2
    assert headers["X-TAXII-Date-Added-First"] < headers["X-TAXII-Date-Added-Last"]
    seen = [o["id"] for o in first["objects"]]
    token = first["next"]
    while True:
        # OpenCTI's connector follows `next` without repeating its filters.
        status, headers, page = await _get(hub, path, key, next=token)
        assert status == 200, page
        assert all(o["type"] == "indicator" for o in page["objects"])
        seen += [o["id"] for o in page["objects"]]
        if not page["more"]:
            assert "next" not in page
            break
        token = page["next"]
    assert sorted(seen) == sorted(f"indicator--{i}" for i in world["ids"])
    last = headers["X-TAXII-Date-Added-Last"]
    # Resuming from the last header: nothing again, then exactly what is new.
    status, headers, empty = await _get(hub, path, key, added_after=last)
    assert status == 200 and empty == {"more": False, "objects": []}
    new = await approve(world["node"], "192.0.2.77")
    await _sequenced(hub)
    status, headers, page = await _get(hub, path, key, added_after=last)
    assert [o["id"] for o in page["objects"]] == [f"indicator--{new}"]
    assert headers["X-TAXII-Date-Added-First"] > last
    # An altered or foreign token is refused.
    for bad in (token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "x", "%%%"):
        status, headers, body = await _get(hub, path, key, next=bad)
        assert status == 422 and body["http_status"] == "422"
    manifest = f"{ROOT}collections/{mesh}/manifest/"
    status, _, body = await _get(hub, manifest, key, next=first["next"])
    assert status == 422  # a token of the objects endpoint is not the manifest's


async def test_bad_queries_are_422_and_limits_are_capped(hub: Hub, world: dict[str, Any]) -> None:
    key = world["key"]
    path = f"{ROOT}collections/{world['mesh']}/objects/"
    for params in (
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"added_after": "yesterday"},
        {"added_after": "2026-13-40T00:00:00Z"},
        {"match[version]": "last,first"},
        {"match[version]": "not-a-time"},
        {"match[id]": ",".join(f"indicator--{i}" for i in range(101))},
    ):
        status, _, body = await _get(hub, path, key, **params)
        assert status == 422, params
        assert body["http_status"] == "422" and body["description"]
    status, _, body = await _get(hub, path, key, limit="100000")
    assert status == 200 and len(body["objects"]) == 7  # capped at 1000, all fit


async def test_filters_object_versions_and_revocation(hub: Hub, world: dict[str, Any]) -> None:
    key = world["key"]
    mesh = world["mesh"]
    target = world["ids"][0]
    allow = await hub.call("POST", "/v1/admin/allowlist", {"cidr": "203.0.113.1", "reason": "x"})
    assert allow.status == 201
    await _sequenced(hub)
    base = f"{ROOT}collections/{mesh}/"
    status, _, body = await _get(hub, f"{base}objects/indicator--{target}/", key)
    assert status == 200
    [latest] = body["objects"]
    assert latest["revoked"] is True
    status, _, body = await _get(
        hub, f"{base}objects/indicator--{target}/", key, **{"match[version]": "all"}
    )
    assert [o.get("revoked", False) for o in body["objects"]] == [False, True]
    status, _headers, versions = await _get(
        hub, f"{base}objects/indicator--{target}/versions/", key
    )
    assert status == 200 and versions["versions"] == [o["modified"] for o in body["objects"]]
    status, _, first = await _get(
        hub, f"{base}objects/indicator--{target}/", key, **{"match[version]": "first"}
    )
    assert [o["modified"] for o in first["objects"]] == versions["versions"][:1]
    status, _, exact = await _get(
        hub, f"{base}objects/", key, **{"match[version]": versions["versions"][1]}
    )
    assert [o["id"] for o in exact["objects"]] == [f"indicator--{target}"]
    status, _, only = await _get(
        hub, f"{base}objects/", key, **{"match[id]": f"indicator--{world['ids'][2]}"}
    )
    assert [o["id"] for o in only["objects"]] == [f"indicator--{world['ids'][2]}"]
    status, _, none = await _get(hub, f"{base}objects/", key, **{"match[spec_version]": "2.0"})
    assert none == {"more": False, "objects": []}
    status, _, manifest = await _get(hub, f"{base}manifest/", key)
    records = manifest["objects"]
    assert all(r["media_type"] == "application/stix+json;version=2.1" for r in records)
    dates = [r["date_added"] for r in records]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)
    for missing in (f"indicator--{world['tenant']}", "indicator--nope", "malware--" + target):
        status, _, body = await _get(hub, f"{base}objects/{missing}/", key)
        assert status == 404, missing


async def test_a_key_sees_only_its_tenants_collections(hub: Hub, world: dict[str, Any]) -> None:
    other_tenant = await hub.tenant()
    other_key = await _key(hub, other_tenant)
    status, _, body = await _get(hub, ROOT + "collections/", other_key)
    assert status == 200, body
    assert sorted(c["id"] for c in body["collections"]) == sorted([other_tenant, world["mesh"]])
    own = await approve(await trusted(hub, world["tenant"]), "192.0.2.5", share="tenant")
    await _sequenced(hub)
    status, _, body = await _get(hub, f"{ROOT}collections/{world['tenant']}/objects/", world["key"])
    assert [o["id"] for o in body["objects"] if o["type"] == "indicator"] == [f"indicator--{own}"]
    for path in ("", "objects/", "manifest/", f"objects/indicator--{own}/"):
        status, _, body = await _get(hub, f"{ROOT}collections/{world['tenant']}/{path}", other_key)
        assert status == 404 and body["http_status"] == "404", path
    status, _, body = await _get(hub, f"{ROOT}collections/{other_tenant}/objects/", other_key)
    assert [o["type"] for o in body["objects"]] == ["identity"]
    status, _, body = await _get(
        hub, f"{ROOT}collections/{world['mesh']}/objects/indicator--{own}/", other_key
    )
    assert status == 404  # a tenant decision is not in the mesh collection


async def test_tenant_refusals_and_the_pull_limit_are_taxii_errors(hub: Hub) -> None:
    tenant = await hub.tenant(limits={"pull_per_minute": 3})
    key = await _key(hub, tenant)
    for _ in range(3):
        status, headers, _ = await _get(hub, ROOT + "collections/", key)
        assert status == 200
    status, headers, body = await _get(hub, ROOT + "collections/", key)
    assert status == 429 and headers["Content-Type"] == TAXII
    assert body["http_status"] == "429" and body["title"] and int(headers["Retry-After"]) >= 1
    other = await hub.tenant()
    other_key = await _key(hub, other)
    patched = await hub.call("PATCH", f"/v1/admin/tenants/{other}", {"status": "suspended"})
    assert patched.status == 200, patched.body
    for path in ("/taxii2/", ROOT + "collections/"):
        status, headers, body = await _get(hub, path, other_key)
        assert status == 403 and headers["Content-Type"] == TAXII, path
        assert body["http_status"] == "403" and body["title"], body
        assert other_key not in json.dumps(body)
