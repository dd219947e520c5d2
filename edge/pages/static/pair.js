// Pairing: ask the gateway for a code (POST /v1/pairing), show it, poll with the claim only this
// page holds; once an operator approved the code, the answer is this device's provisioning bundle
// (shown once), kept in localStorage, and the page for its role opens.
"use strict";
(() => {
  const $ = id => document.getElementById(id);
  const wanted = new URLSearchParams(location.search).get("for");
  const KINDS = ["kiosk", "display", "tablet", "pos", "ops"];
  const PENDING = "edge.pairing";
  const POLL_MS = 1500;

  const d = Edge.device();
  if (d && (!wanted || wanted === d.kind)) {
    $("paired").hidden = false;
    $("paired-as").textContent = `Paired as ${d.kind} “${d.deviceId}”.`;
    $("open-page").href = `/pages/${d.kind}`;
    $("unpair").addEventListener("click", () => { localStorage.removeItem("edge.device"); location.reload(); });
    Edge.api("GET", "/healthz").catch(() => null);
    return;
  }

  async function ask() {
    const answer = await Edge.api("POST", "/v1/pairing", KINDS.includes(wanted) ? { kind: wanted } : {});
    sessionStorage.setItem(PENDING, JSON.stringify({ code: answer.code, claim: answer.claim, expiresAt: answer.expiresAt }));
    return answer;
  }
  function shown(p) {
    $("waiting").hidden = false;
    $("code").textContent = p.code;
    $("command").textContent = `edge devices pair ${p.code} --kind ${KINDS.includes(wanted) ? wanted : "KIND"}`;
    $("expires").textContent = `The code is valid until ${new Date(p.expiresAt).toLocaleTimeString()}.`;
  }

  async function poll() {
    let p = null;
    try { p = JSON.parse(sessionStorage.getItem(PENDING) || "null"); } catch (e) { p = null; }
    if (!p || Date.parse(p.expiresAt) < Date.now()) p = await ask();
    shown(p);
    let r;
    try {
      const response = await fetch(`/v1/pairing/${encodeURIComponent(p.code)}`, { headers: { "X-Pairing-Claim": p.claim }, cache: "no-store" });
      Edge.setState("online", Edge.ONLINE);
      r = await response.json();
      if (response.status === 404 || response.status === 409) {  // declined, expired, or its id was taken: a fresh code
        sessionStorage.removeItem(PENDING);
        $("pair-error").textContent = "That code is no longer valid; here is a new one.";
        return;
      }
      if (!response.ok) throw new Error(r.detail || response.status);
    } catch (e) {
      Edge.setState("offline", Edge.OFFLINE);
      throw e;
    }
    if (r.state === "paired") {
      sessionStorage.removeItem(PENDING);
      const saved = Edge.save(r.bundle);
      location.replace(`/pages/${saved.kind}`);
    }
  }
  const loop = async () => { try { await poll(); } catch (e) { /* offline: the banner says so; retry */ } setTimeout(loop, POLL_MS); };
  loop();
})();
