"""The services, built once per app and kept under one key (state.SERVICES): a handler
takes the one it needs instead of assembling it from the app's resources."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from . import state
from .services.budgets import ApprovalCaps, NewCandidateBudget
from .services.feed import CatchUp, Checkpoints, FeedContext
from .services.groupcommit import StoreGroups
from .services.publishing import Publishing
from .services.taxii import Taxii


@dataclass(frozen=True, slots=True)
class Services:
    publishing: Publishing
    feed: FeedContext
    taxii: Taxii


def build(app: web.Application) -> Services:
    """Once the app's pool, limiter and feed listener are up (app.py)."""
    limiter = app[state.LIMITER]
    return Services(
        publishing=Publishing(
            pool=app[state.POOL],
            directory=app[state.DIRECTORY],
            budget=NewCandidateBudget(limiter),
            caps=ApprovalCaps(limiter),
            metrics=app[state.METRICS],
            policy=app[state.CONFIG].policy,
            groups=StoreGroups(
                app[state.POOL], app[state.CONFIG].policy.corroboration_min_confidence
            ),
        ),
        feed=FeedContext(
            pool=app[state.POOL],
            notifier=app[state.NOTIFIER],
            mac_key=app[state.CURSOR_KEY],
            metrics=app[state.METRICS],
            reads=app[state.FEED_READS],
            snapshots=app[state.SNAPSHOTS],
            catch_up=CatchUp(app[state.POOL], app[state.LOG_KEY]),
            checkpoints=Checkpoints(app[state.LOG_KEY]),
        ),
        taxii=Taxii(
            pool=app[state.POOL],
            mac_key=app[state.CURSOR_KEY],
            hub_id=app[state.HUB_IDENTITY]["hub_id"],
            mesh_collection=app[state.HUB_IDENTITY]["mesh_collection"],
            created_at=app[state.HUB_IDENTITY]["created_at"],
        ),
    )
