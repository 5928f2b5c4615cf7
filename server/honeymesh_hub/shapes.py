"""JSON Schemas of the package, compiled once, and their errors as JSON pointers. Pure.

Every body and the signal payload are checked by the same compiled validators and
their errors explained the same way: a pointer to the member at fault (the unknown
member, the missing one, the over-long label name, else the member whose value
broke the rule) and one short sentence.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import fastjsonschema

from honeymesh_client.protocol.pointers import escape_token
from honeymesh_client.protocol.pointers import pointer as json_pointer
from honeymesh_client.protocol.times import RFC3339_DATE_TIME

# RFC 3339 `date-time` exactly, the shared protocol's grammar: fastjsonschema's own
# format also accepts `+0100` and non-ASCII digits. Calendar validity (30 February) is
# checked where the text is read, by the same module's reader.
RFC3339 = RFC3339_DATE_TIME
# Objects whose member names are free-form text (and may hold dots themselves).
_FREE_FORM = ("labels",)


@functools.cache
def validator(name: str) -> Callable[[Any], Any]:
    text = (resources.files("honeymesh_hub") / "schemas" / f"{name}.schema.json").read_text("utf-8")
    compiled: Callable[[Any], Any] = fastjsonschema.compile(
        json.loads(text), formats={"date-time": RFC3339}
    )
    return compiled


def _parts(name: str) -> list[str]:
    """fastjsonschema's `data.a.b` (or `data.a[0]`) as path members."""
    rest = name[len("data") :] if name.startswith("data") else name
    parts: list[str] = []
    for segment in rest.replace("[", ".").replace("]", "").split("."):
        if not segment:
            continue
        if parts and parts[-1] in _FREE_FORM and len(parts) == 1:
            # the rest is one member name of a free-form map
            parts.append(rest.split(f".{parts[-1]}.", 1)[1])
            break
        parts.append(segment)
    return parts


def explain(exc: fastjsonschema.JsonSchemaValueException) -> tuple[str, str]:
    """(pointer, detail) for a schema error."""
    name: str = exc.name or "data"
    parts = _parts(name)
    pointer = json_pointer(*parts)
    what = ".".join(parts) if parts else "the body"
    definition: Mapping[str, Any] = exc.definition if isinstance(exc.definition, dict) else {}
    value = exc.value
    rule = exc.rule
    if rule == "additionalProperties" and isinstance(value, dict):
        known = definition.get("properties", {})
        unknown = next((k for k in value if k not in known), None)
        if unknown is not None:
            return f"{pointer}/{escape_token(unknown)}", f"{unknown} is not a known member"
    elif rule == "required" and isinstance(value, dict):
        missing = next((k for k in definition.get("required", ()) if k not in value), None)
        if missing is not None:
            return f"{pointer}/{escape_token(missing)}", f"{missing} is required"
    elif rule == "propertyNames" and isinstance(value, dict):
        longest = definition.get("propertyNames", {}).get("maxLength", 0)
        bad = next((k for k in value if len(k) > longest), None)
        if bad is not None:
            return f"{pointer}/{escape_token(bad)}", f"a name is at most {longest} characters"
    elif rule == "format":
        return pointer, f"{what} is not an RFC 3339 date-time like 2026-11-24T10:00:00Z"
    elif rule == "pattern" and definition.get("format") == "date-time":
        # The pattern of a date-time narrows it to what the hub stores (x-decisions admin-times).
        return pointer, (
            f"{what} is not an RFC 3339 date-time of the years 1970 to 9998"
            " like 2026-11-24T10:00:00Z"
        )
    elif rule == "const":
        return pointer, f"{what} must be {json.dumps(exc.rule_definition)}"
    elif rule == "type":
        return pointer, f"{what} must be of type {exc.rule_definition}"
    message = str(exc.message)
    if message.startswith(name):
        message = message[len(name) :].strip()
    return pointer, f"{what} {message}"
