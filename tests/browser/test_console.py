"""The reviewer console in a real browser (Debian's Chromium via Playwright) against a
real hub on a loopback port: log in, the queue, filters and paging, signatures verified
in the browser (a tampered envelope fails), claims seen from a second reviewer,
decisions reaching the feed, the two-reviewer rule, keyboard shortcuts, live counts,
the CSP, no console errors, no request leaving the hub, and a bad token's message.

Every page a test opens is watched: a console error, a page error, or a request to
any origin but the hub's fails the test when its context closes.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, Response, expect

from honeymesh_client.protocol.dsse import SIGNAL_PAYLOAD_TYPE, build_envelope, pae
from honeymesh_client.protocol.keys import NodeKey
from tests.support import Hub, Node, publish, signal

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# Screenshots for the README: written to docs/ when HONEYMESH_SCREENSHOTS=1, else to the
# test's temp dir (a test run must not rewrite tracked files).
DOCS = Path(__file__).resolve().parents[2] / "docs"


def shot(tmp: Path, name: str) -> str:
    folder = DOCS if os.environ.get("HONEYMESH_SCREENSHOTS") == "1" else tmp
    return str(folder / name)


class Console:
    """One page of the console; collects console errors and foreign requests."""

    def __init__(self, page: Page, base: str) -> None:
        self.page, self.base = page, base
        self.errors: list[str] = []
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        self.allowed: set[str] = set()
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r))
        page.on("response", lambda r: self.responses.append(r))

    async def open(self) -> Response:
        response = await self.page.goto(f"{self.base}/console/")
        assert response is not None and response.status == 200
        return response

    async def login(self, token: str) -> None:
        await self.open()
        await self.page.get_by_label("Reviewer or admin token").fill(token)
        await self.page.get_by_role("button", name="Log in").click()

    def rows(self) -> Any:
        return self.page.locator("#queue tbody tr")

    def marks(self) -> Any:
        return self.page.locator("#signals tbody tr td:first-child")

    async def open_candidate(self, indicator: str) -> None:
        await self.rows().filter(has_text=indicator).first.click()
        await expect(self.page.locator("#cand-title")).to_contain_text(indicator)

    async def back(self) -> None:
        await self.page.get_by_role("button", name="Back to the queue").click()
        await expect(self.page.locator("#queue-view")).to_be_visible()

    async def decide(self, action: str, reason: str = "checked") -> None:
        await self.page.get_by_label("Reason").fill(reason)
        await self.page.get_by_role("button", name=action.capitalize(), exact=True).click()

    def allow_http_error(self, status: int) -> None:
        """A refusal the test provoked: Chromium logs the failed fetch as an error."""
        self.allowed.add(f"the server responded with a status of {status}")

    def check_clean(self) -> None:
        """No console or page error, and nothing asked of any origin but the hub."""
        errors = [e for e in self.errors if not any(a in e for a in self.allowed)]
        assert errors == [], errors
        foreign = [r.url for r in self.requests if not r.url.startswith(self.base + "/")]
        assert foreign == [], foreign


OpenConsole = Callable[..., Awaitable[Console]]


@pytest.fixture
async def open_console(browser: Browser, live_hub: tuple[Hub, str]) -> AsyncIterator[OpenConsole]:
    """Opens consoles, each in its own browser context (its own sessionStorage)."""
    made: list[tuple[BrowserContext, Console]] = []

    async def opener(width: int = 1280, height: int = 800, init_script: str = "") -> Console:
        context = await browser.new_context(viewport={"width": width, "height": height})
        if init_script:
            await context.add_init_script(init_script)
        console = Console(await context.new_page(), live_hub[1])
        made.append((context, console))
        return console

    yield opener
    for context, console in made:
        await context.close()
        console.check_clean()


@pytest.fixture
async def console(open_console: OpenConsole) -> Console:
    return await open_console()


async def nodes_of(hub: Hub, count: int, tenant: str | None = None) -> list[Node]:
    tenant = tenant or await hub.tenant()
    return [await hub.enroll(tenant) for _ in range(count)]


async def feed_ids(node: Node) -> set[str]:
    page = (await node.request("GET", "/v1/feed")).body
    return {e["id"] for e in page["added"]}


async def sql(hub: Hub, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(hub.database_url)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def candidate_id(hub: Hub, value: str) -> str:
    return str(await sql(hub, "SELECT id FROM candidates WHERE indicator_value = $1", value))


async def tamper(hub: Hub, node: Node, value: str) -> None:
    """Store a bad signature for one signal: the API refuses one, the database not."""
    await sql(
        hub,
        "UPDATE signals SET sig = decode(repeat('00', 64), 'hex')"
        " WHERE indicator_value = $1 AND node_id = $2",
        value,
        node.node_id,
    )


def at(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mesh_evidence(hub: Hub, events: int) -> dict[str, Any]:
    now = hub.now()
    return {
        "evidence": {"events": events, "first_seen": at(now - 3600), "last_seen": at(now - 60)},
        "service": {"name": "ssh", "port": 22},
    }


async def test_queue_and_candidate_with_signatures_verified_in_the_browser(
    live_hub: tuple[Hub, str], open_console: OpenConsole, tmp_path: Path
) -> None:
    hub, _ = live_hub
    a1, a2 = await nodes_of(hub, 2)
    [b1] = await nodes_of(hub, 1)
    broad = "198.51.0.0/16"
    # Confidence under 70: three nodes of two tenants, yet no corroboration approval.
    for node, events in ((a1, 41), (a2, 17), (b1, 9)):
        await publish(
            node,
            signal(
                node,
                "203.0.113.10",
                scenario="ssh/brute-force",
                confidence=65,
                **mesh_evidence(hub, events),
            ),
            signal(
                node,
                indicator={"type": "cidr", "value": broad},
                scenario="scan/syn",
                confidence=60,
                **mesh_evidence(hub, events * 3),
            ),
        )
        hub.clock.advance(420)
    await publish(a1, signal(a1, "198.51.100.10", scenario="redis/config-set"))
    await publish(b1, signal(b1, "2001:db8::7", scenario="http/path-traversal"))
    await tamper(hub, b1, "203.0.113.10")
    await tamper(hub, b1, broad)
    # Alice approves the broad range once (it needs a second reviewer), then holds
    # another candidate.
    alice = await hub.reviewer_token(name="alice")
    first = await hub.call(
        "POST",
        "/v1/review/decisions",
        {
            "decisions": [
                {
                    "candidate_id": await candidate_id(hub, broad),
                    "action": "approve",
                    "reason": "a /16 scanning many sensors",
                }
            ]
        },
        token=alice,
    )
    assert first.body["results"][0]["status"] == "applied", first.body
    held = await hub.call(
        "POST",
        f"/v1/review/candidates/{await candidate_id(hub, '2001:db8::7')}/claim",
        {"lease_seconds": 600},
        token=alice,
    )
    assert held.status == 200, held.body

    console = await open_console()
    response = await console.open()
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    await console.login(await hub.reviewer_token(name="bob"))
    await expect(console.rows()).to_have_count(4)
    # Most reporters first; every column of the queue.
    first_row = console.rows().first.locator("td")
    await expect(first_row).to_have_count(9)
    texts = await first_row.all_inner_texts()
    assert texts[:6] in (
        [broad, "mesh", "scan/syn", "3", "2", "60"],
        ["203.0.113.10", "mesh", "ssh/brute-force", "3", "2", "65"],
    )
    await expect(console.rows().filter(has_text="2001:db8::7")).to_contain_text("alice")
    await expect(console.page.locator("#st-pending")).to_have_text("4")
    await expect(console.page.locator("#st-approvals")).to_have_text("0")
    for response in console.responses:  # the module and the style sheet too
        if "/console/" in response.url:
            assert response.headers["content-security-policy"] == CSP, response.url
    await console.page.screenshot(path=shot(tmp_path, "console-queue.png"))

    await console.open_candidate("203.0.113.10")
    await expect(console.marks()).to_have_count(3)
    await expect(console.marks().filter(has_text="✓ verified")).to_have_count(2)
    failed = console.page.locator("#signals tbody tr").filter(has_text=b1.node_id)
    await expect(failed.locator("td").first).to_have_text("✗ FAILED: bad signature")
    await expect(failed).to_contain_text("(not the publisher's word) 9 events")
    good = console.page.locator("#signals tbody tr").filter(has_text=a1.node_id)
    await expect(good.locator("td").first).to_have_text("✓ verified")
    await expect(good).to_contain_text("41 events")
    await expect(good).to_contain_text("service ssh:22")
    await expect(console.page.locator("#approvals")).to_contain_text("One reviewer's approval")

    await console.back()
    await console.open_candidate(broad)
    await expect(console.marks().filter(has_text="✓ verified")).to_have_count(2)
    await expect(console.marks().filter(has_text="✗ FAILED: bad signature")).to_have_count(1)
    await expect(console.page.locator("#approvals")).to_have_text(
        "Broad range: two reviewers of different names must approve."
        " Approved by: alice; 1 more needed."
    )
    await expect(console.page.locator("#history")).to_contain_text("a /16 scanning many sensors")
    await console.page.get_by_label("Reason").fill("confirmed: a /16 scanning many sensors")
    await console.page.screenshot(path=shot(tmp_path, "console-candidate.png"), full_page=True)


async def test_filters_order_and_paging(live_hub: tuple[Hub, str], console: Console) -> None:
    hub, _ = live_hub
    [node, other] = await nodes_of(hub, 2)
    payloads = [signal(node, f"198.51.100.{i}", scenario="scan/syn") for i in range(55)]
    await publish(node, *payloads)
    hub.clock.advance(60)
    await publish(node, signal(node, "203.0.113.99", scenario="ssh/brute-force"))
    await publish(other, signal(other, "203.0.113.99", scenario="ssh/brute-force"))
    await console.login(await hub.reviewer_token())
    await expect(console.rows()).to_have_count(50)
    await expect(console.rows().first).to_contain_text("203.0.113.99")  # 2 reporters
    page_one = set(await console.rows().locator("td:first-child").all_inner_texts())
    await console.page.get_by_role("button", name="Next page").click()
    await expect(console.rows()).to_have_count(6)
    await expect(console.page.get_by_role("button", name="Next page")).to_be_disabled()
    page_two = set(await console.rows().locator("td:first-child").all_inner_texts())
    assert not page_one & page_two and len(page_one | page_two) == 56
    await console.page.get_by_role("button", name="Previous page").click()
    await expect(console.rows()).to_have_count(50)
    assert set(await console.rows().locator("td:first-child").all_inner_texts()) == page_one

    await console.page.get_by_label("Order").select_option("oldest")
    await console.page.get_by_role("button", name="Apply").click()
    await expect(console.rows()).to_have_count(50)
    await expect(console.rows().first).not_to_contain_text("203.0.113.99")
    await console.page.get_by_label("Min reporters").fill("2")
    await console.page.get_by_role("button", name="Apply").click()
    await expect(console.rows()).to_have_count(1)
    await console.page.get_by_label("Min reporters").fill("")
    await console.page.get_by_label("Scenario").fill("ssh/brute-force")
    await console.page.get_by_role("button", name="Apply").click()
    await expect(console.rows()).to_have_count(1)
    await expect(console.rows().first).to_contain_text("203.0.113.99")
    await console.page.get_by_label("Scenario").fill("")
    await console.page.get_by_label("Indicator prefix").fill("198.51.100.5")
    await console.page.get_by_role("button", name="Apply").click()
    await expect(console.rows()).to_have_count(6)  # .5 and .50-.54
    await console.page.get_by_label("Indicator prefix").fill("192.0.2.")
    await console.page.get_by_role("button", name="Apply").click()
    await expect(console.rows()).to_have_count(0)
    await expect(console.page.get_by_text("No candidates match.")).to_be_visible()
    # A filter the API refuses: its detail, as one sentence.
    await console.page.get_by_label("Indicator prefix").fill("not an address")
    await console.page.get_by_role("button", name="Apply").click()
    await expect(console.page.get_by_role("alert")).to_have_text(
        "Query parameter indicator must be the start of an IP address or CIDR range."
    )
    console.allow_http_error(422)


async def test_bad_token_shows_a_clear_message(live_hub: tuple[Hub, str], console: Console) -> None:
    await console.open()
    # The login page shows no status strip: `hidden` wins over its display:flex.
    await expect(console.page.locator("#status")).to_be_hidden()
    await expect(console.page.locator("#nav")).to_be_hidden()
    await console.login("hmr_not-a-real-token")
    await expect(console.page.get_by_role("alert")).to_have_text(
        "This token is not valid: it is unknown, revoked or expired."
    )
    await expect(console.page.locator("#queue-view")).to_be_hidden()
    await expect(console.page.locator("#status")).to_be_hidden()
    assert await console.page.evaluate("sessionStorage.length") == 0
    console.allow_http_error(401)


async def test_the_token_stays_in_session_storage(
    live_hub: tuple[Hub, str], console: Console
) -> None:
    hub, _ = live_hub
    token = await hub.reviewer_token()
    await console.login(token)
    await expect(console.page.locator("#queue-view")).to_be_visible()
    stored = await console.page.evaluate("sessionStorage.getItem('honeymesh.token')")
    assert stored == token
    assert await console.page.context.cookies() == []
    assert await console.page.evaluate("document.cookie") == ""
    api = [r for r in console.requests if "/v1/" in r.url]
    assert api and all(token not in r.url for r in console.requests)
    for request in api:
        assert (await request.all_headers())["authorization"] == f"Bearer {token}"
    await console.page.reload()  # the same tab keeps it
    await expect(console.page.locator("#queue-view")).to_be_visible()
    await console.page.get_by_role("button", name="Log out").click()
    await expect(console.page.get_by_label("Reviewer or admin token")).to_be_focused()
    assert await console.page.evaluate("sessionStorage.length") == 0


async def test_claims_decisions_reach_the_feed_and_two_reviewers_for_broad_ranges(
    live_hub: tuple[Hub, str], open_console: OpenConsole
) -> None:
    hub, _ = live_hub
    [node] = await nodes_of(hub, 1)
    await publish(
        node,
        signal(node, "203.0.113.20"),
        signal(node, "203.0.113.21"),
        signal(node, indicator={"type": "cidr", "value": "198.51.0.0/16"}),
    )
    alice = await open_console()
    await alice.login(await hub.reviewer_token(name="alice"))
    await alice.open_candidate("203.0.113.20")
    await alice.page.get_by_role("button", name="Claim").click()
    await expect(alice.page.locator("#cand-facts")).to_contain_text("alice until")

    bob = await open_console()  # a second browser context: its own session
    await bob.login(await hub.reviewer_token(name="bob"))
    await expect(bob.rows().filter(has_text="203.0.113.20")).to_contain_text("alice")
    await bob.open_candidate("203.0.113.20")
    await expect(bob.page.locator("#held")).to_contain_text("Held by alice until")
    await bob.decide("approve")
    await expect(bob.page.get_by_role("alert")).to_have_text(
        "Reviewer alice holds this candidate's lease."
    )
    await bob.page.get_by_role("button", name="Claim").click()
    await expect(bob.page.get_by_role("alert")).to_contain_text(
        "Reviewer alice holds this candidate's lease until"
    )
    bob.allow_http_error(409)

    await alice.page.get_by_label("TTL seconds (approve, optional)").fill("7200")
    await alice.decide("approve")
    await expect(alice.page.locator("#cand-facts")).to_contain_text("approved")
    await expect(alice.page.locator("#history")).to_contain_text("approve (pending → approved)")
    await expect(alice.page.locator("#cand-facts")).to_contain_text(
        f"Expires{at(hub.now() + 7200)}"
    )
    approved = await candidate_id(hub, "203.0.113.20")
    assert approved in await feed_ids(node)
    await alice.decide("retract", "false positive: our own scanner")
    await expect(alice.page.locator("#cand-facts")).to_contain_text("retracted")
    await expect(alice.page.locator("#history")).to_contain_text("false positive: our own scanner")
    assert approved not in await feed_ids(node)

    await alice.back()
    await alice.open_candidate("203.0.113.21")
    await alice.decide("reject")
    await expect(alice.page.locator("#cand-facts")).to_contain_text("rejected")
    assert await candidate_id(hub, "203.0.113.21") not in await feed_ids(node)

    await alice.back()
    await alice.open_candidate("198.51.0.0/16")
    await expect(alice.page.locator("#approvals")).to_contain_text("nobody yet; 2 more needed")
    await alice.decide("approve")
    await expect(alice.page.locator("#approvals")).to_contain_text("alice; 1 more needed")
    await expect(alice.page.locator("#cand-facts")).to_contain_text("pending")
    broad = await candidate_id(hub, "198.51.0.0/16")
    assert broad not in await feed_ids(node)
    await alice.decide("approve")  # the same name again changes nothing
    await expect(alice.page.locator("#decide-hint")).to_contain_text("Nothing changed")
    await bob.back()
    await bob.open_candidate("198.51.0.0/16")
    await expect(bob.page.locator("#approvals")).to_contain_text("alice; 1 more needed")
    await bob.decide("approve")
    await expect(bob.page.locator("#cand-facts")).to_contain_text("approved")
    await expect(bob.page.locator("#approvals")).to_have_text(
        "Broad range: two reviewers approved it (alice, bob)."
    )
    assert broad in await feed_ids(node)


async def test_keyboard_shortcuts_and_not_while_typing(
    live_hub: tuple[Hub, str], console: Console
) -> None:
    hub, _ = live_hub
    n1, n2, n3 = await nodes_of(hub, 3)
    for node, values in ((n1, 3), (n2, 2), (n3, 1)):
        await publish(node, *(signal(node, f"203.0.113.{v}") for v in range(1, values + 1)))
    await console.login(await hub.reviewer_token(name="carol"))
    page, rows = console.page, console.rows()
    await expect(rows).to_have_count(3)
    selected = page.locator("#queue tbody tr[aria-current='true']")
    await expect(selected).to_contain_text("203.0.113.1")
    await expect(selected).to_be_focused()
    await page.keyboard.press("j")
    await expect(selected).to_contain_text("203.0.113.2")
    await page.keyboard.press("j")
    await page.keyboard.press("k")
    await expect(selected).to_contain_text("203.0.113.2")
    # Typing in a field moves nothing; Escape leaves the field.
    await page.get_by_label("Scenario").click()
    await page.keyboard.type("jjkc")
    await expect(page.get_by_label("Scenario")).to_have_value("jjkc")
    await expect(selected).to_contain_text("203.0.113.2")
    await page.get_by_label("Scenario").fill("")
    await page.keyboard.press("Escape")
    await page.keyboard.press("c")  # claims the selected row from the queue
    await expect(rows.filter(has_text="203.0.113.2")).to_contain_text("carol")
    await rows.filter(has_text="203.0.113.2").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#cand-title")).to_contain_text("203.0.113.2")
    await expect(page.locator("#cand-title")).to_be_focused()
    # `a` with no reason asks for one; letters typed there are text; Enter decides.
    await page.keyboard.press("a")
    await expect(page.get_by_label("Reason")).to_be_focused()
    await expect(page.locator("#decide-hint")).to_have_text(
        "Type the reason, then press Enter to approve."
    )
    await page.keyboard.type("a real attacker, seen by two")
    await page.keyboard.press("Enter")
    await expect(page.locator("#cand-facts")).to_contain_text("approved")
    await expect(page.locator("#history")).to_contain_text("a real attacker, seen by two")
    await page.locator("#cand-title").focus()
    await page.keyboard.press("j")  # the next candidate of the page
    await expect(page.locator("#cand-title")).to_contain_text("203.0.113.3")
    await page.keyboard.press("c")
    await expect(page.locator("#cand-facts")).to_contain_text("carol until")
    await page.keyboard.press("r")
    await page.keyboard.type("one sensor, low volume")
    await page.keyboard.press("Enter")
    await expect(page.locator("#cand-facts")).to_contain_text("rejected")
    await page.locator("#cand-title").focus()
    await page.keyboard.press("?")
    await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_be_hidden()
    await page.keyboard.press("Escape")
    await expect(page.locator("#queue-view")).to_be_visible()
    await expect(rows).to_have_count(1)  # the pending one left
    feed_node = n1
    assert await candidate_id(hub, "203.0.113.2") in await feed_ids(feed_node)


async def test_live_counts_and_automation_caps(live_hub: tuple[Hub, str], console: Console) -> None:
    hub, _ = live_hub
    [node] = await nodes_of(hub, 1)
    await publish(node, signal(node, "203.0.113.50"))
    await console.page.clock.install()  # the page's timers, moved by hand
    await console.login(await hub.reviewer_token())
    await expect(console.page.locator("#st-pending")).to_have_text("1")
    await expect(console.page.locator("#st-caps-summary")).to_have_text("none in use")
    # A trusted node's own signal of confidence >= 90 is approved by the hub.
    trusted = await hub.call("PATCH", f"/v1/admin/nodes/{node.node_id}", {"trusted": True})
    assert trusted.status == 200, trusted.body
    await publish(node, signal(node, "203.0.113.51"), signal(node, "203.0.113.52", confidence=95))
    await expect(console.page.locator("#st-pending")).to_have_text("1")  # not polled yet
    await console.page.clock.run_for(10_000)
    await expect(console.page.locator("#st-pending")).to_have_text("2")
    await expect(console.page.locator("#st-approved")).to_have_text("1")
    await expect(console.page.locator("#st-by-origin")).to_have_text("review 0, auto 0, trusted 1")
    await expect(console.page.locator("#st-caps-summary")).to_have_text("0 of 1 spent")
    await console.page.locator("#st-caps summary").click()
    await expect(console.page.locator("#caps tbody tr")).to_have_text(
        [f"trusted, node{node.node_id}1 / 100"]
    )


async def test_signature_marks_when_the_browser_has_no_ed25519(
    live_hub: tuple[Hub, str], open_console: OpenConsole
) -> None:
    hub, _ = live_hub
    [node] = await nodes_of(hub, 1)
    await publish(node, signal(node, "203.0.113.60", **mesh_evidence(hub, 5)))
    no_ed25519 = """
      const real = crypto.subtle.importKey.bind(crypto.subtle);
      crypto.subtle.importKey = (format, data, algorithm, ...rest) =>
        (algorithm && algorithm.name === "Ed25519")
          ? Promise.reject(new DOMException("no Ed25519 here", "NotSupportedError"))
          : real(format, data, algorithm, ...rest);
    """
    console = await open_console(init_script=no_ed25519)
    await console.login(await hub.reviewer_token())
    await console.open_candidate("203.0.113.60")
    await expect(console.marks()).to_have_text(["? not checked: this browser has no Ed25519"])
    await expect(console.page.locator("#signals tbody tr")).to_contain_text("(unchecked) 5 events")


async def test_verify_module_in_the_browser(live_hub: tuple[Hub, str], console: Console) -> None:
    """verify.js against envelopes made by the node client's own DSSE code."""
    key, stranger = NodeKey.generate(), NodeKey.generate()
    payload = b'{"v":1,"note":"caf\xc3\xa9"}'
    good = build_envelope(key, payload)

    def case(envelope: dict[str, Any], public: NodeKey = key, keyid: str = key.keyid) -> Any:
        return {"envelope": envelope, "public_key": public.public_b64, "keyid": keyid}

    urlsafe = dict(good, payload=base64.urlsafe_b64encode(payload).decode().rstrip("="))
    sig = good["signatures"][0]  # type: ignore[index]
    two = dict(good, signatures=[sig, sig])
    other_type = build_envelope(key, payload, "application/other")
    bad_sig = dict(good, signatures=[dict(sig, sig=base64.b64encode(bytes(64)).decode())])
    short_key = case(good) | {"public_key": base64.b64encode(bytes(31)).decode()}
    cases = [
        case(good),
        case(urlsafe),
        case(other_type),
        case(good, public=stranger, keyid=stranger.keyid),
        case(good, keyid=stranger.keyid),
        case(two),
        case(bad_sig),
        short_key,
        case(dict(good, payload="%%%")),
    ]
    await console.open()
    results = await console.page.evaluate(
        """async (cases) => {
             const m = await import("/console/verify.js");
             const out = [];
             for (const c of cases) out.push(await m.verifySignal(c));
             const pae = Array.from(m.pae("tÿpe", new TextEncoder().encode("bödy")));
             const hex = await m.sha256Hex(new Uint8Array([1, 2, 3]));
             return { out, pae, hex };
           }""",
        cases,
    )
    assert [r["result"] for r in results["out"]] == [
        "verified",
        "verified",
        "verified",
        "failed",
        "failed",
        "failed",
        "failed",
        "failed",
        "failed",
    ]
    assert [r.get("why") for r in results["out"][3:]] == [
        "the key is not the keyid's",  # the envelope names the right keyid, another key
        "the key is not the keyid's",
        "the envelope does not carry exactly one signature",
        "bad signature",
        "the public key is not 32 bytes",
        "malformed envelope",
    ]
    assert bytes(results["pae"]) == pae("tÿpe", "bödy".encode())
    assert results["hex"] == hashlib.sha256(bytes([1, 2, 3])).hexdigest()
    assert good["payloadType"] == SIGNAL_PAYLOAD_TYPE


async def test_admin_token_sees_the_audit_log_in_pages(
    live_hub: tuple[Hub, str], console: Console
) -> None:
    hub, _ = live_hub
    for _ in range(101):
        await hub.tenant()
    await console.login(hub.admin_token)
    audit = console.page.locator("#audit tbody tr")
    await expect(audit).to_have_count(100)
    await expect(console.page.locator("#audit")).to_contain_text("tenant.create")
    await expect(console.page.locator("#status")).to_be_hidden()  # a reviewer's strip
    await expect(console.page.get_by_role("button", name="Queue")).to_be_hidden()
    total = await sql(hub, "SELECT count(*) FROM audit_log")
    assert 100 < total < 200
    await console.page.get_by_role("button", name="More").click()
    await expect(audit).to_have_count(total)
    await expect(console.page.get_by_role("button", name="More")).to_be_disabled()
    seqs = [int(s) for s in await audit.locator("td:first-child").all_inner_texts()]
    assert seqs == sorted(seqs) and len(set(seqs)) == total


async def test_narrow_screen_keeps_the_controls_usable(
    live_hub: tuple[Hub, str], open_console: OpenConsole
) -> None:
    hub, _ = live_hub
    [node] = await nodes_of(hub, 1)
    await publish(node, signal(node, "203.0.113.30"))
    narrow = await open_console(width=400, height=800)
    await narrow.login(await hub.reviewer_token())
    await expect(narrow.rows()).to_have_count(1)
    await narrow.page.keyboard.press("Enter")
    await expect(narrow.page.locator("#cand-title")).to_contain_text("203.0.113.30")
    await expect(narrow.page.get_by_role("button", name="Approve", exact=True)).to_be_in_viewport()
    # Nothing but the wide tables (which scroll in their own box) is wider than the screen.
    width = await narrow.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400
    # Focus order: the reason, the TTL, then the buttons, as they read.
    await narrow.page.get_by_label("Reason").focus()
    order = []
    for _ in range(4):
        await narrow.page.keyboard.press("Tab")
        order.append(await narrow.page.evaluate("document.activeElement.id"))
    assert order == ["ttl", "do-claim", "do-approve", "do-reject"]  # retract: disabled
