"""Every object the hub serves over TAXII passes the OASIS STIX 2.1 validator
(stix2-validator 3.2.0) with no error, parses with `stix2`, and MISP's converter
(misp-stix) makes `ip-dst` attributes of the indicators; a removal is a version with
`revoked` and, for MISP which ignores `revoked`, `valid_until` at the removal. MISP's
own TAXII import (a collection URL, pages of 100) is replayed with its libraries."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import stix2
import taxii2client
from misp_stix_converter import ExternalSTIX2toMISPParser
from stix2.v21 import Bundle
from stix2validator import ValidationOptions, validate_instance

from tests.integration.test_taxii import ROOT, _get, _key, _sequenced
from tests.support import Hub, approve, publish, signal, trusted

VALUES = [
    ("ip", "203.0.113.7"),
    ("cidr", "198.51.100.0/24"),
    ("ip", "2001:db8::7"),
    ("cidr", "2001:db8:1::/48"),
]


async def _all_versions(hub: Hub, key: str, collection: str) -> list[dict[str, Any]]:
    status, _, body = await _get(
        hub,
        f"{ROOT}collections/{collection}/objects/",
        key,
        limit="1000",
        **{"match[version]": "all"},
    )
    assert status == 200 and not body["more"]
    objects: list[dict[str, Any]] = body["objects"]
    return objects


async def test_every_object_served_is_valid_stix_and_misp_reads_it(hub: Hub) -> None:
    tenant = await hub.tenant()
    node = await trusted(hub, tenant)
    ids = {value: await approve(node, value, kind=kind) for kind, value in VALUES}
    removed = await hub.call("POST", "/v1/admin/allowlist", {"cidr": "203.0.113.7", "reason": "x"})
    assert removed.status == 201
    await _sequenced(hub)
    key = await _key(hub, tenant)
    _, _, listed = await _get(hub, ROOT + "collections/", key)
    [mesh] = [c["id"] for c in listed["collections"] if c["id"] != tenant]
    objects = await _all_versions(hub, key, mesh)
    assert len(objects) == 1 + len(VALUES) + 1  # identity, one per approval, the removal

    options = ValidationOptions(version="2.1")
    for obj in objects:
        result = validate_instance(obj, options)
        assert result.is_valid and not result.errors, (obj, [str(e) for e in result.errors])
        # The one SHOULD left: {302} "an external reference with a URL has a hash". The
        # provenance URL names a live answer (the newest envelopes), not fixed bytes.
        warnings = {str(w).split(": ", 1)[1][:5] for w in result.warnings}
        assert warnings <= {"{302}"}, (obj, [str(w) for w in result.warnings])
        stix2.parse(obj, allow_custom=False)

    [identity] = [o for o in objects if o["type"] == "identity"]
    assert identity["identity_class"] == "system"
    indicators = [o for o in objects if o["type"] == "indicator"]
    assert {o["created_by_ref"] for o in indicators} == {identity["id"]}
    by_value = {o["pattern"]: o for o in indicators if not o.get("revoked")}
    assert set(by_value) == {
        "[ipv4-addr:value = '203.0.113.7']",
        "[ipv4-addr:value = '198.51.100.0/24']",
        "[ipv6-addr:value = '2001:db8::7']",
        "[ipv6-addr:value = '2001:db8:1::/48']",
    }
    for o in indicators:
        assert o["pattern_type"] == "stix" and o["indicator_types"] == ["malicious-activity"]
        assert o["labels"] == ["redis/unauthenticated-config-set"] and o["confidence"] == 95
        decision = o["id"].removeprefix("indicator--")
        [ref] = o["external_references"]
        assert ref["url"].endswith(f"/v1/decisions/{decision}/provenance")
    [revoked] = [o for o in indicators if o.get("revoked")]
    assert revoked["id"] == f"indicator--{ids['203.0.113.7']}"
    [first] = [o for o in indicators if o["id"] == revoked["id"] and not o.get("revoked")]
    assert revoked["modified"] > first["modified"] and revoked["created"] == first["created"]
    assert revoked["valid_until"] == revoked["modified"] < first["valid_until"]

    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}
    assert validate_instance(bundle, options).is_valid
    parser = ExternalSTIX2toMISPParser()
    parser.load_stix_bundle(stix2.parse(json.dumps(bundle), allow_custom=False))
    parser.parse_stix_bundle()
    attributes = sorted((a.type, a.value) for a in parser.misp_event.attributes)
    # misp-stix ignores `revoked`: both versions of the removed decision are there.
    assert set(attributes) == {("ip-dst", value) for _, value in VALUES}


def _misp_import(collection_url: str, key: str) -> tuple[int, list[tuple[str, str]]]:
    """What MISP's TAXII 2.1 import module (misp-modules, import_mod/taxii21.py) does:
    a collection URL with Basic auth, pages of 100 asking for spec version 2.1, one
    bundle of everything, misp-stix's external parser into one event. The pages it
    read, and the event's (type, value) attributes."""
    collection = taxii2client.Collection(collection_url, user="misp", password=key)
    pages = list(taxii2client.as_pages(collection.get_objects, per_request=100, spec_version="2.1"))
    objects = [o for envelope in pages for o in envelope.get("objects", [])]
    parser = ExternalSTIX2toMISPParser()
    parser.load_stix_bundle(Bundle(objects, allow_custom=True))
    parser.parse_stix_bundle(single_event=True)
    return len(pages), [(a.type, a.value) for a in parser.misp_event.attributes]


async def test_misps_import_pages_a_collection_url_100_at_a_time(hub: Hub) -> None:
    tenant = await hub.tenant("enterprise")  # pro approves 100 a day on trust alone
    node = await trusted(hub, tenant)
    values = [f"192.0.2.{i}" for i in range(1, 76)] + [f"198.51.100.{i}" for i in range(1, 76)]
    for half in (values[:75], values[75:]):
        signals = [
            signal(node, v, confidence=95, indicator={"type": "ip", "value": v}) for v in half
        ]
        reply = await publish(node, *signals)
        assert reply.status == 202, reply.body
        assert {r["candidate_state"] for r in reply.body["results"]} == {"approved"}
    await _sequenced(hub)
    key = await _key(hub, tenant)
    _, _, listed = await _get(hub, ROOT + "collections/", key)
    [mesh] = [c["id"] for c in listed["collections"] if c["id"] != tenant]
    url = str(hub.client.make_url(f"{ROOT}collections/{mesh}/"))
    pages, attributes = await asyncio.to_thread(_misp_import, url, key)
    assert pages == 2  # 150 indicators and the hub identity, at 100 a page
    assert sorted(attributes) == sorted(("ip-dst", v) for v in values)
