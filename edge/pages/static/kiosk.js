// The kiosk: sign in (loyalty QR via the kiosk's scanner, phone or e-mail) with consent per
// purpose, browse (Product Viewed), ranked offers with their reasons; or browse anonymously.
// The raw identifier lives only in this page's memory until the consent call turns it into a
// customer token on the gateway; it is never written to storage. Idle reset forgets the person.
"use strict";
(() => {
  Edge.requireDevice("kiosk");
  const { el, clear } = Edge;
  const params = new URLSearchParams(location.search);
  const IDLE_S = Number(params.get("idleSeconds")) || 90;
  const NOTICE_VERSION = "kiosk-2026-12";  // the version of the notice text in kiosk.html
  const PURPOSES = ["personalization", "analytics", "cdp_sync"];
  const LABELS = { loyaltyId: "Loyalty card number (scan the QR code)", phone: "Phone number", email: "E-mail address" };
  const $ = id => document.getElementById(id);

  let person = null;  // {userId, preferences} once signed in; null in anonymous mode
  let visit = null;   // this visit's anonymous id
  let pendingIdentifier = null;  // raw, in memory only, between sign-in and consent
  let viewed = [];
  let idleTimer = null;

  function show(section) {
    for (const id of ["signin", "consent", "shop"]) $(id).hidden = id !== section;
    const heading = $(section).querySelector("h2");
    if (heading) { heading.tabIndex = -1; heading.focus(); }
  }
  function who(text, mode) { $("who").textContent = text; $("who").dataset.mode = mode; }

  function reset() {
    person = null; visit = null; pendingIdentifier = null; viewed = [];
    $("signin-form").reset(); $("consent-form").reset();
    $("signin-error").textContent = ""; $("consent-error").textContent = "";
    clear($("offers")); clear($("receipt")); $("receipt").hidden = true;
    setLabel();
    who("Not signed in", "none");
    show("signin");
  }
  function touch() {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => { if (person || visit || pendingIdentifier) reset(); }, IDLE_S * 1000);
  }
  for (const type of ["pointerdown", "keydown", "touchstart"]) document.addEventListener(type, touch, { passive: true });

  function method() { return document.querySelector("input[name=method]:checked").value; }
  function setLabel() {
    const m = method();
    $("identifier-label").textContent = LABELS[m];
    $("identifier").type = m === "email" ? "email" : m === "phone" ? "tel" : "text";
    $("identifier").inputMode = m === "email" ? "email" : m === "phone" ? "tel" : "text";
  }
  document.querySelectorAll("input[name=method]").forEach(r => r.addEventListener("change", setLabel));

  $("signin-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const value = $("identifier").value.trim();
    const m = method();
    const bad = !value ? "Please scan your card or type it in." :
      m === "email" && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(value) ? "That does not look like an e-mail address." :
      m === "phone" && value.replace(/\D/g, "").length < 6 ? "That does not look like a phone number." : "";
    if (bad) { $("signin-error").textContent = bad; $("identifier").focus(); return; }
    pendingIdentifier = { [m]: value };
    $("identifier").value = "";
    $("notice-version").textContent = NOTICE_VERSION;
    show("consent");
  });
  $("consent-cancel").addEventListener("click", reset);

  $("consent-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const purposes = Object.fromEntries(PURPOSES.map(p => [p, $("p-" + p).checked]));
    $("consent-save").disabled = true;
    try {
      const receipt = await Edge.api("POST", "/v1/consent", { identifiers: pendingIdentifier, purposes, noticeVersion: NOTICE_VERSION });
      pendingIdentifier = null;
      person = { userId: receipt.userId, preferences: receipt.categoryPreferences };
      visit = Edge.uuid();
      showReceipt(receipt);
      who(person.preferences.personalization ? "Signed in — offers picked for you" : "Signed in — general offers", "person");
      show("shop");
      await Promise.all([products(), offers()]);
    } catch (e) {
      $("consent-error").textContent = e instanceof Edge.ApiError ? `Sorry, that did not work: ${e.message}` :
        "The store system is not answering. Please try again in a moment.";
    } finally {
      $("consent-save").disabled = false;
    }
  });

  function showReceipt(receipt) {
    const box = clear($("receipt"));
    const words = { personalization: "Pick offers for me", analytics: "Count my visits", cdp_sync: "Share with head office" };
    box.append(el("h3", { text: "Your choices are saved" }),
      el("ul", {}, PURPOSES.map(p => el("li", { "data-purpose": p },
        `${words[p]}: ${receipt.categoryPreferences[p] ? "yes" : "no"}`))),
      el("p", { class: "muted" }, "Receipt ", el("strong", { id: "receipt-id", text: receipt.receiptId }),
        ` · notice ${NOTICE_VERSION} · ${new Date().toLocaleString()}`));
    box.hidden = false;
  }

  $("anonymous").addEventListener("click", async () => {
    person = null; visit = Edge.uuid(); pendingIdentifier = null;
    who("Browsing anonymously", "anonymous");
    show("shop");
    await Promise.all([products(), offers()]);
  });
  $("done").addEventListener("click", reset);

  function subject() { return person ? { userId: person.userId, anonymousId: visit } : { anonymousId: visit }; }

  let catalog = null;
  async function products() {
    if (!catalog) catalog = (await Edge.api("GET", "/v1/pages/products")).products.slice(0, 12);
    const box = clear($("products"));
    for (const p of catalog) {
      box.append(el("div", { class: "card", "data-sku": p.sku },
        el("h3", { text: p.name }), el("p", { class: "muted", text: `${p.category} · ${p.price.toFixed(2)}` }),
        el("button", { type: "button", class: "secondary", "aria-label": `Look at this: ${p.name}`, text: "Look at this",
          onclick: () => view(p) })));
    }
  }

  async function view(p) {
    viewed = [p.sku, ...viewed.filter(s => s !== p.sku)].slice(0, 10);
    await Edge.track([Object.assign({ event: "Product Viewed", properties: { sku: p.sku, name: p.name, category: p.category, price: p.price } }, subject())]);
    await offers();
  }

  async function offers() {
    const request = Object.assign({ basket: [], placement: "kiosk", limit: 3, visitId: visit }, subject());
    const d = await Edge.api("POST", "/v1/decisions", request);
    const box = $("offers");
    box.dataset.latestDecisionId = d.decisionId;
    // frequency caps may leave nothing new: the offers already on screen stay (no new exposure)
    if (!d.offers.length && box.querySelector(".offer")) return;
    clear(box);
    box.dataset.decisionId = d.decisionId;
    box.dataset.personalized = String(Boolean(d.personalized));
    if (!d.offers.length) box.append(el("p", { class: "muted", text: "No offers right now." }));
    d.offers.forEach((o, i) => {
      box.append(el("div", { class: "card offer", "data-offer-id": o.offerId },
        el("h3", { text: `${i + 1}. ${o.title}` }),
        el("p", { class: "muted", text: "Why you see this:" }),
        el("ul", { class: "reasons" }, (o.reasons || []).map(r => el("li", { text: r }))),
        el("button", { type: "button", text: "Save this offer", onclick: async ev => {
          await Edge.track([Object.assign({ event: "Offer Clicked", properties: { offerId: o.offerId, decisionId: d.decisionId, arm: o.arm || d.arm } }, subject())]);
          ev.target.textContent = "Saved"; ev.target.disabled = true;
        } })));
    });
    if (d.offers.length) {
      await Edge.track(d.offers.map(o => Object.assign({ event: "Offer Viewed",
        properties: { offerId: o.offerId, decisionId: d.decisionId, arm: o.arm || d.arm, placement: "kiosk" } }, subject())));
    }
  }

  reset();
  Edge.every(3000, () => Edge.api("GET", "/healthz").then(Edge.flush));
})();
