"""JSON Schemas of the package, compiled once, and their errors as JSON pointers. Pure."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

import fastjsonschema


@functools.cache
def validator(name: str) -> Callable[[Any], Any]:
    text = (resources.files("honeymesh_hub") / "schemas" / f"{name}.schema.json").read_text("utf-8")
    compiled: Callable[[Any], Any] = fastjsonschema.compile(json.loads(text))
    return compiled


def pointer_of(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """fastjsonschema's `data.a[0].b` path as an RFC 6901 pointer `/a/0/b`."""
    path = exc.path if isinstance(exc.path, list) else []
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path[1:]]
    if exc.rule == "additionalProperties" and isinstance(exc.value, dict):
        allowed = set((exc.definition or {}).get("properties", {}))
        extra = sorted(k for k in exc.value if k not in allowed)
        if extra:
            parts.append(extra[0].replace("~", "~0").replace("/", "~1"))
    if exc.rule == "required" and isinstance(exc.value, dict):
        missing = [k for k in (exc.definition or {}).get("required", []) if k not in exc.value]
        if missing:
            parts.append(missing[0])
    return "".join("/" + p for p in parts)
