"""lua/admit.lua against `limits` itself, on a real Redis.

The admit script re-implements limits' sliding window counter (several windows in one
round trip) on limits' private key layout, so `limits`' own API must read and charge
the very same counters. For a range of limits, costs and window positions, charging
through our script and through limits' `SlidingWindowCounterRateLimiter` on
`RedisStorage` must agree on allowed/refused and on remaining and reset as
`get_window_stats` reports them, also when one charges and the other reads. This is
why pyproject.toml pins limits' major version: a new one may change either.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from honeymesh_hub.metrics import Metrics
from honeymesh_hub.ratelimit import Limit, RateLimiter, Window, per_day, per_minute
from honeymesh_hub.redisconn import RedisGate
from tests.conftest import Services

POLICY = "contract"
# Time passing between two engines' turns (ms ticking away in the TTLs), at most.
SLACK_SECONDS = 0.25


@dataclass
class Engines:
    ours: RateLimiter
    theirs: SlidingWindowCounterRateLimiter
    gate: RedisGate


@pytest.fixture
async def engines(services: Services, redis_prefix: str) -> AsyncIterator[Engines]:
    gate = RedisGate(services.redis_url, redis_prefix, Metrics())
    storage = RedisStorage(
        services.redis_url, implementation="redispy", key_prefix=redis_prefix + "rl"
    )
    yield Engines(RateLimiter(gate), SlidingWindowCounterRateLimiter(storage), gate)
    await gate.close()


# Window positions, as the (previous, current) counters' (count, ttl as a fraction of
# the window) before the charge; None: no such key. The fractions keep the weighted
# count clear of an integer (a few ms of drift never changes its floor) and the current
# window clear of its roll-over instant.
Position = tuple[tuple[int, float] | None, tuple[int, float] | None]


def positions(amount: int) -> dict[str, Position]:
    half = max(1, amount // 2)
    return {
        "fresh": (None, None),
        "current only": (None, (half, 1.63)),
        "current spent": (None, (amount, 1.41)),
        "previous and current": ((amount, 0.37), (half, 1.77)),
        "previous spent, current empty": ((amount, 0.61), (0, 1.93)),
        # The current window has ended: the charge first rolls it into the previous one.
        "roll-over": ((amount, 0.2), (amount, 0.43)),
        "roll-over of a half window": (None, (half, 0.71)),
    }


LIMITS = [per_minute(1), per_minute(5), per_minute(20), per_day(7)]


def costs(amount: int) -> list[int]:
    return sorted({1, 2, amount, amount + 1})


async def seed(engines: Engines, limit: Limit, position: Position) -> None:
    previous, current = engines.ours._window_keys(POLICY, limit)
    expiry_ms = int(limit.item.get_expiry()) * 1000
    client = engines.gate.client
    assert client is not None
    await client.delete(previous, current)
    for key, state in ((previous, position[0]), (current, position[1])):
        if state is not None:
            count, fraction = state
            await client.set(key, count, px=round(fraction * expiry_ms))


def effective(limit: Limit, position: Position) -> Position:
    """The position the next charge sees (after the roll-over, if one is due)."""
    previous, current = position
    if current is not None and current[1] < 1:
        return current, (0, current[1] + 1)
    return previous, current


def assert_clear_of_rounding(limit: Limit, position: Position) -> None:
    """The previous window's weight only shrinks as time passes: its floor must not drop
    within SLACK_SECONDS, or the engines' turns could see different counts."""
    previous, _ = effective(limit, position)
    if previous is not None:
        count, fraction = previous
        drift = count * SLACK_SECONDS / limit.item.get_expiry()
        assert (count * fraction) % 1 > drift, "a position at a rounding edge"


def assert_same_window(ours: Window, stats_remaining: int, stats_reset: float) -> None:
    """Our window against get_window_stats read a moment before or after (stats_reset:
    seconds from then)."""
    assert ours.remaining == stats_remaining
    if min(ours.reset, stats_reset) <= 1 + SLACK_SECONDS:
        # limits' reset is a modulo of the TTLs: as one crosses a whole multiple (the
        # instant a window opens, a previous unit freeing) it jumps from 0 to a full
        # period, and the engine that read a ms later sees the other side of that edge.
        return
    assert abs(ours.reset - stats_reset) < 1 + SLACK_SECONDS


async def stats(engines: Engines, item: RateLimitItem, key: str) -> tuple[int, float]:
    found = await engines.theirs.get_window_stats(item, POLICY, key)
    return found.remaining, found.reset_time - time.time()


async def read_ours(engines: Engines, limit: Limit) -> Window:
    admission = await engines.ours.admit([(POLICY, limit, 0)])
    assert admission.allowed
    return admission.windows[0]


def cases() -> list[tuple[RateLimitItem, str, int]]:
    return [
        (item, name, cost)
        for item in LIMITS
        for name in positions(item.amount)
        for cost in costs(item.amount)
    ]


@pytest.mark.parametrize(
    ("item", "position_name", "cost"),
    cases(),
    ids=[f"{item}-{name}-cost{cost}" for item, name, cost in cases()],
)
async def test_script_and_limits_agree(
    engines: Engines, item: RateLimitItem, position_name: str, cost: int
) -> None:
    limit = Limit(item, "subject")
    position = positions(item.amount)[position_name]
    assert_clear_of_rounding(limit, position)

    # Ours charges, limits reads.
    await seed(engines, limit, position)
    expected = await engines.theirs.test(item, POLICY, limit.key, cost=cost)
    admission = await engines.ours.admit([(POLICY, limit, cost)])
    assert admission.allowed == expected
    assert admission.refused == (None if expected else 0)
    remaining, reset = await stats(engines, item, limit.key)
    assert_same_window(admission.windows[0], remaining, reset)
    after_ours = await read_ours(engines, limit)

    # Limits charges, ours reads: the same outcome from the same position.
    await seed(engines, limit, position)
    assert await engines.theirs.hit(item, POLICY, limit.key, cost=cost) == expected
    window = await read_ours(engines, limit)
    remaining, reset = await stats(engines, item, limit.key)
    assert_same_window(window, remaining, reset)
    assert window.remaining == after_ours.remaining


@pytest.mark.parametrize("item", LIMITS, ids=str)
@pytest.mark.parametrize("position_name", ["fresh", "previous and current", "roll-over"])
async def test_interleaved_charges_agree(
    engines: Engines, item: RateLimitItem, position_name: str
) -> None:
    """Charges alternate between the engines on one window until it is spent; each
    decision is the one limits predicts, and both read the same window after each."""
    limit = Limit(item, "subject")
    position = positions(item.amount)[position_name]
    assert_clear_of_rounding(limit, position)
    await seed(engines, limit, position)
    charges = [1, 2, 1, 3, 1, 1, 2, 1] * max(1, item.amount // 4)
    for turn, cost in enumerate(charges):
        expected = await engines.theirs.test(item, POLICY, limit.key, cost=cost)
        if turn % 2:
            allowed = await engines.theirs.hit(item, POLICY, limit.key, cost=cost)
        else:
            allowed = (await engines.ours.admit([(POLICY, limit, cost)])).allowed
        assert allowed == expected, f"turn {turn}, cost {cost}"
        remaining, reset = await stats(engines, item, limit.key)
        assert_same_window(await read_ours(engines, limit), remaining, reset)
    assert (await read_ours(engines, limit)).remaining < item.amount


async def test_several_windows_charge_all_or_nothing(engines: Engines) -> None:
    """One spent window refuses the admission, and no window is charged: as limits sees
    it, every window is where it was."""
    roomy, tight, spent = (
        Limit(per_minute(20), "roomy"),
        Limit(per_day(7), "tight"),
        Limit(per_minute(5), "spent"),
    )
    await seed(engines, roomy, positions(20)["previous and current"])
    await seed(engines, tight, positions(7)["current only"])
    await seed(engines, spent, positions(5)["current spent"])
    windows: Sequence[Limit] = (roomy, tight, spent)
    before = [await stats(engines, w.item, w.key) for w in windows]
    admission = await engines.ours.admit([(POLICY, w, 1) for w in windows])
    assert (admission.allowed, admission.refused) == (False, 2)
    for w, (remaining, _), ours in zip(windows, before, admission.windows, strict=True):
        assert (await stats(engines, w.item, w.key))[0] == remaining == ours.remaining
    # Without the spent one, both are charged, as limits' hit would charge each.
    admission = await engines.ours.admit([(POLICY, w, 1) for w in windows[:2]])
    assert admission.allowed
    for w, (remaining, _), ours in zip(windows, before, admission.windows, strict=False):
        assert (await stats(engines, w.item, w.key))[0] == remaining - 1 == ours.remaining
