// SVG charts drawn by the page (no library): a line chart over time and a horizontal bar chart
// with optional interval whiskers. Each chart carries a <title> and a text table for screen readers.
"use strict";
const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLOURS = ["#0b57d0", "#a23b00", "#0a6b2f", "#6a1b9a"];  // ≥ 4.5:1 on white
  function svg(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function frame(title, w, h) {
    const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, class: "chart", role: "img", "aria-label": title });
    root.append(svg("title", {}, title));
    return root;
  }
  function fmt(v, digits) { return v === null || v === undefined || !isFinite(v) ? "—" : Number(v).toFixed(digits); }

  // series: [{name, points: [[tSeconds, value]]}]
  function line(container, title, series, unit) {
    const w = 720, h = 260, L = 56, R = 12, T = 34, B = 36;
    const all = series.flatMap(s => s.points);
    const root = frame(title, w, h);
    const t0 = all.length ? Math.min(...all.map(p => p[0])) : 0, t1 = all.length ? Math.max(...all.map(p => p[0])) : 1;
    const vmax = Math.max(1e-9, ...all.map(p => p[1])) * 1.15;
    const x = t => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (w - L - R);
    const y = v => h - B - (v / vmax) * (h - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = (vmax * i) / 4;
      root.append(svg("line", { x1: L, x2: w - R, y1: y(v), y2: y(v), stroke: "#d0d0d0" }));
      root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v, v < 10 ? 1 : 0)));
    }
    root.append(svg("text", { x: L, y: h - 8 }, `${Math.round((t1 - t0) / 60 * 10) / 10} min shown`));
    series.forEach((s, i) => {
      const c = COLOURS[i % COLOURS.length];
      if (s.points.length) {
        root.append(svg("polyline", { fill: "none", stroke: c, "stroke-width": 2.5,
          points: s.points.map(p => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") }));
      }
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      root.append(svg("rect", { x: L + i * 300, y: 8, width: 12, height: 12, fill: c }));
      root.append(svg("text", { x: L + 18 + i * 300, y: 18 }, `${s.name}: ${fmt(last, 2)} ${unit}`));
    });
    Edge.clear(container).append(root);
  }

  // rows: [{label, value, low?, high?}] — value (and interval) in the unit given
  function bars(container, title, rows, unit, digits) {
    const w = 760, rowH = 30, L = 210, R = 200, T = 24, B = 20, h = T + B + Math.max(1, rows.length) * rowH;
    const root = frame(title, w, h);
    if (!rows.length) {
      root.append(svg("text", { x: 12, y: T + 14 }, "no data yet"));
      Edge.clear(container).append(root);
      return;
    }
    const ends = rows.flatMap(r => [r.value, r.low, r.high]).filter(v => v !== null && v !== undefined && isFinite(v));
    let lo = Math.min(0, ...ends), hi = Math.max(0, ...ends);
    if (hi - lo < 1e-9) hi = lo + 1;
    const x = v => L + ((v - lo) / (hi - lo)) * (w - L - R);
    root.append(svg("line", { x1: x(0), x2: x(0), y1: T - 6, y2: h - B + 4, stroke: "#4a4a4a" }));
    root.append(svg("text", { x: x(0), y: T - 10, "text-anchor": "middle" }, "0"));
    rows.forEach((r, i) => {
      const cy = T + i * rowH + rowH / 2;
      root.append(svg("text", { x: L - 8, y: cy + 4, "text-anchor": "end" }, r.label.length > 28 ? r.label.slice(0, 27) + "…" : r.label));
      if (r.value !== null && r.value !== undefined && isFinite(r.value)) {
        const a = x(Math.min(0, r.value)), b = x(Math.max(0, r.value));
        root.append(svg("rect", { x: a, y: cy - 9, width: Math.max(1, b - a), height: 18,
          fill: r.value >= 0 ? COLOURS[0] : COLOURS[1], class: "bar" }));
      }
      if (r.low !== null && r.low !== undefined && r.high !== null && r.high !== undefined) {
        root.append(svg("line", { x1: x(r.low), x2: x(r.high), y1: cy, y2: cy, stroke: "#1a1a1a", "stroke-width": 2, class: "interval" }));
        for (const e of [r.low, r.high]) root.append(svg("line", { x1: x(e), x2: x(e), y1: cy - 7, y2: cy + 7, stroke: "#1a1a1a", "stroke-width": 2 }));
      }
      const shown = fmt(r.value, digits) + (r.low !== undefined && r.low !== null ? ` [${fmt(r.low, digits)}, ${fmt(r.high, digits)}]` : "");
      root.append(svg("text", { x: w - R + 6, y: cy + 4 }, `${shown} ${unit}`.trim()));
    });
    const table = Edge.el("table", {}, Edge.el("caption", { text: title }),
      Edge.el("tr", {}, Edge.el("th", { scope: "col", text: "item" }), Edge.el("th", { scope: "col", text: "value" }),
        Edge.el("th", { scope: "col", text: "interval" })),
      rows.map(r => Edge.el("tr", {}, Edge.el("td", { text: r.label }), Edge.el("td", { text: fmt(r.value, digits) }),
        Edge.el("td", { text: r.low === undefined || r.low === null ? "—" : `${fmt(r.low, digits)} to ${fmt(r.high, digits)}` }))));
    Edge.clear(container).append(root, Edge.el("div", { class: "visually-hidden" }, table));
  }
  return { line, bars };
})();
