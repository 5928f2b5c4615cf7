"""Who reviews and what a decision does to a candidate standing so. Pure: no I/O.

Which moves exist is the lifecycle's table (lifecycle.REVIEW_MOVES); this module adds
the reviewer's own rules on top: a running lease of another token refuses, the
allowlist refuses an approve, the decision that already holds is `unchanged`, and a
broad range needs two reviewers of different names (the first is a `first_approval`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from ...callers import TokenCaller
from ...errors import NotFound
from ...lifecycle import FIRST_APPROVAL, REVIEW_MOVES, State

STATES = tuple(s.value for s in State)
ORDERS = ("reporters", "oldest")
BROAD_APPROVALS = 2

# The state each action leaves: deciding it again is `unchanged`.
SETTLED: dict[str, str] = {"approve": "approved", "reject": "rejected", "retract": "retracted"}


@dataclass(frozen=True, slots=True)
class Reviewer:
    token_id: uuid.UUID
    name: str
    actor: str
    scope_key: str  # 'mesh' or the tenant id: the candidates this token may see

    @classmethod
    def of(cls, caller: TokenCaller) -> Reviewer:
        if caller.scope == "mesh":
            scope_key = "mesh"
        elif caller.scope == "tenant" and caller.scope_tenant_id is not None:
            scope_key = str(caller.scope_tenant_id)
        else:  # a reviewer token always has a scope; fail closed if one does not
            raise NotFound("No such candidate.")
        return cls(caller.token_id, caller.name, caller.actor, scope_key)


@dataclass(frozen=True, slots=True)
class Standing:
    """A candidate as a decision finds it."""

    state: str
    broad: bool
    lease_holder: uuid.UUID | None  # the token whose lease runs now, if any
    lease_holder_name: str | None
    approvers: tuple[str, ...]  # actors of first approvals since the latest state change
    allowlisted: bool = False  # overlaps an allowlisted range, read under the lock


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # applied | unchanged | refused
    state: str | None  # the candidate's state after it; None when refused
    move: str | None = None  # approve | reject | retract | first_approval, when applied
    code: str | None = None
    detail: str | None = None


def _refused(code: str, detail: str) -> Verdict:
    return Verdict("refused", None, code=code, detail=detail)


def judge(action: str, standing: Standing, reviewer: Reviewer) -> Verdict:
    """What `reviewer`'s `action` does to a candidate standing so. Pure."""
    if standing.lease_holder is not None and standing.lease_holder != reviewer.token_id:
        return _refused(
            "conflict",
            f"Reviewer {standing.lease_holder_name} holds this candidate's lease.",
        )
    if SETTLED[action] == standing.state:
        return Verdict("unchanged", standing.state)
    if action == "approve" and standing.allowlisted:
        # The allowlist always wins, over reviewers too (PROTOCOL.md 7 r2).
        return _refused("conflict", "This candidate overlaps an allowlisted range.")
    target = REVIEW_MOVES.get((action, standing.state))
    if target is None:
        return _refused("conflict", f"A {standing.state} candidate cannot take {action}.")
    if action == "approve" and standing.broad:
        if reviewer.actor in standing.approvers:
            return Verdict("unchanged", standing.state)
        if len(set(standing.approvers)) + 1 < BROAD_APPROVALS:
            return Verdict("applied", standing.state, move=FIRST_APPROVAL)
    return Verdict("applied", target, move=action)


def approvals_needed(state: str, broad: bool, approvers: Sequence[str]) -> int:
    if state == "approved":
        return 0
    return max(0, (BROAD_APPROVALS if broad else 1) - len(set(approvers)))
