"""RFC 6901 JSON Pointers, as errors carry them (PROTOCOL.md section 3). Pure."""

from __future__ import annotations

__all__ = ["escape_token", "pointer"]


def escape_token(name: str) -> str:
    """One member name as an RFC 6901 reference token (section 3: "~" is "~0",
    "/" is "~1", "~" first so a "/" never turns into "~01")."""
    return name.replace("~", "~0").replace("/", "~1")


def pointer(*names: str) -> str:
    """The pointer to the member reached through `names`; "" for the whole document."""
    return "".join("/" + escape_token(name) for name in names)
