"""Who a request's caller is: an enrolled node, a bearer token or a reader key. Pure types.

Kept apart from auth.py so that state.py, the services and the views can name a
caller without importing aiohttp, the database or Redis, and without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from .entitlements import NodeIdentity, TenantState


@dataclass(frozen=True, slots=True)
class NodeCaller:
    identity: NodeIdentity

    @property
    def node_id(self) -> UUID:
        return self.identity.node_id

    @property
    def tenant_id(self) -> UUID:
        return self.identity.tenant.tenant_id

    @property
    def keyid(self) -> str:
        return self.identity.keyid


@dataclass(frozen=True, slots=True)
class TokenCaller:
    token_id: UUID
    role: str
    scope: str | None  # "mesh", "tenant" or None for admin
    scope_tenant_id: UUID | None
    name: str

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


@dataclass(frozen=True, slots=True)
class ReaderCaller:
    """A reader key's holder (PROTOCOL.md 13 r2): reads its tenant's view, nothing else."""

    key_id: UUID
    tenant: TenantState
    name: str

    @property
    def tenant_id(self) -> UUID:
        return self.tenant.tenant_id

    @property
    def actor(self) -> str:
        return f"reader:{self.key_id}"


Caller = NodeCaller | TokenCaller | ReaderCaller
