// The diffproxy console: a single page over the JSON API on the same port.
//
// Everything shown here comes from mirrored traffic, i.e. from strangers. Values only ever
// reach the DOM as text nodes or attribute values set through the DOM API; nothing is
// parsed as markup. The server's Content-Security-Policy backs this up.
"use strict";

(() => {
  const API = "api/1/";          // relative: the console also works behind a path prefix
  const POLL_MS = 3000;
  const MAX_LINES = 4000;        // per response column; keeps huge bodies from freezing the tab
  const MAX_DIFF_CELLS = 4e6;    // LCS table budget for the line diff
  // The API's per-endpoint verdict (GET /api/1/endpoints): worst first.
  const VERDICT_RANK = { signal: 0, baseline_failure: 1, insufficient: 2, noise: 3, same: 4, none: 4 };
  const VERDICT_LABEL = {
    signal: "signal", baseline_failure: "baseline failed", insufficient: "insufficient",
    noise: "noise only", same: "no difference", none: "no difference",
  };

  // ---------------------------------------------------------------- DOM helpers

  // h("a", {class: "x", href: "#/"}, "text", child) — children are nodes or text.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function setText(el, text) {
    const value = String(text);
    if (el.textContent !== value) el.textContent = value;
  }

  function setClass(el, name, on) {
    if (el.classList.contains(name) !== Boolean(on)) el.classList.toggle(name, Boolean(on));
  }

  // Reorders `parent`'s children to `nodes`, moving only what is out of place, so open
  // elements, focus and the reader's scroll position survive a refresh.
  function reconcile(parent, nodes) {
    let cursor = parent.firstChild;
    for (const node of nodes) {
      if (node === cursor) cursor = cursor.nextSibling;
      else parent.insertBefore(node, cursor);
    }
    while (cursor) {
      const next = cursor.nextSibling;
      parent.removeChild(cursor);
      cursor = next;
    }
  }

  // ---------------------------------------------------------------- formatting

  const enc = encodeURIComponent;
  const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");
  const pct = (part, total) => (total ? (100 * part) / total : 0);
  const fmtPct = (x, digits = 1) => `${Number(x || 0).toFixed(digits)}%`;

  function fmtTime(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function fmtStamp(ms) {
    const d = new Date(ms);
    return `${d.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" })} ${fmtTime(ms)}`;
  }

  function fmtAgo(ms, now = Date.now()) {
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 10) return "just now";
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function short(value, limit = 140) {
    const text = value === undefined ? "—" : typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value);
    if (text === undefined) return String(value);
    return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
  }

  function endpointVerdict(ep) {
    if (ep.signal) return "signal";
    return ep.differences > 0 ? "noise" : "none";
  }

  function badge(verdict, label) {
    return h("span", { class: `badge badge-${verdict}`, text: label || VERDICT_LABEL[verdict] });
  }

  // ---------------------------------------------------------------- routes

  const links = {
    overview: () => "#/",
    endpoint: (ep) => `#/endpoint/${enc(ep)}`,
    field: (ep, field) => `#/endpoint/${enc(ep)}/field/${enc(field)}`,
    example: (ep, field, id) => `#/endpoint/${enc(ep)}/field/${enc(field)}/request/${enc(id)}`,
    request: (id) => `#/request/${enc(id)}`,
  };

  function parseRoute(hash) {
    const parts = hash.replace(/^#\/?/, "").split("/").filter((p) => p !== "");
    let d;
    try {
      d = parts.map((p) => decodeURIComponent(p));
    } catch (_err) {
      return { name: "bad", hash };
    }
    if (d.length === 0) return { name: "overview" };
    if (d[0] === "endpoint" && d.length === 2) return { name: "endpoint", ep: d[1] };
    if (d[0] === "endpoint" && d.length === 4 && d[2] === "field") return { name: "field", ep: d[1], field: d[3], id: null };
    if (d[0] === "endpoint" && d.length === 6 && d[2] === "field" && d[4] === "request") {
      return { name: "field", ep: d[1], field: d[3], id: d[5] };
    }
    if (d[0] === "request" && d.length === 2) return { name: "request", id: d[1] };
    return { name: "bad", hash };
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options) {
    let response;
    try {
      response = await fetch(API + path, { headers: { Accept: "application/json" }, cache: "no-store", ...options });
    } catch (err) {
      throw new ApiError(0, `cannot reach the diff proxy (${err.message})`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_err) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && typeof body.error === "string" ? body.error : response.statusText;
      throw new ApiError(response.status, `${response.status}: ${detail}`);
    }
    return body;
  }

  // ---------------------------------------------------------------- page state

  const store = {
    info: null,
    overview: {},
    loaded: false,       // the overview has been fetched at least once
    lastUpdate: null,
    paused: false,
    showNoise: readPref("showNoise", true),
    showSecondary: readPref("showSecondary", true),
  };

  function readPref(key, fallback) {
    try {
      const v = window.localStorage.getItem(`diffproxy.${key}`);
      return v === null ? fallback : v === "true";
    } catch (_err) {
      return fallback;
    }
  }

  function writePref(key, value) {
    try {
      window.localStorage.setItem(`diffproxy.${key}`, String(value));
    } catch (_err) {
      /* private mode: the preference lasts for this page only */
    }
  }

  const $ = (id) => document.getElementById(id);

  function showBanner(message) {
    const banner = $("banner");
    setText(banner, message);
    banner.hidden = !message;
  }

  function endpoints() {
    return Object.entries(store.overview).map(([name, ep]) => {
      const total = Number(ep.total || 0);
      const differences = Number(ep.differences || 0);
      return {
        name, total, differences, fields: ep.fields || {}, signal: Boolean(ep.signal),
        pct: pct(differences, total),
        verdict: ep.verdict in VERDICT_RANK ? ep.verdict : endpointVerdict({ signal: ep.signal, differences }),
        baselineFailures: Number(ep.baseline_failures || 0),
      };
    }).sort((a, b) =>
      VERDICT_RANK[a.verdict] - VERDICT_RANK[b.verdict] || b.pct - a.pct || b.total - a.total ||
      a.name.localeCompare(b.name));
  }

  function sortFields(fields) {
    return Object.entries(fields || {}).map(([path, f]) => ({ path, ...f }))
      .sort((a, b) => Number(b.signal) - Number(a.signal) || b.differences - a.differences ||
        b.relative_difference - a.relative_difference || a.path.localeCompare(b.path));
  }

  // ---------------------------------------------------------------- header

  const targetRows = new Map();

  function renderHeader() {
    const info = store.info;
    if (!info) return;
    setText($("service-name"), info.name || "diffproxy");
    document.title = `${info.name || "diffproxy"} · diff console`;
    const meta = [
      String(info.protocol || "http").toUpperCase(),
      info.response_mode ? `responds with ${info.response_mode}` : null,
      info.allow_http_side_effects ? "side effects allowed" : "side effects blocked",
      info.version ? `v${info.version}` : null,
    ].filter(Boolean).join(" · ");
    setText($("service-meta"), meta);

    const list = $("targets");
    const nodes = [];
    for (const role of ["primary", "secondary", "candidate"]) {
      const target = (info.targets || {})[role] || {};
      let row = targetRows.get(role);
      if (!row) {
        row = {
          li: h("li", { class: "target", dataset: { role } }),
          dot: h("span", { class: "dot" }),
          addr: h("span", { class: "addr" }),
        };
        append(row.li, [row.dot, h("span", { class: "role", text: role }), row.addr]);
        targetRows.set(role, row);
      }
      const state = target.healthy === true ? "up" : target.healthy === false ? "down" : "unknown";
      row.dot.className = `dot dot-${state}`;
      setClass(row.li, "down", state === "down");
      setText(row.addr, target.address || "?");
      const title = `${role}: ${target.address || "?"} — ${state === "up" ? "healthy" : state === "down" ? "unhealthy" : "not checked yet"}` +
        (target.last_error ? `\nlast error: ${target.last_error}` : "");
      row.li.title = title;
      row.li.setAttribute("aria-label", title);
      nodes.push(row.li);
    }
    reconcile(list, nodes);

    const t = info.thresholds || {};
    setText($("thresholds"), `relative > ${t.relative ?? "?"}% · absolute > ${t.absolute ?? "?"}%`);
    const reset = $("last-reset");
    if (info.last_reset) {
      setText(reset, fmtAgo(info.last_reset));
      reset.title = fmtStamp(info.last_reset);
    } else {
      setText(reset, "never");
      reset.title = "Results have not been cleared since the store was created";
    }
  }

  function renderLiveStatus(error) {
    const live = $("live");
    setClass(live, "stale", store.paused);
    setClass(live, "offline", Boolean(error) && !store.paused);
    let text = "connecting…";
    if (store.paused) text = "Paused";
    else if (error) text = "Offline, retrying";
    else if (store.lastUpdate) text = `Live · updated ${fmtTime(store.lastUpdate)}`;
    setText($("live-status"), text);
    live.title = store.paused ? "Automatic refresh is paused" : `Refreshes every ${POLL_MS / 1000} s`;
  }

  // ---------------------------------------------------------------- sidebar

  const sidebarRows = new Map();

  function sidebarRow(name) {
    let row = sidebarRows.get(name);
    if (row) return row;
    row = {
      li: h("li", { class: "ep" }),
      link: h("a", { href: links.endpoint(name), title: name }),
      name: h("span", { class: "ep-name", text: name }),
      badge: h("span", { class: "badge" }),
      counts: h("span", { class: "ep-counts" }),
      pct: h("span", { class: "ep-pct" }),
      bar: h("progress", { class: "bar", max: "100", value: "0" }),
    };
    append(row.link, [
      h("span", { class: "ep-line" }, row.name, row.pct),
      h("span", { class: "ep-line ep-sub" }, row.badge, row.counts),
      row.bar,
    ]);
    row.li.append(row.link);
    row.li.dataset.name = name;
    sidebarRows.set(name, row);
    return row;
  }

  function renderSidebar() {
    const list = endpoints();
    const route = currentRoute;
    const active = route.name === "endpoint" || route.name === "field" ? route.ep : activeRequestEndpoint;
    const nodes = list.map((ep) => {
      const row = sidebarRow(ep.name);
      row.li.className = `ep verdict-${ep.verdict}${ep.name === active ? " active" : ""}`;
      row.badge.className = `badge badge-${ep.verdict}`;
      setText(row.badge, VERDICT_LABEL[ep.verdict]);
      setText(row.counts, `${fmtInt(ep.differences)} of ${fmtInt(ep.total)} differ`);
      setText(row.pct, fmtPct(ep.pct));
      row.bar.value = Math.min(100, ep.pct);
      if (ep.name === active) row.link.setAttribute("aria-current", "page");
      else row.link.removeAttribute("aria-current");
      return row.li;
    });
    for (const name of [...sidebarRows.keys()]) {
      if (!(name in store.overview)) sidebarRows.delete(name);
    }
    reconcile($("endpoint-list"), nodes);
    setText($("endpoint-count"), list.length ? String(list.length) : "");
    applyFilter();
  }

  function applyFilter() {
    const query = $("endpoint-filter").value.trim().toLowerCase();
    let shown = 0;
    for (const [name, row] of sidebarRows) {
      const match = !query || name.toLowerCase().includes(query);
      row.li.hidden = !match;
      if (match) shown += 1;
    }
    $("endpoint-empty").hidden = sidebarRows.size > 0;
    $("endpoint-nomatch").hidden = sidebarRows.size === 0 || shown > 0;
  }

  // ---------------------------------------------------------------- shared view parts

  function crumbs(...items) {
    const nav = h("nav", { class: "crumbs", "aria-label": "Breadcrumb" });
    items.filter(Boolean).forEach((item, i) => {
      if (i) nav.append(h("span", { class: "sep", "aria-hidden": "true", text: "›" }));
      nav.append(item.href ? h("a", { href: item.href, text: item.text }) : h("span", { class: "here", text: item.text }));
    });
    return nav;
  }

  function stat(label, valueEl, extraClass) {
    return h("div", { class: `stat ${extraClass || ""}` }, h("div", { class: "stat-label", text: label }), valueEl);
  }

  function message(text, kind) {
    return h("p", { class: `message ${kind || ""}`, text });
  }

  // ---------------------------------------------------------------- overview view

  function overviewView() {
    const tiles = {
      endpoints: h("div", { class: "stat-value" }),
      total: h("div", { class: "stat-value" }),
      differing: h("div", { class: "stat-value" }),
      noise: h("div", { class: "stat-value" }),
      signal: h("div", { class: "stat-value" }),
      baseline: h("div", { class: "stat-value" }),
    };
    const body = h("tbody");
    const table = h("table", { class: "grid signal-table" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: "Endpoint" }), h("th", { scope: "col", text: "Field" }),
        h("th", { scope: "col", class: "num", text: "Differences" }), h("th", { scope: "col", class: "num", text: "Noise" }),
        h("th", { scope: "col", class: "num", text: "Relative" }), h("th", { scope: "col", class: "num", text: "Absolute" }))),
      body);
    const empty = h("div", { class: "empty-state" });
    const epBody = h("tbody");
    const epTable = h("table", { class: "grid endpoints-table" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: "Endpoint" }), h("th", { scope: "col", text: "Verdict" }),
        h("th", { scope: "col", class: "num", text: "Requests" }), h("th", { scope: "col", class: "num", text: "Differing" }),
        h("th", { scope: "col", class: "num", text: "Differing %" }), h("th", { scope: "col", class: "num", text: "Signal fields" }),
        h("th", { scope: "col", class: "num", text: "Noise fields" }))),
      epBody);
    const root = h("section", { class: "view view-overview" },
      crumbs({ text: "Overview" }),
      h("h1", { text: "Overview" }),
      h("div", { class: "stats" },
        stat("Endpoints", tiles.endpoints), stat("Requests compared", tiles.total),
        stat("Endpoints with signal", tiles.signal, "stat-signal"),
        stat("Differing, on signal endpoints", tiles.differing),
        stat("Differing, noise only", tiles.noise, "stat-noise"),
        stat("Baseline failures", tiles.baseline, "stat-baseline")),
      h("section", { class: "panel" },
        h("header", { class: "panel-head" }, h("h2", { text: "Signal fields" }),
          h("span", { class: "hint", text: "differences the candidate introduced beyond the primary/secondary noise" })),
        table, empty),
      h("section", { class: "panel" },
        h("header", { class: "panel-head" }, h("h2", { text: "Endpoints" }),
          h("span", { class: "hint", text: "worst first: signal, then by share of differing requests" })),
        epTable));
    const slowList = h("ul", { class: "slower-list" });
    const slowPanel = h("section", { class: "panel slower-panel" },
      h("header", { class: "panel-head" }, h("h2", { text: "Slower endpoints" }),
        h("span", { class: "hint", text: "the candidate is slower than primary beyond the primary/secondary noise (p50 or p99)" })),
      slowList);
    slowPanel.hidden = true;
    root.insertBefore(slowPanel, root.children[3]);
    const rows = new Map();
    const epRows = new Map();

    async function updateSlower() {
      const listed = await api("endpoints");
      const slower = Object.keys(listed).filter((n) => listed[n].latency_verdict === "slower").sort();
      slowList.replaceChildren(...slower.map((n) =>
        h("li", {}, h("a", { href: links.endpoint(n), class: "mono", text: n }), " ",
          h("span", { class: "badge badge-latency-slower", text: "slower" }))));
      slowPanel.hidden = slower.length === 0;
    }

    function updateEndpoints(list) {
      const nodes = list.map((ep) => {
        let row = epRows.get(ep.name);
        if (!row) {
          row = { tr: h("tr", {}), badge: h("span", { class: "badge" }), cells: [] };
          row.tr.append(h("td", {}, h("a", { href: links.endpoint(ep.name), class: "mono", text: ep.name })), h("td", {}, row.badge));
          for (let i = 0; i < 5; i += 1) row.cells.push(row.tr.appendChild(h("td", { class: "num" })));
          epRows.set(ep.name, row);
        }
        const fields = Object.values(ep.fields);
        const signal = fields.filter((f) => f.signal).length;
        row.tr.className = `row-${ep.verdict}`;
        row.badge.className = `badge badge-${ep.verdict}`;
        setText(row.badge, VERDICT_LABEL[ep.verdict]);
        setText(row.cells[0], fmtInt(ep.total));
        setText(row.cells[1], fmtInt(ep.differences));
        setText(row.cells[2], fmtPct(ep.pct));
        setText(row.cells[3], fmtInt(signal));
        setText(row.cells[4], fmtInt(fields.length - signal));
        return row.tr;
      });
      for (const name of [...epRows.keys()]) if (!(name in store.overview)) epRows.delete(name);
      reconcile(epBody, nodes);
      epTable.parentElement.hidden = nodes.length === 0;
    }

    async function refresh() {
      const list = endpoints();
      const total = list.reduce((s, ep) => s + ep.total, 0);
      // The headline keeps signal and noise apart: requests that differ only where the two
      // masters differ too are not a finding.
      const onSignal = list.filter((ep) => ep.verdict === "signal");
      const differing = onSignal.reduce((s, ep) => s + ep.differences, 0);
      const noiseOnly = list.filter((ep) => ep.verdict !== "signal").reduce((s, ep) => s + ep.differences, 0);
      const baseline = list.reduce((s, ep) => s + ep.baselineFailures, 0);
      const signalEndpoints = onSignal.length;
      setText(tiles.endpoints, fmtInt(list.length));
      setText(tiles.total, fmtInt(total));
      setText(tiles.differing, `${fmtInt(differing)} (${fmtPct(pct(differing, total))})`);
      setText(tiles.noise, fmtInt(noiseOnly));
      setText(tiles.baseline, fmtInt(baseline));
      setText(tiles.signal, fmtInt(signalEndpoints));
      setClass(tiles.signal.parentElement, "hot", signalEndpoints > 0);

      const nodes = [];
      const seen = new Set();
      for (const ep of list) {
        for (const f of sortFields(ep.fields).filter((x) => x.signal)) {
          const key = `${ep.name}\u0000${f.path}`;
          seen.add(key);
          let row = rows.get(key);
          if (!row) {
            row = { tr: h("tr", { class: "row-signal" }), cells: [] };
            row.tr.append(
              h("td", {}, h("a", { href: links.endpoint(ep.name), class: "mono", text: ep.name })),
              h("td", {}, h("a", { href: links.field(ep.name, f.path), class: "mono strong", text: f.path })));
            for (let i = 0; i < 4; i += 1) row.cells.push(row.tr.appendChild(h("td", { class: "num" })));
            rows.set(key, row);
          }
          setText(row.cells[0], fmtInt(f.differences));
          setText(row.cells[1], fmtInt(f.noise));
          setText(row.cells[2], fmtPct(f.relative_difference));
          setText(row.cells[3], fmtPct(f.absolute_difference, 2));
          nodes.push(row.tr);
        }
      }
      for (const key of [...rows.keys()]) if (!seen.has(key)) rows.delete(key);
      reconcile(body, nodes);
      table.hidden = nodes.length === 0;
      const text = list.length === 0
        ? "No traffic compared yet. Requests sent to the proxy port are forwarded to primary, secondary and candidate, and their differences appear here."
        : nodes.length === 0
          ? "No signal. Every difference seen so far is explained by noise (primary and secondary disagree just as often)."
          : "";
      setText(empty, text);
      empty.hidden = !text;
      updateEndpoints(list);
      await updateSlower();
    }

    return { root, refresh, title: "Overview" };
  }

  // ---------------------------------------------------------------- latency (issue 14)

  const SVG_NS = "http://www.w3.org/2000/svg";
  const LATENCY_TARGETS = ["primary", "secondary", "candidate"];
  const LATENCY_LABEL = { slower: "slower", faster: "faster", same: "same latency", insufficient: "too few samples" };

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") el.textContent = value;
      else el.setAttribute(key, String(value));
    }
    for (const child of children) el.append(child);
    return el;
  }

  const fmtMs = (v) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(1)} ms`);

  // Three distributions side by side on one scale: a bar from p50 to p99 per target, a
  // mark at p90, the numbers as text. Built with DOM APIs only (no framework, no markup).
  function latencyChart(data) {
    const width = 660, row = 34, left = 90, right = 220;
    const top = Math.max(1, ...LATENCY_TARGETS.map((t) => (data[t] || {}).p99_ms || 0));
    const x = (v) => left + ((width - left - right) * v) / top;
    const chart = svg("svg", { class: "latency-chart", viewBox: `0 0 ${width} ${row * 3 + 20}`,
      width, height: row * 3 + 20, role: "img", "aria-label": "p50, p90 and p99 per target" });
    LATENCY_TARGETS.forEach((target, i) => {
      const d = data[target] || {};
      const y = 14 + i * row;
      chart.append(svg("text", { x: 0, y: y + 12, class: "latency-label", text: target }));
      if (d.p50_ms !== null && d.p50_ms !== undefined) {
        chart.append(
          svg("rect", { x: x(d.p50_ms), y, width: Math.max(2, x(d.p99_ms) - x(d.p50_ms)), height: 16,
            class: `latency-bar latency-${target}` }),
          svg("rect", { x: x(d.p90_ms) - 1, y: y - 2, width: 2, height: 20, class: "latency-p90" }));
      }
      chart.append(svg("text", { x: width - right + 8, y: y + 12, class: "latency-value",
        text: `p50 ${fmtMs(d.p50_ms)} · p99 ${fmtMs(d.p99_ms)}` }));
    });
    chart.append(svg("text", { x: left, y: row * 3 + 16, class: "latency-axis", text: "0" }),
      svg("text", { x: width - right, y: row * 3 + 16, class: "latency-axis", "text-anchor": "end", text: fmtMs(top) }));
    return chart;
  }

  function latencyPanel(epName) {
    const badge = h("span", { class: "badge" });
    const counts = h("span", { class: "hint" });
    const holder = h("div", { class: "latency-holder" });
    const panel = h("section", { class: "panel latency-panel" },
      h("header", { class: "panel-head" }, h("h2", { text: "Latency" }), badge, counts,
        h("span", { class: "hint", text: "bar: p50 to p99, mark: p90; slower means beyond the primary/secondary noise" })),
      holder);
    async function refresh() {
      let data;
      try {
        data = await api(`endpoints/${enc(epName)}/latency`);
      } catch (err) {
        if (err.status === 404) { panel.hidden = true; return; }
        throw err;
      }
      panel.hidden = false;
      badge.className = `badge badge-latency-${data.verdict}`;
      setText(badge, LATENCY_LABEL[data.verdict] || data.verdict);
      setText(counts, LATENCY_TARGETS.map((t) => `${t} ${fmtInt((data[t] || {}).count)}`).join(" · "));
      holder.replaceChildren(latencyChart(data));
    }
    return { panel, refresh };
  }

  // ---------------------------------------------------------------- endpoint view

  function endpointHeader(epName) {
    const el = {
      badge: h("span", { class: "badge" }),
      total: h("div", { class: "stat-value" }),
      differing: h("div", { class: "stat-value" }),
      signal: h("div", { class: "stat-value" }),
      noise: h("div", { class: "stat-value" }),
    };
    el.root = h("div", { class: "view-head" },
      h("h1", {}, h("span", { class: "mono", text: epName }), el.badge),
      h("div", { class: "stats" },
        stat("Requests", el.total), stat("Differing", el.differing),
        stat("Signal fields", el.signal, "stat-signal"), stat("Noise fields", el.noise, "stat-noise")));
    el.update = () => {
      const ep = endpoints().find((e) => e.name === epName);
      if (!ep) {
        el.badge.className = "badge badge-none";
        setText(el.badge, "no results");
        for (const k of ["total", "differing", "signal", "noise"]) setText(el[k], "–");
        return null;
      }
      el.badge.className = `badge badge-${ep.verdict}`;
      setText(el.badge, VERDICT_LABEL[ep.verdict]);
      const fields = Object.values(ep.fields);
      const signal = fields.filter((f) => f.signal).length;
      setText(el.total, fmtInt(ep.total));
      setText(el.differing, `${fmtInt(ep.differences)} (${fmtPct(ep.pct)})`);
      setText(el.signal, fmtInt(signal));
      setText(el.noise, fmtInt(fields.length - signal));
      setClass(el.signal.parentElement, "hot", signal > 0);
      return ep;
    };
    return el;
  }

  function thresholds() {
    const t = (store.info && store.info.thresholds) || {};
    return { relative: Number(t.relative ?? 20), absolute: Number(t.absolute ?? 0.03) };
  }

  function fieldsTable(epName) {
    const body = h("tbody");
    const table = h("table", { class: "grid fields-table" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: "Field" }),
        h("th", { scope: "col", text: "Verdict" }),
        h("th", { scope: "col", class: "bars-col", text: "Share of requests", title: "red: primary and candidate disagree; amber: primary and secondary disagree" }),
        h("th", { scope: "col", class: "num", text: "Differences", title: "requests where primary and candidate disagree on this field" }),
        h("th", { scope: "col", class: "num", text: "Noise", title: "requests where primary and secondary disagree on this field" }),
        h("th", { scope: "col", class: "num", text: "Relative", title: "|differences − noise| / (differences + noise)" }),
        h("th", { scope: "col", class: "num", text: "Absolute", title: "|differences − noise| / requests" }))),
      body);
    const rows = new Map();

    function update(fields, total) {
      const limits = thresholds();
      const nodes = sortFields(fields).map((f) => {
        let row = rows.get(f.path);
        if (!row) {
          row = {
            tr: h("tr", { dataset: { field: f.path } }),
            badge: h("span", { class: "badge" }),
            raw: h("progress", { class: "bar bar-raw", max: "100", value: "0" }),
            noise: h("progress", { class: "bar bar-noise", max: "100", value: "0" }),
            cells: [],
          };
          row.tr.append(
            h("td", { class: "field-name" }, h("a", { href: links.field(epName, f.path), class: "mono", text: f.path })),
            h("td", {}, row.badge),
            h("td", { class: "bars" }, row.raw, row.noise));
          for (let i = 0; i < 4; i += 1) row.cells.push(row.tr.appendChild(h("td", { class: "num" })));
          rows.set(f.path, row);
        }
        const verdict = f.signal ? "signal" : "noise";
        row.tr.className = `row-${verdict}`;
        row.badge.className = `badge badge-${verdict}`;
        setText(row.badge, verdict);
        row.raw.value = Math.min(100, pct(f.differences, total));
        row.noise.value = Math.min(100, pct(f.noise, total));
        row.raw.title = `${fmtPct(pct(f.differences, total))} of requests differ on this field`;
        row.noise.title = `${fmtPct(pct(f.noise, total))} of requests show noise on this field`;
        setText(row.cells[0], fmtInt(f.differences));
        setText(row.cells[1], fmtInt(f.noise));
        // Percentages only say something about signal: on a noise field they measure how much
        // the masters disagree, which is not a finding, so they are muted (and blank when
        // primary and candidate never differed there at all).
        const noiseOnly = !f.differences;
        setText(row.cells[2], noiseOnly ? "—" : fmtPct(f.relative_difference));
        setText(row.cells[3], noiseOnly ? "—" : fmtPct(f.absolute_difference, 2));
        for (const cell of [row.cells[2], row.cells[3]]) {
          setClass(cell, "muted", !f.signal);
          cell.title = noiseOnly ? "noise only: primary and candidate never differed here" : "";
        }
        setClass(row.cells[2], "over", f.signal && f.relative_difference > limits.relative);
        setClass(row.cells[3], "over", f.signal && f.absolute_difference > limits.absolute);
        return row.tr;
      });
      for (const path of [...rows.keys()]) if (!(fields && path in fields)) rows.delete(path);
      reconcile(body, nodes);
      table.hidden = nodes.length === 0;
      return nodes.length;
    }

    return { table, update };
  }

  // On the endpoint page: the newest examples of its worst field, one click from the detail.
  function latestExamples(epName) {
    const title = h("span", { class: "mono" });
    const more = h("a", { class: "more" });
    const slot = h("div");
    const panel = h("section", { class: "panel", hidden: true },
      h("header", { class: "panel-head" }, h("h2", {}, "Latest examples of ", title),
        h("span", { class: "hint", text: "newest first" }), more),
      slot);
    let field = null;
    let table = null;

    async function show(path) {
      if (path !== field) {
        field = path;
        table = path ? examplesTable(epName, path) : null;
        slot.replaceChildren(...(table ? [table.table] : []));
        setText(title, path || "");
        if (path) {
          more.href = links.field(epName, path);
          setText(more, "all examples of this field →");
        }
      }
      if (!table) {
        panel.hidden = true;
        return;
      }
      let data;
      try {
        data = await api(`endpoints/${enc(epName)}/fields/${enc(field)}/results`);
      } catch (err) {
        if (err.status !== 404) throw err;
        data = { requests: [] };
      }
      if (path !== field) return;  // the worst field changed while this was loading
      panel.hidden = table.update(data.requests || [], 5) === 0;
    }

    return { panel, show };
  }

  function endpointView(route) {
    const epName = route.ep;
    const head = endpointHeader(epName);
    const fields = fieldsTable(epName);
    const toggle = h("input", { type: "checkbox", id: "noise-toggle", class: "switch" });
    toggle.checked = store.showNoise;
    const empty = h("div", { class: "empty-state" });
    const latest = latestExamples(epName);
    const latency = latencyPanel(epName);
    const root = h("section", { class: "view view-endpoint" },
      crumbs({ text: "Overview", href: links.overview() }, { text: epName }),
      head.root,
      latency.panel,
      h("section", { class: "panel" },
        h("header", { class: "panel-head" },
          h("h2", { text: "Fields" }),
          h("span", { class: "hint", text: "signal first; open a field for example requests" }),
          h("label", { class: "toggle", for: "noise-toggle" }, toggle, h("span", { text: "Show noise" }))),
        fields.table, empty),
      latest.panel);

    let seq = 0;
    function gone() {
      latency.panel.hidden = true;
      fields.update({}, 0);
      latest.show(null);
      setText(empty, "No results for this endpoint. It has not seen traffic since results were last cleared.");
      empty.hidden = false;
    }

    async function refresh() {
      const ep = head.update();
      const mine = ++seq;
      // Known to be gone (e.g. cleared from another tab): say so without asking the API.
      if (store.loaded && !ep) {
        gone();
        return;
      }
      latency.refresh().catch(reportError);
      let stats;
      try {
        stats = await api(`endpoints/${enc(epName)}/stats?exclude_noise=${!store.showNoise}`);
      } catch (err) {
        if (mine !== seq) return;
        if (err.status === 404) {
          gone();
          return;
        }
        throw err;
      }
      if (mine !== seq) return;  // a newer request (e.g. the noise toggle) already answered
      const shown = fields.update(stats.fields || {}, (stats.endpoint || {}).total || 0);
      const top = sortFields(stats.fields || {})[0];
      await latest.show(top ? top.path : null);
      const all = ep ? Object.values(ep.fields) : [];
      const hiddenNoise = store.showNoise ? 0 : all.filter((f) => !f.signal).length;
      let text = "";
      if (shown === 0 && hiddenNoise > 0) text = `No signal fields. ${hiddenNoise} noise field${hiddenNoise === 1 ? " is" : "s are"} hidden; turn on “Show noise” to see ${hiddenNoise === 1 ? "it" : "them"}.`;
      else if (shown === 0) text = "No differing fields: primary and candidate agree on every request so far.";
      setText(empty, text);
      empty.hidden = !text;
    }

    toggle.addEventListener("change", () => {
      store.showNoise = toggle.checked;
      writePref("showNoise", store.showNoise);
      refresh().catch(reportError);
    });

    return { root, refresh, title: epName };
  }

  // ---------------------------------------------------------------- field view

  // The example requests kept for one field, newest first, updated in place.
  function examplesTable(epName, field) {
    const body = h("tbody");
    const table = h("table", { class: "grid examples-table" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: "Time" }),
        h("th", { scope: "col", text: "Request" }),
        h("th", { scope: "col", text: "Change" }),
        h("th", { scope: "col", text: "Primary" }),
        h("th", { scope: "col", text: "Candidate" }))),
      body);
    const rows = new Map();

    function row(r) {
      const id = String(r.id);
      const raw = (r.differences || {})[field];
      const noise = (r.noise || {})[field];
      const diff = raw || noise || {};
      const kind = raw ? (diff.type || "changed") : noise ? "noise" : "—";
      const request = `${r.method || ""} ${r.uri || ""}`.trim() || id;
      const tr = h("tr", { dataset: { id } },
        h("td", { class: "nowrap", title: r.timestamp_msec ? fmtStamp(r.timestamp_msec) : "", text: r.timestamp_msec ? fmtTime(r.timestamp_msec) : "–" }),
        h("td", { class: "req", title: request }, h("a", { href: links.example(epName, field, id), class: "mono", text: request })),
        h("td", {}, h("span", { class: `chip chip-${raw ? kind : "noise"}`, text: kind })),
        ...(raw && diff.type === "moved"
          ? [h("td", { class: "val mono moved-line", colspan: "2", text: `moved ${diff.left} -> ${diff.right}` })]
          : [h("td", { class: "val mono left", text: short(diff.left) }),
            h("td", { class: "val mono right", text: raw ? short(diff.right) : "same as primary" })]));
      // The whole row opens the example; the link inside keeps it keyboard-reachable.
      tr.addEventListener("click", (event) => {
        if (event.target.closest("a")) return;
        window.location.hash = links.example(epName, field, id);
      });
      return tr;
    }

    function update(results, limit) {
      // Examples where this field differs between primary and candidate come first, so the
      // one shown explains the field; noise-only examples follow.
      const differs = (r) => Number(Boolean((r.differences || {})[field]));
      const newest = results.slice().sort((a, b) => differs(b) - differs(a) ||
        (b.timestamp_msec || 0) - (a.timestamp_msec || 0)).slice(0, limit || undefined);
      const nodes = newest.map((r) => {
        const id = String(r.id);
        if (!rows.has(id)) rows.set(id, row(r));
        return rows.get(id);
      });
      const keep = new Set(newest.map((r) => String(r.id)));
      for (const id of [...rows.keys()]) if (!keep.has(id)) rows.delete(id);
      reconcile(body, nodes);
      table.hidden = nodes.length === 0;
      return nodes.length;
    }

    function select(selectedId) {
      for (const [id, r] of rows) {
        setClass(r, "selected", id === selectedId);
        if (id === selectedId) r.setAttribute("aria-current", "true");
        else r.removeAttribute("aria-current");
      }
    }

    return { table, update, select };
  }

  function fieldView(route) {
    const { ep: epName, field } = route;
    const head = endpointHeader(epName);
    const fieldStats = {
      badge: h("span", { class: "badge" }),
      line: h("span", { class: "field-stats" }),
    };
    const examples = examplesTable(epName, field);
    const empty = h("div", { class: "empty-state", hidden: true });
    const detail = h("div", { class: "example-slot" });
    const root = h("section", { class: "view view-field" },
      crumbs({ text: "Overview", href: links.overview() }, { text: epName, href: links.endpoint(epName) }, { text: field }),
      head.root,
      h("section", { class: "panel" },
        h("header", { class: "panel-head" },
          h("h2", {}, "Field ", h("span", { class: "mono", text: field })), fieldStats.badge, fieldStats.line),
        examples.table, empty),
      detail);

    const cache = new Map();
    let selected = null;
    let shownId = null;

    function markSelected() {
      examples.select(selected);
    }

    function updateFieldStats(ep) {
      const f = ep && ep.fields[field];
      if (!f) {
        fieldStats.badge.className = "badge badge-none";
        setText(fieldStats.badge, "no results");
        setText(fieldStats.line, "");
        return;
      }
      const verdict = f.signal ? "signal" : "noise";
      fieldStats.badge.className = `badge badge-${verdict}`;
      setText(fieldStats.badge, verdict);
      setText(fieldStats.line, `${fmtInt(f.differences)} differences · ${fmtInt(f.noise)} noise · relative ${fmtPct(f.relative_difference)} · absolute ${fmtPct(f.absolute_difference, 2)}`);
    }

    async function refresh() {
      const ep = head.update();
      updateFieldStats(ep);
      let data = { requests: [] };
      if (!store.loaded || (ep && ep.fields[field])) {
        try {
          data = await api(`endpoints/${enc(epName)}/fields/${enc(field)}/results?include_request=true`);
        } catch (err) {
          if (err.status !== 404) throw err;
        }
      }
      const results = data.requests || [];
      cache.clear();
      for (const r of results) cache.set(String(r.id), r);
      const shown = examples.update(results, 0);
      markSelected();
      empty.hidden = shown > 0;
      setText(empty, "No example requests stored for this field: results were cleared since.");
      if (selected && shownId !== selected && cache.has(selected)) showExample(selected, false);
    }

    function showExample(id, scroll) {
      shownId = id;
      const cached = cache.get(id);
      const ready = cached && cached.request && cached.primary !== undefined ? Promise.resolve(cached) : api(`requests/${enc(id)}`);
      const placeholder = h("div", { class: "panel loading", text: "Loading example…" });
      detail.replaceChildren(placeholder);
      ready.then((result) => {
        if (shownId !== id) return;
        detail.replaceChildren(exampleDetail(result, { field }));
        if (scroll) detail.scrollIntoView({ block: "start", behavior: "auto" });
      }, (err) => {
        if (shownId !== id) return;
        detail.replaceChildren(h("div", { class: "panel" }, message(err.status === 404
          ? `Example ${id} is no longer stored: results were cleared or it rotated out of the kept samples.`
          : `Could not load example ${id}: ${err.message}`, "error")));
      });
    }

    function setRoute(next, userAction) {
      selected = next.id;
      markSelected();
      if (!selected) {
        shownId = null;
        detail.replaceChildren();
        return;
      }
      if (shownId !== selected) showExample(selected, userAction);
    }

    setRoute(route, false);
    return {
      root, refresh, title: `${field} · ${epName}`,
      accepts: (next) => next.name === "field" && next.ep === epName && next.field === field,
      setRoute,
    };
  }

  // ---------------------------------------------------------------- request view

  let activeRequestEndpoint = null;

  function requestView(route) {
    const slot = h("div", { class: "example-slot" }, h("div", { class: "panel loading", text: "Loading example…" }));
    const crumbNav = h("div", {}, crumbs({ text: "Overview", href: links.overview() }, { text: `request ${route.id}` }));
    const root = h("section", { class: "view view-request" }, crumbNav, slot);
    api(`requests/${enc(route.id)}`).then((result) => {
      if (!currentView || currentView.root !== root) return;  // the reader moved on
      activeRequestEndpoint = result.endpoint || null;
      crumbNav.replaceChildren(crumbs(
        { text: "Overview", href: links.overview() },
        result.endpoint ? { text: result.endpoint, href: links.endpoint(result.endpoint) } : null,
        { text: `request ${route.id}` }));
      slot.replaceChildren(exampleDetail(result, {}));
      renderSidebar();
    }, (err) => {
      slot.replaceChildren(h("div", { class: "panel" }, message(err.status === 404
        ? `Request ${route.id} is not stored: results were cleared, or it was not kept as an example.`
        : `Could not load request ${route.id}: ${err.message}`, "error")));
    });
    return { root, refresh: async () => {}, title: `request ${route.id}` };
  }

  // ---------------------------------------------------------------- one example

  function prettyBody(body) {
    if (body === null || body === undefined || body === "") return null;
    if (typeof body === "string") {
      const trimmed = body.trim();
      if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
        try {
          return JSON.stringify(JSON.parse(trimmed), null, 2);
        } catch (_err) {
          return body;
        }
      }
      return body;
    }
    return JSON.stringify(body, null, 2);
  }

  function headerTable(headers) {
    const entries = Array.isArray(headers) ? headers : Object.entries(headers || {});
    if (!entries.length) return message("No headers.", "muted");
    const body = h("tbody");
    for (const [name, value] of entries.slice().sort((a, b) => String(a[0]).localeCompare(String(b[0])))) {
      const values = Array.isArray(value) ? value : [value];
      for (const v of values) {
        const text = typeof v === "string" ? v : JSON.stringify(v);
        body.append(h("tr", {},
          h("th", { scope: "row", class: "mono", text: name }),
          h("td", { class: `mono${text === "<redacted>" ? " redacted" : ""}`, text })));
      }
    }
    return h("table", { class: "kv" }, body);
  }

  function joinPath(base, key) {
    return base ? `${base}.${key}` : String(key);
  }

  // Pretty-prints like JSON.stringify(v, null, 2) but remembers each line's field path
  // (dict keys joined by ".", array indexes dropped), the same paths the API reports.
  function jsonLines(value, path, out, indent, prefix, comma) {
    const pad = "  ".repeat(indent);
    if (value !== null && typeof value === "object") {
      const isArray = Array.isArray(value);
      const entries = isArray ? value.map((v) => [null, v]) : Object.entries(value);
      const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
      if (entries.length === 0) {
        out.push({ text: `${pad}${prefix}${open}${close}${comma}`, path });
        return;
      }
      out.push({ text: `${pad}${prefix}${open}`, path, container: true });
      entries.forEach(([key, child], i) => {
        const childPath = isArray ? path : joinPath(path, key);
        const childPrefix = isArray ? "" : `${JSON.stringify(key)}: `;
        jsonLines(child, childPath, out, indent + 1, childPrefix, i < entries.length - 1 ? "," : "");
      });
      out.push({ text: `${pad}${close}${comma}`, path, container: true });
      return;
    }
    out.push({ text: `${pad}${prefix}${JSON.stringify(value)}${comma}`, path });
  }

  function responseLines(resp) {
    const out = [];
    if (!resp) {
      out.push({ text: "(no response recorded)", path: "error", muted: true });
      return out;
    }
    if (resp.error) {
      out.push({ text: `error: ${resp.error}${resp.error_detail ? ` (${resp.error_detail})` : ""}`, path: "error" });
    }
    if (resp.status !== null && resp.status !== undefined) out.push({ text: `HTTP ${resp.status}`, path: "status" });
    const headers = Object.entries(resp.headers || {}).sort((a, b) => a[0].localeCompare(b[0]));
    for (const [name, value] of headers) {
      out.push({ text: `${name}: ${typeof value === "string" ? value : JSON.stringify(value)}`, path: `headers.${name}` });
    }
    const body = resp.body;
    if (body === undefined || body === null || body === "") {
      if (resp.status !== null && resp.status !== undefined) out.push({ text: "", path: "" }, { text: "(empty body)", path: "body", muted: true });
      return out;
    }
    out.push({ text: "", path: "" });
    const bodyStart = out.length;
    if (typeof body === "string") {
      for (const line of body.split(/\r?\n/)) out.push({ text: line, path: "body" });
    } else {
      jsonLines(body, "body", out, 0, "", "");
    }
    for (let i = bodyStart; i < out.length; i += 1) out[i].inBody = true;
    return out;
  }

  // Lines that a minimal edit script would delete from `a` / insert into `b` (LCS), after
  // trimming the common head and tail; beyond the cell budget the middle counts as changed.
  function lineDiff(a, b) {
    const changedA = new Set();
    const changedB = new Set();
    let start = 0;
    while (start < a.length && start < b.length && a[start] === b[start]) start += 1;
    let endA = a.length;
    let endB = b.length;
    while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
      endA -= 1;
      endB -= 1;
    }
    const n = endA - start;
    const m = endB - start;
    if (n === 0 || m === 0 || n * m > MAX_DIFF_CELLS) {
      for (let i = start; i < endA; i += 1) changedA.add(i);
      for (let j = start; j < endB; j += 1) changedB.add(j);
      return { changedA, changedB };
    }
    const width = m + 1;
    const table = new Uint32Array((n + 1) * width);
    for (let i = n - 1; i >= 0; i -= 1) {
      for (let j = m - 1; j >= 0; j -= 1) {
        table[i * width + j] = a[start + i] === b[start + j]
          ? table[(i + 1) * width + j + 1] + 1
          : Math.max(table[(i + 1) * width + j], table[i * width + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (a[start + i] === b[start + j]) {
        i += 1;
        j += 1;
      } else if (table[(i + 1) * width + j] >= table[i * width + j + 1]) {
        changedA.add(start + i);
        i += 1;
      } else {
        changedB.add(start + j);
        j += 1;
      }
    }
    for (; i < n; i += 1) changedA.add(start + i);
    for (; j < m; j += 1) changedB.add(start + j);
    return { changedA, changedB };
  }

  // Status and header lines are left to the field list: volatile headers (date, server,
  // content-length) differ on every request and the proxy ignores them. Bodies get a line
  // diff on top, so a change inside a long value still shows.
  function bodyLineDiff(a, b) {
    const startA = a.findIndex((l) => l.inBody);
    const startB = b.findIndex((l) => l.inBody);
    const bodyA = startA < 0 ? [] : a.slice(startA).map((l) => l.text);
    const bodyB = startB < 0 ? [] : b.slice(startB).map((l) => l.text);
    const d = lineDiff(bodyA, bodyB);
    return {
      changedA: new Set([...d.changedA].map((i) => i + startA)),
      changedB: new Set([...d.changedB].map((j) => j + startB)),
    };
  }

  function isDifferingField(path, differingPaths) {
    if (!path || !differingPaths) return false;
    return differingPaths.some((d) => path === d || path.startsWith(`${d}.`));
  }

  function codeBlock(lines, changed, changeClass, differingPaths, focusField) {
    const pre = h("div", { class: "code", role: "region" });
    const shown = lines.slice(0, MAX_LINES);
    shown.forEach((line, index) => {
      let cls = "line";
      if (line.muted) cls += " muted";
      const field = !line.container && isDifferingField(line.path, differingPaths);
      if (changed.has(index) || field) cls += ` ${changeClass}`;
      if (field) cls += " fld";
      if (focusField && !line.container && isDifferingField(line.path, [focusField])) cls += " focus";
      const row = h("div", { class: cls },
        h("span", { class: "ln", "aria-hidden": "true", text: String(index + 1) }),
        h("span", { class: "tx", text: line.text === "" ? "\u200b" : line.text }));
      if (line.path) row.dataset.path = line.path;
      pre.append(row);
    });
    if (lines.length > shown.length) {
      pre.append(h("div", { class: "line muted" }, h("span", { class: "ln" }), h("span", { class: "tx", text: `… ${fmtInt(lines.length - shown.length)} more lines not shown` })));
    }
    return pre;
  }

  function statusChip(resp) {
    if (!resp) return h("span", { class: "chip chip-error", text: "none" });
    if (resp.error) return h("span", { class: "chip chip-error", text: resp.error });
    const s = Number(resp.status);
    const kind = s >= 500 ? "error" : s >= 400 ? "warn" : s >= 300 ? "info" : "ok";
    return h("span", { class: `chip chip-${kind}`, text: String(resp.status) });
  }

  // ---------------------------------------------------------------- copy as curl

  const CURL_SKIPPED = new Set(["host", "content-length", "connection", "transfer-encoding", "keep-alive", "te", "upgrade"]);

  function shellQuote(s) {
    return `'${String(s).replace(/'/g, "'\\''")}'`;
  }

  // The request as the proxy stored it (secrets already masked), as a curl command line.
  function curlCommand(req, protocol) {
    const headers = Object.entries(req.headers || {});
    const host = (headers.find(([k]) => k.toLowerCase() === "host") || [null, "HOST"])[1];
    const method = String(req.method || "GET").toUpperCase();
    const parts = ["curl"];
    if (method !== "GET") parts.push("-X", shellQuote(method));
    parts.push(shellQuote(`${String(protocol || "http").toLowerCase()}://${host}${req.uri || "/"}`));
    let contentType = "";
    for (const [name, value] of headers.sort((a, b) => a[0].localeCompare(b[0]))) {
      if (CURL_SKIPPED.has(name.toLowerCase())) continue;
      if (name.toLowerCase() === "content-type") contentType = String(value).toLowerCase();
      parts.push("-H", shellQuote(`${name}: ${typeof value === "string" ? value : JSON.stringify(value)}`));
    }
    const body = req.body;
    if (body !== null && body !== undefined && body !== "") {
      let data;
      if (typeof body === "string") data = body;
      else if (contentType.includes("x-www-form-urlencoded") && typeof body === "object" && !Array.isArray(body)) {
        const form = new URLSearchParams();
        for (const [k, v] of Object.entries(body)) for (const one of Array.isArray(v) ? v : [v]) form.append(k, String(one));
        data = form.toString();
      } else data = JSON.stringify(body);
      parts.push("--data-raw", shellQuote(data));
    }
    return parts.join(" ");
  }

  function copyFallback(text, slot) {
    // No clipboard API (plain http, or permission refused): a selected text area to copy by hand.
    const area = h("textarea", { class: "curl-fallback mono", readonly: true, rows: "4", "aria-label": "curl command" });
    area.value = text;
    slot.replaceChildren(area, h("span", { class: "hint", text: "Press Ctrl+C (⌘C) to copy." }));
    area.focus();
    area.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (_err) {
      copied = false;
    }
    return copied;
  }

  function curlControl(req) {
    const status = h("span", { class: "curl-status hint", role: "status" });
    const slot = h("div", { class: "curl-slot" });
    const button = h("button", { type: "button", class: "btn btn-ghost curl-button", title: "Copy this request as a curl command (secrets stay masked)", text: "Copy as curl" });
    button.addEventListener("click", async () => {
      const text = curlCommand(req, store.info && store.info.protocol);
      slot.replaceChildren(h("pre", { class: "code-plain mono curl-command", text }));
      let copied = false;
      if (navigator.clipboard && window.isSecureContext) {
        try {
          await navigator.clipboard.writeText(text);
          copied = true;
        } catch (_err) {
          copied = false;
        }
      }
      if (!copied) copied = copyFallback(text, slot);
      setText(status, copied ? "Copied." : "Select the command to copy it.");
    });
    return { button, status, slot };
  }

  // "missing (12 fields)": a whole subtree is one change, with how many values it held.
  function changeLabel(d) {
    const type = d.type || "changed";
    return d.leaves > 1 ? `${type} (${fmtInt(d.leaves)} fields)` : type;
  }

  function exampleDetail(result, context) {
    const differences = result.differences || {};
    const differingPaths = Object.keys(differences);
    const primary = result.primary !== undefined ? result.primary : result.left;
    const candidate = result.candidate !== undefined ? result.candidate : result.right;
    const secondary = result.secondary;
    const req = result.request || { method: result.method, uri: result.uri };
    const id = String(result.id);
    const endpoint = result.endpoint || "";

    // Request
    const reqBody = prettyBody(req.body);
    const curl = curlControl(req);
    const requestPanel = h("section", { class: "panel request-panel" },
      h("header", { class: "panel-head" },
        h("h2", { text: "Request" }),
        h("span", { class: "req-line mono" }, h("span", { class: "method", text: req.method || result.method || "?" }), " ", h("span", { text: req.uri || result.uri || "" })),
        curl.button, curl.status),
      curl.slot,
      h("div", { class: "request-body" },
        h("div", {}, h("h3", { text: "Headers" }), headerTable(req.headers)),
        h("div", {}, h("h3", { text: "Body" }),
          reqBody === null ? message("No body.", "muted") : h("pre", { class: "code-plain mono", text: reqBody }))));

    // Differences
    const dbody = h("tbody");
    for (const path of differingPaths.sort()) {
      const d = differences[path] || {};
      const target = endpoint ? links.field(endpoint, path) : null;
      const fieldCell = h("td", {}, target ? h("a", { href: target, class: "mono", text: path }) : h("span", { class: "mono", text: path }));
      const chip = h("td", {}, h("span", { class: `chip chip-${d.type || "changed"}`, text: changeLabel(d) }));
      dbody.append(d.type === "moved"
        // one change, one line: a subtree under a new root
        ? h("tr", { class: `moved${path === context.field ? " selected" : ""}` }, fieldCell, chip,
          h("td", { class: "val mono moved-line", colspan: "2", text: `moved ${d.left} -> ${d.right}` }))
        : h("tr", { class: path === context.field ? "selected" : "" }, fieldCell, chip,
          h("td", { class: "val mono left", text: short(d.left, 400) }),
          h("td", { class: "val mono right", text: short(d.right, 400) })));
    }
    const diffPanel = h("section", { class: "panel" },
      h("header", { class: "panel-head" }, h("h2", { text: "Differences" }),
        h("span", { class: "hint", text: "primary vs candidate, as the proxy recorded them" })),
      differingPaths.length
        ? h("table", { class: "grid diff-table" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Field" }), h("th", { scope: "col", text: "Change" }),
            h("th", { scope: "col", text: "Primary" }), h("th", { scope: "col", text: "Candidate" }))), dbody)
        : message("Primary and candidate agreed on this request.", "muted"));

    // Responses side by side: primary always left, candidate always right.
    const pLines = responseLines(primary);
    const sLines = responseLines(secondary);
    const cLines = responseLines(candidate);
    const pc = bodyLineDiff(pLines, cLines);
    const ps = bodyLineDiff(pLines, sLines);
    const noisePaths = Object.keys(result.noise || {});
    const column = (role, resp, block) => h("div", { class: `col col-${role}`, dataset: { role } },
      h("div", { class: "col-head" }, h("span", { class: "col-role", text: role }), statusChip(resp),
        h("span", { class: "col-addr mono", text: ((store.info && store.info.targets) || {})[role]?.address || "" })),
      block);
    const secondaryToggle = h("input", { type: "checkbox", id: "secondary-toggle", class: "switch" });
    secondaryToggle.checked = store.showSecondary;
    const columns = h("div", { class: "columns" },
      column("primary", primary, codeBlock(pLines, pc.changedA, "del", differingPaths, context.field)),
      column("secondary", secondary, codeBlock(sLines, ps.changedB, "noise", noisePaths, null)),
      column("candidate", candidate, codeBlock(cLines, pc.changedB, "add", differingPaths, context.field)));
    setClass(columns, "no-secondary", !store.showSecondary);
    secondaryToggle.addEventListener("change", () => {
      store.showSecondary = secondaryToggle.checked;
      writePref("showSecondary", store.showSecondary);
      setClass(columns, "no-secondary", !store.showSecondary);
    });
    const responsesPanel = h("section", { class: "panel responses-panel" },
      h("header", { class: "panel-head" },
        h("h2", { text: "Responses" }),
        h("span", { class: "legend" },
          h("span", { class: "key key-del", text: "primary only" }),
          h("span", { class: "key key-add", text: "candidate only" }),
          h("span", { class: "key key-fld", text: "differing field" }),
          h("span", { class: "key key-noise", text: "secondary differs from primary" })),
        h("label", { class: "toggle", for: "secondary-toggle" }, secondaryToggle, h("span", { text: "Show secondary" }))),
      columns);

    const meta = h("div", { class: "example-meta" },
      h("h2", {}, "Example ", h("a", { href: links.request(id), class: "mono permalink", title: "Permanent link to this request", text: `#${id}` })),
      h("span", { class: "meta-item", text: result.timestamp_msec ? fmtStamp(result.timestamp_msec) : "" }),
      endpoint ? h("a", { class: "meta-item mono", href: links.endpoint(endpoint), text: endpoint }) : null,
      result.trace_id && result.trace_id !== result.id ? h("span", { class: "meta-item mono", title: "trace id", text: `trace ${result.trace_id}` }) : null);

    return h("article", { class: "example", dataset: { id } }, meta, requestPanel, diffPanel, responsesPanel);
  }

  // ---------------------------------------------------------------- view switching

  let currentRoute = { name: "overview" };
  let currentView = null;

  function buildView(route) {
    activeRequestEndpoint = null;
    switch (route.name) {
      case "overview": return overviewView();
      case "endpoint": return endpointView(route);
      case "field": return fieldView(route);
      case "request": return requestView(route);
      default: return {
        root: h("section", { class: "view" }, crumbs({ text: "Overview", href: links.overview() }, { text: "Not found" }),
          h("div", { class: "panel" }, message(`This link does not point to a console view: ${route.hash}`, "error"))),
        refresh: async () => {},
        title: "Not found",
      };
    }
  }

  function route() {
    const next = parseRoute(window.location.hash);
    if (currentView && currentView.accepts && currentView.accepts(next)) {
      currentRoute = next;
      currentView.setRoute(next, true);
      return;
    }
    currentRoute = next;
    currentView = buildView(next);
    const main = $("main");
    main.replaceChildren(currentView.root);
    window.scrollTo(0, 0);
    document.title = `${currentView.title} · ${(store.info && store.info.name) || "diffproxy"}`;
    renderSidebar();
    currentView.refresh().catch(reportError);
  }

  function reportError(err) {
    showBanner(err && err.message ? err.message : String(err));
  }

  // ---------------------------------------------------------------- polling

  let timer = null;
  let inFlight = false;
  let again = false;
  let held = false;

  // This page's own clear waits for the poll under way and holds the next one: a poll that
  // read the overview before the clear would ask for endpoints that are gone (404s).
  function holdPolls() {
    held = true;
    return new Promise((resolve) => {
      const check = () => (inFlight ? setTimeout(check, 20) : resolve());
      check();
    });
  }

  function releasePolls() {
    held = false;
    again = false;
  }

  async function tick() {
    clearTimeout(timer);
    if (inFlight || held) {
      again = true;
      return;
    }
    if (store.paused || document.hidden) {
      renderLiveStatus(null);
      timer = setTimeout(tick, POLL_MS);
      return;
    }
    inFlight = true;
    try {
      const [info, overview] = await Promise.all([api("info"), api("overview")]);
      store.info = info;
      store.overview = overview || {};
      store.loaded = true;
      store.lastUpdate = Date.now();
      renderHeader();
      renderSidebar();
      if (currentView) await currentView.refresh();
      showBanner("");
      renderLiveStatus(null);
    } catch (err) {
      reportError(err);
      renderLiveStatus(err);
    } finally {
      inFlight = false;
      if (again) {
        again = false;
        timer = setTimeout(tick, 0);
      } else {
        timer = setTimeout(tick, POLL_MS);
      }
    }
  }

  // ---------------------------------------------------------------- clear

  function setupClear() {
    const dialog = $("clear-dialog");
    const tokenRow = $("clear-token-row");
    const tokenInput = $("clear-token");
    const error = $("clear-error");

    function open(problem) {
      dialog.returnValue = "";
      setText(error, problem || "");
      error.hidden = !problem;
      dialog.showModal();
      if (!tokenRow.hidden) tokenInput.focus();
      else $("clear-cancel").focus();
    }

    $("clear-button").addEventListener("click", () => open(""));
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "confirm") return;
      const button = $("clear-button");
      const token = tokenInput.value.trim();
      button.disabled = true;
      await holdPolls();
      try {
        // The token stays in this page's memory only: never stored, never in the URL.
        await api("clear", {
          method: "POST",
          // A custom header: the API refuses state changes a cross-site form could send.
          headers: token
            ? { Accept: "application/json", "X-Diffproxy-Client": "console", Authorization: `Bearer ${token}` }
            : { Accept: "application/json", "X-Diffproxy-Client": "console" },
        });
        store.overview = {};
        if (window.location.hash && window.location.hash !== "#/") window.location.hash = "#/";
        else route();
        renderSidebar();
        releasePolls();
        await tick();
      } catch (err) {
        if (err.status === 401) {
          tokenRow.hidden = false;
          open(token ? "That admin token was not accepted." : "This proxy needs its admin token (-admin.token) to clear results.");
        } else {
          reportError(err);
        }
      } finally {
        if (held) {
          releasePolls();
          tick();
        }
        button.disabled = false;
      }
    });
  }

  // ---------------------------------------------------------------- start

  function start() {
    setupClear();
    const filter = $("endpoint-filter");
    filter.addEventListener("input", applyFilter);
    filter.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        filter.value = "";
        applyFilter();
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "/" && document.activeElement === document.body) {
        event.preventDefault();
        filter.focus();
      }
    });
    const pause = $("pause-button");
    pause.addEventListener("click", () => {
      store.paused = !store.paused;
      pause.setAttribute("aria-pressed", String(store.paused));
      setText(pause, store.paused ? "Resume" : "Pause");
      renderLiveStatus(null);
      if (!store.paused) tick();
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) tick();
    });
    window.addEventListener("hashchange", route);
    route();
    tick();
  }

  start();
})();
