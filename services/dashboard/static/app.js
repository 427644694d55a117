// gridmesh dashboard: plain JavaScript, no build step. Views are rendered from the
// dashboard server's JSON (/api/...), live numbers from its server-sent events.
"use strict";

const state = { role: null, portfolio: null, site: null, siteId: null, source: null, refresh: null };
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const SVG = "http://www.w3.org/2000/svg";

const kw = (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(1)} kW`);
const kwh = (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(1)} kWh`);
const money = (v, currency) => `${Number(v).toFixed(2)} ${currency || ""}`.trim();
const hhmm = (iso) => (iso ? new Date(iso).toISOString().slice(11, 16) : "–");
const when = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 16) + "Z" : "–");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-") || k === "href" || k === "title" || k === "type" || k === "name" || k === "value") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: response.statusText, fields: {} }));
  if (response.status === 401 && path !== "/api/login") {
    showLogin();
  }
  return { ok: response.ok, status: response.status, data };
}

function banner(text) {
  const b = $("#banner");
  b.textContent = text || "";
  b.hidden = !text;
}

// ---- sign-in ------------------------------------------------------------------------
function showLogin() {
  closeStream();
  state.role = null;
  for (const id of ["portfolio-view", "site-view"]) $(`#${id}`).hidden = true;
  $("#login").hidden = false;
  $("#logout").hidden = true;
  $("[data-testid=role]").textContent = "";
}

function clearErrors(form) {
  for (const p of $$(".field-error, .form-error, .form-ok", form)) p.textContent = "";
  for (const i of $$("input.invalid", form)) i.classList.remove("invalid");
}

function showErrors(form, data) {
  const fields = data.fields || {};
  let placed = false;
  for (const [field, message] of Object.entries(fields)) {
    const slot = $(`.field-error[data-field="${CSS.escape(field)}"]`, form);
    if (slot) {
      slot.textContent = `${field}: ${message}`;
      const input = form.elements[field];
      if (input) input.classList.add("invalid");
      placed = true;
    }
  }
  const general = $(".form-error", form);
  if (general && (!placed || !Object.keys(fields).length)) general.textContent = data.error || "refused";
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  const got = await api("POST", "/api/login", { token: form.elements.token.value });
  if (!got.ok) return showErrors(form, got.data);
  form.reset();
  start(got.data.role);
});

$("#logout").addEventListener("click", async () => {
  await api("POST", "/api/logout", {});
  showLogin();
});

function start(role) {
  state.role = role;
  $("#login").hidden = true;
  $("#logout").hidden = false;
  const badge = $("[data-testid=role]");
  badge.textContent = role;
  badge.className = `role ${role}`;
  document.body.classList.toggle("viewer", role !== "operator");
  openStream();
  route();
  clearInterval(state.refresh);
  state.refresh = setInterval(reload, 5000);  // commands, today's account, schedules between solves
}

// ---- routing ------------------------------------------------------------------------
function route() {
  if (!state.role) return;
  const match = location.hash.match(/^#\/site\/(.+)$/);
  state.siteId = match ? decodeURIComponent(match[1]) : null;
  $("#portfolio-view").hidden = !!state.siteId;
  $("#site-view").hidden = !state.siteId;
  reload();
}
window.addEventListener("hashchange", route);

async function reload() {
  if (!state.role) return;
  if (state.siteId) {
    const got = await api("GET", `/api/sites/${encodeURIComponent(state.siteId)}`);
    if (got.ok) { banner(""); renderSite(got.data); } else if (got.status !== 401) banner(got.data.error);
  } else {
    const got = await api("GET", "/api/portfolio");
    if (got.ok) { banner(""); renderPortfolio(got.data); } else if (got.status !== 401) banner(got.data.error);
  }
}

// ---- live stream --------------------------------------------------------------------
function openStream() {
  closeStream();
  const source = new EventSource("/api/stream");
  source.addEventListener("flows", (e) => applyLive(JSON.parse(e.data)));
  source.addEventListener("solve", () => reload());
  source.addEventListener("failure", (e) => banner(`live updates: ${JSON.parse(e.data).error}`));
  source.onopen = () => $("[data-testid=live]").classList.add("on");
  source.onerror = () => $("[data-testid=live]").classList.remove("on");
  state.source = source;
}

function closeStream() {
  if (state.source) state.source.close();
  state.source = null;
  clearInterval(state.refresh);
}

function applyLive(update) {
  $("[data-testid=clock]").textContent = when(update.at);
  if (!state.siteId && state.portfolio) {
    renderTotals({ ...state.portfolio.totals, ...update.totals });
    for (const s of update.sites) {
      const card = $(`.card[data-site="${CSS.escape(s.site_id)}"]`);
      if (card && s.live) fillCard(card, { ...s, live: s.live });
    }
  }
  if (state.siteId && state.site) {
    const s = update.sites.find((x) => x.site_id === state.siteId);
    if (s && s.live) {
      state.site.card.live = s.live;
      state.site.card.mode = s.mode;
      state.site.flows = s.flows;
      state.site.totals = s.totals;
      renderSiteLive(state.site);
    }
  }
}

// ---- portfolio view -----------------------------------------------------------------
function renderTotals(t) {
  const box = $("[data-testid=totals]");
  box.replaceChildren(
    tile("Import", kw(t.import_kw), "total-import"),
    tile("Export", kw(t.export_kw), "total-export"),
    tile("PV", kw(t.pv_kw), "total-pv"),
    tile("EV charging", kw(t.ev_kw), "total-ev"),
    tile("Cost today", money(t.cost_today, t.currency), "cost-today"),
    tile("Business as usual", money(t.bau_today, t.currency), "bau-today"),
    tile("Saved today", money(t.bau_today - t.cost_today, t.currency), "saved-today"),
  );
}

function tile(label, value, testid) {
  return el("div", { class: "tile" }, el("span", { class: "label", text: label }), el("span", { class: "value", text: value, "data-testid": testid }));
}

function renderPortfolio(p) {
  state.portfolio = p;
  $("[data-testid=clock]").textContent = when(p.now);
  renderTotals(p.totals);
  const cards = $("[data-testid=cards]");
  cards.replaceChildren(...p.sites.map((s) => {
    const card = el("a", { class: "card", href: `#/site/${encodeURIComponent(s.site_id)}`, "data-site": s.site_id, "data-testid": `card-${s.site_id}` });
    card.append(
      el("h3", {}, el("span", { text: s.site_id }), el("span", { class: "badge mode", "data-k": "mode" })),
      el("dl", {},
        ...[["import", "Import"], ["pv", "PV"], ["soc", "Battery SOC"], ["battery", "Battery"], ["ev", "EV charging"], ["flex", "Flexible load"], ["today", "Today"]]
          .flatMap(([k, label]) => [el("dt", { text: label }), el("dd", { "data-k": k })])),
    );
    fillCard(card, s);
    return card;
  }));
  renderFeeders(p.feeders);
  renderEvents(p.events);
  const solve = $("[data-testid=solve]");
  solve.textContent = p.solve
    ? `${when(p.solve.at)} · ${p.solve.method} · ${p.solve.status} · objective ${p.solve.objective.toFixed(2)} · gap ${(100 * p.solve.gap).toFixed(3)} % · ` +
      `coupling cost ${p.solve.coupling_cost.toFixed(2)} · portfolio peak ${kw(p.solve.peak_kw)}` +
      (p.solve.peak_charge ? ` (charged ${p.solve.peak_charge.toFixed(2)})` : "") +
      ` · ${p.solve.all_hold ? "every cap and event holds" : "NOT every limit holds"}` +
      (p.solve.relaxed.length ? ` · relaxed: ${p.solve.relaxed.join(", ")}` : "")
    : "no solve yet";
}

function fillCard(card, s) {
  const live = s.live;
  const set = (k, v) => { const d = $(`[data-k=${k}]`, card); if (d) d.textContent = v; };
  const mode = s.connected === false ? "offline" : s.mode;
  const badge = $("[data-k=mode]", card);
  badge.textContent = mode;
  badge.className = `badge mode ${mode}`;
  card.classList.toggle("offline", s.connected === false);
  if (live) {
    set("import", live.export_kw > 0.05 ? `${kw(live.import_kw)} (export ${kw(live.export_kw)})` : kw(live.import_kw));
    set("pv", kw(live.pv_kw));
    set("soc", live.soc_kwh ? kwh(live.soc_kwh) : "–");
    set("battery", live.battery_kw > 0.05 ? `charging ${kw(live.battery_kw)}` : live.battery_kw < -0.05 ? `discharging ${kw(-live.battery_kw)}` : "idle");
    set("ev", kw(live.ev_kw));
    set("flex", kw(live.flex_kw));
  }
  if (s.today) set("today", `${money(s.today.cost, s.today.currency)} vs ${money(s.today.bau_cost, s.today.currency)} BAU`);
  else if (s.today === null) set("today", "–");
}

function sparkline(series, cap, width = 300, height = 60) {
  const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "spark" });
  if (!series || !series.values.length) return box;
  const values = series.values;
  const top = Math.max(cap || 0, ...values, 1) * 1.1;
  const x = (i) => (i / Math.max(values.length - 1, 1)) * width;
  const y = (v) => height - (v / top) * height;
  box.append(svg("polyline", { points: values.map((v, i) => `${x(i)},${y(v)}`).join(" "), class: "planned" }));
  if (cap !== null && cap !== undefined) box.append(svg("line", { x1: 0, x2: width, y1: y(cap), y2: y(cap), class: "cap" }));
  return box;
}

function renderFeeders(feeders) {
  const box = $("[data-testid=feeders]");
  if (!feeders.length) return box.replaceChildren(el("p", { class: "hint", text: "no feeders" }));
  box.replaceChildren(...feeders.map((f) => {
    const peak = f.planned ? Math.max(...f.planned.values) : null;
    const form = el("form", { class: "inline editor", novalidate: true, "data-testid": `feeder-form-${f.feeder_id}` },
      el("label", {}, "cap kW ", el("input", { name: "feeder.cap_kw", value: f.cap_kw ?? "", inputMode: "decimal", "data-testid": `feeder-cap-${f.feeder_id}` })),
      el("button", { type: "submit", text: "Set cap" }),
      el("p", { class: "field-error", "data-field": "feeder.cap_kw" }),
      el("p", { class: "form-error" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const got = await api("PUT", `/api/feeders/${encodeURIComponent(f.feeder_id)}`,
        { site_ids: f.site_ids, cap_kw: form.elements["feeder.cap_kw"].value, description: f.description });
      if (!got.ok) return showErrors(form, got.data);
      reload();
    });
    return el("div", { class: "panel feeder", "data-testid": `feeder-${f.feeder_id}` },
      el("h3", { text: `${f.feeder_id} ${f.description ? "— " + f.description : ""}` }),
      el("p", { text: `sites ${f.site_ids.join(", ")} · now ${kw(f.import_kw)} of ${kw(f.cap_now_kw)} · planned peak ${kw(peak)}` }),
      sparkline(f.planned, f.cap_kw),
      form);
  }));
}

function renderEvents(events) {
  const box = $("[data-testid=events]");
  if (!events.length) return box.replaceChildren(el("p", { class: "hint", text: "no flex events ahead" }));
  box.replaceChildren(...events.map((e) => {
    const what = e.kind === "CAP_AT" ? `import at most ${kw(e.kw)}` : `import ${kw(e.kw)} below baseline`;
    const status = e.active ? (e.headroom_kw !== null ? `active: ${e.headroom_kw >= 0 ? "kept with" : "OVER by"} ${kw(Math.abs(e.headroom_kw))} ${e.headroom_kw >= 0 ? "to spare" : ""}` : "active") : "scheduled";
    const planned = e.planned_holds === null ? "" : e.planned_holds ? " · plan keeps it" : ` · plan short by ${kw(e.planned_worst_shortfall_kw)}`;
    const row = el("div", { class: `panel event ${e.active ? "active" : ""}`, "data-testid": `event-${e.event_id}` },
      el("h3", { text: e.event_id }),
      el("p", { text: `${what} · ${hhmm(e.start)}–${hhmm(e.end)} UTC · ${e.site_ids.length ? e.site_ids.join(", ") : "all sites"}` }),
      el("p", { text: status + planned }));
    const cancel = el("button", { type: "button", class: "editor", text: "Cancel event" });
    cancel.addEventListener("click", async () => {
      const got = await api("POST", `/api/events/${encodeURIComponent(e.event_id)}/cancel`, {});
      if (!got.ok) banner(got.data.error);
      reload();
    });
    row.append(cancel);
    return row;
  }));
}

$("#event-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  const f = form.elements;
  const sites = f.site_ids.value.split(",").map((s) => s.trim()).filter(Boolean);
  const got = await api("POST", "/api/events", { event_id: f.event_id.value, kind: f.kind.value, kw: f.kw.value, start: f.start.value, end: f.end.value, site_ids: sites });
  if (!got.ok) return showErrors(form, got.data);
  form.reset();
  reload();
});

// ---- site view ----------------------------------------------------------------------
function renderSite(s) {
  const first = !state.site || state.site.card.site_id !== s.card.site_id;
  state.site = s;
  $("[data-testid=site-title]").textContent = s.card.site_id;
  renderSiteLive(s);
  renderSchedule(s.schedule, s.capacity_kwh);
  renderCommands(s.commands);
  const form = $("#settings-form");
  const editing = form.contains(document.activeElement);
  if ((first || !editing) && s.settings) {
    for (const [k, v] of Object.entries(s.settings.priorities)) if (form.elements[`priorities.${k}`]) form.elements[`priorities.${k}`].value = v;
    for (const [k, v] of Object.entries(s.settings.weights)) if (form.elements[`weights.${k}`]) form.elements[`weights.${k}`].value = v;
  }
  $("[data-testid=settings-source]").textContent = s.settings
    ? (s.settings.from_operator ? `set by an operator ${s.settings.updated_at ? when(s.settings.updated_at) : ""}` : "the node's own configuration")
    : "no snapshot from this site yet";
  const readonly = state.role !== "operator";
  $("[data-testid=readonly-note]").hidden = !readonly;
  for (const input of $$("input, button", form)) input.disabled = readonly;
}

function renderSiteLive(s) {
  const mode = s.card.connected === false ? "offline" : s.card.mode;
  const badge = $("[data-testid=site-mode]");
  badge.textContent = mode;
  badge.className = `badge mode ${mode}`;
  drawFlows(s.card.live ? s : null);
}

const FLOW_NODES = {
  solar: [90, 60, "Solar"], battery: [90, 160, "Battery"], grid: [90, 260, "Grid"],
  facility: [550, 40, "Facility"], fleet: [550, 100, "Fleet charging"], battery_charging: [550, 160, "Battery charging"],
  mining: [550, 220, "Mining"], export: [550, 280, "Export"],
};

// flows and totals come from the server (views.flows_of), for the page load and each live update
function drawFlows(site) {
  const box = $("[data-testid=flow-diagram]");
  box.replaceChildren();
  const { flows, totals } = site || { flows: [], totals: {} };
  const top = Math.max(1, ...flows.map((f) => f.kw));
  for (const f of flows) {
    const [x1, y1] = FLOW_NODES[f.source];
    const [x2, y2] = FLOW_NODES[f.sink];
    const width = 2 + 16 * (f.kw / top);
    const path = `M ${x1 + 60} ${y1} C ${x1 + 200} ${y1}, ${x2 - 200} ${y2}, ${x2 - 60} ${y2}`;
    box.append(svg("path", { d: path, class: `flow from-${f.source}`, "stroke-width": width.toFixed(1), "data-testid": `flow-${f.source}-${f.sink}` }));
    box.append(svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, class: "flow-label" }, `${f.kw.toFixed(1)} kW`));
  }
  for (const [key, [x, y, label]] of Object.entries(FLOW_NODES)) {
    const g = svg("g", { class: `node ${key}`, "data-testid": `node-${key}` });
    g.append(svg("rect", { x: x - 60, y: y - 18, width: 120, height: 36, rx: 6 }));
    g.append(svg("text", { x, y: y - 3, class: "node-label" }, label));
    g.append(svg("text", { x, y: y + 12, class: "node-value", "data-testid": `value-${key}` }, site ? `${(totals[key] || 0).toFixed(1)} kW` : "–"));
    box.append(g);
  }
}

const STACK = [["load_kw", "facility"], ["ev", "fleet"], ["battery_charge_kw", "battery charging"], ["flex", "mining"], ["grid_export_kw", "export"]];

function renderSchedule(schedule, capacity) {
  const box = $("[data-testid=schedule-chart]");
  const legend = $("[data-testid=schedule-legend]");
  box.replaceChildren();
  if (!schedule) { legend.textContent = "no schedule issued yet"; return; }
  const cols = schedule.columns;
  const n = (cols.grid_import_kw || []).length;
  const sum = (prefix) => Array.from({ length: n }, (_, i) => Object.entries(cols)
    .filter(([k]) => k.startsWith(prefix + "_") && k.endsWith("_kw")).reduce((a, [, v]) => a + v[i], 0));
  const series = { load_kw: cols.load_kw || Array(n).fill(0), ev: sum("ev"), battery_charge_kw: cols.battery_charge_kw || Array(n).fill(0),
    flex: sum("flex"), grid_export_kw: cols.grid_export_kw || Array(n).fill(0) };
  const W = 640, H = 320, L = 44, R = 44, T = 10, B = 30;
  const stacked = Array.from({ length: n }, (_, i) => STACK.reduce((a, [k]) => a + series[k][i], 0));
  const top = Math.max(1, ...stacked, ...(cols.grid_import_kw || []), ...(cols.pv_kw || [])) * 1.1;
  const x = (i) => L + (i / Math.max(n, 1)) * (W - L - R);
  const y = (v) => H - B - (v / top) * (H - T - B);
  const bw = (W - L - R) / Math.max(n, 1);
  for (let i = 0; i < n; i++) {
    let base = 0;
    for (const [k] of STACK) {
      const v = series[k][i];
      if (v > 1e-6) box.append(svg("rect", { x: x(i), y: y(base + v), width: Math.max(bw - 0.5, 0.5), height: y(base) - y(base + v), class: `stack ${k}` }));
      base += v;
    }
  }
  const line = (values, cls, scale = y) => box.append(svg("polyline", { points: values.map((v, i) => `${x(i) + bw / 2},${scale(v)}`).join(" "), class: cls }));
  if (cols.grid_import_kw) line(cols.grid_import_kw, "line import");
  if (cols.pv_kw) line(cols.pv_kw, "line pv");
  if (cols.soc_kwh && capacity) line(cols.soc_kwh, "line soc", (v) => H - B - (v / capacity) * (H - T - B));
  box.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  box.append(svg("text", { x: 4, y: T + 10, class: "tick" }, `${top.toFixed(0)} kW`));
  if (capacity) box.append(svg("text", { x: W - R + 4, y: T + 10, class: "tick" }, `${capacity.toFixed(0)} kWh`));
  const start = new Date(schedule.start);
  for (let i = 0; i < n; i += Math.max(1, Math.round(n / 8))) {
    const at = new Date(start.getTime() + i * schedule.step_minutes * 60000);
    box.append(svg("text", { x: x(i), y: H - 10, class: "tick" }, at.toISOString().slice(11, 16)));
  }
  legend.textContent = `version ${schedule.version} (${schedule.source}) from ${when(schedule.start)}, ${n} steps of ${schedule.step_minutes} min · ` +
    "bars: facility, fleet, battery charging, mining, export · lines: grid import, PV" + (capacity ? ", SOC (right axis)" : "");
}

function renderCommands(commands) {
  const body = $("[data-testid=commands] tbody");
  if (!commands.length) return body.replaceChildren(el("tr", {}, el("td", { colSpan: 6, class: "hint", text: "no commands reported yet" })));
  body.replaceChildren(...commands.map((c) => el("tr", { class: `state-${c.state.toLowerCase()}`, "data-testid": "command-row" },
    el("td", { text: when(c.due_at) }), el("td", { text: c.asset_id }), el("td", { text: c.type }),
    el("td", { text: c.value_kw.toFixed(1) }), el("td", { text: c.state, title: c.last_error || "" }), el("td", { text: String(c.attempts) }))));
}

$("#settings-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  const read = (prefix, keys) => Object.fromEntries(keys.map((k) => [k, form.elements[`${prefix}.${k}`].value]));
  const body = {
    priorities: read("priorities", ["fleet", "facility", "battery", "mining", "export"]),
    weights: read("weights", ["cost", "carbon", "peak"]),
  };
  const got = await api("PUT", `/api/sites/${encodeURIComponent(state.siteId)}/settings`, body);
  if (!got.ok) return showErrors(form, got.data);
  $("[data-testid=settings-ok]").textContent = "saved: the site plans with these from its next schedule";
  reload();
});

// ---- boot ---------------------------------------------------------------------------
(async () => {
  const got = await api("GET", "/api/me");
  if (got.ok) start(got.data.role);
  else showLogin();
})();
