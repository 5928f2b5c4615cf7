// The HoneyMesh review console: the public reviewer and admin API, nothing else.
// The token lives in sessionStorage (never a cookie, never the URL).
import { verifySignal } from "./verify.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "honeymesh.token";
const state = { role: null, rows: [], selected: -1, next: null, candidate: null, auditNext: null };

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// Every API failure becomes one sentence: the problem+json `detail`.
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const err = new Error((data && data.detail) || `The hub answered ${resp.status}.`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
  return td;
}

function show(view) {
  for (const id of ["login-view", "queue-view", "candidate-view", "audit-view"]) $(id).hidden = id !== view;
  $("nav").hidden = view === "login-view";
  $("status").hidden = view === "login-view" || state.role !== "reviewer";
  $("nav-queue").hidden = state.role !== "reviewer";
  $("nav-audit").hidden = state.role !== "admin";
}

// -- log in ----------------------------------------------------------------------

async function logIn(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
  // Tokens say what they are (hma_ admin, hmr_ reviewer): ask the API that role uses.
  state.role = value.startsWith("hma_") ? "admin" : "reviewer";
  try {
    await api("GET", state.role === "admin" ? "/v1/admin/audit?limit=1" : "/v1/review/stats");
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.role = null;
    throw err.status === 401 ? new Error("This token is not valid: it is unknown, revoked or expired.") : err;
  }
  showError("");
  if (state.role === "reviewer") { show("queue-view"); await loadQueue(null); refreshStatus(); }
  else { show("audit-view"); await loadAudit(true); }
}

// -- status strip (polled, so counts stay live) ----------------------------------

async function refreshStatus() {
  if (state.role !== "reviewer" || !token()) return;
  try {
    const s = await api("GET", "/v1/review/stats");
    $("st-pending").textContent = s.states.pending;
    $("st-approved").textContent = s.states.approved;
    $("st-rejected").textContent = s.states.rejected;
    $("st-approvals").textContent = s.approvals_24h.review + s.approvals_24h.auto + s.approvals_24h.trusted;
    $("st-auto").textContent = s.approvals_24h.auto + s.approvals_24h.trusted;
    $("st-deferred").textContent = s.deferred_by_caps_24h;
  } catch (err) { /* the next poll tries again; the queue shows real errors */ }
}

// -- queue -------------------------------------------------------------------------

function queueQuery(after) {
  const q = new URLSearchParams({ state: $("f-state").value, order: $("f-order").value, limit: "50" });
  if ($("f-scenario").value.trim()) q.set("scenario", $("f-scenario").value.trim());
  if ($("f-indicator").value.trim()) q.set("indicator", $("f-indicator").value.trim().toLowerCase());
  if ($("f-min").value.trim()) q.set("min_reporters", $("f-min").value.trim());
  if (after) q.set("after", after);
  return q.toString();
}

async function loadQueue(after) {
  const page = await api("GET", `/v1/review/candidates?${queueQuery(after)}`);
  state.rows = page.candidates;
  state.next = page.next || null;
  state.selected = state.rows.length ? 0 : -1;
  $("next-page").disabled = !state.next;
  const body = $("queue").tBodies[0];
  body.replaceChildren();
  state.rows.forEach((c, i) => {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.index = String(i);
    cell(tr, c.indicator.value);
    cell(tr, c.scope);
    cell(tr, c.scenarios.join(", "));
    cell(tr, c.reporters);
    cell(tr, c.tenants);
    cell(tr, c.max_confidence);
    cell(tr, c.first_seen);
    cell(tr, c.last_seen);
    cell(tr, c.claimed_by || "");
    tr.addEventListener("click", () => openCandidate(c.id));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") openCandidate(c.id); });
    body.appendChild(tr);
  });
  highlight();
}

function highlight() {
  const rows = $("queue").tBodies[0].rows;
  for (let i = 0; i < rows.length; i++) rows[i].classList.toggle("selected", i === state.selected);
  if (state.selected >= 0 && rows[state.selected] && !$("queue-view").hidden) rows[state.selected].focus();
}

// -- one candidate -------------------------------------------------------------------

function fact(dl, name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value === null || value === undefined ? "—" : String(value);
  dl.append(dt, dd);
}

async function openCandidate(id) {
  try {
    const c = await api("GET", `/v1/review/candidates/${encodeURIComponent(id)}`);
    state.candidate = c;
    renderCandidate(c);
    show("candidate-view");
    $("reason").focus();
  } catch (err) { showError(err.message); }
}

function renderCandidate(c) {
  $("cand-title").textContent = `${c.indicator.value} (${c.scope})`;
  const dl = $("cand-facts");
  dl.replaceChildren();
  fact(dl, "State", c.state);
  fact(dl, "Scenarios", c.scenarios.join(", "));
  fact(dl, "Reporters / tenants", `${c.reporters} / ${c.tenants}`);
  fact(dl, "Signals", c.signal_count);
  fact(dl, "Max confidence", c.max_confidence);
  fact(dl, "First / last seen", `${c.first_seen} / ${c.last_seen}`);
  fact(dl, "Expires", c.expires_at);
  fact(dl, "Origin", c.origin);
  fact(dl, "Claimed by", c.claimed_by ? `${c.claimed_by} until ${c.lease_expires_at}` : "nobody");
  const approvers = (c.approvals || []).map((a) => a.reviewer).join(", ");
  $("approvals").textContent = c.broad
    ? `Broad range: two reviewers must approve. Approved by: ${approvers || "nobody yet"}; ${c.approvals_needed} more needed.`
    : "";
  const body = $("signals").tBodies[0];
  body.replaceChildren();
  for (const s of c.signals) {
    const tr = document.createElement("tr");
    const mark = cell(tr, "checking…");
    mark.className = "unknown";
    cell(tr, s.node_id);
    cell(tr, s.tenant_id);
    cell(tr, s.received_at);
    const scenario = cell(tr, "");
    const confidence = cell(tr, "");
    const evidence = cell(tr, "");
    body.appendChild(tr);
    verifySignal(s).then((v) => {
      if (v.result === "verified") {
        mark.textContent = "✓ verified";
        mark.className = "ok";
        const p = JSON.parse(new TextDecoder().decode(v.payload));
        scenario.textContent = p.scenario;
        confidence.textContent = p.confidence;
        const ev = p.evidence ? `${p.evidence.events || "?"} events${p.evidence.notes ? `: ${p.evidence.notes}` : ""}` : "";
        evidence.textContent = [ev, p.service ? `${p.service.name}:${p.service.port}` : ""].filter(Boolean).join("; ");
      } else if (v.result === "unsupported") {
        mark.textContent = "? not checked (no Ed25519 in this browser)";
        mark.className = "unknown";
      } else {
        mark.textContent = `✗ FAILED: ${v.why}`;
        mark.className = "bad";
      }
    });
  }
  const history = $("history");
  history.replaceChildren();
  for (const d of c.decisions) {
    const li = document.createElement("li");
    li.textContent = `${d.time} ${d.actor}: ${d.action} (${d.from_state} → ${d.to_state})${d.reason ? ` — ${d.reason}` : ""}`;
    history.appendChild(li);
  }
}

async function claim() {
  try {
    await api("POST", `/v1/review/candidates/${state.candidate.id}/claim`, { lease_seconds: 300 });
    await openCandidate(state.candidate.id);
  } catch (err) { showError(err.message); }
}

async function decide(action) {
  const reason = $("reason").value.trim();
  if (!reason) { showError("Give a reason for the decision."); $("reason").focus(); return; }
  const decision = { candidate_id: state.candidate.id, action, reason };
  const ttl = $("ttl").value.trim();
  if (action === "approve" && ttl) decision.ttl_seconds = Number(ttl);
  try {
    const { results: [result] } = await api("POST", "/v1/review/decisions", { decisions: [decision] });
    if (result.status === "refused") { showError(result.error.detail); return; }
    showError("");
    await openCandidate(state.candidate.id);
    refreshStatus();
  } catch (err) { showError(err.message); }
}

// -- audit (admin tokens) ------------------------------------------------------------

async function loadAudit(reset) {
  const after = reset ? null : state.auditNext;
  const page = await api("GET", `/v1/admin/audit?limit=100${after ? `&after=${after}` : ""}`);
  const body = $("audit").tBodies[0];
  if (reset) body.replaceChildren();
  for (const e of page.entries) {
    const tr = document.createElement("tr");
    for (const v of [e.seq, e.time, e.actor, e.action, e.target, e.reason]) cell(tr, v);
    body.appendChild(tr);
  }
  state.auditNext = page.next || null;
  $("audit-more").disabled = !state.auditNext;
}

// -- wiring --------------------------------------------------------------------------

function wire() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    logIn($("token").value.trim()).catch((err) => showError(err.message));
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); state.role = null; show("login-view"); });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadQueue(null).catch((err) => showError(err.message)); });
  $("first-page").addEventListener("click", () => loadQueue(null).catch((err) => showError(err.message)));
  $("next-page").addEventListener("click", () => loadQueue(state.next).catch((err) => showError(err.message)));
  $("back").addEventListener("click", () => { show("queue-view"); loadQueue(null).catch((err) => showError(err.message)); });
  $("nav-queue").addEventListener("click", () => { show("queue-view"); loadQueue(null).catch((err) => showError(err.message)); });
  $("nav-audit").addEventListener("click", () => { show("audit-view"); loadAudit(true).catch((err) => showError(err.message)); });
  $("audit-more").addEventListener("click", () => loadAudit(false).catch((err) => showError(err.message)));
  $("do-claim").addEventListener("click", claim);
  for (const action of ["approve", "reject", "retract"]) $(`do-${action}`).addEventListener("click", () => decide(action));
  document.addEventListener("keydown", (e) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement && document.activeElement.tagName);
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "?") { $("help").showModal(); return; }
    if (!$("queue-view").hidden) {
      if (e.key === "j" && state.selected < state.rows.length - 1) { state.selected++; highlight(); }
      if (e.key === "k" && state.selected > 0) { state.selected--; highlight(); }
    } else if (!$("candidate-view").hidden) {
      if (e.key === "c") claim();
      if (e.key === "a") decide("approve");
      if (e.key === "r") decide("reject");
      if (e.key === "Escape") { show("queue-view"); loadQueue(null).catch((err) => showError(err.message)); }
    }
  });
  setInterval(refreshStatus, 10000);
  if (token()) logIn(token()).catch(() => show("login-view"));
  else show("login-view");
}

wire();
