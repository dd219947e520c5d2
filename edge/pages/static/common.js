// Shared by the store pages: the device's credentials (from pairing), API calls with its own
// bearer token, the online/offline banner, and a DOM builder that only ever sets text (no
// innerHTML: nothing a customer or a device sends can become markup).
"use strict";
const Edge = (() => {
  const KEY = "edge.device";

  function device() {
    try { return JSON.parse(localStorage.getItem(KEY) || "null"); } catch (e) { return null; }
  }
  function save(bundle) {
    const d = { deviceId: bundle.device_id, kind: bundle.kind, storeId: bundle.store_id, token: bundle.http_token,
      mqttUsername: bundle.mqtt_username, mqttPassword: bundle.mqtt_password, topics: bundle.topics || {} };
    localStorage.setItem(KEY, JSON.stringify(d));
    return d;
  }
  // The page for `role` runs only on a device paired as that role; anything else goes to pairing.
  function requireDevice(role) {
    const d = device();
    if (!d || d.kind !== role) {
      location.replace("/pages/pair?for=" + encodeURIComponent(role));
      throw new Error("not paired as " + role);
    }
    return d;
  }

  let banner = null;
  function setState(state, text) {
    banner = banner || document.getElementById("conn");
    if (!banner) return;
    if (banner.dataset.state !== state || banner.textContent !== text) {
      banner.dataset.state = state;
      banner.textContent = text;
    }
  }
  const ONLINE = "Online";
  const OFFLINE = "Offline — reconnecting…";

  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.detail || body.error)) || ("HTTP " + status));
      this.status = status; this.body = body;
    }
  }
  async function api(method, path, body) {
    const d = device();
    const headers = { "Accept": "application/json" };
    if (d && d.token) headers["Authorization"] = "Bearer " + d.token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store" });
    } catch (e) {
      setState("offline", OFFLINE);
      throw e;
    }
    setState("online", ONLINE);
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, x => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // Events that could not be sent (gateway restarting) wait in localStorage and go with the next
  // call; the messageId makes a resend harmless (the journal de-duplicates it).
  const OUTBOX = "edge.outbox";
  const OUTBOX_MAX = 500;
  function queued() { try { return JSON.parse(localStorage.getItem(OUTBOX) || "[]"); } catch (e) { return []; } }
  async function track(events) {
    const now = new Date().toISOString();
    const batch = queued().concat(events.map(e => Object.assign({ type: "track", messageId: uuid(), timestamp: now }, e)));
    localStorage.setItem(OUTBOX, JSON.stringify(batch.slice(-OUTBOX_MAX)));
    const answer = await api("POST", "/v1/events", { batch });
    localStorage.setItem(OUTBOX, "[]");
    return answer;
  }
  function flush() { return queued().length ? track([]).catch(() => null) : Promise.resolve(null); }

  // Poll `fn` every `ms`; failures show the offline banner and are retried, never thrown.
  function every(ms, fn) {
    let timer = null;
    const tick = async () => {
      try { await fn(); } catch (e) { if (!(e instanceof ApiError)) setState("offline", OFFLINE); }
      timer = setTimeout(tick, ms);
    };
    tick();
    return () => clearTimeout(timer);
  }

  return { device, save, requireDevice, api, ApiError, el, clear, uuid, track, flush, every, setState, ONLINE, OFFLINE };
})();
