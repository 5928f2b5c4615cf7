"""Plans, features and limits (PROTOCOL.md section 4): pure, no I/O.

A tenant's limits are its plan's defaults overridden key by key. `check_node` is the
gate every node request passes after its signature holds, on an identity at most a
few seconds stale (keydirectory.py caches it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from .errors import Forbidden

PLANS = ("community", "pro", "enterprise")

_PRO: dict[str, int] = {
    "publish_per_minute": 600,
    "tenant_publish_per_minute": 6000,
    "pull_per_minute": 120,
    "max_nodes": 100,
    "max_batch": 500,
    "new_candidates_per_day": 20000,
    "auto_approvals_per_day": 200,
    "trusted_approvals_per_day": 100,
}
_ENTERPRISE: dict[str, int] = {
    "publish_per_minute": 6000,
    "tenant_publish_per_minute": 60000,
    "pull_per_minute": 1200,
    "max_nodes": 1000,
    "max_batch": 500,
    "new_candidates_per_day": 200000,
    "auto_approvals_per_day": 2000,
    "trusted_approvals_per_day": 1000,
}
# community has no hub features and keeps pro's numbers.
DEFAULT_LIMITS: dict[str, dict[str, int]] = {
    "community": _PRO,
    "pro": _PRO,
    "enterprise": _ENTERPRISE,
}
LIMIT_KEYS = tuple(_PRO)
FEATURES: dict[str, frozenset[str]] = {
    "community": frozenset(),
    "pro": frozenset({"publish", "pull", "mesh"}),
    "enterprise": frozenset({"publish", "pull", "mesh"}),
}


def effective_limits(plan: str, overrides: Mapping[str, int]) -> dict[str, int]:
    limits = dict(DEFAULT_LIMITS[plan])
    limits.update({k: v for k, v in overrides.items() if k in limits})
    return limits


@dataclass(frozen=True, slots=True)
class TenantState:
    tenant_id: UUID
    plan: str
    status: str
    expires_at: datetime | None
    limits: Mapping[str, int]
    # Moves whenever what the tenant's nodes may see shrinks (PROTOCOL.md 8 r2).
    visibility_epoch: int = 0

    @property
    def features(self) -> frozenset[str]:
        return FEATURES[self.plan]

    def live(self, now: datetime) -> bool:
        return self.status == "active" and (self.expires_at is None or self.expires_at > now)

    def check_active(self, now: datetime) -> None:
        """The tenant may act at all (enroll, identify): active and not expired."""
        if self.status != "active":
            raise Forbidden("The node's tenant is suspended.", code="tenant_suspended")
        if self.expires_at is not None and self.expires_at <= now:
            raise Forbidden("The tenant's entitlement has expired.", code="entitlement_expired")


def narrows(before: TenantState, after: TenantState, now: datetime) -> bool:
    """Whether a change takes from what the tenant's nodes may see: a feature lost
    (mesh), a suspension, an entitlement that lapses, or one renewed after it lapsed
    (its nodes' cursors predate the gap). Pure."""
    return bool(before.features - after.features) or not (before.live(now) and after.live(now))


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """A key and everything the gates need about its node and tenant, read in one query."""

    keyid: str
    public_key: bytes
    key_rotated_at: datetime | None
    key_grace_until: datetime | None
    node_id: UUID
    node_name: str
    trusted: bool
    node_revoked_at: datetime | None
    tenant: TenantState

    def key_usable(self, now: datetime) -> bool:
        """Current, or rotated and still in its grace period (PROTOCOL.md section 5)."""
        return self.key_rotated_at is None or (
            self.key_grace_until is not None and now < self.key_grace_until
        )


def check_node(identity: NodeIdentity, now: datetime, feature: str | None) -> None:
    """Raise the 403 of PROTOCOL.md section 4 that applies, in a fixed order."""
    if identity.node_revoked_at is not None:
        raise Forbidden("This node has been revoked.", code="node_revoked")
    identity.tenant.check_active(now)
    if feature is not None and feature not in identity.tenant.features:
        raise Forbidden(
            f"The tenant's plan ({identity.tenant.plan}) does not include {feature}.",
            code="not_entitled",
        )


@dataclass(frozen=True, slots=True)
class ReaderKey:
    """A reader key (PROTOCOL.md 13 r2) and its tenant, read in one query."""

    key_id: UUID
    name: str
    key_hash: bytes
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    tenant: TenantState

    def usable(self, now: datetime) -> bool:
        """Neither revoked nor expired: otherwise it answers as an unknown key."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def check_reader(tenant: TenantState, now: datetime) -> None:
    """A reader sees its tenant's view only while the tenant is active, before its
    expires_at, and with a plan that grants pull (PROTOCOL.md 13 r2); else a 403."""
    if tenant.status != "active":
        raise Forbidden("The reader key's tenant is suspended.", code="tenant_suspended")
    if tenant.expires_at is not None and tenant.expires_at <= now:
        raise Forbidden("The tenant's entitlement has expired.", code="entitlement_expired")
    if "pull" not in tenant.features:
        raise Forbidden(
            f"The tenant's plan ({tenant.plan}) does not include pull.", code="not_entitled"
        )
