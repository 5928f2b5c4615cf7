"""The reviewer console in a real browser (Chromium via Playwright) against a real hub:
log in, the queue, filters and paging, signatures verified in the browser (a tampered
envelope fails), claims seen from a second reviewer, decisions reaching the feed, the
two-reviewer rule, the CSP, no console errors, and a bad token's message."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support import Hub, Node, publish, signal

# Screenshots for the README: written to docs/ when HONEYMESH_SCREENSHOTS=1, else to a
# temp dir (a test run must not rewrite tracked files).
DOCS = Path(__file__).resolve().parents[2] / "docs"


def shot(tmp: Path, name: str) -> str:
    folder = DOCS if os.environ.get("HONEYMESH_SCREENSHOTS") == "1" else tmp
    return str(folder / name)


class Console:
    """One browser context logged in with a token; collects console errors."""

    def __init__(self, page: Page, base: str) -> None:
        self.page, self.base = page, base
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    async def open(self) -> Any:
        response = await self.page.goto(f"{self.base}/console/")
        assert response is not None and response.status == 200
        return response

    async def login(self, token: str) -> None:
        await self.open()
        await self.page.get_by_label("Reviewer or admin token").fill(token)
        await self.page.get_by_role("button", name="Log in").click()

    def rows(self) -> Any:
        return self.page.locator("#queue tbody tr")

    async def open_candidate(self, indicator: str) -> None:
        await self.rows().filter(has_text=indicator).first.click()
        await expect(self.page.locator("#cand-title")).to_contain_text(indicator)

    async def decide(self, action: str, reason: str = "checked") -> None:
        await self.page.get_by_label("Reason").fill(reason)
        await self.page.get_by_role("button", name=action.capitalize(), exact=True).click()


@pytest.fixture
async def console(browser: Browser, live_hub: tuple[Hub, str]) -> AsyncIterator[Console]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    made = Console(await context.new_page(), live_hub[1])
    yield made
    await context.close()


async def trusted_free_nodes(hub: Hub, count: int) -> list[Node]:
    tenant = await hub.tenant()
    return [await hub.enroll(tenant) for _ in range(count)]


async def feed_ids(node: Node) -> set[str]:
    page = (await node.request("GET", "/v1/feed")).body
    return {e["id"] for e in page["added"]}


async def test_login_queue_and_signatures_verified_in_the_browser(
    live_hub: tuple[Hub, str], console: Console, tmp_path: Path
) -> None:
    hub, _ = live_hub
    a, b = await trusted_free_nodes(hub, 2)
    for node in (a, b):
        await publish(node, signal(node, "203.0.113.10", scenario="ssh/brute-force"))
    await publish(a, signal(a, "198.51.100.10", scenario="redis/config-set"))
    await publish(a, signal(a, "198.51.100.11", scenario="redis/config-set"))
    # A stored envelope with a bad signature: only the database can hold one.
    conn = await asyncpg.connect(hub.database_url)
    try:
        await conn.execute(
            "UPDATE signals SET sig = decode(repeat('00', 64), 'hex')"
            " WHERE indicator_value = '198.51.100.11'"
        )
    finally:
        await conn.close()
    response = await console.open()
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    await console.login(await hub.reviewer_token())
    await expect(console.rows()).to_have_count(3)
    await expect(console.rows().first).to_contain_text("203.0.113.10")  # most reporters first
    await expect(console.page.locator("#st-pending")).to_have_text("3")
    await console.page.screenshot(path=shot(tmp_path, "console-queue.png"), full_page=True)
    await console.open_candidate("203.0.113.10")
    marks = console.page.locator("#signals tbody tr td:first-child")
    await expect(marks).to_have_count(2)
    await expect(marks.nth(0)).to_have_text("✓ verified")
    await expect(marks.nth(1)).to_have_text("✓ verified")
    await console.page.screenshot(path=shot(tmp_path, "console-candidate.png"), full_page=True)
    await console.page.get_by_role("button", name="Back to the queue").click()
    await console.open_candidate("198.51.100.11")
    await expect(console.page.locator("#signals tbody tr td:first-child")).to_have_text(
        "✗ FAILED: bad signature"
    )
    assert console.errors == []


async def test_filters_and_paging(live_hub: tuple[Hub, str], console: Console) -> None:
    hub, _ = live_hub
    [node] = await trusted_free_nodes(hub, 1)
    payloads = [signal(node, f"198.51.100.{i}", scenario="scan/syn") for i in range(55)]
    payloads += [signal(node, "203.0.113.99", scenario="ssh/brute-force")]
    await publish(node, *payloads)
    await console.login(await hub.reviewer_token())
    await expect(console.rows()).to_have_count(50)
    await console.page.get_by_role("button", name="Next page").click()
    await expect(console.rows()).to_have_count(6)
    await console.page.get_by_label("Scenario").fill("ssh/brute-force")
    await console.page.get_by_role("button", name="Apply").click()
    await expect(console.rows()).to_have_count(1)
    await expect(console.rows().first).to_contain_text("203.0.113.99")
    await console.page.get_by_label("Scenario").fill("")
    await console.page.get_by_label("Indicator prefix").fill("198.51.100.5")
    await console.page.get_by_role("button", name="Apply").click()
    await expect(console.rows()).to_have_count(6)  # .5 and .50-.54
    assert console.errors == []


async def test_bad_token_shows_a_clear_message(console: Console) -> None:
    await console.login("hmr_not-a-real-token")
    await expect(console.page.get_by_role("alert")).to_contain_text("not valid")
    await expect(console.page.locator("#queue-view")).to_be_hidden()


async def test_claims_decisions_reach_the_feed_and_two_reviewers_for_broad_ranges(
    live_hub: tuple[Hub, str], browser: Browser, console: Console
) -> None:
    hub, base = live_hub
    [node] = await trusted_free_nodes(hub, 1)
    await publish(
        node,
        signal(node, "203.0.113.20"),
        signal(node, "203.0.113.21"),
        signal(node, indicator={"type": "cidr", "value": "198.51.0.0/16"}),
    )
    await console.login(await hub.reviewer_token(name="alice"))
    await console.open_candidate("203.0.113.20")
    await console.page.get_by_role("button", name="Claim").click()
    await expect(console.page.locator("#cand-facts")).to_contain_text("alice until")

    other_context = await browser.new_context()
    bob = Console(await other_context.new_page(), base)
    await bob.login(await hub.reviewer_token(name="bob"))
    await expect(bob.rows().filter(has_text="203.0.113.20")).to_contain_text("alice")
    await bob.open_candidate("203.0.113.20")
    await bob.decide("approve")
    await expect(bob.page.get_by_role("alert")).to_be_visible()  # alice holds it

    await console.decide("approve")
    await expect(console.page.locator("#cand-facts")).to_contain_text("approved")
    approved_id = await _candidate_id(hub, "203.0.113.20")
    assert approved_id in await feed_ids(node)
    await console.decide("retract")
    await expect(console.page.locator("#cand-facts")).to_contain_text("retracted")
    assert approved_id not in await feed_ids(node)

    await console.page.get_by_role("button", name="Back to the queue").click()
    await console.open_candidate("203.0.113.21")
    await console.decide("reject")
    await expect(console.page.locator("#cand-facts")).to_contain_text("rejected")
    assert await _candidate_id(hub, "203.0.113.21") not in await feed_ids(node)

    await console.page.get_by_role("button", name="Back to the queue").click()
    await console.open_candidate("198.51.0.0/16")
    await console.decide("approve")
    await expect(console.page.locator("#approvals")).to_contain_text("alice; 1 more needed")
    await bob.page.get_by_role("button", name="Back to the queue").click()
    await bob.open_candidate("198.51.0.0/16")
    await bob.decide("approve")
    await expect(bob.page.locator("#cand-facts")).to_contain_text("approved")
    assert await _candidate_id(hub, "198.51.0.0/16") in await feed_ids(node)
    assert console.errors == [] and bob.errors == []
    await other_context.close()


async def test_admin_token_sees_the_audit_log(live_hub: tuple[Hub, str], console: Console) -> None:
    hub, _ = live_hub
    await hub.tenant()
    await console.login(hub.admin_token)
    await expect(console.page.locator("#audit tbody tr").first).to_be_visible()
    await expect(console.page.locator("#audit")).to_contain_text("tenant.create")
    assert console.errors == []


async def test_narrow_screen_keeps_the_controls_usable(
    live_hub: tuple[Hub, str], browser: Browser
) -> None:
    hub, base = live_hub
    [node] = await trusted_free_nodes(hub, 1)
    await publish(node, signal(node, "203.0.113.30"))
    context = await browser.new_context(viewport={"width": 400, "height": 800})
    narrow = Console(await context.new_page(), base)
    await narrow.login(await hub.reviewer_token())
    await expect(narrow.rows()).to_have_count(1)
    await narrow.page.keyboard.press("Enter")
    await expect(narrow.page.locator("#cand-title")).to_contain_text("203.0.113.30")
    await expect(narrow.page.get_by_role("button", name="Approve", exact=True)).to_be_in_viewport()
    await context.close()


async def _candidate_id(hub: Hub, value: str) -> str:
    conn = await asyncpg.connect(hub.database_url)
    try:
        return str(
            await conn.fetchval("SELECT id FROM candidates WHERE indicator_value = $1", value)
        )
    finally:
        await conn.close()
