// The display: shows what the gateway pushes to its retained offers topic (MQTT over secure
// WebSockets at /mqtt, with the display's own credentials), loops through the offers, swaps to
// a newly pushed set only at the end of a loop, keeps the last set in localStorage as the
// playlist to fall back on while the gateway is away, and reports each offer's first play per
// decision as an `Offer Viewed` impression (decisionId + arm: the proof of play).
"use strict";
(() => {
  const me = Edge.requireDevice("display");
  const params = new URLSearchParams(location.search);
  const SLOT_MS = (Number(params.get("slotSeconds")) || 8) * 1000;
  const CACHE = "edge.display.playlist";
  const PLAYED = "edge.display.played";
  const topic = (me.topics && me.topics.offers) || `retail/v1/${me.storeId}/display/${me.deviceId}/offers`;
  const $ = id => document.getElementById(id);

  let current = null;   // the playlist on screen: {decisionId, arm, offers, validUntil, …}
  let next = null;      // pushed while a loop was running: takes over at the loop's end
  let source = "none";  // where `current` came from: live | cache
  let index = 0;
  let received = 0;

  function valid(p) {
    return p && typeof p.decisionId === "string" && Array.isArray(p.offers) &&
      (!p.validUntil || Date.parse(p.validUntil) > Date.now());
  }
  function played() { try { return new Set(JSON.parse(localStorage.getItem(PLAYED) || "[]")); } catch (e) { return new Set(); } }

  async function impression(p, offer) {
    const key = `${p.decisionId}/${offer.offerId}`;
    const seen = played();
    if (seen.has(key)) return;
    seen.add(key);
    localStorage.setItem(PLAYED, JSON.stringify([...seen].slice(-200)));
    const properties = { offerId: offer.offerId, decisionId: p.decisionId, arm: offer.arm || p.arm, placement: "display",
      playedAt: new Date().toISOString() };
    if (p.trigger) properties.triggerId = p.trigger.id;
    try { await Edge.track([{ event: "Offer Viewed", properties }]); } catch (e) { /* kept in the outbox, sent later */ }
  }

  function render() {
    const slot = $("slot");
    slot.dataset.source = source;
    slot.dataset.decisionId = current ? current.decisionId : "";
    slot.dataset.received = String(received);
    if (!current || !current.offers.length) {
      $("slot-title").textContent = "Welcome";
      $("slot-text").textContent = "Offers will appear here.";
      slot.dataset.offerId = "";
      return;
    }
    const offer = current.offers[index % current.offers.length];
    slot.dataset.offerId = offer.offerId;
    $("slot-title").textContent = offer.title || offer.offerId;
    $("slot-text").textContent = offer.sku ? "Ask our staff, or see it at the kiosk" : "";
    $("footer").textContent = `${index % current.offers.length + 1} of ${current.offers.length}` +
      (source === "cache" ? " · saved playlist" : "");
    impression(current, offer);  // shown, live or from the saved playlist: one proof of play per offer and decision
  }

  function tick() {
    if (current && current.offers.length) {
      index += 1;
      if (index >= current.offers.length) {  // a loop boundary: the place to swap
        index = 0;
        if (next) { current = next.playlist; source = next.source; next = null; }
      }
    } else if (next) {
      current = next.playlist; source = next.source; next = null; index = 0;
    }
    if (current && !valid(current)) { current = null; }
    render();
  }

  function take(playlist, from) {
    if (!current || !current.offers.length) { current = playlist; source = from; index = 0; render(); return; }
    if (current.decisionId === playlist.decisionId) { source = from; render(); return; }  // the same set, re-delivered
    next = { playlist, source: from };
  }

  try {
    const cached = JSON.parse(localStorage.getItem(CACHE) || "null");
    if (valid(cached)) take(cached, "cache");
  } catch (e) { /* a damaged cache is ignored */ }

  const client = new MiniMqtt({
    url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/mqtt`,
    username: me.mqttUsername, password: me.mqttPassword,
    onState: state => {
      if (state === "online") Edge.setState("online", Edge.ONLINE);
      else {
        Edge.setState(state === "connecting" ? "connecting" : "offline",
          current ? "Offline — showing the saved playlist, reconnecting…" : Edge.OFFLINE);
        if (current && source === "live") { source = "cache"; render(); }
      }
    },
    onMessage: (_topic, text) => {
      let p;
      try { p = JSON.parse(text); } catch (e) { return; }
      if (!valid(p)) return;
      received += 1;
      localStorage.setItem(CACHE, JSON.stringify(p));
      take(p, "live");
      Edge.flush();
    },
  });
  client.subscribe(topic, 1);
  client.start();
  setInterval(tick, SLOT_MS);
})();
