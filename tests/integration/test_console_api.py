"""The console's server side: static files with a strict CSP, and the stats read."""

from __future__ import annotations

from tests.support import Hub, publish, signal


async def test_console_files_carry_a_strict_csp(hub: Hub) -> None:
    for name in ("", "index.html", "app.js", "verify.js", "style.css"):
        resp = await hub.client.get(f"/console/{name}")
        assert resp.status == 200, name
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    index = await (await hub.client.get("/console/")).text()
    assert '<script type="module" src="app.js">' in index and "<script>" not in index
    missing = await hub.client.get("/console/secrets.txt")
    assert missing.status == 404
    assert missing.headers["Content-Type"].startswith("application/problem+json")
    redirect = await hub.client.get("/console", allow_redirects=False)
    assert (redirect.status, redirect.headers["Location"]) == (301, "/console/")


async def test_stats_are_scoped_like_the_queue(hub: Hub) -> None:
    tenant = await hub.tenant()
    node = await hub.enroll(tenant)
    await publish(node, signal(node, "203.0.113.1"), signal(node, "203.0.113.2"))
    await publish(node, signal(node, "203.0.113.3", share="tenant"))
    mesh = await hub.call("GET", "/v1/review/stats", token=await hub.reviewer_token())
    assert mesh.status == 200
    assert mesh.body["states"]["pending"] == 2 and mesh.body["scope"] == "mesh"
    own = await hub.call("GET", "/v1/review/stats", token=await hub.reviewer_token(tenant, "t"))
    assert own.body["states"]["pending"] == 1 and own.body["scope"] == "tenant"
    other = await hub.call(
        "GET", "/v1/review/stats", token=await hub.reviewer_token(await hub.tenant(), "o")
    )
    assert other.body["states"]["pending"] == 0
    admin = await hub.call("GET", "/v1/review/stats")
    assert (admin.status, admin.code) == (403, "forbidden")
    nobody = await hub.call("GET", "/v1/review/stats", token="hmr_forged")
    assert nobody.status == 401
