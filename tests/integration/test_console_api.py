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
    for path in ("/console/secrets.txt", "/console/a/b.js", "/console/..%2Fapp.py"):
        missing = await hub.client.get(path)
        assert missing.status == 404, path
        assert missing.headers["Content-Type"].startswith("application/problem+json"), path
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


async def test_stats_show_the_daily_automation_caps_as_spent(hub: Hub) -> None:
    # Corroboration (3 nodes, 2 tenants, confidence >= 70) spends one unit of every
    # contributing tenant's auto_approvals_per_day; past it, a candidate waits (defer).
    ta = await hub.tenant(limits={"auto_approvals_per_day": 1})
    tb = await hub.tenant()
    a1, a2, b1 = await hub.enroll(ta), await hub.enroll(ta), await hub.enroll(tb)
    for value in ("203.0.113.40", "203.0.113.41"):
        for node in (a1, a2, b1):
            await publish(node, signal(node, value, confidence=80))
    trusted = await hub.enroll(tb)
    patched = await hub.call("PATCH", f"/v1/admin/nodes/{trusted.node_id}", {"trusted": True})
    assert patched.status == 200, patched.body
    await publish(trusted, signal(trusted, "203.0.113.42", confidence=95))

    mesh = (await hub.call("GET", "/v1/review/stats", token=await hub.reviewer_token())).body
    assert mesh["approvals_24h"] == {"review": 0, "auto": 1, "trusted": 1}
    assert mesh["deferred_by_caps_24h"] == 1
    assert mesh["states"]["approved"] == 2 and mesh["states"]["pending"] == 1
    caps = {c["tenant_id"]: (c["used"], c["limit"]) for c in mesh["auto_approval_caps"]}
    assert caps == {ta: (1, 1), tb: (1, 200)}
    assert mesh["trusted_approval_caps"] == [
        {"node_id": trusted.node_id, "tenant_id": tb, "used": 1, "limit": 100}
    ]

    own = (await hub.call("GET", "/v1/review/stats", token=await hub.reviewer_token(tb, "b"))).body
    assert own["approvals_24h"] == {"review": 0, "auto": 0, "trusted": 0}  # mesh ones
    assert own["auto_approval_caps"] == [{"tenant_id": tb, "used": 1, "limit": 200}]
    assert [c["node_id"] for c in own["trusted_approval_caps"]] == [trusted.node_id]


async def test_stats_show_the_scopes_log_and_its_cosigners(hub: Hub) -> None:
    from honeymesh_client.protocol import note
    from tests.support import approve, sequenced, trusted

    source = await trusted(hub)
    await approve(source, "203.0.113.60")
    await approve(source, "203.0.113.61")
    await sequenced(hub)
    token = await hub.reviewer_token()
    log = (await hub.call("GET", "/v1/review/stats", token=token)).body["transparency"]
    assert log == {"log": "mesh", "size": 2, "cosigned_size": None, "cosigners": []}
    checkpoint = (await source.request("GET", "/v1/transparency/mesh/checkpoint")).raw.decode()
    text = checkpoint.partition("\n\n")[0] + "\n"
    name = f"node-{source.node_id}"
    line = note.signature_line(name, source.key.public_raw, source.key.sign(text.encode()))
    reply = await source.request(
        "POST", "/v1/transparency/mesh/cosignatures", {"checkpoint": text, "signature": line}
    )
    assert reply.status == 201, reply.body
    log = (await hub.call("GET", "/v1/review/stats", token=token)).body["transparency"]
    assert log == {"log": "mesh", "size": 2, "cosigned_size": 2, "cosigners": [name]}
