// The Corral operator console. Plain script, no framework, no build step.
// Every figure comes from the admin API through /console/api/… with the
// session cookie; every write carries the session's CSRF token. Text from the
// server is only ever set with textContent (app names and logs are tenant data).
"use strict";

const $ = (id) => document.getElementById(id);
let session = null; // {principal, csrf}
let feed = null; // EventSource of /console/events
let apps = [];
let sort = { key: "name", dir: 1 };

const GiB = 1 << 30;
function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + u[i];
}
const pct = (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(1) + " %");

async function api(method, path, body, type) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = session ? session.csrf : "";
  if (body !== undefined && type) headers["Content-Type"] = type;
  const r = await fetch("/console/api" + path, { method, headers, body, credentials: "same-origin" });
  let data = null;
  try { data = await r.json(); } catch (_) { /* empty or not JSON */ }
  if (r.status === 401) { showLogin(); }
  if (!r.ok) throw new Error((data && (data.message || data.error)) || r.status + " " + r.statusText);
  return data;
}

function rows(table, pairs) {
  const tb = $(table).tBodies[0];
  tb.replaceChildren(...pairs.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c); else td.textContent = c === undefined || c === null ? "–" : String(c);
      tr.append(td);
    }
    return tr;
  }));
}

// ---- login -------------------------------------------------------------
function showLogin() {
  session = null;
  if (feed) { feed.close(); feed = null; }
  $("login").hidden = false;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  for (const s of document.querySelectorAll("main > section[id^=page-]")) s.hidden = true;
}

function loggedIn(s) {
  session = s;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  const admin = s.principal.admin;
  $("who").textContent = admin ? "admin" : "account " + s.principal.account;
  for (const a of document.querySelectorAll("[data-admin]")) a.hidden = !admin;
  if (!location.hash || (!admin && location.hash !== "#/apps" && !location.hash.startsWith("#/apps/"))) {
    location.hash = admin ? "#/overview" : "#/apps";
  }
  route();
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  const r = await fetch("/console/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("token").value }),
    credentials: "same-origin",
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { $("login-error").textContent = data.message || "login failed"; return; }
  $("token").value = "";
  loggedIn(data);
});

$("logout").addEventListener("click", async () => {
  await fetch("/console/logout", { method: "POST", headers: { "X-CSRF-Token": session ? session.csrf : "" } });
  location.hash = "";
  showLogin();
});

// ---- routing -----------------------------------------------------------
function route() {
  if (!session) return;
  const h = location.hash || "#/overview";
  for (const s of document.querySelectorAll("main > section[id^=page-]")) s.hidden = true;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", h.startsWith(a.getAttribute("href")));
  if (h !== "#/overview" && feed) { feed.close(); feed = null; }
  if (h.startsWith("#/apps/")) return showApp(decodeURIComponent(h.slice(7)));
  const page = { "#/overview": showOverview, "#/apps": showApps, "#/host": showHost, "#/simulator": showSimulator }[h];
  (page || showApps)();
}
window.addEventListener("hashchange", route);

// ---- overview ------------------------------------------------------------
function showOverview() {
  $("page-overview").hidden = false;
  if (feed) return;
  feed = new EventSource("/console/events");
  feed.onopen = () => { $("live").textContent = "live"; $("live").classList.add("on"); };
  feed.onerror = () => { $("live").textContent = "reconnecting…"; $("live").classList.remove("on"); };
  feed.addEventListener("end", () => { feed.close(); feed = null; showLogin(); });
  feed.onmessage = (ev) => paint(JSON.parse(ev.data));
}

function paint(f) {
  const g = f.gauges, o = f.overview, h = o.host;
  $("m-cpu").value = g.probe.cpu_usage; $("g-cpu").textContent = pct(g.probe.cpu_usage) + " · load " + g.probe.load_1.toFixed(2);
  $("m-ram").value = g.ram_used_ratio; $("g-ram").textContent = pct(g.ram_used_ratio) + " of " + bytes(g.probe.ram_total);
  $("m-disk").value = g.disk_used_ratio; $("g-disk").textContent = pct(g.disk_used_ratio) + " of " + bytes(g.probe.disk_total);
  $("m-slots").value = h.runtime_slots ? h.runtime_slots_in_use / h.runtime_slots : 0;
  $("g-slots").textContent = h.runtime_slots_in_use + " / " + h.runtime_slots;
  $("g-apps").textContent = o.apps.warm + " warm · " + o.apps.parked + " parked";
  $("m-cache").value = g.cache.capacity ? g.cache.bytes / g.cache.capacity : 0;
  $("g-cache").textContent = bytes(g.cache.bytes) + " / " + bytes(g.cache.capacity);
  $("g-hit").textContent = g.cache_hit_rate === null ? "no lookups" : pct(g.cache_hit_rate);
  $("g-rps").textContent = g.requests_per_sec.toFixed(1);
  $("g-requests").textContent = o.totals.requests;
  $("g-admission").textContent = h.accepting_new_tenants ? "accepting new apps" : "refusing new apps (threshold crossed)";
  $("g-hook").textContent = (o.expansion_hook.configured ? "configured" : "not configured") + (o.expansion_hook.fired ? ", fired" : ", armed");
  $("g-maint").textContent = (h.maintenance ? "on" : "off") + (h.maintenance_required ? " (required: database outgrew RAM)" : "");
  const errs = Object.entries(o.totals.errors).map(([k, v]) => [k, v]);
  for (const [k, v] of Object.entries(o.totals.refused)) if (v) errs.push(["refused: " + k, v]);
  rows("t-errors", errs);
  const t = h.thresholds;
  rows("t-thresholds", [
    ["RAM", pct(t.ram.fire), pct(t.ram.rearm)],
    ["disk", pct(t.disk.fire), pct(t.disk.rearm)],
    ["CPU", pct(t.cpu.fire), pct(t.cpu.rearm)],
  ]);
  rows("t-top", g.top_tenants.map((x) => [x.tenant, x.requests_per_sec.toFixed(1), x.streams_open]));
}

// ---- apps ------------------------------------------------------------------
async function showApps() {
  $("page-apps").hidden = false;
  try { apps = await api("GET", "/apps?stats=1"); } catch (e) { $("deploy-result").textContent = e.message; return; }
  paintApps();
}

function paintApps() {
  const q = $("app-filter").value.toLowerCase();
  const st = $("app-state").value;
  const list = apps
    .filter((a) => (!q || [a.name, a.account, a.tier].some((s) => s.toLowerCase().includes(q))) && (!st || a.state === st))
    .sort((a, b) => (a[sort.key] < b[sort.key] ? -sort.dir : a[sort.key] > b[sort.key] ? sort.dir : 0));
  rows("t-apps", list.map((a) => {
    const link = document.createElement("a");
    link.href = "#/apps/" + encodeURIComponent(a.name);
    link.textContent = a.name;
    return [link, a.account, a.tier, a.state, a.requests, a.errors, a.fuel, bytes(a.peak_memory), a.streams];
  }));
}
$("app-filter").addEventListener("input", paintApps);
$("app-state").addEventListener("change", paintApps);
$("apps-refresh").addEventListener("click", showApps);
for (const th of document.querySelectorAll("#t-apps th")) {
  th.addEventListener("click", () => {
    const key = th.dataset.key;
    sort = { key, dir: sort.key === key ? -sort.dir : 1 };
    for (const o of document.querySelectorAll("#t-apps th")) o.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
    paintApps();
  });
}

$("deploy-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("deploy-name").value.trim();
  const tier = $("deploy-tier").value.trim();
  const file = $("deploy-file").files[0];
  let body, type;
  if (file) {
    body = file;
    type = file.name.endsWith(".wasm") ? "application/wasm" : file.name.endsWith(".tar") ? "application/x-tar" : "application/javascript";
  } else {
    body = $("deploy-code").value;
    type = "application/javascript";
  }
  const q = tier ? "?tier=" + encodeURIComponent(tier) : "";
  $("deploy-result").textContent = "deploying…";
  try {
    const info = await api("PUT", "/apps/" + encodeURIComponent(name) + q, body, type);
    $("deploy-result").textContent = "deployed " + info.name + " v" + info.version + " on tier " + info.tier;
    await showApps();
  } catch (err) { $("deploy-result").textContent = "deploy failed: " + err.message; }
});

// ---- one app -----------------------------------------------------------------
let current = null;
async function showApp(name) {
  current = name;
  $("page-app").hidden = false;
  $("app-name").textContent = name;
  $("app-result").textContent = "";
  try {
    const [info, status, usage, logs] = await Promise.all([
      api("GET", "/apps/" + encodeURIComponent(name)),
      api("GET", "/apps/" + encodeURIComponent(name) + "/status"),
      api("GET", "/apps/" + encodeURIComponent(name) + "/usage"),
      api("GET", "/apps/" + encodeURIComponent(name) + "/logs"),
    ]);
    rows("t-app", [["account", info.account], ["tier", info.tier], ["kind", info.kind], ["bundle", bytes(info.bytes)],
      ["version", info.version], ["state", status.state], ["in flight", status.in_flight], ["streams", status.streams],
      ["idle", status.idle_secs.toFixed(0) + " s"], ["cold starts", status.cold_starts]]);
    const u = usage.usage;
    rows("t-usage", [["tier", usage.tier],
      ["requests", u.requests + " / " + (usage.requests_quota === null ? "unlimited" : usage.requests_quota)],
      ["storage", bytes(u.storage_bytes) + " / " + (usage.storage_quota === null ? "unlimited" : bytes(usage.storage_quota))],
      ["errors", u.errors], ["fuel", u.fuel], ["peak memory", bytes(u.peak_memory)], ["peak streams", u.peak_streams],
      ["bytes in / out", bytes(u.bytes_in) + " / " + bytes(u.bytes_out)]]);
    $("retier-tier").value = info.tier;
    chart((await api("GET", "/apps/" + encodeURIComponent(name) + "/history")).hours);
    $("app-logs").textContent = logs.lines.join("\n") || "(no log lines)";
  } catch (e) { $("app-result").textContent = e.message; }
}

// Bars for the last 48 hours, from GET /api/apps/{name}/history (kept 30 days).
function chart(hours) {
  const NS = "http://www.w3.org/2000/svg", svg = $("app-chart"), n = 48, w = 960 / n;
  const now = Math.floor(Date.now() / 3600000);
  const by = new Map(hours.map((h) => [h.hour / 3600, h]));
  const max = Math.max(1, ...hours.map((h) => h.requests));
  const el = (tag, attrs) => { const e = document.createElementNS(NS, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; };
  const parts = [];
  for (let i = 0; i < n; i++) {
    const h = by.get(now - (n - 1 - i));
    if (!h) continue;
    const rh = Math.max(1, Math.round((h.requests / max) * 110)), eh = Math.round((h.errors / max) * 110);
    const bar = el("rect", { x: i * w + 1, y: 120 - rh, width: w - 2, height: rh, class: "req", "data-requests": h.requests });
    const title = el("title", {});
    title.textContent = new Date(h.hour * 1000).toISOString().slice(0, 13) + ":00Z: " + h.requests + " requests, " + h.errors + " errors";
    bar.append(title);
    parts.push(bar);
    if (eh) parts.push(el("rect", { x: i * w + 1, y: 120 - eh, width: w - 2, height: eh, class: "err" }));
  }
  const label = el("text", { x: 4, y: 135 });
  label.textContent = "48 h ago · peak " + max + " requests/h · now →";
  parts.push(label);
  svg.replaceChildren(...parts);
}

$("retier-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const info = await api("PATCH", "/apps/" + encodeURIComponent(current), JSON.stringify({ tier: $("retier-tier").value.trim() }), "application/json");
    await showApp(current);
    $("app-result").textContent = "now on tier " + info.tier;
  } catch (err) { $("app-result").textContent = "re-tier failed: " + err.message; }
});

$("app-delete").addEventListener("click", async () => {
  if (!confirm("Delete " + current + "? Its code, data and usage go.")) return;
  try {
    await api("DELETE", "/apps/" + encodeURIComponent(current));
    location.hash = "#/apps";
  } catch (err) { $("app-result").textContent = "delete failed: " + err.message; }
});

// ---- host ------------------------------------------------------------------------
let host = null;
async function showHost() {
  $("page-host").hidden = false;
  try { host = await api("GET", "/host"); } catch (e) { $("host-result").textContent = e.message; return; }
  const p = host.probe, b = host.budget;
  rows("t-probe", [["RAM", bytes(p.ram_total)], ["RAM available", bytes(p.ram_available)], ["CPUs", p.cpus],
    ["load 1/5/15", [p.load_1, p.load_5, p.load_15].map((x) => x.toFixed(2)).join(" / ")], ["CPU use", pct(p.cpu_usage)],
    ["disk", bytes(p.disk_total)], ["disk free", bytes(p.disk_available)], ["process RSS", bytes(p.process_rss)], ["database", bytes(p.db_bytes)]]);
  rows("t-budget", [["usable", bytes(b.usable)], ["cache", bytes(b.cache_bytes)], ["SQLite cache", bytes(b.sqlite_cache_bytes)],
    ["guest memory", bytes(b.runtime_bytes)], ["runtime slots (derived)", b.runtime_slots], ["runtime slots (now)", host.runtime_slots],
    ["instance memory", bytes(b.instance_memory)], ["default tier memory", bytes(b.default_tier_memory)], ["pool instances", b.pool_instances]]);
  $("host-maint").textContent = "maintenance is " + (host.maintenance ? "ON: tenants get 503" : "off");
  $("maint-toggle").textContent = host.maintenance ? "Turn maintenance off" : "Turn maintenance on";
}

$("maint-toggle").addEventListener("click", async () => {
  try {
    const r = await api("POST", "/admin/maintenance", JSON.stringify({ on: !host.maintenance }), "application/json");
    $("host-result").textContent = "maintenance " + (r.maintenance ? "on" : "off");
    await showHost();
  } catch (e) { $("host-result").textContent = e.message; }
});

$("recalibrate").addEventListener("click", async () => {
  // The preview probes the host now and derives by the node's own budget code.
  let sim;
  try { sim = await api("GET", "/admin/simulate?probe=1"); } catch (e) { $("host-result").textContent = e.message; return; }
  rows("t-recal", [
    ["RAM", bytes(host.probe.ram_total), bytes(sim.input.ram)],
    ["CPUs", host.probe.cpus, sim.input.cpus],
    ["runtime slots", host.runtime_slots, sim.effective.runtime_slots],
    ["cache", bytes(host.cache.capacity), bytes(sim.effective.cache_bytes)],
    ["instance memory", bytes(host.budget.instance_memory), bytes(sim.budget.instance_memory)],
  ]);
  $("recal-dialog").showModal();
});
$("recal-dialog").addEventListener("close", async () => {
  if ($("recal-dialog").returnValue !== "ok") return;
  try {
    await api("POST", "/admin/recalibrate");
    $("host-result").textContent = "recalibrated";
    await showHost();
  } catch (e) { $("host-result").textContent = "recalibrate failed: " + e.message; }
});

// ---- simulator -------------------------------------------------------------------------
let simTimer = null;
function showSimulator() {
  $("page-simulator").hidden = false;
  simulate();
}
function simQuery() {
  const ram = Number($("sim-ram").value) * GiB, cpus = Number($("sim-cpus").value);
  const disk = Number($("sim-disk").value) * GiB, n = Number($("sim-apps").value), slots = Number($("sim-slots").value);
  let q = "ram=" + ram + "&cpus=" + cpus + "&disk=" + disk + "&apps=" + n;
  if (slots > 0) q += "&runtime_slots=" + slots;
  return q;
}
async function simulate() {
  for (const k of ["ram", "cpus", "disk", "apps"]) $("sim-" + k + "-v").textContent = $("sim-" + k).value;
  const q = simQuery();
  let s;
  try { s = await api("GET", "/admin/simulate?" + q); } catch (e) { $("sim-warnings").textContent = e.message; return; }
  if (q !== simQuery()) return; // a newer input is on its way
  const b = s.budget;
  $("t-sim").dataset.query = q;
  rows("t-sim", [["usable", bytes(b.usable)], ["cache", bytes(b.cache_bytes)], ["SQLite cache", bytes(b.sqlite_cache_bytes)],
    ["guest memory", bytes(b.runtime_bytes)], ["runtime slots", b.runtime_slots], ["effective runtime slots", s.effective.runtime_slots],
    ["instance memory", bytes(b.instance_memory)], ["default tier memory", bytes(b.default_tier_memory)],
    ["pool instances (warm apps at most)", b.pool_instances],
    ["guest memory per app if all warm", bytes(s.per_app.guest_memory_if_all_warm)],
    ["disk per app before the threshold", bytes(s.per_app.disk_before_threshold)]]);
  $("t-sim").tBodies[0].rows[4].cells[1].id = "sim-slots-out";
  $("sim-warnings").replaceChildren(...s.warnings.map((w) => { const p = document.createElement("p"); p.className = "warn"; p.textContent = w; return p; }));
}
$("sim-form").addEventListener("input", () => { clearTimeout(simTimer); simTimer = setTimeout(simulate, 120); });

// ---- start -------------------------------------------------------------------------------
(async () => {
  const r = await fetch("/console/session", { credentials: "same-origin" });
  if (r.ok) loggedIn(await r.json()); else showLogin();
})();
