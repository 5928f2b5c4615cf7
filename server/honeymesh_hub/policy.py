"""What a publish does to a candidate (PROTOCOL.md section 7): pure, no I/O.

States and the moves a new signal may cause, as data:

    pending   -> approved (auto: corroboration; trusted: a trusted node's own signal)
              -> rejected (allowlisted)
    approved  -> approved with a later expires_at ("extend"; capped)
              -> retracted (allowlisted)
    expired   -> pending  (reopen), then as pending
    retracted -> pending  (reopen), then as pending
    rejected  -> pending  only once 7 days have passed since the rejection

A reviewer's reject or retract sets `reviewer_locked`: automation never approves
that candidate again. A range broader than IPv4 /24 or IPv6 /48 is never approved
by automation. Caps (auto_approvals_per_day, trusted_approvals_per_day) are counted
by the service; this module only says what a rule wants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .config import PolicyConfig

REOPENABLE = frozenset({"expired", "retracted"})


@dataclass(frozen=True, slots=True)
class CandidateFacts:
    """A candidate as it stands after this publish's signals were counted."""

    state: str
    origin: str | None
    reviewer_locked: bool
    broad: bool
    allowlisted: bool
    expires_at: datetime | None
    expiry_cap: datetime | None
    decided_at: datetime | None
    max_ttl_seconds: int
    reporters: int
    tenants: int
    batch_max_ttl: int
    # this publish's strongest signal for it, and whether its node is trusted
    batch_max_confidence: int
    caller_trusted: bool


@dataclass(frozen=True, slots=True)
class Corroboration:
    """Distinct reporters with a qualifying signal inside the window."""

    nodes: int
    tenants: int


@dataclass(frozen=True, slots=True)
class Move:
    """A change to apply. `action` is approve | reject | reopen | extend."""

    action: str
    to_state: str
    origin: str | None = None
    expires_at: datetime | None = None
    reason: str | None = None
    rule: str | None = None


def reopened_state(facts: CandidateFacts, now: datetime, policy: PolicyConfig) -> Move | None:
    """Step one: does this publish reopen the candidate?"""
    if facts.state in REOPENABLE:
        return Move("reopen", "pending", rule=f"reopen_{facts.state}")
    if (
        facts.state == "rejected"
        and not facts.allowlisted
        and facts.decided_at is not None
        and now - facts.decided_at >= timedelta(seconds=policy.rejected_hold_seconds)
    ):
        return Move("reopen", "pending", rule="reopen_rejected_after_hold")
    return None


def extended_expiry(facts: CandidateFacts, now: datetime, policy: PolicyConfig) -> datetime | None:
    """An approved candidate's new expires_at, or None when it does not move."""
    if facts.expires_at is None:
        return None
    target = now + timedelta(seconds=facts.batch_max_ttl)
    if facts.expiry_cap is not None:
        target = min(target, facts.expiry_cap)
    if facts.origin in ("auto", "trusted"):
        target = min(target, now + timedelta(seconds=policy.auto_max_ttl_seconds))
    return target if target > facts.expires_at else None


def auto_expiry(facts: CandidateFacts, now: datetime, policy: PolicyConfig) -> datetime:
    ttl = min(facts.max_ttl_seconds, policy.auto_max_ttl_seconds)
    return now + timedelta(seconds=ttl)


def wants_corroboration(facts: CandidateFacts, now: datetime, policy: PolicyConfig) -> bool:
    """Whether the windowed corroboration count is worth reading for this candidate.

    Lifetime counts bound the windowed ones, so most publishes skip the query.
    """
    state = "pending" if reopened_state(facts, now, policy) else facts.state
    return (
        state == "pending"
        and not facts.reviewer_locked
        and not facts.broad
        and not facts.allowlisted
        and facts.reporters >= policy.corroboration_min_nodes
        and facts.tenants >= policy.corroboration_min_tenants
    )


def decide(
    facts: CandidateFacts,
    corroboration: Corroboration | None,
    now: datetime,
    policy: PolicyConfig,
) -> list[Move]:
    """The moves a publish causes, in order (a reopen may be followed by an approval)."""
    moves: list[Move] = []
    state = facts.state
    reopen = reopened_state(facts, now, policy)
    if reopen is not None:
        moves.append(reopen)
        state = "pending"
    if facts.allowlisted:
        if state == "approved":
            moves.append(Move("retract", "retracted", reason="allowlisted", rule="allowlist"))
        elif state != "rejected":
            moves.append(Move("reject", "rejected", reason="allowlisted", rule="allowlist"))
        return moves
    if state == "approved":
        new_expiry = extended_expiry(facts, now, policy)
        if new_expiry is not None:
            moves.append(Move("extend", "approved", expires_at=new_expiry, rule="extend"))
        return moves
    if state != "pending" or facts.reviewer_locked or facts.broad:
        return moves
    if (
        corroboration is not None
        and corroboration.nodes >= policy.corroboration_min_nodes
        and corroboration.tenants >= policy.corroboration_min_tenants
    ):
        moves.append(
            Move(
                "approve",
                "approved",
                origin="auto",
                expires_at=auto_expiry(facts, now, policy),
                rule="corroboration",
            )
        )
    elif facts.caller_trusted and facts.batch_max_confidence >= policy.trusted_min_confidence:
        moves.append(
            Move(
                "approve",
                "approved",
                origin="trusted",
                expires_at=auto_expiry(facts, now, policy),
                rule="trusted",
            )
        )
    return moves
