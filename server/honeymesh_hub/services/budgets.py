"""The two limits publishing spends, as small interfaces over the rate limiter: a
tenant's new-candidate budget and the daily approval caps (PROTOCOL.md section 4).
Publishing sees these verbs, not `RateLimiter`."""

from __future__ import annotations

from collections.abc import Sequence

from ..callers import NodeCaller
from ..ratelimit import Limit, RateLimiter, per_day

NEW_CANDIDATES = "new_candidates"


def new_candidates_limit(caller: NodeCaller) -> Limit:
    """The tenant's `new_candidates_per_day` window."""
    allowed = caller.identity.tenant.limits["new_candidates_per_day"]
    return Limit(per_day(allowed), str(caller.tenant_id))


class NewCandidateBudget:
    """A tenant's `new_candidates_per_day`: read at admission, spent exactly near the
    cap, and otherwise charged after the batch by what it opened (within a second)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def uncharged(self, caller: NodeCaller) -> int:
        """Openings this process made and has not charged yet."""
        return self._limiter.deferred(NEW_CANDIDATES, new_candidates_limit(caller))

    async def take(self, caller: NodeCaller, wanted: int) -> int:
        """Charge up to `wanted` openings now, after this process's uncharged ones;
        how many were granted."""
        await self._limiter.flush()
        return await self._limiter.take(NEW_CANDIDATES, new_candidates_limit(caller), wanted)

    def charge_later(self, caller: NodeCaller, opened: int) -> None:
        self._limiter.defer(NEW_CANDIDATES, new_candidates_limit(caller), opened)


class ApprovalCaps:
    """`auto_approvals_per_day` per contributing tenant, `trusted_approvals_per_day` per
    trusted node: a rule-made approval spends one of each window it names, all or none."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def spend(self, cap: str, windows: Sequence[tuple[str, int]]) -> bool:
        """`windows`: (whose, per day) pairs; False, charging nothing, when one is spent."""
        charges = [(cap, Limit(per_day(amount), whose), 1) for whose, amount in windows]
        return (await self._limiter.admit(charges)).allowed
