"""Signal payloads: every refusal with its code and pointer, in the protocol's order
(PROTOCOL.md sections 3 and 6), and the JSON Schemas the hub ships."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from honeymesh_hub.addresses import Indicator
from honeymesh_hub.validation import Refusal, Signal, validate_signal

NODE = uuid.UUID("6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b")
OTHER = uuid.UUID("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
SIGNAL_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def _body(**changes: Any) -> dict[str, Any]:
    """A valid tenant-shared payload; a change of None removes the member."""
    body: dict[str, Any] = {
        "v": 1,
        "id": str(SIGNAL_ID),
        "node_id": str(NODE),
        "observed_at": "2026-11-25T11:59:00Z",
        "indicator": {"type": "ip", "value": "203.0.113.5"},
        "scenario": "redis/unauthenticated-config-set",
        "action": "blocked",
        "mode": "enforce",
        "confidence": 80,
        "ttl_seconds": 3600,
        "share": "tenant",
    }
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _check(body: dict[str, Any] | bytes) -> Signal | Refusal:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return validate_signal(raw, caller_node_id=NODE, now=NOW)


def _refusal(body: dict[str, Any] | bytes) -> tuple[str, str]:
    result = _check(body)
    assert isinstance(result, Refusal), result
    assert result.detail
    return result.code, result.pointer


def _ind(type_: str, value: str) -> dict[str, str]:
    return {"type": type_, "value": value}


def test_a_full_signal() -> None:
    result = _check(
        _body(
            id=str(SIGNAL_ID).upper(),
            node_id=str(NODE).upper(),
            observed_at="2026-11-25T12:59:00+01:00",
            indicator=_ind("ip", "::FFFF:203.0.113.5"),
            service={"name": "redis", "port": 6379},
            evidence={
                "events": 3,
                "first_seen": "2026-11-25T11:50:00Z",
                "last_seen": "2026-11-25T11:58:00.250Z",
                "notes": "CONFIG SET dir /root/.ssh",
            },
            labels={"rack": "a1", "": ""},
        )
    )
    assert isinstance(result, Signal)
    assert result.id == SIGNAL_ID
    assert result.node_id == NODE
    assert result.observed_at == datetime(2026, 11, 25, 11, 59, tzinfo=UTC)
    assert result.observed_at.tzinfo is UTC
    assert result.indicator == Indicator("ip", "203.0.113.5", result.indicator.network)
    assert str(result.indicator.network) == "203.0.113.5/32"
    assert (result.scenario, result.action, result.mode) == (
        "redis/unauthenticated-config-set",
        "blocked",
        "enforce",
    )
    assert (result.confidence, result.ttl_seconds, result.share) == (80, 3600, "tenant")
    assert (result.service_name, result.service_port, result.evidence_events) == ("redis", 6379, 3)
    assert result.first_seen == datetime(2026, 11, 25, 11, 50, tzinfo=UTC)
    assert result.last_seen == datetime(2026, 11, 25, 11, 58, 0, 250000, tzinfo=UTC)
    assert result.labels == {"rack": "a1", "": ""}
    with pytest.raises(TypeError):
        result.labels["rack"] = "b2"  # type: ignore[index]


def test_a_minimal_mesh_signal() -> None:
    result = _check(_body(share="mesh", evidence={"events": 1}))
    assert isinstance(result, Signal)
    assert (result.share, result.labels, result.service_name, result.service_port) == (
        "mesh",
        None,
        None,
        None,
    )
    assert (result.evidence_events, result.first_seen, result.last_seen) == (1, None, None)


def test_integral_numbers_are_ints() -> None:
    """JSON Schema 2020-12 counts 80.0 as an integer; the Signal holds ints for the store."""
    result = _check(
        _body(v=1.0, confidence=80.0, ttl_seconds=3.6e3, service={"name": "s", "port": 22.0})
    )
    assert isinstance(result, Signal)
    for value in (result.confidence, result.ttl_seconds, result.service_port):
        assert type(value) is int


@pytest.mark.parametrize(
    "raw",
    [
        b'{"v": 1, "v": 1}',
        b'{"v": NaN}',
        b'{"v": Infinity}',
        b'{"x": "\\ud800"}',
        b'{"v": 100000000000000000000}',
        b"\xff\xfe",
        b"\xef\xbb\xbf{}",
        b"",
        b"{",
        b"[" * 40 + b"]" * 40,
    ],
)
def test_a_payload_that_is_not_ijson(raw: bytes) -> None:
    assert _refusal(raw) == ("validation_failed", "")


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"signal"', b"null"])
def test_a_payload_that_is_not_an_object(raw: bytes) -> None:
    assert _refusal(raw) == ("validation_failed", "")


SHAPE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"v": 2}, "/v"),
    ({"v": True}, "/v"),
    ({"v": "1"}, "/v"),
    ({"v": None}, "/v"),
    ({"id": "not-a-uuid"}, "/id"),
    ({"id": str(SIGNAL_ID) + "\n"}, "/id"),
    ({"id": 5}, "/id"),
    ({"node_id": None}, "/node_id"),
    ({"node_id": str(NODE).replace("-", "")}, "/node_id"),
    ({"observed_at": None}, "/observed_at"),
    ({"observed_at": "2026-11-25T11:59:00"}, "/observed_at"),  # naive
    ({"observed_at": "2026-11-25 11:59:00Z"}, "/observed_at"),
    ({"observed_at": "2026-11-25T11:59:00+0100"}, "/observed_at"),
    ({"observed_at": "2026-11-25T11:59Z"}, "/observed_at"),
    ({"observed_at": "20261125T115900Z"}, "/observed_at"),
    ({"observed_at": "2026-11-25T11:59:00Z\n"}, "/observed_at"),
    ({"observed_at": "٢٠٢٦-11-25T11:59:00Z"}, "/observed_at"),
    ({"observed_at": 1795000000}, "/observed_at"),
    ({"indicator": None}, "/indicator"),
    ({"indicator": "203.0.113.5"}, "/indicator"),
    ({"indicator": {"value": "203.0.113.5"}}, "/indicator/type"),
    ({"indicator": {"type": "ip"}}, "/indicator/value"),
    ({"indicator": _ind("host", "203.0.113.5")}, "/indicator/type"),
    ({"indicator": {"type": "ip", "value": 3405803781}}, "/indicator/value"),
    ({"indicator": {"type": "ip", "value": "203.0.113.5", "asn": 1}}, "/indicator/asn"),
    ({"scenario": None}, "/scenario"),
    ({"scenario": ""}, "/scenario"),
    ({"scenario": "Redis/UPPER"}, "/scenario"),
    ({"scenario": "redis//x"}, "/scenario"),
    ({"scenario": "redis/"}, "/scenario"),
    ({"scenario": "-redis"}, "/scenario"),
    ({"scenario": "redis\n"}, "/scenario"),
    ({"scenario": "a" * 129}, "/scenario"),
    ({"action": "dropped"}, "/action"),
    ({"mode": None}, "/mode"),
    ({"mode": "learn"}, "/mode"),
    ({"confidence": 101}, "/confidence"),
    ({"confidence": -1}, "/confidence"),
    ({"confidence": "80"}, "/confidence"),
    ({"confidence": True}, "/confidence"),
    ({"confidence": 80.5}, "/confidence"),
    ({"ttl_seconds": 299}, "/ttl_seconds"),
    ({"ttl_seconds": 2592001}, "/ttl_seconds"),
    ({"share": "world"}, "/share"),
    ({"share": None}, "/share"),
    ({"service": "redis"}, "/service"),
    ({"service": {"name": "redis"}}, "/service/port"),
    ({"service": {"name": "redis", "port": 0}}, "/service/port"),
    ({"service": {"name": "redis", "port": 65536}}, "/service/port"),
    ({"service": {"name": "", "port": 22}}, "/service/name"),
    ({"service": {"name": "s" * 65, "port": 22}}, "/service/name"),
    ({"service": {"name": "ssh", "port": 22, "banner": "x"}}, "/service/banner"),
    ({"evidence": []}, "/evidence"),
    ({"evidence": {"events": 0}}, "/evidence/events"),
    ({"evidence": {"events": 2**53}}, "/evidence/events"),
    ({"evidence": {"first_seen": "yesterday"}}, "/evidence/first_seen"),
    ({"evidence": {"last_seen": "2026-11-25T11:59:00"}}, "/evidence/last_seen"),
    ({"evidence": {"notes": "n" * 1025}}, "/evidence/notes"),
    ({"evidence": {"pcap": "..."}}, "/evidence/pcap"),
    ({"labels": ["a"]}, "/labels"),
    ({"labels": {f"k{i}": "v" for i in range(17)}}, "/labels"),
    ({"labels": {"k" * 65: "v"}}, "/labels/" + "k" * 65),
    ({"labels": {"k": "v" * 257}}, "/labels/k"),
    ({"labels": {"k": 1}}, "/labels/k"),
    ({"labels": {"a.b": None}}, "/labels/a.b"),
    ({"labels": {"a/b~c": []}}, "/labels/a~1b~0c"),
    ({"extra": 1}, "/extra"),
    ({"signature": "x"}, "/signature"),
]


@pytest.mark.parametrize(("changes", "pointer"), SHAPE_CASES)
def test_shape_refusals(changes: dict[str, Any], pointer: str) -> None:
    """A change of None removes the member: a missing member points at itself."""
    assert _refusal(_body(**changes)) == ("validation_failed", pointer)


def test_a_null_member_is_refused_where_it_stands() -> None:
    assert _refusal(_body() | {"mode": None}) == ("validation_failed", "/mode")
    assert _refusal(_body() | {"v": None}) == ("validation_failed", "/v")
    assert _refusal(_body() | {"service": None}) == ("validation_failed", "/service")


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        (_body(node_id=str(OTHER)), "/node_id"),
        (_body(observed_at="2026-02-30T11:59:00Z"), "/observed_at"),
        (_body(observed_at="2026-11-25T12:05:01Z"), "/observed_at"),
        (_body(observed_at="2026-11-18T11:59:59Z"), "/observed_at"),
        (_body(observed_at="2026-11-25T13:05:01+01:00"), "/observed_at"),
        (_body(evidence={"first_seen": "2026-02-30T00:00:00Z"}), "/evidence/first_seen"),
        (_body(evidence={"last_seen": "2026-04-31T00:00:00Z"}), "/evidence/last_seen"),
        (
            _body(
                evidence={"first_seen": "2026-11-25T11:00:01Z", "last_seen": "2026-11-25T11:00:00Z"}
            ),
            "/evidence/last_seen",
        ),
        (
            _body(
                evidence={
                    "first_seen": "2026-11-25T12:00:00+01:00",
                    "last_seen": "2026-11-25T10:59:59Z",
                }
            ),
            "/evidence/last_seen",
        ),
        (_body(share="mesh", labels={"rack": "a1"}), "/labels"),
        (_body(share="mesh", labels={}), "/labels"),
        (_body(share="mesh", evidence={"events": 3, "notes": "internal"}), "/evidence/notes"),
        (_body(share="mesh", evidence={"notes": ""}), "/evidence/notes"),
        (_body(indicator=_ind("ip", "192.0.2.01")), "/indicator/value"),
        (_body(indicator=_ind("ip", "fe80::1%eth0")), "/indicator/value"),
        (_body(indicator=_ind("ip", "203.0.113.0/24")), "/indicator/value"),
        (_body(indicator=_ind("cidr", "203.0.113.5")), "/indicator/value"),
        (_body(indicator=_ind("cidr", "192.0.2.1/24")), "/indicator/value"),
        (_body(indicator=_ind("cidr", "8.0.0.1/7")), "/indicator/value"),  # host bits first
        (_body(indicator=_ind("cidr", "10.0.0.1/8")), "/indicator/value"),
        (_body(indicator=_ind("cidr", "2001:db8::1/64")), "/indicator/value"),
    ],
)
def test_semantic_refusals(body: dict[str, Any], pointer: str) -> None:
    assert _refusal(body) == ("validation_failed", pointer)


@pytest.mark.parametrize(
    ("indicator", "code"),
    [
        (_ind("cidr", "8.0.0.0/7"), "too_broad"),
        (_ind("cidr", "8.0.0.0/15"), "too_broad"),
        (_ind("cidr", "2001:db8::/31"), "too_broad"),
        (_ind("cidr", "::ffff:8.0.0.0/103"), "too_broad"),  # mapped /103 is IPv4 /7
        # too_broad comes before reserved_range
        (_ind("cidr", "10.0.0.0/8"), "too_broad"),
        (_ind("cidr", "0.0.0.0/0"), "too_broad"),
        (_ind("cidr", "fc00::/7"), "too_broad"),
        (_ind("ip", "10.1.2.3"), "reserved_range"),
        (_ind("cidr", "100.64.0.0/16"), "reserved_range"),
        (_ind("cidr", "100.127.255.0/24"), "reserved_range"),
        (_ind("ip", "::ffff:10.0.0.1"), "reserved_range"),
        (_ind("ip", "64:ff9b::a00:1"), "reserved_range"),
        (_ind("cidr", "2002:0a00:0001::/48"), "reserved_range"),
        (_ind("cidr", "2001:0::/32"), "reserved_range"),
        (_ind("ip", "fe80::1"), "reserved_range"),
        (_ind("ip", "::1"), "reserved_range"),
    ],
)
def test_breadth_and_reserved_refusals(indicator: dict[str, str], code: str) -> None:
    assert _refusal(_body(indicator=indicator)) == (code, "/indicator/value")


@pytest.mark.parametrize(
    ("indicator", "canonical"),
    [
        (_ind("cidr", "192.0.2.0/24"), ("cidr", "192.0.2.0/24")),
        (_ind("ip", "198.51.100.1"), ("ip", "198.51.100.1")),
        (_ind("cidr", "203.0.113.0/24"), ("cidr", "203.0.113.0/24")),
        (_ind("cidr", "203.0.113.7/32"), ("ip", "203.0.113.7")),
        (_ind("cidr", "2001:db8::/32"), ("cidr", "2001:db8::/32")),
        (_ind("ip", "2001:DB8:0:0:0:0:0:1"), ("ip", "2001:db8::1")),
        (_ind("cidr", "8.8.0.0/16"), ("cidr", "8.8.0.0/16")),
    ],
)
def test_documentation_and_public_ranges_are_accepted(
    indicator: dict[str, str], canonical: tuple[str, str]
) -> None:
    result = _check(_body(indicator=indicator))
    assert isinstance(result, Signal)
    assert (result.indicator.type, result.indicator.value) == canonical


@pytest.mark.parametrize(
    ("observed_at", "ok"),
    [
        (NOW + timedelta(seconds=300), True),
        (NOW + timedelta(seconds=300, microseconds=1), False),
        (NOW - timedelta(days=7), True),
        (NOW - timedelta(days=7, microseconds=1), False),
        (NOW, True),
    ],
)
def test_observed_at_bounds(observed_at: datetime, ok: bool) -> None:
    text = observed_at.isoformat().replace("+00:00", "Z")
    result = _check(_body(observed_at=text))
    assert isinstance(result, Signal) is ok
    if not ok:
        assert result == Refusal("validation_failed", result.detail, "/observed_at")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-11-25t11:59:00z", datetime(2026, 11, 25, 11, 59, tzinfo=UTC)),
        ("2026-11-25T06:59:00-05:00", datetime(2026, 11, 25, 11, 59, tzinfo=UTC)),
        ("2026-11-25T11:59:00-00:00", datetime(2026, 11, 25, 11, 59, tzinfo=UTC)),
        ("2026-11-25T11:59:00.123456789Z", datetime(2026, 11, 25, 11, 59, 0, 123456, tzinfo=UTC)),
        ("2026-11-25T11:59:60Z", datetime(2026, 11, 25, 11, 59, 59, tzinfo=UTC)),  # leap second
    ],
)
def test_rfc3339_spellings(text: str, utc: datetime) -> None:
    result = _check(_body(observed_at=text))
    assert isinstance(result, Signal)
    assert result.observed_at == utc
    assert result.observed_at.utcoffset() == timedelta(0)


def test_now_may_carry_any_offset() -> None:
    now = NOW.astimezone(timezone(timedelta(hours=9)))
    raw = json.dumps(_body()).encode()
    assert isinstance(validate_signal(raw, caller_node_id=NODE, now=now), Signal)


def test_the_first_failing_check_answers() -> None:
    """Protocol order: shape, node, time, evidence, mesh privacy, address, breadth, range."""
    worst = _body(
        node_id=str(OTHER),
        observed_at="2020-01-01T00:00:00Z",
        share="mesh",
        labels={"a": "b"},
        indicator=_ind("cidr", "10.0.0.1/8"),
    )
    steps: list[tuple[dict[str, Any], str]] = [
        ({"extra": 1}, "/extra"),
        ({"extra": None}, "/node_id"),
        ({"node_id": str(NODE)}, "/observed_at"),
        ({"observed_at": "2026-11-25T11:59:00Z"}, "/labels"),
        ({"labels": None}, "/indicator/value"),
    ]
    for changes, pointer in steps:
        for key, value in changes.items():
            if value is None:
                worst.pop(key)
            else:
                worst[key] = value
        assert _refusal(worst) == ("validation_failed", pointer)
    worst["indicator"] = _ind("cidr", "10.0.0.0/8")
    assert _refusal(worst) == ("too_broad", "/indicator/value")
    worst["indicator"] = _ind("cidr", "10.0.0.0/16")
    assert _refusal(worst) == ("reserved_range", "/indicator/value")
    worst["indicator"] = _ind("cidr", "198.51.100.0/24")
    assert isinstance(_check(worst), Signal)


def test_values_are_frozen() -> None:
    refusal = Refusal("too_broad", "d", "/indicator/value")
    with pytest.raises(AttributeError):
        refusal.code = "x"  # type: ignore[misc]


# --- the JSON Schemas ---------------------------------------------------------

SHIPPED = ("signal", "publish-request", "publish-response")


def test_the_package_ships_the_project_schemas_byte_for_byte() -> None:
    """`schemas/` is the project's copy, `honeymesh_hub/schemas/` the wheel's: never drift."""
    project = sorted((ROOT / "schemas").glob("*.schema.json"))
    assert {p.name for p in project} >= {f"{name}.schema.json" for name in SHIPPED}
    package = resources.files("honeymesh_hub") / "schemas"
    for path in project:
        assert (package / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("name", SHIPPED)
def test_schemas_are_2020_12_and_compile(name: str) -> None:
    schema = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text("utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    fastjsonschema.compile(schema)


def _compiled(name: str) -> Any:
    return fastjsonschema.compile(
        json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text("utf-8"))
    )


ENVELOPE: dict[str, Any] = {
    "payloadType": "application/vnd.honeymesh.signal+json",
    "payload": "e30=",
    "signatures": [{"keyid": "ab" * 32, "sig": "c2ln"}],
}


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({"envelopes": [ENVELOPE]}, True),
        ({"envelopes": [ENVELOPE] * 500}, True),
        ({"envelopes": [ENVELOPE] * 501}, False),
        ({"envelopes": []}, False),
        ({}, False),
        ({"envelopes": [ENVELOPE], "x": 1}, False),
        ({"envelopes": [ENVELOPE | {"x": 1}]}, False),
        ({"envelopes": [ENVELOPE | {"signatures": []}]}, False),
        ({"envelopes": [ENVELOPE | {"signatures": ENVELOPE["signatures"] * 2}]}, False),
        ({"envelopes": [ENVELOPE | {"signatures": [{"keyid": "k"}]}]}, False),
        ({"envelopes": [ENVELOPE | {"payloadType": "text/plain"}]}, False),
    ],
)
def test_publish_request_schema(body: dict[str, Any], ok: bool) -> None:
    check = _compiled("publish-request")
    if ok:
        check(body)
    else:
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            check(body)


CANDIDATE = "7d444840-9dc0-11d1-b245-5ffdce74fad2"


@pytest.mark.parametrize(
    ("result", "ok"),
    [
        (
            {
                "id": str(SIGNAL_ID),
                "status": "accepted",
                "candidate_id": CANDIDATE,
                "candidate_state": "pending",
            },
            True,
        ),
        ({"id": str(SIGNAL_ID), "status": "duplicate"}, True),
        (
            {
                "id": None,
                "status": "rejected",
                "error": {"code": "foreign_key", "detail": "d", "pointer": "/envelopes/0"},
            },
            True,
        ),
        (
            {
                "id": str(SIGNAL_ID),
                "status": "rejected",
                "error": {"code": "rate_limited", "detail": "d"},
            },
            True,
        ),
        ({"id": str(SIGNAL_ID), "status": "rejected"}, False),
        (
            {"id": str(SIGNAL_ID), "status": "accepted", "error": {"code": "c", "detail": "d"}},
            False,
        ),
        ({"id": str(SIGNAL_ID), "status": "queued"}, False),
        ({"status": "accepted"}, False),
        ({"id": "x", "status": "accepted"}, False),
        ({"id": str(SIGNAL_ID), "status": "accepted", "candidate_state": "open"}, False),
        ({"id": str(SIGNAL_ID), "status": "duplicate", "extra": 1}, False),
    ],
)
def test_publish_response_schema(result: dict[str, Any], ok: bool) -> None:
    check = _compiled("publish-response")
    if ok:
        check({"results": [result]})
    else:
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            check({"results": [result]})
