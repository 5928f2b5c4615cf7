"""The reviewer's decision table and the queue's cursors (services/review.py): pure, cell
by cell, no servers."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from datetime import UTC, datetime

import pytest

from honeymesh_hub.services.review import (
    REVIEW_MOVES,
    STATES,
    Reviewer,
    Standing,
    approvals_needed,
    decode_after,
    encode_after,
    judge,
)

ALICE = Reviewer(uuid.uuid4(), "alice", "reviewer:alice", "mesh")
ALICE_OTHER_TOKEN = Reviewer(uuid.uuid4(), "alice", "reviewer:alice", "mesh")
BOB = Reviewer(uuid.uuid4(), "bob", "reviewer:bob", "mesh")
ACTIONS = ("approve", "reject", "retract")


def _standing(state: str, *, broad: bool = False, holder: Reviewer | None = None,
              approvers: tuple[str, ...] = ()) -> Standing:  # fmt: skip
    return Standing(
        state=state,
        broad=broad,
        lease_holder=holder.token_id if holder else None,
        lease_holder_name=holder.name if holder else None,
        approvers=approvers,
    )


EXPECTED = {
    # (action, state): (status, state after)
    ("approve", "pending"): ("applied", "approved"),
    ("approve", "approved"): ("unchanged", "approved"),
    ("approve", "rejected"): ("applied", "approved"),
    ("approve", "expired"): ("applied", "approved"),
    ("approve", "retracted"): ("applied", "approved"),
    ("reject", "pending"): ("applied", "rejected"),
    ("reject", "approved"): ("refused", None),
    ("reject", "rejected"): ("unchanged", "rejected"),
    ("reject", "expired"): ("refused", None),
    ("reject", "retracted"): ("refused", None),
    ("retract", "pending"): ("refused", None),
    ("retract", "approved"): ("applied", "retracted"),
    ("retract", "rejected"): ("refused", None),
    ("retract", "expired"): ("refused", None),
    ("retract", "retracted"): ("unchanged", "retracted"),
}


def test_the_table_covers_every_cell() -> None:
    assert set(EXPECTED) == set(itertools.product(ACTIONS, STATES))
    assert {k for k, v in EXPECTED.items() if v[0] == "applied"} == set(REVIEW_MOVES)


@pytest.mark.parametrize(("action", "state"), sorted(EXPECTED))
def test_each_cell(action: str, state: str) -> None:
    verdict = judge(action, _standing(state), ALICE)
    assert (verdict.status, verdict.state) == EXPECTED[(action, state)]
    if verdict.status == "refused":
        assert verdict.code == "conflict" and verdict.detail
        assert verdict.move is None
    elif verdict.status == "applied":
        assert verdict.move == action
    else:
        assert verdict.move is None


@pytest.mark.parametrize(("action", "state"), sorted(EXPECTED))
def test_another_reviewers_running_lease_refuses_every_cell(action: str, state: str) -> None:
    verdict = judge(action, _standing(state, holder=BOB), ALICE)
    assert (verdict.status, verdict.code) == ("refused", "conflict")
    assert "bob" in (verdict.detail or "")
    # The same token's lease, or another token's of the same name, is no bar for its own.
    assert (
        judge(action, _standing(state, holder=ALICE), ALICE).status == EXPECTED[(action, state)][0]
    )
    same_name = judge(action, _standing(state, holder=ALICE_OTHER_TOKEN), ALICE)
    assert same_name.status == "refused"  # leases belong to tokens, not names


@pytest.mark.parametrize("state", ["pending", "rejected", "expired", "retracted"])
def test_broad_ranges_need_two_names(state: str) -> None:
    first = judge("approve", _standing(state, broad=True), ALICE)
    assert (first.status, first.state, first.move) == ("applied", state, "first_approval")
    again = _standing(state, broad=True, approvers=("reviewer:alice",))
    assert judge("approve", again, ALICE).status == "unchanged"
    assert judge("approve", again, ALICE_OTHER_TOKEN).status == "unchanged"
    second = judge("approve", again, BOB)
    assert (second.status, second.state, second.move) == ("applied", "approved", "approve")


def test_broad_ranges_reject_and_retract_with_one_reviewer() -> None:
    assert judge("reject", _standing("pending", broad=True), ALICE).state == "rejected"
    assert judge("retract", _standing("approved", broad=True), ALICE).state == "retracted"
    assert judge("approve", _standing("approved", broad=True), ALICE).status == "unchanged"


def test_approvals_needed() -> None:
    assert approvals_needed("pending", False, []) == 1
    assert approvals_needed("pending", True, []) == 2
    assert approvals_needed("rejected", True, ["reviewer:a"]) == 1
    assert approvals_needed("pending", True, ["reviewer:a", "reviewer:a"]) == 1
    assert approvals_needed("approved", True, []) == 0


def test_cursors_round_trip_and_are_url_safe() -> None:
    cid = uuid.uuid4()
    seen = datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)
    for order, key in (("reporters", 0), ("reporters", 2**31 - 1), ("oldest", seen)):
        token = encode_after(order, key, cid)
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert decode_after(order, token) == (key, cid)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "A" * 34,  # tag "\x00"
        "A" * 35,
        "!" * 34,
        encode_after("reporters", 5, uuid.uuid4()) + "A",
        encode_after("reporters", 5, uuid.uuid4())[:-1] + "=",
        encode_after("oldest", datetime(2026, 1, 1, tzinfo=UTC), uuid.uuid4()),  # other order
        encode_after("reporters", -1, uuid.uuid4()),
        encode_after("reporters", 2**31, uuid.uuid4()),  # beyond PostgreSQL's int4
        encode_after("reporters", 2**63 - 1, uuid.uuid4()),
        "é" * 34,
    ],
)
def test_bad_cursors(token: str) -> None:
    with pytest.raises(ValueError):
        decode_after("reporters", token)


def test_a_non_canonical_cursor_is_refused() -> None:
    token = encode_after("reporters", 5, uuid.uuid4())
    # The last character carries 4 unused bits; setting one decodes to the same bytes.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(token[-1])
    twin = token[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last | 1]
    assert twin != token
    with pytest.raises(ValueError):
        decode_after("reporters", twin)


@pytest.mark.parametrize("state", STATES)
def test_the_allowlist_wins_over_an_approve_in_every_state(state: str) -> None:
    standing = dataclasses.replace(_standing(state), allowlisted=True)
    verdict = judge("approve", standing, ALICE)
    if state == "approved":
        assert verdict.status == "unchanged"
    else:
        assert (verdict.status, verdict.code) == ("refused", "conflict")
    for action in ("reject", "retract"):
        assert judge(action, standing, ALICE) == judge(action, _standing(state), ALICE)
