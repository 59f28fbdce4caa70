// Slipway dashboard: reads the /v1 API with the session cookie and follows GET /v1/events.
// Every request carries X-Slipway-UI: 1, without which the controller ignores the cookie
// (the CSRF defence). Data goes into the page through textContent only.
"use strict";

const UI_HEADERS = { "X-Slipway-UI": "1" };
const SILENT_AFTER_MS = 90 * 1000; // the controller's default `silent_after`
const EVENTS_SHOWN = 200;
const REFRESH_MS = 5000;

let me = null;
let lastEventId = 0;
let refreshTimer = null;

function toLogin() {
  window.location.assign("/ui/login");
}

async function api(method, path) {
  const resp = await fetch(path, { method, headers: UI_HEADERS, credentials: "same-origin" });
  if (resp.status === 401) {
    toLogin();
    throw new Error("session ended");
  }
  if (resp.status === 404) return null;
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `${method} ${path}: HTTP ${resp.status}`);
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
  }
  return e;
}

function ago(rfc3339) {
  if (!rfc3339) return "-";
  const ms = Date.now() - Date.parse(rfc3339);
  const s = Math.round(Math.abs(ms) / 1000);
  const text = s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86400 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
  return ms >= 0 ? `${text} ago` : `in ${text}`;
}

function shortImage(image) {
  if (!image) return "-";
  const at = image.indexOf("@sha256:");
  return at < 0 ? image : image.slice(0, at + 8 + 12);
}

function phaseName(phase) {
  if (!phase) return "pending";
  if (typeof phase === "string") return phase;
  return Object.keys(phase)[0];
}

// --- apps and rollouts ---------------------------------------------------------------

async function loadApps() {
  const [apps, status] = await Promise.all([api("GET", "/v1/apps"), api("GET", "/v1/status")]);
  const rollouts = await Promise.all((apps || []).map((a) => api("GET", `/v1/apps/${encodeURIComponent(a.name)}/rollout`).catch(() => null)));
  const tbody = document.querySelector("#apps tbody");
  tbody.replaceChildren();
  const cards = document.getElementById("rollouts");
  cards.replaceChildren();
  document.getElementById("apps-empty").hidden = (apps || []).length > 0;
  (apps || []).forEach((app, i) => {
    const r = rollouts[i];
    const rows = (status || []).filter((s) => s.app === app.name);
    const live = rows.filter((s) => phaseName(s.phase) === "live");
    const current = r ? rows.find((s) => s.seq === r.seq && s.image) : null;
    const image = current ? current.image : live.length ? live[0].image : null;
    tbody.append(el("tr", { "data-app": app.name },
      el("td", {}, el("strong", {}, app.name)),
      el("td", { class: "seq" }, r ? `seq ${r.seq}${r.kind && r.kind !== "release" ? ` (${r.kind})` : ""}` : "-"),
      el("td", { class: "mono", title: image || "" }, shortImage(image)),
      el("td", {}, r ? el("span", { class: `state ${r.state}` }, r.state) : "no release"),
      el("td", {}, r ? `${r.hosts.filter((h) => phaseName(h.phase) === "live" && h.reported_seq === r.seq).length}/${r.hosts.length}` : "-"),
      el("td", {}, ago(r ? r.updated_at : app.updated_at))));
    if (r) cards.append(rolloutCard(r));
  });
}

function rolloutCard(r) {
  const byHost = new Map(r.hosts.map((h) => [h.host, h]));
  const waves = el("div", { class: "waves" });
  r.waves.forEach((hosts, n) => {
    const label = n < r.started ? `wave ${n + 1}` : `wave ${n + 1} (waiting)`;
    const row = el("div", { class: "wave", "data-wave": n + 1 }, el("span", { class: "label" }, label));
    for (const name of hosts) {
      const h = byHost.get(name) || {};
      const onSeq = h.reported_seq === r.seq;
      const phase = onSeq ? phaseName(h.phase) : n < r.started ? "pending" : "waiting";
      const title = [`${name}: ${phase}`, h.reported_seq ? `reported seq ${h.reported_seq}` : null, h.failed, h.expired_at ? `stale: signature expired ${h.expired_at}` : null].filter(Boolean).join("\n");
      row.append(el("span", { class: "host", "data-host": name, "data-phase": phase, title }, `${name} · ${phase}`));
    }
    waves.append(row);
  });
  const card = el("div", { class: "rollout", "data-app": r.app, "data-seq": r.seq, "data-state": r.state },
    el("h3", {}, r.app, el("span", { class: "seq" }, `seq ${r.seq}`), el("span", { class: `state ${r.state}` }, r.state),
      el("span", { class: "muted" }, `${r.failures} failed (${r.max_failures} allowed)`, r.stable_seq ? ` · last good seq ${r.stable_seq}` : "", r.rollback_seq ? ` · rolled back as seq ${r.rollback_seq}` : "")),
    waves);
  if (r.reason) card.append(el("p", { class: "reason" }, r.reason));
  if (me && me.role === "admin") {
    const actions = el("div", { class: "actions" });
    for (const action of ["promote", "pause", "resume", "abort"]) {
      const b = el("button", { type: "button", "data-action": action, "data-app": r.app }, action);
      b.addEventListener("click", () => act(r.app, action));
      actions.append(b);
    }
    card.append(actions);
  }
  return card;
}

async function act(app, action) {
  const err = document.getElementById("action-error");
  if (action === "abort" && !window.confirm(`Abort the rollout of ${app}? No further host gets it.`)) return;
  try {
    await api("POST", `/v1/apps/${encodeURIComponent(app)}/rollout/${action}`);
    err.hidden = true;
  } catch (e) {
    err.textContent = `${action} ${app}: ${e.message}`;
    err.hidden = false;
  }
  refreshSoon(0);
}

// --- hosts and GitOps ----------------------------------------------------------------

async function loadHosts() {
  const hosts = (await api("GET", "/v1/hosts")) || [];
  const tbody = document.querySelector("#hosts tbody");
  tbody.replaceChildren();
  document.getElementById("hosts-empty").hidden = hosts.length > 0;
  for (const h of hosts) {
    const silent = Date.now() - Date.parse(h.last_seen) > SILENT_AFTER_MS;
    // Cordoned or drained by an operator; down: silent past the controller's host_down_after.
    const lc = h.lifecycle && h.lifecycle !== "active" ? h.lifecycle : "";
    const state = h.down ? (lc ? `${lc}, down` : "down") : lc || (silent ? "down (silent)" : "up");
    const labels = Object.entries(h.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    const stale = (h.stale || []).map((s) => `${s.app} seq ${s.seq} expired ${ago(s.expired_at)}`).join("; ");
    tbody.append(el("tr", { "data-host": h.host, "data-state": state },
      el("td", {}, el("strong", {}, h.host)),
      el("td", { class: state.startsWith("down") ? "down" : "" }, state),
      el("td", { class: "mono" }, labels || "-"),
      el("td", {}, (h.agent_version || "?") + (h.skew ? ` (${h.skew})` : "")),
      el("td", { title: h.last_seen }, ago(h.last_seen)),
      el("td", { class: stale ? "stale" : "" }, stale || "-")));
  }
}

async function loadGitops() {
  const box = document.getElementById("gitops");
  let st;
  try {
    st = await api("GET", "/v1/gitops");
  } catch (e) {
    box.replaceChildren(el("p", { class: "muted" }, e.message));
    return;
  }
  if (!st) {
    box.replaceChildren(el("p", { class: "muted", "data-gitops": "off" }, "GitOps is not configured ([gitops] in controller.toml)."));
    return;
  }
  const head = el("p", { "data-gitops": st.error ? "failing" : "ok" },
    `${st.url} ${st.branch}${st.path ? ` /${st.path}` : ""}: `,
    st.commit ? `commit ${st.commit.slice(0, 12)} synced ${ago(st.synced_at)}` : "not synced yet",
    st.leading ? "" : " (this replica does not lead)");
  const parts = [head];
  if (st.error) parts.push(el("p", { class: "error" }, `${st.error} (${st.failures} failures in a row)`));
  if ((st.apps || []).length) {
    const t = el("table", {}, el("tr", {}, el("th", {}, "App"), el("th", {}, "State"), el("th", {}, "Seq"), el("th", {}, "Commit"), el("th", {}, "Error")));
    for (const a of st.apps) t.append(el("tr", { "data-app": a.app }, el("td", {}, a.app), el("td", {}, a.state), el("td", {}, a.seq ?? "-"), el("td", { class: "mono" }, (a.commit || "").slice(0, 12)), el("td", { class: "error" }, a.error || "")));
    parts.push(t);
  }
  box.replaceChildren(...parts);
}

// --- events --------------------------------------------------------------------------

function describe(ev) {
  const d = ev.detail || {};
  switch (ev.kind) {
    case "host.phase": return `${d.host} seq ${d.seq}: ${d.phase}`;
    case "wave.started": return `seq ${d.seq}: wave ${d.wave} of ${d.waves}`;
    case "release.created": return `seq ${d.seq}: ${shortImage(d.image)}`;
    case "host.joined": return `${d.host} joined`;
    case "rollout.rolled-back": return `seq ${d.seq} rolled back as seq ${d.rollback_seq}`;
    default: return [d.seq ? `seq ${d.seq}` : null, d.by ? `by ${d.by}` : null, d.reason].filter(Boolean).join(" ") || JSON.stringify(d);
  }
}

function addEvent(ev) {
  const list = document.getElementById("events");
  const time = new Date(ev.at).toLocaleTimeString();
  list.prepend(el("li", { "data-kind": ev.kind, "data-id": ev.id, title: ev.at },
    el("span", { class: "muted" }, time), el("span", { class: "kind" }, ev.kind),
    el("span", {}, ev.app || ""), el("span", {}, describe(ev))));
  while (list.children.length > EVENTS_SHOWN) list.lastElementChild.remove();
}

// EventSource cannot send X-Slipway-UI, so the stream is read with fetch.
async function followEvents() {
  const live = document.getElementById("live");
  for (;;) {
    try {
      const resp = await fetch(`/v1/events?since=${lastEventId}`, {
        headers: { ...UI_HEADERS, Accept: "text/event-stream" }, credentials: "same-origin",
      });
      if (resp.status === 401) return toLogin();
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      live.textContent = "events: live";
      live.className = "live on";
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
          if (!data) continue;
          const ev = JSON.parse(data);
          lastEventId = Math.max(lastEventId, ev.id);
          addEvent(ev);
          refreshSoon(300);
        }
      }
    } catch (e) {
      console.warn("event stream:", e);
    }
    live.textContent = "events: reconnecting";
    live.className = "live off";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// --- refresh -------------------------------------------------------------------------

async function refresh() {
  try {
    await Promise.all([loadApps(), loadHosts(), loadGitops()]);
    document.body.dataset.loaded = "1";
  } catch (e) {
    console.warn("refresh:", e);
  }
}

function refreshSoon(ms) {
  if (refreshTimer) clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, ms);
}

async function main() {
  me = await api("GET", "/ui/session");
  document.getElementById("who").textContent = `${me.name} (${me.role})`;
  document.body.dataset.role = me.role;
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/ui/logout", { method: "POST", headers: UI_HEADERS, credentials: "same-origin" });
    toLogin();
  });
  await refresh();
  followEvents();
  setInterval(refresh, REFRESH_MS);
}

main().catch((e) => console.warn(e));
