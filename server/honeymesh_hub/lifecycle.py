"""A candidate's lifecycle (PROTOCOL.md section 7), as data: the one place a state
changes. Pure: no I/O. Shaped after h11's `_state.py`.

States, triggers and every legal transition are in `TABLE`; what each transition
writes besides the state (origin, expiry, approval and decision times, the reviewer
lock, the daily cap it spends, the feed event) is data too, in its `Effects`. A
move the table lacks raises `IllegalMove` and changes nothing. Guards, the small
functions that say whether a rule fires (a reopen's hold, corroboration, trust), sit
below the table; `plan_publish` composes them into what a publish does.

    trigger        from                                  to         writes
    reopen         expired | retracted | rejected (hold) pending    clears origin, expiry
    corroborated   pending                               approved   origin auto, cap
    trusted        pending                               approved   origin trusted, cap
    extend         approved                              approved   a later expires_at
    capped         pending                               pending    (audited: cap reached)
    approve        pending | rejected | expired | retr.  approved   origin review
    first_approval pending | rejected | expired | retr.  (same)     (a broad range's first)
    reject         pending                               rejected   reviewer lock
    retract        approved                              retracted  reviewer lock
    expire         approved                              expired
    allowlist      pending                               rejected
    allowlist      approved                              retracted
    revalidate     approved                              retracted  (its rule no longer holds)

A candidate that a reviewer rejected or retracted is locked: automation never
approves it again. A range broader than IPv4 /24 or IPv6 /48 is never approved by
automation. The daily caps are counted by the service; a transition only names the
cap it spends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from .config import PolicyConfig


class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    RETRACTED = "retracted"


class Trigger(StrEnum):
    # a publish
    REOPEN = "reopen"
    CORROBORATED = "corroborated"
    TRUSTED = "trusted"
    EXTEND = "extend"
    CAPPED = "capped"
    # a reviewer
    APPROVE = "approve"
    FIRST_APPROVAL = "first_approval"
    REJECT = "reject"
    RETRACT = "retract"
    # the hub
    EXPIRE = "expire"
    ALLOWLIST = "allowlist"
    REVALIDATE = "revalidate"


@dataclass(frozen=True, slots=True)
class Effects:
    """What a transition writes besides the state; every column not named is kept."""

    action: str  # the decision's name in the decision and audit logs
    origin: str | None = None  # an approval: origin, approved_at, expires_at, expiry_cap
    clears: bool = False  # back to pending: origin, expires_at, approved_at, expiry_cap
    extends: bool = False  # a later expires_at
    decides: bool = False  # decided_at
    reason: bool = False  # the candidate's reason
    locks: bool = False  # the reviewer lock
    logged: bool = True  # a decision row and an audit entry
    cap: str | None = None  # the daily cap the service must charge first


@dataclass(frozen=True, slots=True)
class Transition:
    to: State
    effects: Effects


_P, _A, _RJ, _E, _RT = State
_DECIDED = (_P, _RJ, _E, _RT)
_REOPEN = Effects("reopen", clears=True)
_REVIEW_APPROVE = Effects("approve", origin="review", decides=True, reason=True)

TABLE: dict[tuple[Trigger, State], Transition] = {
    **{(Trigger.REOPEN, s): Transition(_P, _REOPEN) for s in (_E, _RT, _RJ)},
    (Trigger.CORROBORATED, _P): Transition(
        _A, Effects("approve", origin="auto", decides=True, reason=True, cap="auto_approvals")
    ),
    (Trigger.TRUSTED, _P): Transition(
        _A, Effects("approve", origin="trusted", decides=True, reason=True, cap="trusted_approvals")
    ),
    (Trigger.EXTEND, _A): Transition(_A, Effects("extend", extends=True, logged=False)),
    (Trigger.CAPPED, _P): Transition(_P, Effects("defer")),
    **{(Trigger.APPROVE, s): Transition(_A, _REVIEW_APPROVE) for s in _DECIDED},
    **{(Trigger.FIRST_APPROVAL, s): Transition(s, Effects("first_approval")) for s in _DECIDED},
    (Trigger.REJECT, _P): Transition(_RJ, Effects("reject", decides=True, reason=True, locks=True)),
    (Trigger.RETRACT, _A): Transition(_RT, Effects("retract", reason=True, locks=True)),
    (Trigger.EXPIRE, _A): Transition(_E, Effects("expire")),
    (Trigger.ALLOWLIST, _P): Transition(_RJ, Effects("reject", decides=True, reason=True)),
    (Trigger.ALLOWLIST, _A): Transition(_RT, Effects("retract", reason=True)),
    (Trigger.REVALIDATE, _A): Transition(_RT, Effects("retract", reason=True)),
}

# A broad range's first approval: a decision row that changes no state.
FIRST_APPROVAL = Trigger.FIRST_APPROVAL.value

# A reviewer's decisions, by the names the API uses: (action, state) -> state after.
REVIEW_TRIGGERS = {"approve": Trigger.APPROVE, "reject": Trigger.REJECT, "retract": Trigger.RETRACT}
REVIEW_MOVES: dict[tuple[str, str], str] = {
    (t.value, s.value): tr.to.value for (t, s), tr in TABLE.items() if t in REVIEW_TRIGGERS.values()
}


class IllegalMove(ValueError):
    """The table has no such transition; nothing changes."""


@dataclass(frozen=True, slots=True)
class Move:
    """One transition taken, with the values its effects write."""

    trigger: Trigger
    from_state: State
    to_state: State
    effects: Effects
    expires_at: datetime | None = None
    expiry_cap: datetime | None = None  # a reviewer's ttl_seconds caps later extensions
    reason: str | None = None
    rule: str | None = None  # which rule moved it, for the logs and metrics

    @property
    def action(self) -> str:
        return self.effects.action

    @property
    def origin(self) -> str | None:
        return self.effects.origin

    @property
    def feed(self) -> tuple[str, str | None] | None:
        """The feed event: `added` into approved, `removed` out of it, else none."""
        if self.to_state == _A:
            return ("added", None)
        if self.from_state == _A:
            return ("removed", "expired" if self.to_state == _E else "retracted")
        return None


def move(
    trigger: Trigger,
    state: str,
    *,
    expires_at: datetime | None = None,
    expiry_cap: datetime | None = None,
    reason: str | None = None,
    rule: str | None = None,
) -> Move:
    """The transition `trigger` takes from `state`; IllegalMove when there is none."""
    try:
        from_state = State(state)
    except ValueError:
        raise IllegalMove(f"no state {state!r}") from None
    transition = TABLE.get((trigger, from_state))
    if transition is None:
        raise IllegalMove(f"a {from_state} candidate cannot take {trigger}")
    return Move(
        trigger, from_state, transition.to, transition.effects, expires_at, expiry_cap, reason, rule
    )


@dataclass(frozen=True, slots=True)
class Change:
    """A candidate's moves folded in order: its final state and the columns written."""

    state: State
    columns: dict[str, Any] = field(default_factory=dict)


def fold(moves: Sequence[Move], now: datetime) -> Change:
    """What a sequence of moves on one candidate writes; later effects win."""
    columns: dict[str, Any] = {}
    for m in moves:
        e = m.effects
        if e.clears:
            columns.update(origin=None, expires_at=None, approved_at=None, expiry_cap=None)
        if e.origin is not None:
            columns.update(
                origin=e.origin, approved_at=now, expires_at=m.expires_at, expiry_cap=m.expiry_cap
            )
        if e.extends:
            columns["expires_at"] = m.expires_at
        if e.decides:
            columns["decided_at"] = now
        if e.reason:
            columns["reason"] = m.reason
        if e.locks:
            columns["reviewer_locked"] = True
    return Change(moves[-1].to_state, columns)


# -- guards ------------------------------------------------------------------------


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


def corroborated(counts: Corroboration | None, policy: PolicyConfig) -> bool:
    """The corroboration rule's threshold, for approving and for revalidating."""
    return (
        counts is not None
        and counts.nodes >= policy.corroboration_min_nodes
        and counts.tenants >= policy.corroboration_min_tenants
    )


def on_allowlist(state: str) -> Move | None:
    """An allowlisted range rejects what waits and retracts what is approved."""
    if (Trigger.ALLOWLIST, state) not in TABLE:
        return None
    return move(Trigger.ALLOWLIST, state, reason="allowlisted", rule="allowlist")


def reopened_state(facts: CandidateFacts, now: datetime, policy: PolicyConfig) -> Move | None:
    """Does this publish reopen the candidate? Expired and retracted ones at once; a
    rejected one only once its hold (7 days) has passed, and never when allowlisted."""
    if facts.state in (_E, _RT):
        return move(Trigger.REOPEN, facts.state, rule=f"reopen_{facts.state}")
    if (
        facts.state == _RJ
        and not facts.allowlisted
        and facts.decided_at is not None
        and now - facts.decided_at >= timedelta(seconds=policy.rejected_hold_seconds)
    ):
        return move(Trigger.REOPEN, facts.state, rule="reopen_rejected_after_hold")
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


def _automation_may_approve(facts: CandidateFacts, state: str) -> bool:
    return state == _P and not facts.reviewer_locked and not facts.broad


def wants_corroboration(facts: CandidateFacts, now: datetime, policy: PolicyConfig) -> bool:
    """Whether the windowed corroboration count is worth reading for this candidate.

    Lifetime counts bound the windowed ones, so most publishes skip the query.
    """
    state = _P if reopened_state(facts, now, policy) else facts.state
    return (
        _automation_may_approve(facts, state)
        and not facts.allowlisted
        and corroborated(Corroboration(facts.reporters, facts.tenants), policy)
    )


def plan_publish(
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
        state = reopen.to_state
    if facts.allowlisted:
        allowlisted = on_allowlist(state)
        return [*moves, allowlisted] if allowlisted else moves
    if state == _A:
        new_expiry = extended_expiry(facts, now, policy)
        if new_expiry is not None:
            moves.append(move(Trigger.EXTEND, state, expires_at=new_expiry, rule="extend"))
        return moves
    if not _automation_may_approve(facts, state):
        return moves
    expiry = auto_expiry(facts, now, policy)
    if corroborated(corroboration, policy):
        moves.append(move(Trigger.CORROBORATED, state, expires_at=expiry, rule="corroboration"))
    elif facts.caller_trusted and facts.batch_max_confidence >= policy.trusted_min_confidence:
        moves.append(move(Trigger.TRUSTED, state, expires_at=expiry, rule="trusted"))
    return moves


def capped(wanted: Move) -> Move:
    """A rule's approval that a daily cap refused: the candidate waits for review."""
    return move(Trigger.CAPPED, wanted.from_state, reason="daily cap reached", rule=wanted.rule)
