// The associate's tablet: opted-in customers present in the associate's zones (from /v1/stream,
// whose tablet view carries only people who consented to personalization), each one's profile
// summary (GET /v1/customers/{id}/profile, refused without consent) and next-best actions with
// reasons (POST /v1/decisions); accept/decline go back as Offer Clicked / Offer Viewed; trigger
// notifications arrive on the tablet's own MQTT offers topic.
"use strict";
(() => {
  const me = Edge.requireDevice("tablet");
  const { el, clear } = Edge;
  const $ = id => document.getElementById(id);
  const ZONES = "edge.tablet.zones";
  const present = new Map();  // userId -> {zoneId, since}
  let zones = (localStorage.getItem(ZONES) || "").split(",").map(z => z.trim()).filter(Boolean);
  $("zones").value = zones.join(", ");
  $("zones-form").addEventListener("submit", ev => {
    ev.preventDefault();
    zones = $("zones").value.split(",").map(z => z.trim()).filter(Boolean);
    localStorage.setItem(ZONES, zones.join(","));
    render();
  });
  const mine = zone => !zones.length || zones.includes(zone);
  const short = id => `Customer ${id.slice(3, 9)}`;  // a pseudonymous handle, never a name

  async function feedback(userId, decision, offer, accepted, note) {
    const base = { offerId: offer.offerId, decisionId: decision.decisionId, arm: offer.arm || decision.arm, placement: "associate" };
    const events = [{ event: "Offer Viewed", userId, properties: Object.assign({ response: accepted ? "accepted" : "declined" }, base) }];
    if (accepted) events.push({ event: "Offer Clicked", userId, properties: Object.assign({ response: "accepted" }, base) });
    try { await Edge.track(events); note.textContent = accepted ? "Accepted — thank you" : "Declined"; }
    catch (e) { note.textContent = "Saved; it will be sent when the gateway answers"; }
  }

  async function card(userId, where) {
    const box = el("div", { class: "card customer", "data-user-id": userId },
      el("h3", { text: short(userId) }), el("p", { class: "muted", text: `in ${where.zoneId} since ${new Date(where.since).toLocaleTimeString()}` }));
    let profile;
    try { profile = await Edge.api("GET", `/v1/customers/${encodeURIComponent(userId)}/profile`); }
    catch (e) {
      if (e instanceof Edge.ApiError && e.status === 404) return null;  // no consent (any more): nothing to show
      throw e;
    }
    const cats = Object.entries(profile.categories || {}).slice(0, 3).map(([c, n]) => `${c} (${n})`);
    box.append(el("p", { text: `${profile.visits} visit${profile.visits === 1 ? "" : "s"}; likes ${cats.join(", ") || "—"}` }));
    const d = await Edge.api("POST", "/v1/decisions", { userId, zone: where.zoneId, placement: "associate", limit: 3, basket: [] });
    const list = el("ul", { class: "reasons", "aria-label": `Suggestions for ${short(userId)}` });
    for (const o of d.offers) {
      const note = el("span", { role: "status" });
      list.append(el("li", { "data-offer-id": o.offerId },
        el("strong", { text: o.title }), ` — ${(o.reasons || []).join(", ")} `,
        el("div", { class: "row" },
          el("button", { type: "button", text: "Accept", "aria-label": `Accept: ${o.title}`, onclick: () => feedback(userId, d, o, true, note) }),
          el("button", { type: "button", class: "secondary", text: "Decline", "aria-label": `Decline: ${o.title}`, onclick: () => feedback(userId, d, o, false, note) }),
          note)));
    }
    if (!d.offers.length) list.append(el("li", { text: "No suggestion right now." }));
    box.append(el("p", { text: "Next best actions:" }), list);
    return box;
  }

  let rendering = Promise.resolve();
  function render() {
    rendering = rendering.then(async () => {
      const box = $("nearby");
      const wanted = [...present.entries()].filter(([, w]) => mine(w.zoneId));
      for (const node of [...box.children]) {
        if (!wanted.some(([u]) => u === node.dataset.userId)) node.remove();
      }
      for (const [userId, where] of wanted) {
        if (box.querySelector(`[data-user-id="${CSS.escape(userId)}"]`)) continue;
        try { const c = await card(userId, where); if (c && present.has(userId)) box.append(c); } catch (e) { /* retried on the next event */ }
      }
      if (!box.children.length) box.append(el("p", { class: "muted empty", "data-user-id": "", text: "Nobody opted in is in your zones right now." }));
      else for (const e of box.querySelectorAll(".empty")) if (box.children.length > 1) e.remove();
    });
  }

  let failures = 0;
  function stream() {
    Edge.setState("connecting", "Connecting…");
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream?token=${encodeURIComponent(me.token)}`);
    ws.onopen = () => { failures = 0; Edge.setState("online", Edge.ONLINE); };
    ws.onmessage = ev => {
      let m; try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (!m.userId) return;
      if (m.event === "Zone Exited") present.delete(m.userId);
      else if (m.zoneId) present.set(m.userId, { zoneId: m.zoneId, since: Date.parse(m.timestamp) || Date.now() });
      render();
    };
    ws.onclose = () => {
      Edge.setState("offline", Edge.OFFLINE);
      failures = Math.min(failures + 1, 6);
      setTimeout(stream, Math.min(2000, 250 * 2 ** failures) * (0.5 + Math.random() / 2));
    };
  }

  function alert(text) {
    let p; try { p = JSON.parse(text); } catch (e) { return; }
    if (!p || !Array.isArray(p.offers) || (p.validUntil && Date.parse(p.validUntil) < Date.now())) return;
    const who = p.profile && p.profile.userId ? short(p.profile.userId) : "A customer nearby";
    const why = Array.isArray(p.why) ? p.why.join(", ") : (p.why || "");
    const box = el("div", { class: "card alert", "data-decision-id": p.decisionId },
      el("h3", { text: `${who}: ${p.offers.map(o => o.title).join(", ")}` }),
      why ? el("p", { text: `Why: ${why}` }) : null,
      p.trigger ? el("p", { class: "muted", text: `trigger ${p.trigger.id} v${p.trigger.version}` }) : null);
    $("alerts").prepend(box);
    while ($("alerts").children.length > 10) $("alerts").lastChild.remove();
  }

  const mqtt = new MiniMqtt({ url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/mqtt`,
    username: me.mqttUsername, password: me.mqttPassword, onMessage: (_t, text) => alert(text),
    onState: state => { $("alerts").dataset.link = state; } });
  mqtt.subscribe((me.topics && me.topics.offers) || `retail/v1/${me.storeId}/tablet/${me.deviceId}/offers`, 1);
  mqtt.start();
  stream();
  render();
  setInterval(Edge.flush, 10000);
})();
