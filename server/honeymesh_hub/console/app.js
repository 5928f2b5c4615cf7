// The HoneyMesh review console: the public reviewer and admin API, nothing else.
// The token lives in sessionStorage (never a cookie, never the URL) and travels only
// in the Authorization header of same-origin requests.
import { decodePayload, verifySignal } from "./verify.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "honeymesh.token";
// Live counts: the status strip asks GET /v1/review/stats this often while the tab is
// visible, at once when it becomes visible again, and after every decision.
const POLL_MS = 10000;
const PAGE = 50;
const state = {
  role: null, rows: [], selected: -1, next: null, pages: [], candidate: null,
  auditNext: null, pendingAction: null,
};

const token = () => sessionStorage.getItem(TOKEN_KEY);

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// Every API failure becomes one sentence: the problem+json `detail` when there is one.
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
  } catch (err) {
    throw new Error("The hub could not be reached; check the connection and try again.");
  }
  let data = null;
  try { data = await resp.json(); } catch (err) { data = null; }
  if (!resp.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `The hub answered ${resp.status}.`;
    const err = new Error(detail);
    err.status = resp.status;
    throw err;
  }
  return data;
}

const report = (err) => showError(err.message);

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
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
  // Tokens say what they are (PROTOCOL.md: hma_ admin, hmr_ reviewer): ask the API
  // that role uses, so a bad token is told at once.
  state.role = value.startsWith("hma_") ? "admin" : "reviewer";
  try {
    await api("GET", state.role === "admin" ? "/v1/admin/audit?limit=1" : "/v1/review/stats");
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.role = null;
    if (err.status === 401) throw new Error("This token is not valid: it is unknown, revoked or expired.");
    if (err.status === 403) throw new Error("This token may not use the console: use a reviewer or an admin token.");
    throw err;
  }
  showError("");
  $("token").value = "";
  $("who").textContent = state.role === "admin" ? "admin token" : "reviewer token";
  if (state.role === "reviewer") {
    show("queue-view");
    await loadQueue(null, "first");
    refreshStatus();
  } else {
    show("audit-view");
    await loadAudit(true);
    $("audit-title").focus();
  }
}

function logOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { role: null, rows: [], selected: -1, candidate: null, pages: [] });
  showError("");
  show("login-view");
  $("token").focus();
}

// -- status strip (live counts) ----------------------------------------------------

function capRow(body, kind, subject, used, limit) {
  const tr = document.createElement("tr");
  cell(tr, kind);
  cell(tr, subject);
  cell(tr, `${used} / ${limit}`, used >= limit ? "bad" : "");
  body.appendChild(tr);
}

async function refreshStatus() {
  if (state.role !== "reviewer" || !token() || document.hidden) return;
  let s;
  try { s = await api("GET", "/v1/review/stats"); } catch (err) { return; } // the next poll tries again
  const a = s.approvals_24h;
  $("st-pending").textContent = s.states.pending;
  $("st-approved").textContent = s.states.approved;
  $("st-rejected").textContent = s.states.rejected;
  $("st-approvals").textContent = a.review + a.auto + a.trusted;
  $("st-by-origin").textContent = `review ${a.review}, auto ${a.auto}, trusted ${a.trusted}`;
  $("st-deferred").textContent = s.deferred_by_caps_24h;
  const t = s.transparency;
  $("st-log-size").textContent = t.size;
  $("st-log-name").textContent = t.log;
  $("st-cosigners").textContent = t.cosigned_size === null
    ? "not cosigned yet"
    : `cosigned at ${t.cosigned_size} by ${t.cosigners.length}: ${t.cosigners.join(", ")}`;
  const caps = [
    ...s.auto_approval_caps.map((c) => ["auto, tenant", c.tenant_id, c.used, c.limit]),
    ...s.trusted_approval_caps.map((c) => ["trusted, node", c.node_id, c.used, c.limit]),
  ];
  const full = caps.filter(([, , used, limit]) => used >= limit).length;
  $("st-caps-summary").textContent = caps.length ? `${full} of ${caps.length} spent` : "none in use";
  const body = $("caps").tBodies[0];
  body.replaceChildren();
  for (const c of caps) capRow(body, ...c);
  $("st-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// -- queue -------------------------------------------------------------------------

function queueQuery(after) {
  const q = new URLSearchParams({ state: $("f-state").value, order: $("f-order").value, limit: String(PAGE) });
  const scenario = $("f-scenario").value.trim().toLowerCase();
  const indicator = $("f-indicator").value.trim().toLowerCase();
  const min = $("f-min").value.trim();
  if (scenario) q.set("scenario", scenario);
  if (indicator) q.set("indicator", indicator);
  if (min) q.set("min_reporters", min);
  if (after) q.set("after", after);
  return q.toString();
}

// `move`: "first" (a new query), "next", "prev", or "same" (reload this page).
async function loadQueue(after, move) {
  const page = await api("GET", `/v1/review/candidates?${queueQuery(after)}`);
  const hadFocus = $("queue").contains(document.activeElement);
  if (move === "first") state.pages = [null];
  else if (move === "next") state.pages.push(after);
  else if (move === "prev") state.pages.pop();
  state.rows = page.candidates;
  state.next = page.next || null;
  state.selected = Math.min(Math.max(state.selected, 0), state.rows.length - 1);
  if (move !== "same") state.selected = state.rows.length ? 0 : -1;
  $("next-page").disabled = !state.next;
  $("prev-page").disabled = state.pages.length <= 1;
  $("page-info").textContent = `Page ${state.pages.length}: ${state.rows.length} candidate${state.rows.length === 1 ? "" : "s"}.`;
  $("queue-empty").hidden = state.rows.length > 0;
  const body = $("queue").tBodies[0];
  body.replaceChildren();
  state.rows.forEach((c, i) => {
    const tr = document.createElement("tr");
    tr.tabIndex = i === state.selected ? 0 : -1;
    cell(tr, c.indicator.value, "mono");
    cell(tr, c.scope);
    cell(tr, c.scenarios.join(", "));
    cell(tr, c.reporters);
    cell(tr, c.tenants);
    cell(tr, c.max_confidence);
    cell(tr, c.first_seen);
    cell(tr, c.last_seen);
    cell(tr, c.claimed_by || "");
    tr.addEventListener("click", () => { state.selected = i; openCandidate(c.id); });
    tr.addEventListener("focus", () => { state.selected = i; highlight(false); });
    body.appendChild(tr);
  });
  highlight(move !== "same" || hadFocus);
}

const currentPage = () => state.pages[state.pages.length - 1] || null;

function highlight(focus) {
  const rows = $("queue").tBodies[0].rows;
  for (let i = 0; i < rows.length; i++) {
    const on = i === state.selected;
    rows[i].classList.toggle("selected", on);
    rows[i].tabIndex = on ? 0 : -1;
    if (on) rows[i].setAttribute("aria-current", "true"); else rows[i].removeAttribute("aria-current");
  }
  if (focus && state.selected >= 0 && !$("queue-view").hidden) rows[state.selected].focus();
}

function backToQueue() {
  state.pendingAction = null;
  show("queue-view");
  loadQueue(currentPage(), "same").catch(report);
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
    const fresh = !state.candidate || state.candidate.id !== c.id;
    state.candidate = c;
    if (fresh) { $("reason").value = ""; $("ttl").value = ""; state.pendingAction = null; }
    renderCandidate(c);
    const wasHidden = $("candidate-view").hidden;
    show("candidate-view");
    if (wasHidden || fresh) $("cand-title").focus();
  } catch (err) { report(err); }
}

function evidenceText(p) {
  if (!p) return "the payload does not decode";
  const parts = [];
  if (p.evidence) {
    const e = p.evidence;
    parts.push(`${e.events ?? "?"} event${e.events === 1 ? "" : "s"}`);
    if (e.first_seen || e.last_seen) parts.push(`${e.first_seen || "?"} to ${e.last_seen || "?"}`);
    if (e.notes) parts.push(`notes: ${e.notes}`);
  }
  if (p.service) parts.push(`service ${p.service.name}:${p.service.port}`);
  if (p.labels) parts.push(Object.entries(p.labels).map(([k, v]) => `${k}=${v}`).join(" "));
  parts.push(`${p.action}, ${p.mode}, TTL ${p.ttl_seconds} s, observed ${p.observed_at}`);
  return parts.join("; ");
}

// Who approved a broad range: the approvals since the candidate last changed state.
function approversOf(c) {
  if (c.state === "pending") return (c.approvals || []).map((a) => a.reviewer);
  const names = [];
  for (let i = c.decisions.length - 1; i >= 0; i--) {
    const d = c.decisions[i];
    if (d.action !== "approve" && d.action !== "first_approval") break;
    names.unshift(d.actor.replace(/^reviewer:/, ""));
  }
  return names;
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
  $("held").hidden = !c.claimed_by;
  $("held").textContent = c.claimed_by
    ? `Held by ${c.claimed_by} until ${c.lease_expires_at}: another reviewer's decisions are refused while the lease runs.`
    : "";
  const approvers = approversOf(c);
  if (c.broad && c.state === "approved") {
    $("approvals").textContent = `Broad range: two reviewers approved it (${approvers.join(", ") || "see the history"}).`;
  } else if (c.broad) {
    $("approvals").textContent = "Broad range: two reviewers of different names must approve. "
      + `Approved by: ${approvers.join(", ") || "nobody yet"}; ${c.approvals_needed} more needed.`;
  } else {
    $("approvals").textContent = "One reviewer's approval is enough for this indicator.";
  }
  $("do-approve").disabled = c.state === "approved";
  $("do-reject").disabled = c.state !== "pending";
  $("do-retract").disabled = c.state !== "approved";
  const body = $("signals").tBodies[0];
  body.replaceChildren();
  for (const s of c.signals) {
    const tr = document.createElement("tr");
    const mark = cell(tr, "checking…", "unknown");
    cell(tr, s.node_id, "mono");
    cell(tr, s.tenant_id, "mono");
    cell(tr, s.received_at);
    const p = decodePayload(s.envelope);
    cell(tr, p && p.scenario);
    cell(tr, p && p.confidence);
    const evidence = cell(tr, evidenceText(p));
    body.appendChild(tr);
    verifySignal(s).then((v) => {
      if (v.result === "verified") {
        mark.textContent = "✓ verified";
        mark.className = "ok";
      } else if (v.result === "unsupported") {
        mark.textContent = "? not checked: this browser has no Ed25519";
        mark.className = "unknown";
        evidence.textContent = `(unchecked) ${evidence.textContent}`;
      } else {
        mark.textContent = `✗ FAILED: ${v.why}`;
        mark.className = "bad";
        tr.classList.add("failed");
        evidence.textContent = `(not the publisher's word) ${evidence.textContent}`;
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
  $("history-empty").hidden = c.decisions.length > 0;
}

async function claim(id) {
  try {
    await api("POST", `/v1/review/candidates/${encodeURIComponent(id)}/claim`, { lease_seconds: 300 });
    showError("");
    if (!$("candidate-view").hidden) await openCandidate(id);
    else await loadQueue(currentPage(), "same");
  } catch (err) { report(err); }
}

async function decide(action) {
  const c = state.candidate;
  const reason = $("reason").value.trim();
  if (!reason) {
    // Ask for the reason; Enter in the field then makes this decision.
    state.pendingAction = action;
    $("decide-hint").textContent = `Type the reason, then press Enter to ${action}.`;
    $("reason").focus();
    return;
  }
  state.pendingAction = null;
  const decision = { candidate_id: c.id, action, reason };
  const ttl = $("ttl").value.trim();
  if (action === "approve" && ttl) decision.ttl_seconds = Number(ttl);
  try {
    const { results: [result] } = await api("POST", "/v1/review/decisions", { decisions: [decision] });
    if (result.status === "refused") { showError(result.error.detail); return; }
    showError("");
    $("reason").value = "";
    $("decide-hint").textContent = result.status === "unchanged"
      ? `Nothing changed: the candidate is already ${result.state}.`
      : `Done: ${action} applied, the candidate is ${result.state}.`;
    await openCandidate(c.id);
    refreshStatus();
  } catch (err) { report(err); }
}

// j/k in a candidate: open the queue page's next or previous candidate.
function step(delta) {
  const i = state.selected + delta;
  if (i < 0 || i >= state.rows.length) return;
  state.selected = i;
  if ($("candidate-view").hidden) highlight(true);
  else openCandidate(state.rows[i].id);
}

// -- audit (admin tokens) ------------------------------------------------------------

async function loadAudit(reset) {
  const after = reset ? null : state.auditNext;
  const page = await api("GET", `/v1/admin/audit?limit=100${after ? `&after=${encodeURIComponent(after)}` : ""}`);
  const body = $("audit").tBodies[0];
  if (reset) body.replaceChildren();
  for (const e of page.entries) {
    const tr = document.createElement("tr");
    for (const v of [e.seq, e.time, e.actor, e.action, e.target, e.reason]) cell(tr, v);
    cell(tr, e.details ? JSON.stringify(e.details) : "", "mono");
    body.appendChild(tr);
  }
  state.auditNext = page.next || null;
  $("audit-more").disabled = !state.auditNext;
}

// -- wiring --------------------------------------------------------------------------

function typing(target) {
  return target instanceof HTMLElement
    && (["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName) || target.isContentEditable);
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey || $("help").open) return;
  if (typing(e.target)) {
    if (e.key === "Escape") { e.target.blur(); if (!$("candidate-view").hidden) $("cand-title").focus(); }
    if (e.key === "Enter" && e.target.id === "reason" && state.pendingAction) {
      e.preventDefault();
      decide(state.pendingAction);
    }
    return;
  }
  if (!state.role) return;
  const inQueue = !$("queue-view").hidden;
  const inCandidate = !$("candidate-view").hidden;
  const handled = () => e.preventDefault();
  if (e.key === "?") { handled(); $("help").showModal(); return; }
  if (!inQueue && !inCandidate) return;
  if (e.key === "j") { handled(); step(1); }
  else if (e.key === "k") { handled(); step(-1); }
  else if (e.key === "Enter" && inQueue && state.selected >= 0) { handled(); openCandidate(state.rows[state.selected].id); }
  else if (e.key === "c") {
    handled();
    if (inCandidate) claim(state.candidate.id);
    else if (state.selected >= 0) claim(state.rows[state.selected].id);
  } else if (inCandidate && e.key === "a") { handled(); decide("approve"); }
  else if (inCandidate && e.key === "r") { handled(); decide("reject"); }
  else if (inCandidate && e.key === "Escape") { handled(); backToQueue(); }
}

function wire() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    logIn($("token").value.trim()).catch(report);
  });
  $("logout").addEventListener("click", logOut);
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadQueue(null, "first").catch(report); });
  $("first-page").addEventListener("click", () => loadQueue(null, "first").catch(report));
  $("next-page").addEventListener("click", () => loadQueue(state.next, "next").catch(report));
  $("prev-page").addEventListener("click", () => {
    loadQueue(state.pages[state.pages.length - 2] || null, "prev").catch(report);
  });
  $("back").addEventListener("click", backToQueue);
  $("nav-queue").addEventListener("click", backToQueue);
  $("nav-audit").addEventListener("click", () => { show("audit-view"); loadAudit(true).catch(report); });
  $("nav-help").addEventListener("click", () => $("help").showModal());
  $("help-close").addEventListener("click", () => $("help").close());
  $("audit-more").addEventListener("click", () => loadAudit(false).catch(report));
  $("do-claim").addEventListener("click", () => claim(state.candidate.id));
  for (const action of ["approve", "reject", "retract"]) $(`do-${action}`).addEventListener("click", () => decide(action));
  document.addEventListener("keydown", onKey);
  setInterval(refreshStatus, POLL_MS);
  document.addEventListener("visibilitychange", refreshStatus);
  if (token()) logIn(token()).catch((err) => { report(err); show("login-view"); });
  else show("login-view");
}

wire();
