// redial's cluster dashboard: reads the session, then renders every panel
// from the server-sent events of /api/v1/dashboard/stream (state, cdrs,
// series). Rows are updated in place, keyed by data-key, so a focused
// input or an open agent list survives the once-a-second refresh.
// window.dashboard mirrors what the page shows, for tests and for anyone
// debugging from the console.
import {
  $, h, setText, setData, setTitle, setWidth, reconcile, showEmpty,
  num, dash0, fmtInt, fmtPct, fmtDur, fmtClock, fmtWhen, fmtMB, fmtLimit, dispSort, DISP_SHORT,
} from "/dashboard/util.js";
import { initCharts, mergeSeries, resizeCharts } from "/dashboard/charts.js";

const API = "/api/v1/dashboard";
const CDR_ROWS = 100;
// lastCDRAt is pruned beyond this many ids, oldest first, so a wallboard
// left open for weeks does not grow without bound.
const CDR_SEEN_MAX = 5000;

const dash = {
  session: null,
  state: null, // the latest state event, as sent
  cdrs: [], // the CDR rows shown, newest first, filter applied
  lastCDRAt: {}, // cdr_id -> Date.now() when the page first received it
  conn: "connecting", // connecting, live, reconnecting, signed out
  series: { cps: new Map(), dispositions: new Map() },
  filter: { campaign: "", number: "", disposition: "" },
};
window.dashboard = dash;

// serverOffset is server time minus local time, from the latest state
// event, so call durations tick right on a machine whose clock is off.
let serverOffset = 0;
const serverNow = () => Date.now() + serverOffset;

// ---------- HTTP ----------

// errorText reads the server's reason from a failed answer: the "error"
// of a JSON body (it names the field at fault), else the body's text.
async function errorText(resp) {
  const text = await resp.text().catch(() => "");
  try {
    const j = JSON.parse(text);
    if (j && typeof j.error === "string") return j.error;
  } catch {
    // not JSON: the text itself
  }
  return text.trim() || `${resp.status} ${resp.statusText}`;
}

// post sends a change with the session's CSRF token; it resolves to ""
// on success and to the server's error text otherwise.
async function post(path, body) {
  let resp;
  try {
    resp = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": dash.session ? dash.session.csrf : "" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    return `request failed: ${err.message}`;
  }
  if (resp.ok) {
    // Read the body to its end: an unread one is cancelled, which
    // chromium reports as a failed request.
    await resp.text().catch(() => "");
    return "";
  }
  return errorText(resp);
}

// ---------- header ----------

function setConn(state) {
  dash.conn = state;
  const el = $("#conn");
  setText(el, state);
  setData(el, "state", state.replace(/\s+/g, "-"));
}

function banner(msg) {
  const el = $("#banner");
  setText(el, msg);
  el.hidden = !msg;
}

function renderHeader(st) {
  const s = dash.session || {};
  setText($("#cluster-name"), s.name || "");
  setText($("#self-node"), (st && st.self) || s.self || "—");
  setText($("#version"), s.version ? `v${String(s.version).replace(/^v/, "")}` : "");
  document.title = s.name ? `${s.name} — redial` : "redial dashboard";
}

// ---------- nodes ----------

function renderNodes(nodes) {
  const sec = $("#nodes");
  nodes = [...(nodes || [])].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  const alive = nodes.filter((n) => n.alive).length;
  setText($("#nodes-count"), nodes.length ? `${alive}/${nodes.length} alive` : "");
  showEmpty(sec, nodes.length === 0);
  reconcile($("tbody", sec), nodes, (n) => n.host, () => h("tr", null,
    h("td", { class: "host" }),
    h("td", null, h("span", { class: "badge status" })),
    h("td", { class: "version" }),
    h("td", { class: "num active-calls" }),
    h("td", { class: "num cpu" }),
    h("td", { class: "num mem" }),
    h("td", { class: "num goroutines" }),
  ), (tr, n) => {
    const stats = n.alive && n.reporting !== false;
    setData(tr, "alive", n.alive ? "true" : "false");
    setText($(".host", tr), n.host);
    setTitle($(".host", tr), n.host);
    const b = $(".status", tr);
    setText(b, n.alive ? "alive" : "dead");
    setData(b, "state", n.alive ? "alive" : "dead");
    setTitle(b, n.last_seen ? `last seen ${fmtWhen(n.last_seen, true)}` : "");
    setText($(".version", tr), dash0(n.version));
    setText($(".active-calls", tr), stats ? fmtInt(n.active_calls) : "—");
    setText($(".cpu", tr), stats && num(n.cpu_pct) !== null ? `${n.cpu_pct.toFixed(1)}%` : "—");
    setText($(".mem", tr), stats ? fmtMB(n.rss_bytes) : "—");
    setText($(".goroutines", tr), stats ? fmtInt(n.goroutines) : "—");
  });
}

// ---------- campaigns ----------

const CAMPAIGN_STATES = ["dialing", "idle", "waiting", "invalid", "disabled"];

function makeCampaignRow(c) {
  const name = c.name;
  const err = h("p", { class: "action-error", role: "alert", hidden: true });
  const input = h("input", {
    class: "limit-input", type: "text", inputmode: "numeric", size: "4",
    "aria-label": `New limit for ${name}`, placeholder: "limit",
  });
  const act = async (body, btn) => {
    btn.disabled = true;
    const msg = await post(`${API}/campaigns/${encodeURIComponent(name)}`, body);
    btn.disabled = false;
    setText(err, msg);
    err.hidden = !msg;
    return msg;
  };
  const setLimit = async (ev) => {
    ev.preventDefault();
    const raw = input.value.trim();
    if (raw === "") {
      setText(err, "limit: enter a number");
      err.hidden = false;
      return;
    }
    // A whole number goes as a number; anything else goes as typed, so
    // the server's answer names what is wrong with it.
    const n = Number(raw);
    const msg = await act({ limit: /^-?\d+$/.test(raw) && Number.isSafeInteger(n) ? n : raw }, setBtn);
    if (!msg) input.value = "";
  };
  const enableBtn = h("button", { type: "button", class: "enable", on: { click: (ev) => act({ enable: true }, ev.currentTarget) } }, "Enable");
  const disableBtn = h("button", { type: "button", class: "disable", on: { click: (ev) => act({ enable: false }, ev.currentTarget) } }, "Disable");
  const setBtn = h("button", { type: "submit", class: "set-limit" }, "Set");
  return h("tr", null,
    h("td", { class: "name" }, h("span", { class: "campaign-name" })),
    h("td", { class: "state" }, h("span", { class: "badge campaign-state" }), h("div", { class: "reason" })),
    h("td", { class: "progress" },
      h("div", { class: "config-error", role: "alert", hidden: true }),
      h("div", { class: "meter" }, h("span", { class: "fill" })),
      h("div", { class: "progress-text" },
        h("span", { class: "progress-done" }), " done · ",
        h("span", { class: "progress-queue" }), " in queue",
        h("span", { class: "retrying" }))),
    h("td", { class: "num flight" }, h("span", { class: "inflight" }), " / ", h("span", { class: "limit" }), h("span", { class: "global-limit" })),
    h("td", { class: "num answer-rate" }),
    h("td", { class: "dispositions" }),
    h("td", { class: "num invalid-interrupted" }, h("span", { class: "invalid" }), " / ", h("span", { class: "interrupted" })),
    h("td", { class: "control" },
      h("div", { class: "controls" }, enableBtn, disableBtn,
        h("form", { class: "limit-form", on: { submit: setLimit } }, input, setBtn)),
      err),
  );
}

function updateCampaignRow(tr, c) {
  const state = CAMPAIGN_STATES.includes(c.state) ? c.state : String(c.state || "unknown");
  setData(tr, "state", state);
  setText($(".campaign-name", tr), c.name);
  const ce = $(".config-error", tr);
  setText(ce, c.config_error || "");
  ce.hidden = !c.config_error;
  const badge = $(".campaign-state", tr);
  setText(badge, state);
  setData(badge, "state", state);
  const reason = $(".reason", tr);
  let r = "";
  if (state !== "dialing") {
    r = c.reason || "";
    const when = c.next_open ? fmtWhen(c.next_open, false) : "";
    if (when) r += `${r ? " · " : ""}opens ${when}`;
  }
  setText(reason, r);
  reason.hidden = !r;
  setTitle(reason, c.next_open ? new Date(Date.parse(c.next_open)).toLocaleString() : "");

  const done = (num(c.answered) || 0) + (num(c.failed) || 0);
  const queue = num(c.queue_length) || 0;
  setWidth($(".fill", tr), done + queue ? done / (done + queue) : 0);
  setText($(".progress-done", tr), done);
  setText($(".progress-queue", tr), queue);
  setText($(".retrying", tr), num(c.retrying) ? ` (+${c.retrying} retrying)` : "");
  setText($(".inflight", tr), fmtInt(c.in_flight));
  setText($(".limit", tr), fmtLimit(c.limit));
  setText($(".global-limit", tr), num(c.global_limit) > 0 ? ` (global ${c.global_limit})` : "");
  setText($(".answer-rate", tr), fmtPct(c.answer_rate));
  setText($(".invalid", tr), fmtInt(c.invalid));
  setText($(".interrupted", tr), fmtInt(c.interrupted));
  setTitle($(".invalid-interrupted", tr), `invalid ${c.invalid || 0}, interrupted ${c.interrupted || 0}` +
    (num(c.parked_invalid) ? `, parked invalid ${c.parked_invalid}` : ""));

  const disp = c.dispositions || {};
  const sig = JSON.stringify(disp);
  const cell = $(".dispositions", tr);
  if (cell.dataset.sig !== sig) {
    cell.dataset.sig = sig;
    const names = Object.keys(disp).filter((k) => disp[k]).sort(dispSort);
    cell.replaceChildren(...names.map((k) => h("span", { class: "chip", dataset: { disp: k }, title: `${k}: ${disp[k]}` },
      `${DISP_SHORT[k] || k} ${disp[k]}`)));
    if (!names.length) cell.append("—");
  }
  const enabled = c.enable !== false;
  $("button.enable", tr).setAttribute("aria-pressed", String(enabled));
  $("button.disable", tr).setAttribute("aria-pressed", String(!enabled));
}

function renderCampaigns(list) {
  const sec = $("#campaigns");
  list = list || [];
  const dialing = list.filter((c) => c.state === "dialing").length;
  setText($("#campaigns-count"), list.length ? `${dialing}/${list.length} dialing` : "");
  showEmpty(sec, list.length === 0);
  reconcile($("tbody", sec), list, (c) => c.name, makeCampaignRow, updateCampaignRow);
}

// ---------- lines ----------

function renderLines(lines) {
  const sec = $("#lines");
  lines = lines || [];
  const bad = lines.filter((l) => l.error).length;
  setText($("#lines-count"), bad ? `${bad} malformed` : "");
  showEmpty(sec, lines.length === 0);
  reconcile($("tbody", sec), lines, (l) => l.name, () => h("tr"), (tr, l) => {
    const kind = l.error ? "error" : "ok";
    if (tr.dataset.kind !== kind) {
      tr.dataset.kind = kind;
      if (l.error) {
        tr.replaceChildren(h("td", { class: "name" }), h("td", { class: "error", colSpan: 4 }));
      } else {
        tr.replaceChildren(
          h("td", { class: "name" }),
          h("td", { class: "group" }),
          h("td", { class: "use" }, h("div", { class: "meter" }, h("span", { class: "fill" })),
            h("div", { class: "use-text" }, h("span", { class: "in-use" }), " / ", h("span", { class: "limit" }))),
          h("td", { class: "num cps" }, h("span", { class: "cps-now" }), " / ", h("span", { class: "cps-limit" })),
          h("td", { class: "num failovers" }));
      }
    }
    setText($(".name", tr), l.name);
    if (l.error) {
      setText($(".error", tr), l.error);
      return;
    }
    setData(tr, "enable", l.enable === false ? "false" : "true");
    setText($(".group", tr), dash0(l.group) + (l.enable === false ? " (disabled)" : ""));
    const inUse = num(l.in_use);
    const limit = num(l.limit);
    setText($(".in-use", tr), inUse === null || inUse < 0 ? "?" : inUse);
    setText($(".limit", tr), fmtLimit(limit));
    const fill = $(".fill", tr);
    setWidth(fill, limit > 0 && inUse > 0 ? inUse / limit : 0);
    setData(fill, "full", limit > 0 && inUse >= limit ? "true" : "false");
    const cps = num(l.cps);
    setText($(".cps-now", tr), cps === null ? "—" : Number.isInteger(cps) ? cps : cps.toFixed(1));
    setText($(".cps-limit", tr), fmtLimit(l.cps_limit));
    setText($(".failovers", tr), fmtInt(l.failovers));
  });
}

// ---------- queues ----------

const AGENT_STATES = ["available", "ringing", "on_call", "wrapup", "paused", "logged_out"];
const AGENT_LABEL = { available: "available", ringing: "ringing", on_call: "on call", wrapup: "wrap-up", paused: "paused", logged_out: "logged out" };

function renderQueues(queues, invalid) {
  const sec = $("#queues");
  queues = queues || [];
  $(".empty", sec).hidden = queues.length > 0;
  reconcile($(".queue-list", sec), queues, (q) => q.name, () => h("div", { class: "queue" },
    h("div", { class: "queue-head" },
      h("span", { class: "queue-name" }),
      h("span", { class: "queue-stat" }, h("b", { class: "waiting" }), " waiting"),
      h("span", { class: "queue-stat" }, "longest ", h("b", { class: "longest-wait" })),
      h("span", { class: "queue-stat" }, "SL ", h("b", { class: "service-level" }))),
    h("div", { class: "chips agent-states" }),
    h("details", { class: "agents" }, h("summary"), h("div", { class: "scroll" }, h("table", null,
      h("thead", null, h("tr", null, h("th", null, "Ext"), h("th", null, "State"), h("th", { class: "num" }, "Since"))),
      h("tbody")))),
  ), (el, q) => {
    setText($(".queue-name", el), q.name);
    setText($(".waiting", el), fmtInt(q.waiting));
    const w = $(".waiting", el);
    setData(w, "busy", num(q.waiting) > 0 ? "true" : "false");
    setText($(".longest-wait", el), fmtDur(q.longest_wait_s));
    setText($(".service-level", el), fmtPct(q.service_level));
    setTitle($(".service-level", el), q.service_level_s ? `answered within ${q.service_level_s}s, last hour` : "");
    const by = q.agents_by_state || {};
    const states = [...AGENT_STATES, ...Object.keys(by).filter((s) => !AGENT_STATES.includes(s))].filter((s) => by[s]);
    reconcile($(".agent-states", el), states, (s) => s, (s) => h("span", { class: "chip", dataset: { state: s } }), (chip, s) => {
      setText(chip, `${AGENT_LABEL[s] || s} ${by[s]}`);
    });
    const agents = q.agents || [];
    setText($("summary", el), `${agents.length} agent${agents.length === 1 ? "" : "s"}`);
    reconcile($("details tbody", el), agents, (a) => a.ext, () => h("tr", null,
      h("td", { class: "ext" }), h("td", null, h("span", { class: "chip agent-state" })), h("td", { class: "num since" })),
    (tr, a) => {
      setText($(".ext", tr), a.ext);
      const chip = $(".agent-state", tr);
      setData(chip, "state", a.state);
      setText(chip, (AGENT_LABEL[a.state] || a.state) + (a.reason ? ` (${a.reason})` : ""));
      setText($(".since", tr), fmtDur(a.since_s));
    });
  });
  const bad = Object.entries(invalid || {}).sort();
  reconcile($(".queue-invalid", sec), bad, ([n]) => n, () => h("li", { class: "error" }), (li, [n, e]) => {
    setText(li, `${n}: ${e}`);
  });
}

// ---------- active calls ----------

// hangingUp remembers the calls asked to hang up, so their button stays
// disabled until the call leaves the list.
const hangingUp = new Set();

function renderCalls(calls, total) {
  const sec = $("#calls");
  calls = calls || [];
  total = num(total) === null ? calls.length : total;
  setText($("#calls-count"), total ? String(total) : "");
  showEmpty(sec, calls.length === 0);
  const more = $("#calls-more");
  setText(more, total > calls.length ? `+${total - calls.length} more` : "");
  more.hidden = !(total > calls.length);
  const present = new Set(calls.map((c) => c.call_ref));
  for (const r of hangingUp) if (!present.has(r)) hangingUp.delete(r);
  reconcile($("tbody", sec), calls, (c) => c.call_ref, (c) => h("tr", null,
    h("td", { class: "ref" }),
    h("td", { class: "node" }),
    h("td", null, h("span", { class: "badge call-state" })),
    h("td", { class: "campaign" }),
    h("td", { class: "number" }),
    h("td", { class: "line" }),
    h("td", { class: "num dur" }),
    h("td", null, h("button", { type: "button", class: "hangup danger", on: { click: (ev) => hangup(ev.currentTarget.closest("tr")) } }, "Hang up")),
  ), (tr, c) => {
    tr._call = c;
    const ref = String(c.call_ref);
    setText($(".ref", tr), ref.length > 10 ? `${ref.slice(0, 8)}…` : ref);
    setTitle($(".ref", tr), ref);
    setText($(".node", tr), c.node);
    const b = $(".call-state", tr);
    setText(b, dash0(c.state));
    setData(b, "state", c.state);
    setText($(".campaign", tr), dash0(c.campaign_ref));
    setText($(".number", tr), dash0(c.number));
    setText($(".line", tr), dash0(c.line));
    tr._start = Date.parse(c.start);
    tickRow(tr);
    $("button.hangup", tr).disabled = hangingUp.has(ref);
  });
}

function tickRow(tr) {
  const cell = $(".dur", tr);
  setText(cell, Number.isFinite(tr._start) ? fmtDur((serverNow() - tr._start) / 1000) : "—");
}

async function hangup(tr) {
  const c = tr && tr._call;
  if (!c) return;
  const btn = $("button.hangup", tr);
  btn.disabled = true;
  hangingUp.add(String(c.call_ref));
  const msg = await post(`${API}/calls/${encodeURIComponent(c.call_ref)}/hangup`, { node: c.node });
  const err = $("#calls-error");
  if (msg) {
    hangingUp.delete(String(c.call_ref));
    btn.disabled = false;
  }
  setText(err, msg ? `hang up ${c.call_ref}: ${msg}` : "");
  err.hidden = !msg;
}

// ---------- IVR sessions ----------

function fmtGrace(g) {
  if (g === true) return "yes";
  if (g === false || g === null || g === undefined || g === "" || g === 0) return "—";
  if (typeof g === "number") return `${g}s`;
  return String(g);
}

function renderIVR(list) {
  const sec = $("#ivr");
  list = list || [];
  setText($("#ivr-count"), list.length ? String(list.length) : "");
  showEmpty(sec, list.length === 0);
  reconcile($("tbody", sec), list, (s) => s.ivrid, () => h("tr", null,
    h("td", { class: "node" }), h("td", { class: "script" }), h("td", { class: "component" }),
    h("td", { class: "key" }), h("td", { class: "owner" }), h("td", { class: "num grace" })),
  (tr, s) => {
    setText($(".node", tr), s.node);
    setText($(".script", tr), dash0(s.script));
    setText($(".component", tr), dash0(s.component));
    tr.title = `ivrid ${s.ivrid}, call ${s.call_ref || "—"}`;
    setText($(".key", tr), dash0(s.key));
    setText($(".owner", tr), dash0(s.owner));
    setText($(".grace", tr), fmtGrace(s.grace));
  });
}
// ---------- CDRs ----------

let cdrFetch = null; // AbortController of the fetch in flight
let cdrGen = 0;
// liveDuringFetch collects the matching live rows that arrive while a
// fetch is in flight, so none is lost when its answer replaces the list.
let liveDuringFetch = [];

function matchesFilter(row) {
  const f = dash.filter;
  if (f.campaign && String(row.campaign_ref || "") !== f.campaign) return false;
  if (f.number && !String(row.client_number || "").includes(f.number)) return false;
  if (f.disposition && String(row.disposition || "").toUpperCase() !== f.disposition.toUpperCase()) return false;
  return true;
}

function noteCDR(row, at) {
  if (!row || !row.cdr_id || row.cdr_id in dash.lastCDRAt) return;
  dash.lastCDRAt[row.cdr_id] = at;
  const keys = Object.keys(dash.lastCDRAt);
  if (keys.length > CDR_SEEN_MAX) {
    for (const k of keys.slice(0, keys.length - CDR_SEEN_MAX)) delete dash.lastCDRAt[k];
  }
}

function onCDRs(rows) {
  const at = Date.now();
  const fresh = [];
  const shown = new Set(dash.cdrs.map((r) => r.cdr_id));
  for (const row of rows || []) {
    noteCDR(row, at);
    if (!matchesFilter(row) || shown.has(row.cdr_id)) continue;
    shown.add(row.cdr_id);
    fresh.push(row);
  }
  if (!fresh.length) return;
  fresh.reverse(); // the event is oldest first; the table newest first
  if (cdrFetch) liveDuringFetch = [...fresh, ...liveDuringFetch];
  dash.cdrs = [...fresh, ...dash.cdrs].slice(0, CDR_ROWS);
  renderCDRs();
}

async function loadCDRs() {
  if (cdrFetch) cdrFetch.abort();
  const ctl = new AbortController();
  cdrFetch = ctl;
  const gen = ++cdrGen;
  liveDuringFetch = [];
  const f = dash.filter;
  const q = new URLSearchParams({ campaign: f.campaign, number: f.number, disposition: f.disposition, limit: String(CDR_ROWS) });
  const status = $("#cdr-status");
  setText(status, "loading…");
  try {
    const resp = await fetch(`${API}/cdrs?${q}`, { credentials: "same-origin", signal: ctl.signal });
    if (!resp.ok) {
      const msg = await errorText(resp);
      if (gen === cdrGen) setText(status, `CDRs: ${msg}`);
      return;
    }
    const body = await resp.json();
    if (gen !== cdrGen) return;
    const at = Date.now();
    const seen = new Set();
    const rows = [];
    for (const r of [...liveDuringFetch, ...((body && body.cdrs) || [])]) {
      if (!r || seen.has(r.cdr_id)) continue;
      seen.add(r.cdr_id);
      noteCDR(r, at);
      rows.push(r);
    }
    dash.cdrs = rows.slice(0, CDR_ROWS);
    setText(status, "");
    renderCDRs();
  } catch (err) {
    if (err.name !== "AbortError" && gen === cdrGen) setText(status, `CDRs: ${err.message}`);
  } finally {
    if (cdrFetch === ctl) {
      cdrFetch = null;
      liveDuringFetch = [];
    }
  }
}

function renderCDRs() {
  const sec = $("#cdrs");
  showEmpty(sec, dash.cdrs.length === 0);
  reconcile($("tbody", sec), dash.cdrs, (r) => r.cdr_id, (r) => {
    const ref = String(r.call_ref || "");
    const tr = h("tr", null,
      h("td", { class: "time", title: r.time || "" }, fmtWhen(r.time, true)),
      h("td", { class: "node" }, dash0(r.node)),
      h("td", { class: "campaign" }, dash0(r.campaign_ref)),
      h("td", { class: "number" }, dash0(r.client_number)),
      h("td", { class: "line" }, dash0(r.line)),
      h("td", { class: "num attempt" }, dash0(r.attempt)),
      h("td", null, h("span", { class: "chip disposition", dataset: { disp: r.disposition || "" } }, dash0(r.disposition))),
      h("td", { class: "num sip-code" }, r.sip_code ? r.sip_code : "—"),
      h("td", { class: "cause" }, dash0(r.hangup_cause)),
      h("td", { class: "num duration" }, fmtDur(r.duration)),
      h("td", { class: "num billsec" }, fmtDur(r.billsec)),
      h("td", { class: "ext" }, dash0(r.ext)),
      h("td", { class: "ref", title: ref }, ref.length > 10 ? `${ref.slice(0, 8)}…` : dash0(ref)));
    return tr;
  }, () => {});
}

function initFilters() {
  const form = $("#cdr-filters");
  let timer = null;
  const apply = () => {
    const next = {
      campaign: form.elements.campaign.value.trim(),
      number: form.elements.number.value.trim(),
      disposition: form.elements.disposition.value.trim(),
    };
    const f = dash.filter;
    if (next.campaign === f.campaign && next.number === f.number && next.disposition === f.disposition) return;
    dash.filter = next;
    dash.cdrs = dash.cdrs.filter(matchesFilter);
    renderCDRs();
    loadCDRs();
  };
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(apply, 300);
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    clearTimeout(timer);
    apply();
  });
}

// ---------- the stream ----------

let source = null;
let retryDelay = 1000;
let retryTimer = null;
let everOpen = false;
let failures = 0; // errors of the stream since it was last open
const RETRY_MAX_MS = 5000;

function render(st) {
  dash.state = st;
  const t = Date.parse(st.time);
  if (Number.isFinite(t)) serverOffset = t - Date.now();
  renderHeader(st);
  renderNodes(st.nodes);
  renderCampaigns(st.campaigns);
  renderLines(st.lines);
  renderQueues(st.queues, st.queues_invalid);
  renderCalls(st.calls, st.calls_total);
  renderIVR(st.ivr_sessions);
}

// handle runs one event's renderer; a bad event is reported on the page
// and skipped rather than breaking the stream.
function handle(fn) {
  return (ev) => {
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch (err) {
      banner(`bad ${ev.type} event from the server: ${err.message}`);
      return;
    }
    try {
      fn(data);
    } catch (err) {
      banner(`could not show the ${ev.type} event: ${err.message}`);
    }
  };
}

function connect() {
  retryTimer = null;
  const es = new EventSource(`${API}/stream`);
  source = es;
  es.addEventListener("open", () => {
    if (source !== es) return;
    retryDelay = 1000;
    failures = 0;
    setConn("live");
    banner("");
    // CDRs written while the stream was down arrive only from the list.
    if (everOpen) loadCDRs();
    everOpen = true;
  });
  es.addEventListener("state", handle(render));
  es.addEventListener("cdrs", handle((d) => onCDRs(d.cdrs)));
  es.addEventListener("series", handle(mergeSeries));
  es.addEventListener("error", () => {
    if (source !== es) return;
    setConn("reconnecting");
    failures++;
    // EventSource retries by itself after the server ends the stream (the
    // server's retry: interval). After an error answer it gives up, and
    // when the node is down it would try every second, each failure a
    // line in the console: then the page takes over, checking the session
    // and backing off up to RETRY_MAX_MS.
    if (es.readyState === EventSource.CLOSED || failures >= 2) {
      es.close();
      source = null;
      scheduleReconnect();
    }
  });
}

function scheduleReconnect() {
  if (retryTimer) return;
  const delay = retryDelay;
  retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
  retryTimer = setTimeout(async () => {
    if (await loadSession()) connect();
    else {
      retryTimer = null;
      scheduleReconnect();
    }
  }, delay);
}

// loadSession reads the session (its CSRF token); it reports false when
// there is none, saying on the page how to get one.
async function loadSession() {
  let resp;
  try {
    resp = await fetch(`${API}/session`, { credentials: "same-origin", headers: { Accept: "application/json" } });
  } catch (err) {
    banner(`node unreachable: ${err.message}`);
    return false;
  }
  if (resp.status === 401 || resp.status === 403) {
    setConn("signed out");
    banner("Not signed in: open this page once as /?token=<token> (a token with capability dashboard).");
    return false;
  }
  if (!resp.ok) {
    banner(`session: ${await errorText(resp)}`);
    return false;
  }
  try {
    dash.session = await resp.json();
  } catch (err) {
    banner(`session: ${err.message}`);
    return false;
  }
  renderHeader(dash.state);
  return true;
}

// ---------- start ----------

function tick() {
  setText($("#clock"), fmtClock(new Date()));
  for (const tr of $("#calls tbody").children) tickRow(tr);
}

async function start() {
  tick();
  setInterval(tick, 1000);
  initFilters();
  initCharts(dash.series, serverNow);
  if (typeof ResizeObserver === "function") {
    let pending = 0;
    new ResizeObserver(() => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(resizeCharts);
    }).observe($("#charts .charts"));
  }
  if (await loadSession()) {
    connect();
    loadCDRs();
  } else {
    scheduleReconnect();
  }
}

start();
