// The ops dashboard: polls the gateway every few seconds with the ops device's token.
"use strict";
(() => {
  const me = Edge.requireDevice("ops");
  const { el, clear } = Edge;
  const POLL_MS = Number(new URLSearchParams(location.search).get("pollMs")) || 3000;
  const history = { ingest: [], decisions: [] };
  const KINDS = ["kiosk", "display", "tablet", "pos", "ops"];

  function kpi(label, value, id) {
    return el("div", { class: "kpi", id }, el("div", { class: "v", text: value }), el("div", { class: "k", text: label }));
  }
  const n = (v, d = 1) => (v === null || v === undefined ? "—" : Number(v).toFixed(d));
  function age(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    return s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
  }
  function table(caption, head, rows) {
    return el("div", { class: "table-wrap" }, el("table", {}, el("caption", { class: "visually-hidden", text: caption }),
      el("tr", {}, head.map(h => el("th", { scope: "col", text: h }))),
      rows.length ? rows.map(r => el("tr", {}, r.map(c => el("td", {}, c)))) :
        el("tr", {}, el("td", { colspan: head.length, text: "none" }))));
  }

  async function overview() {
    const o = await Edge.api("GET", "/v1/ops/overview");
    const now = Date.now() / 1000;
    if (o.rates.ingestPerS !== null) history.ingest.push([now, o.rates.ingestPerS]);
    if (o.rates.decisionsPerS !== null) history.decisions.push([now, o.rates.decisionsPerS]);
    for (const k of Object.keys(history)) history[k] = history[k].filter(p => now - p[0] <= 600);
    const online = o.devices.filter(d => d.online).length;
    const dead = Object.values(o.deadLetters).reduce((a, b) => a + b, 0);
    const drops = Object.values(o.drops).reduce((a, b) => a + b, 0);
    const consent = o.consent || {};
    const granted = p => (consent[p] ? consent[p].granted : 0);
    clear(document.getElementById("kpis")).append(
      kpi("events ingested per second", n(o.rates.ingestPerS, 2), "kpi-ingest"),
      kpi("decisions per second", n(o.rates.decisionsPerS, 2), "kpi-decisions"),
      kpi("p99 journal commit (ms, at most)", n(o.p99Ms.journalCommit, 1)),
      kpi("p99 decision (ms, at most)", n(o.p99Ms.decision, 1)),
      kpi("devices online", `${online} of ${o.devices.length}`),
      kpi("dead letters", String(dead)),
      kpi("dropped", String(drops)),
      kpi("personalization consents", String(granted("personalization"))),
      kpi("CDP-sync consents", String(granted("cdp_sync"))),
      kpi("erasures", o.erasures === null ? "—" : String(o.erasures)),
    );
    Charts.line(document.getElementById("rates-chart"), "Ingest and decision rates over the last 10 minutes",
      [{ name: "events ingested", points: history.ingest }, { name: "decisions", points: history.decisions }], "/s");
    const reasons = Object.entries(o.deadLetters).map(([k, v]) => ({ label: `dead letter: ${k}`, value: v }))
      .concat(Object.entries(o.rejectedByReason).map(([k, v]) => ({ label: `refused: ${k}`, value: v })));
    Charts.bars(document.getElementById("dead-chart"), "Dead letters and refusals by reason", reasons, "", 0);
    clear(document.getElementById("devices")).append(table("Devices",
      ["device", "kind", "state", "last seen", "status"],
      o.devices.map(d => [d.deviceId, d.kind,
        el("span", { class: "tag", text: !d.enabled ? "disabled" : d.online ? "online" : "offline" }),
        age(d.lastSeen), d.status || "—"])));
    clear(document.getElementById("beacons")).append(table("Beacons",
      ["beacon", "state", "battery", "last seen"],
      o.beacons.map(b => [b.deviceId, b.status || "—", b.batteryMv ? `${(b.batteryMv / 1000).toFixed(2)} V` : "—", age(b.lastSeen)])));
    const cert = o.certificate;
    clear(document.getElementById("versions")).append(table("Versions",
      ["what", "version"],
      [["model", o.versions.model || "—"], ["product catalog", o.versions.productCatalog || "—"],
       ["offer catalog", o.versions.offerCatalog || "—"],
       ["server certificate", cert.expiresInS === null ? "no TLS" : `expires in ${n(cert.expiresInS / 86400, 1)} days (${cert.notAfter})`]]));
  }

  async function sync() {
    const box = document.getElementById("sync");
    let s;
    try { s = await Edge.api("GET", "/v1/sync/status"); } catch (e) {
      if (e instanceof Edge.ApiError && e.status === 404) { clear(box).append(el("p", { class: "muted", text: "sync is not enabled on this gateway" })); return; }
      throw e;
    }
    const rows = Object.entries(s.sinks).map(([name, v]) => [name, String(v.backlog), String(v.cursor)]);
    clear(box).append(
      el("p", { text: `oldest unsent event: ${s.oldest_unsent_age_s === null ? "none" : `${n(s.oldest_unsent_age_s, 0)} s old`}; ` +
        `unsent ${(s.unsent_bytes / 1e6).toFixed(2)} MB of ${(s.quota_bytes / 1e6).toFixed(0)} MB quota` }),
      table("Sync backlog per sink", ["sink", "backlog (events)", "cursor"], rows));
  }

  async function uplift() {
    const r = await Edge.api("GET", "/v1/reports/uplift");
    // the CUPED estimate where the report could apply it (narrower, same truth), else the plain one
    const rows = r.campaigns.map(c => {
      const cuped = c.cuped_applied === true;
      const value = cuped ? c.cuped_absolute_uplift : c.absolute_uplift, ci = cuped ? c.cuped_absolute_ci95 : c.absolute_ci95;
      return { label: `${c.experiment} (${c.treatment_units} vs ${c.holdout_units}${cuped ? ", CUPED" : ""})`,
        value: value === null ? null : 100 * value, low: ci ? 100 * ci[0] : null, high: ci ? 100 * ci[1] : null };
    });
    Charts.bars(document.getElementById("uplift-chart"), "Uplift per campaign in percentage points with 95% interval", rows, "pts", 1);
  }

  async function triggers() {
    const box = document.getElementById("triggers-chart");
    let r;
    try { r = await Edge.api("GET", "/v1/reports/triggers"); } catch (e) {
      if (e instanceof Edge.ApiError && e.status === 404) { clear(box).append(el("p", { class: "muted", text: "no trigger report on this gateway" })); return; }
      throw e;
    }
    const list = Array.isArray(r) ? r : (r.triggers || r.rows || []);
    const pick = (o, ...keys) => keys.map(k => o[k]).find(v => v !== undefined);
    const rows = list.map(t => {
      const ci = pick(t, "absolute_ci95", "ci95", "interval", "absoluteCi95");
      const v = pick(t, "absolute_uplift", "uplift", "absoluteUplift");
      return { label: [pick(t, "trigger", "triggerId", "id", "name"), pick(t, "variant")].filter(Boolean).join(" · "),
        value: v === null || v === undefined ? null : 100 * v,
        low: Array.isArray(ci) ? 100 * ci[0] : null, high: Array.isArray(ci) ? 100 * ci[1] : null };
    });
    Charts.bars(box, "Uplift per trigger in percentage points with interval", rows, "pts", 1);
  }

  async function pairings() {
    const r = await Edge.api("GET", "/v1/pairing");
    const box = clear(document.getElementById("pairings"));
    if (!r.pairings.length) { box.append(el("p", { class: "muted", text: "none waiting" })); return; }
    for (const p of r.pairings) {
      const id = `pair-kind-${p.code}`;
      const select = el("select", { id }, KINDS.map(k => el("option", { value: k, selected: k === (p.kind || p.requestedKind), text: k })));
      const message = el("span", { role: "status" });
      const approve = el("button", { type: "button", text: p.approved ? "Approved" : `Approve ${p.code}`, disabled: p.approved,
        onclick: async () => {
          try { await Edge.api("POST", `/v1/pairing/${p.code}/approve`, { kind: select.value }); message.textContent = "approved"; }
          catch (e) { message.textContent = e.message; message.className = "error"; }
        } });
      const decline = el("button", { type: "button", class: "secondary", text: "Decline",
        onclick: async () => { await Edge.api("DELETE", `/v1/pairing/${p.code}`); pairings(); } });
      box.append(el("div", { class: "card row", "data-code": p.code },
        el("span", { class: "code", style: null, text: p.code }),
        el("div", {}, el("label", { for: id, text: "This device is a" }), select),
        approve, decline, message));
    }
  }

  Edge.every(POLL_MS, overview);
  Edge.every(POLL_MS * 2, sync);
  Edge.every(POLL_MS * 2, uplift);
  Edge.every(POLL_MS * 4, triggers);
  Edge.every(POLL_MS, pairings);
})();
