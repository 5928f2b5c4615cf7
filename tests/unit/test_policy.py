"""What a publish does to a candidate (lifecycle.plan_publish), cell by cell (PROTOCOL.md 7)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from honeymesh_hub.config import PolicyConfig
from honeymesh_hub.lifecycle import CandidateFacts, Corroboration, plan_publish, wants_corroboration

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = PolicyConfig()
BASE = CandidateFacts(
    state="pending",
    origin=None,
    reviewer_locked=False,
    broad=False,
    allowlisted=False,
    expires_at=None,
    expiry_cap=None,
    decided_at=None,
    max_ttl_seconds=3600,
    reporters=3,
    tenants=2,
    batch_max_ttl=3600,
    batch_max_confidence=80,
    caller_trusted=False,
)
MET = Corroboration(nodes=3, tenants=2)


def actions(facts: CandidateFacts, corroboration: Corroboration | None = MET) -> list[str]:
    return [f"{m.action}:{m.to_state}" for m in plan_publish(facts, corroboration, NOW, POLICY)]


def test_corroboration_approves_auto_with_capped_expiry() -> None:
    [move] = plan_publish(replace(BASE, max_ttl_seconds=10 * 86400), MET, NOW, POLICY)
    assert (move.action, move.origin, move.rule) == ("approve", "auto", "corroboration")
    assert move.expires_at == NOW + timedelta(seconds=86400)


@pytest.mark.parametrize("corroboration", [Corroboration(2, 2), Corroboration(5, 1), None])
def test_short_of_corroboration_waits(corroboration: Corroboration | None) -> None:
    assert actions(BASE, corroboration) == []


def test_trusted_node_needs_confidence_90() -> None:
    assert actions(replace(BASE, caller_trusted=True, batch_max_confidence=89), None) == []
    [move] = plan_publish(
        replace(BASE, caller_trusted=True, batch_max_confidence=90), None, NOW, POLICY
    )
    assert (move.origin, move.rule) == ("trusted", "trusted")


@pytest.mark.parametrize("field", ["reviewer_locked", "broad"])
def test_no_automation_for_locked_or_broad(field: str) -> None:
    facts = replace(BASE, caller_trusted=True, batch_max_confidence=99, **{field: True})
    assert actions(facts) == []
    assert not wants_corroboration(facts, NOW, POLICY)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("pending", ["reject:rejected"]),
        ("approved", ["retract:retracted"]),
        ("rejected", []),
        ("expired", ["reopen:pending", "reject:rejected"]),
    ],
)
def test_allowlisted(state: str, expected: list[str]) -> None:
    facts = replace(BASE, state=state, allowlisted=True, expires_at=NOW, decided_at=NOW)
    assert actions(facts) == expected


@pytest.mark.parametrize("state", ["expired", "retracted"])
def test_reopen_then_rules_apply(state: str) -> None:
    assert actions(replace(BASE, state=state)) == ["reopen:pending", "approve:approved"]
    locked = replace(BASE, state=state, reviewer_locked=True)
    assert actions(locked) == ["reopen:pending"]


def test_rejected_counts_for_seven_days_then_reopens() -> None:
    recent = replace(BASE, state="rejected", decided_at=NOW - timedelta(days=6))
    assert actions(recent) == []
    old = replace(BASE, state="rejected", decided_at=NOW - timedelta(days=7))
    assert actions(old)[0] == "reopen:pending"


def test_extension_caps() -> None:
    approved = replace(
        BASE,
        state="approved",
        origin="auto",
        expires_at=NOW + timedelta(hours=1),
        batch_max_ttl=30 * 86400,
    )
    [move] = plan_publish(approved, None, NOW, POLICY)
    assert (move.action, move.expires_at) == ("extend", NOW + timedelta(seconds=86400))
    capped = replace(approved, origin="review", expiry_cap=NOW + timedelta(hours=2))
    [move] = plan_publish(capped, None, NOW, POLICY)
    assert move.expires_at == NOW + timedelta(hours=2)
    reviewed = replace(approved, origin="review")
    [move] = plan_publish(reviewed, None, NOW, POLICY)
    assert move.expires_at == NOW + timedelta(days=30)
    shorter = replace(approved, batch_max_ttl=600)
    assert plan_publish(shorter, None, NOW, POLICY) == []


def test_wants_corroboration_only_when_it_can_hold() -> None:
    assert wants_corroboration(BASE, NOW, POLICY)
    assert not wants_corroboration(replace(BASE, reporters=2), NOW, POLICY)
    assert not wants_corroboration(replace(BASE, tenants=1), NOW, POLICY)
    assert not wants_corroboration(replace(BASE, state="approved"), NOW, POLICY)
