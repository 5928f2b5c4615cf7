"""The lifecycle table, cell by cell: every trigger from every state (PROTOCOL.md 7)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from honeymesh_hub.lifecycle import TABLE, IllegalMove, State, Trigger, fold, move, on_allowlist

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
P, A, RJ, E, RT = State

# (trigger, from) -> (to, decision action, feed event); every other cell is illegal.
EXPECTED: dict[tuple[Trigger, State], tuple[State, str, tuple[str, str | None] | None]] = {
    (Trigger.REOPEN, E): (P, "reopen", None),
    (Trigger.REOPEN, RT): (P, "reopen", None),
    (Trigger.REOPEN, RJ): (P, "reopen", None),
    (Trigger.CORROBORATED, P): (A, "approve", ("added", None)),
    (Trigger.TRUSTED, P): (A, "approve", ("added", None)),
    (Trigger.EXTEND, A): (A, "extend", ("added", None)),
    (Trigger.CAPPED, P): (P, "defer", None),
    **{(Trigger.APPROVE, s): (A, "approve", ("added", None)) for s in (P, RJ, E, RT)},
    **{(Trigger.FIRST_APPROVAL, s): (s, "first_approval", None) for s in (P, RJ, E, RT)},
    (Trigger.REJECT, P): (RJ, "reject", None),
    (Trigger.RETRACT, A): (RT, "retract", ("removed", "retracted")),
    (Trigger.EXPIRE, A): (E, "expire", ("removed", "expired")),
    (Trigger.ALLOWLIST, P): (RJ, "reject", None),
    (Trigger.ALLOWLIST, A): (RT, "retract", ("removed", "retracted")),
    (Trigger.REVALIDATE, A): (RT, "retract", ("removed", "retracted")),
}
CELLS = list(itertools.product(Trigger, State))


def test_the_table_is_exactly_the_expected_cells() -> None:
    assert set(TABLE) == set(EXPECTED)


@pytest.mark.parametrize(("trigger", "state"), CELLS, ids=[f"{t}-{s}" for t, s in CELLS])
def test_each_cell(trigger: Trigger, state: State) -> None:
    if (trigger, state) not in EXPECTED:
        with pytest.raises(IllegalMove):
            move(trigger, state)
        return
    to, action, feed = EXPECTED[(trigger, state)]
    m = move(trigger, state.value)
    assert (m.from_state, m.to_state, m.action, m.feed) == (state, to, action, feed)
    assert m.effects.logged is (trigger is not Trigger.EXTEND)


def test_an_unknown_state_is_illegal() -> None:
    with pytest.raises(IllegalMove):
        move(Trigger.APPROVE, "deleted")


@pytest.mark.parametrize(
    ("trigger", "origin", "cap", "locks"),
    [
        (Trigger.APPROVE, "review", None, False),
        (Trigger.CORROBORATED, "auto", "auto_approvals", False),
        (Trigger.TRUSTED, "trusted", "trusted_approvals", False),
        (Trigger.REJECT, None, None, True),
        (Trigger.RETRACT, None, None, True),
        (Trigger.ALLOWLIST, None, None, False),
        (Trigger.REVALIDATE, None, None, False),
        (Trigger.EXPIRE, None, None, False),
    ],
)
def test_effects_origin_caps_and_the_reviewer_lock(
    trigger: Trigger, origin: str | None, cap: str | None, locks: bool
) -> None:
    state = next(s for (t, s) in TABLE if t is trigger)
    effects = TABLE[(trigger, state)].effects
    assert (effects.origin, effects.cap, effects.locks) == (origin, cap, locks)


def test_an_approval_writes_its_origin_times_and_cap() -> None:
    until = NOW + timedelta(hours=1)
    change = fold([move(Trigger.APPROVE, P, expires_at=until, expiry_cap=until, reason="ok")], NOW)
    assert change.state == A
    assert change.columns == {
        "origin": "review",
        "approved_at": NOW,
        "expires_at": until,
        "expiry_cap": until,
        "decided_at": NOW,
        "reason": "ok",
    }


def test_a_reopen_then_an_auto_approval_folds_to_the_approval() -> None:
    until = NOW + timedelta(hours=2)
    moves = [move(Trigger.REOPEN, RT), move(Trigger.CORROBORATED, P, expires_at=until)]
    change = fold(moves, NOW)
    assert change.state == A
    assert change.columns["origin"] == "auto"
    assert change.columns["expires_at"] == until
    assert change.columns["expiry_cap"] is None
    assert "reviewer_locked" not in change.columns


def test_extend_writes_only_the_expiry_and_reject_locks_automation() -> None:
    later = NOW + timedelta(days=1)
    assert fold([move(Trigger.EXTEND, A, expires_at=later)], NOW).columns == {"expires_at": later}
    rejected = fold([move(Trigger.REJECT, P, reason="no")], NOW)
    assert rejected.columns == {"decided_at": NOW, "reason": "no", "reviewer_locked": True}
    assert fold([move(Trigger.EXPIRE, A)], NOW).columns == {}


@pytest.mark.parametrize("state", list(State))
def test_the_allowlist_moves_only_what_is_pending_or_approved(state: State) -> None:
    found = on_allowlist(state)
    if state in (P, A):
        assert found is not None and found.reason == "allowlisted"
    else:
        assert found is None
