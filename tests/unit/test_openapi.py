"""schemas/openapi.yaml against the hub: every route it serves is described, every
schema file it references exists and is a draft 2020-12 JSON Schema, and every JSON
Schema the hub ships compiles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
import yaml

from honeymesh_hub.app import create_app
from honeymesh_hub.config import Config

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "schemas" / "openapi.yaml"
HUB_SCHEMAS = ROOT / "server" / "honeymesh_hub" / "schemas"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _pointer(doc: Any, pointer: str) -> Any:
    for token in pointer.lstrip("/").split("/"):
        doc = doc[token.replace("~1", "/").replace("~0", "~")]
    return doc


def _served_routes() -> set[tuple[str, str]]:
    app = create_app(Config(database_url="postgresql://hub@127.0.0.1:5432/hub"))
    served = set()
    for route in app.router.routes():
        # aiohttp adds a HEAD to every GET; the CrowdSec routes have their own.
        if route.method == "HEAD" and not route.resource.canonical.startswith("/crowdsec/"):
            continue
        assert route.resource is not None
        served.add((route.resource.canonical, route.method.lower()))
    return served


def test_is_openapi_3_1_with_decisions(spec: dict[str, Any]) -> None:
    assert str(spec["openapi"]).startswith("3.1.")
    decisions = spec["x-decisions"]
    assert isinstance(decisions, list) and decisions
    for decision in decisions:
        assert isinstance(decision, dict)
        assert isinstance(decision.get("decision"), str) and decision["decision"].strip()
        assert decision.get("status") in ("implemented", "planned"), decision
    ids = [d["id"] for d in decisions]
    assert len(ids) == len(set(ids)), "decision ids must be unique"


def test_security_schemes(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert schemes["httpSignature"]["type"] == "apiKey"
    assert "hm" in schemes["httpSignature"]["description"]


def test_file_refs_are_2020_12_json_schemas(spec: dict[str, Any]) -> None:
    file_refs = {ref for ref in _refs(spec) if not ref.startswith("#")}
    assert file_refs, "request bodies reference the hub's JSON Schema files"
    for ref in sorted(file_refs):
        path = (OPENAPI.parent / ref.partition("#")[0]).resolve()
        assert path.is_file(), f"{ref} does not resolve to a file"
        assert path.parent == HUB_SCHEMAS, f"{ref} is not one of the hub's shipped schemas"
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema.get("$schema") == DRAFT_2020_12, f"{ref} is not draft 2020-12"


def test_local_refs_resolve(spec: dict[str, Any]) -> None:
    for ref in sorted({ref for ref in _refs(spec) if ref.startswith("#")}):
        assert _pointer(spec, ref.removeprefix("#")) is not None, ref


def test_every_served_route_is_described(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    served = _served_routes()
    assert served
    missing = sorted(
        f"{method.upper()} {path}" for path, method in served if method not in paths.get(path, {})
    )
    assert not missing, f"routes missing from openapi.yaml: {missing}"


def test_described_routes_are_served_unless_planned(spec: dict[str, Any]) -> None:
    served = _served_routes()
    stale = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in METHODS or operation.get("x-status") == "planned":
                continue
            if (path, method) not in served:
                stale.append(f"{method.upper()} {path}")
    assert not stale, f"described but not served (mark x-status: planned?): {stale}"


def test_every_operation_answers_problems_as_json(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for status, response in operation["responses"].items():
                if int(status) < 400 or method == "head":
                    continue
                if "$ref" in response:
                    response = _pointer(spec, response["$ref"].removeprefix("#"))
                # CrowdSec's routes answer CrowdSec's `{"message"}` (PROTOCOL.md 13.1),
                # but for the hub-wide 413 and 503 of the middleware; TAXII's always
                # TAXII error messages (section 14).
                media = "application/problem+json"
                if path.startswith("/crowdsec/") and status not in ("413", "503"):
                    media = "application/json"
                elif path.startswith("/taxii2/"):
                    media = "application/taxii+json;version=2.1"
                assert media in response["content"], f"{method.upper()} {path} {status}"


def test_hub_ships_schemas() -> None:
    assert sorted(HUB_SCHEMAS.glob("*.schema.json"))


@pytest.mark.parametrize("path", sorted(HUB_SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_hub_schema_compiles(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema.get("$schema") == DRAFT_2020_12
    fastjsonschema.compile(schema)
