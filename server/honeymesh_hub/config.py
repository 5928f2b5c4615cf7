"""The hub's configuration: read once from the environment (and a TOML file), frozen.

PROTOCOL.md section 11 is the contract. A bad value stops the hub at start with one
sentence naming the variable; nothing is re-read while serving.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message is one sentence."""


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Auto-approval policy (PROTOCOL.md section 7); `[policy]` in HONEYMESH_CONFIG."""

    corroboration_min_nodes: int = 3
    corroboration_min_tenants: int = 2
    corroboration_min_confidence: int = 70
    corroboration_window_seconds: int = 86400
    trusted_min_confidence: int = 90
    auto_max_ttl_seconds: int = 86400
    rejected_hold_seconds: int = 7 * 86400


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str = field(repr=False)
    redis_url: str | None = field(default=None, repr=False)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8700
    public_addresses: tuple[IPNetwork, ...] = ()
    trusted_proxies: tuple[IPNetwork, ...] = ()
    metrics_allow: tuple[IPNetwork, ...] = ()
    # Prefix of every Redis key; tests give each test its own.
    redis_prefix: str = "hm:"
    # How stale a node's identity and entitlement may be (PROTOCOL.md section 4: at most 5 s).
    identity_cache_seconds: float = 2.0
    # How long while this process hears every credential change (keydirectory.py); 0:
    # never past identity_cache_seconds.
    identity_cache_listening_seconds: float = 60.0
    feed_retention_seconds: int = 7 * 86400
    # The transparency log (PROTOCOL.md 15 r2): its key from a PEM file instead of the
    # one made at the first migration, and its origin instead of honeymesh.<hub id>.
    log_key_pem: bytes | None = field(default=None, repr=False)
    log_origin: str | None = None
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        database_url = env.get("HONEYMESH_DATABASE_URL", "").strip()
        if not database_url:
            raise ConfigError(
                "HONEYMESH_DATABASE_URL is not set; give it the postgresql:// URL of the database."
            )
        if urlsplit(database_url).scheme not in ("postgresql", "postgres"):
            raise ConfigError("HONEYMESH_DATABASE_URL must be a postgresql:// URL.")
        redis_url = env.get("HONEYMESH_REDIS_URL", "").strip() or None
        if redis_url is not None and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("HONEYMESH_REDIS_URL must be a redis:// or rediss:// URL.")
        host, port = parse_listen(env.get("HONEYMESH_LISTEN", "127.0.0.1:8700"), "HONEYMESH_LISTEN")
        config = cls(
            database_url=database_url,
            redis_url=redis_url,
            listen_host=host,
            listen_port=port,
            public_addresses=parse_networks(env, "HONEYMESH_PUBLIC_ADDRESSES"),
            trusted_proxies=parse_networks(env, "HONEYMESH_TRUSTED_PROXIES"),
            metrics_allow=parse_networks(env, "HONEYMESH_METRICS_ALLOW"),
            redis_prefix=env.get("HONEYMESH_REDIS_PREFIX", "hm:"),
            log_key_pem=_log_key_pem(env.get("HONEYMESH_LOG_KEY_FILE", "").strip() or None),
            log_origin=_log_origin(env.get("HONEYMESH_LOG_ORIGIN", "").strip() or None),
        )
        toml_path = env.get("HONEYMESH_CONFIG", "").strip()
        if toml_path:
            config = config.with_toml(Path(toml_path))
        return config

    def with_toml(self, path: Path) -> Config:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"HONEYMESH_CONFIG names {path}, which cannot be read ({exc.strerror})."
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"HONEYMESH_CONFIG file {path} is not valid TOML: {exc}.") from None
        policy = self.policy
        unknown = set(data) - {"policy", "feed"}
        if unknown:
            raise ConfigError(
                f"HONEYMESH_CONFIG has unknown section(s): {', '.join(sorted(unknown))}."
            )
        if "policy" in data:
            policy = replace(policy, **_ints(data["policy"], PolicyConfig, "policy"))
        retention = self.feed_retention_seconds
        if "feed" in data:
            retention = _ints(data["feed"], _FeedSection, "feed").get(
                "retention_seconds", retention
            )
        return replace(self, policy=policy, feed_retention_seconds=retention)


@dataclass(frozen=True, slots=True)
class _FeedSection:
    retention_seconds: int = 7 * 86400


def _ints(section: Any, shape: type, name: str) -> dict[str, int]:
    if not isinstance(section, dict):
        raise ConfigError(f"HONEYMESH_CONFIG [{name}] must be a table.")
    allowed = {f.name for f in fields(shape)}
    out: dict[str, int] = {}
    for key, value in section.items():
        if key not in allowed:
            raise ConfigError(f"HONEYMESH_CONFIG [{name}] has no setting {key!r}.")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"HONEYMESH_CONFIG [{name}] {key} must be a non-negative integer.")
        out[key] = value
    return out


def parse_listen(value: str, variable: str) -> tuple[str, int]:
    host, sep, port_text = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{variable} must be HOST:PORT, e.g. 127.0.0.1:8700 (got {value!r}).")
    return host, int(port_text)


def parse_networks(env: Mapping[str, str], variable: str) -> tuple[IPNetwork, ...]:
    raw = env.get(variable, "")
    out: list[IPNetwork] = []
    for item in raw.replace(",", " ").split():
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{variable} must list addresses or CIDRs, comma-separated; {item!r} is not one."
            ) from None
    return tuple(out)


def _log_origin(value: str | None) -> str | None:
    """A checkpoint origin is one line of printable text, and here also a signed-note
    key name: no spaces, no `+`."""
    if value is not None and (
        not value.isprintable() or any(c in value for c in " +\u2014") or len(value) > 200
    ):
        raise ConfigError(
            "HONEYMESH_LOG_ORIGIN must be printable text without spaces or '+',"
            " at most 200 characters."
        )
    return value


def _log_key_pem(path: str | None) -> bytes | None:
    """The PEM of HONEYMESH_LOG_KEY_FILE, checked to be an Ed25519 private key."""
    if path is None:
        return None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        pem = Path(path).read_bytes()
        if not isinstance(load_pem_private_key(pem, password=None), Ed25519PrivateKey):
            raise ValueError("not Ed25519")
    except OSError as exc:
        raise ConfigError(
            f"HONEYMESH_LOG_KEY_FILE names {path}, which cannot be read ({exc.strerror})."
        ) from None
    except (ValueError, TypeError):
        raise ConfigError(
            f"HONEYMESH_LOG_KEY_FILE {path} is not an Ed25519 private key in PEM"
            " (openssl genpkey -algorithm ed25519)."
        ) from None
    return pem
