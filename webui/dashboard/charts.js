// The dashboard's charts of the last hour, drawn by uPlot from the
// series events: calls started per second and dispositions per minute.
import uPlot from "/dashboard/lib/uplot/uPlot.esm.js";
import { $, two, fmtClock, fmtWhen, dispSort, dispColor, DISP_SHORT } from "/dashboard/util.js";

// series holds the merged points (Maps keyed by unix seconds) and now
// tells the server's time in ms; initCharts sets both.
let series = { cps: new Map(), dispositions: new Map() };
let serverNow = () => Date.now();

// initCharts gives the charts the page's series store and clock and
// draws them empty.
export function initCharts(store, now) {
  series = store;
  serverNow = now;
  drawCharts();
}

const charts = { cps: null, disp: null, dispKeys: "" };
const CHART_HEIGHT = 170;

function plotWidth(el) {
  return Math.max(200, Math.floor(el.clientWidth || el.getBoundingClientRect().width || 300));
}

// axes label time in local 24-hour HH:MM, like the rest of the page.
function axes() {
  const grid = { stroke: "#e6e9ef", width: 1 };
  const font = "12px system-ui, sans-serif";
  return [
    { stroke: "#5b6575", grid, ticks: grid, font, size: 28,
      values: (u, splits) => splits.map((v) => { const d = new Date(v * 1000); return `${two(d.getHours())}:${two(d.getMinutes())}`; }) },
    { stroke: "#5b6575", grid, ticks: grid, font, size: 40 },
  ];
}

export function mergeSeries(ev) {
  const s = series;
  if (ev.reset) {
    s.cps = new Map();
    s.dispositions = new Map();
  }
  for (const [t, n] of ev.cps || []) s.cps.set(t, n);
  for (const [t, d] of ev.dispositions || []) s.dispositions.set(t, d || {});
  // Keep the last hour (plus a minute of slack) of the newest point.
  let newest = Math.floor(serverNow() / 1000);
  for (const t of s.cps.keys()) if (t > newest) newest = t;
  for (const t of s.cps.keys()) if (t < newest - 3660) s.cps.delete(t);
  for (const t of s.dispositions.keys()) if (t < newest - 3660) s.dispositions.delete(t);
  drawCharts();
}

function cpsData() {
  const s = series.cps;
  let end = Math.floor(serverNow() / 1000) - 1;
  for (const t of s.keys()) if (t > end) end = t;
  const xs = new Array(3600);
  const ys = new Array(3600);
  for (let i = 0; i < 3600; i++) {
    const t = end - 3599 + i;
    xs[i] = t;
    ys[i] = s.get(t) || 0;
  }
  return [xs, ys];
}

function dispData() {
  const s = series.dispositions;
  let end = Math.floor(serverNow() / 60000) * 60;
  for (const t of s.keys()) if (t > end) end = t;
  const keys = new Set();
  for (const d of s.values()) for (const [k, v] of Object.entries(d)) if (v) keys.add(k);
  const names = [...keys].sort(dispSort);
  const xs = [];
  for (let t = end - 59 * 60; t <= end; t += 60) xs.push(t);
  // Bars stack: series i is the sum of dispositions 0..i and the tallest
  // is drawn first, so each shows as its own band; the legend shows the
  // disposition's own count.
  const raw = names.map((k) => xs.map((t) => (s.get(t) || {})[k] || 0));
  const stacked = [];
  let acc = xs.map(() => 0);
  for (const r of raw) {
    acc = acc.map((v, i) => v + r[i]);
    stacked.push(acc);
  }
  return { names, xs, raw, stacked };
}

export function drawCharts() {
  const cpsEl = $("#chart-cps");
  const dispEl = $("#chart-disp");
  const cps = cpsData();
  if (!charts.cps) {
    charts.cps = new uPlot({
      width: plotWidth(cpsEl), height: CHART_HEIGHT,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: axes(),
      series: [{ value: (u, v) => (v === null || v === undefined ? "—" : fmtClock(new Date(v * 1000))) },
        { label: "calls/s", stroke: "#1f6feb", width: 1.5, fill: "rgba(31,111,235,0.12)", points: { show: false } }],
    }, cps, cpsEl);
  } else {
    charts.cps.setData(cps);
  }

  const d = dispData();
  charts.dispRaw = d;
  const sig = d.names.join(",");
  if (!charts.disp || charts.dispKeys !== sig) {
    if (charts.disp) charts.disp.destroy();
    charts.dispKeys = sig;
    const bars = uPlot.paths.bars({ size: [0.8, 40], align: 0 });
    const series = [{ value: (u, v) => (v === null || v === undefined ? "—" : fmtWhen(new Date(v * 1000).toISOString(), false)) }];
    // Drawn tallest (the total) first.
    for (let i = d.names.length - 1; i >= 0; i--) {
      const name = d.names[i];
      const color = dispColor(name, i);
      series.push({
        label: DISP_SHORT[name] || name, stroke: color, fill: color, width: 0, paths: bars, points: { show: false },
        value: (u, v, si, di) => (di === null || di === undefined ? "—" : String(rawCount(name, di))),
      });
    }
    charts.disp = new uPlot({
      width: plotWidth(dispEl), height: CHART_HEIGHT,
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: axes(),
      series,
    }, dispChartData(d), dispEl);
  } else {
    charts.disp.setData(dispChartData(d));
  }
}

// rawCount is one disposition's own count in minute di of the newest
// data: the legend shows it rather than the stacked height.
function rawCount(name, di) {
  const d = charts.dispRaw;
  const i = d ? d.names.indexOf(name) : -1;
  return i < 0 ? 0 : d.raw[i][di] || 0;
}

// dispChartData orders the stacked series as the chart draws them:
// tallest first.
function dispChartData(d) {
  const data = [d.xs];
  for (let i = d.stacked.length - 1; i >= 0; i--) data.push(d.stacked[i]);
  return data;
}

export function resizeCharts() {
  if (charts.cps) charts.cps.setSize({ width: plotWidth($("#chart-cps")), height: CHART_HEIGHT });
  if (charts.disp) charts.disp.setSize({ width: plotWidth($("#chart-disp")), height: CHART_HEIGHT });
}
