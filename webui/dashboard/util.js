// Small DOM and formatting helpers of the dashboard.

export const $ = (sel, root = document) => root.querySelector(sel);

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null) continue;
      if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k in el && typeof v !== "string") el[k] = v;
      else el.setAttribute(k, v);
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function setText(el, text) {
  text = text === null || text === undefined ? "" : String(text);
  if (el.textContent !== text) el.textContent = text;
}

export function setData(el, key, value) {
  value = value === null || value === undefined ? "" : String(value);
  if (el.dataset[key] !== value) el.dataset[key] = value;
}

export function setTitle(el, text) {
  text = text || "";
  if (el.title !== text) el.title = text;
}

// setWidth sizes a bar's fill through the CSSOM, which the CSP allows
// (style attributes in markup it does not).
export function setWidth(el, frac) {
  const w = `${Math.max(0, Math.min(1, frac || 0)) * 100}%`;
  if (el.style.width !== w) el.style.width = w;
}

// reconcile makes tbody's rows match items, in order: rows are keyed by
// data-key, made once by make and updated in place by update.
export function reconcile(parent, items, key, make, update) {
  const old = new Map();
  for (const el of parent.children) old.set(el.dataset.key, el);
  let prev = null;
  for (const it of items) {
    const k = String(key(it));
    let el = old.get(k);
    if (el) old.delete(k);
    else {
      el = make(it);
      el.dataset.key = k;
    }
    update(el, it);
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (want !== el) parent.insertBefore(el, want);
    prev = el;
  }
  for (const el of old.values()) el.remove();
}

// showEmpty hides a panel's table and shows its empty note when there is
// nothing to list.
export function showEmpty(section, empty) {
  const note = $(".empty", section);
  if (note) note.hidden = !empty;
  const scroll = $(".scroll", section);
  if (scroll) scroll.hidden = empty;
}

export const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
export const dash0 = (v) => (v === null || v === undefined || v === "" ? "—" : String(v));

export function fmtInt(v) {
  v = num(v);
  return v === null ? "—" : Math.round(v).toLocaleString();
}

// fmtPct shows a rate the server sends as a fraction (0..1); a value
// above 1 is taken as a percentage already.
export function fmtPct(v, digits = 0) {
  v = num(v);
  if (v === null) return "—";
  const p = v <= 1 ? v * 100 : v;
  return `${p.toFixed(digits)}%`;
}

export function fmtDur(s) {
  s = Math.max(0, Math.floor(num(s) || 0));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${String(mm).padStart(2, "0")}:${ss}`;
}

export const two = (n) => String(n).padStart(2, "0");

export function fmtClock(d) {
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

// fmtWhen shows a time in local time: HH:MM(:SS) today, with the date
// otherwise.
export function fmtWhen(iso, seconds) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "";
  const d = new Date(t);
  const now = new Date();
  const time = seconds ? fmtClock(d) : `${two(d.getHours())}:${two(d.getMinutes())}`;
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${time}`;
}

export function fmtMB(bytes) {
  bytes = num(bytes);
  return bytes === null ? "—" : `${Math.round(bytes / (1024 * 1024))} MB`;
}

export function fmtLimit(v) {
  v = num(v);
  if (v === null) return "—";
  return v < 0 ? "∞" : String(v);
}

export const DISP_ORDER = ["ANSWERED", "BUSY", "NO_ANSWER", "CANCELLED", "FAILED", "CONGESTION",
  "INVALID_NUMBER", "NO_LINE", "EXPIRED", "ABANDONED"];
export const DISP_SHORT = {
  ANSWERED: "ANS", BUSY: "BUSY", NO_ANSWER: "NOANS", CANCELLED: "CANC", FAILED: "FAIL",
  CONGESTION: "CONG", INVALID_NUMBER: "INV", NO_LINE: "NOLINE", EXPIRED: "EXP", ABANDONED: "ABAND",
};
export const DISP_COLOR = {
  ANSWERED: "#2e7d32", BUSY: "#ef6c00", NO_ANSWER: "#f9a825", CANCELLED: "#78909c", FAILED: "#c62828",
  CONGESTION: "#6a1b9a", INVALID_NUMBER: "#8d6e63", NO_LINE: "#ad1457", EXPIRED: "#546e7a", ABANDONED: "#00838f",
};
export const EXTRA_COLORS = ["#1f6feb", "#5d4037", "#00695c", "#9e9d24", "#4527a0", "#d84315"];

export function dispSort(a, b) {
  const ia = DISP_ORDER.indexOf(a);
  const ib = DISP_ORDER.indexOf(b);
  if (ia !== ib) return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
  return a < b ? -1 : a > b ? 1 : 0;
}

export function dispColor(name, i) {
  return DISP_COLOR[name] || EXTRA_COLORS[i % EXTRA_COLORS.length];
}
