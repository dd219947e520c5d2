// A minimal MQTT 3.1.1 client over WebSocket (subprotocol "mqtt") for the store pages: CONNECT
// with the device's own username/password, SUBSCRIBE, receive PUBLISH (QoS 0/1, PUBACK sent),
// PINGREQ keepalive, and reconnection with capped backoff and jitter. Written for this project
// (no third-party code): the pages only ever receive, so nothing more is needed.
"use strict";
class MiniMqtt {
  constructor({ url, username, password, keepaliveS = 15, onMessage, onState, maxDelayMs = 2000 }) {
    Object.assign(this, { url, username, password, keepaliveS, onMessage, onState, maxDelayMs });
    this.subscriptions = new Map();
    this.packetId = 0;
    this.failures = 0;
    this.buffer = new Uint8Array(0);
    this.stopped = false;
  }
  start() { this.stopped = false; this._open(); return this; }
  stop() { this.stopped = true; clearTimeout(this.retry); clearInterval(this.pinger); if (this.ws) this.ws.close(); }
  subscribe(topic, qos = 1) {
    this.subscriptions.set(topic, qos);
    if (this.online) this._send(this._subscribePacket(topic, qos));
  }

  _state(state) { this.online = state === "online"; if (this.onState) this.onState(state); }
  _open() {
    this._state("connecting");
    let ws;
    try { ws = new WebSocket(this.url, ["mqtt"]); } catch (e) { this._later(); return; }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.buffer = new Uint8Array(0);
    ws.onopen = () => this._send(this._connectPacket());
    ws.onmessage = ev => this._receive(new Uint8Array(ev.data));
    ws.onclose = () => { clearInterval(this.pinger); if (this.ws === ws) { this.ws = null; this._state("offline"); this._later(); } };
    ws.onerror = () => {};  // onclose follows
  }
  _later() {
    if (this.stopped) return;
    const delay = Math.min(this.maxDelayMs, 250 * 2 ** this.failures) * (0.5 + Math.random() / 2);
    this.failures = Math.min(this.failures + 1, 10);
    this.retry = setTimeout(() => this._open(), delay);
  }
  _send(bytes) { if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes); }

  static _utf8(s) { return new TextEncoder().encode(s); }
  static _string(s) { const b = MiniMqtt._utf8(s); return [b.length >> 8, b.length & 255, ...b]; }
  static _packet(type, body) {
    const length = [];
    let n = body.length;
    do { let byte = n % 128; n = Math.floor(n / 128); if (n > 0) byte |= 128; length.push(byte); } while (n > 0);
    return new Uint8Array([type, ...length, ...body]);
  }
  _connectPacket() {
    const flags = 0x02 | (this.username ? 0x80 : 0) | (this.password ? 0x40 : 0);  // clean session
    const body = [...MiniMqtt._string("MQTT"), 4, flags, this.keepaliveS >> 8, this.keepaliveS & 255,
      ...MiniMqtt._string(this.username || ""),  // the broker binds the client id to the user name
      ...(this.username ? MiniMqtt._string(this.username) : []), ...(this.password ? MiniMqtt._string(this.password) : [])];
    return MiniMqtt._packet(0x10, body);
  }
  _subscribePacket(topic, qos) {
    this.packetId = (this.packetId % 65535) + 1;
    return MiniMqtt._packet(0x82, [this.packetId >> 8, this.packetId & 255, ...MiniMqtt._string(topic), qos]);
  }
  _receive(chunk) {
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer); joined.set(chunk, this.buffer.length);
    let at = 0;
    while (true) {
      if (joined.length - at < 2) break;
      let length = 0, multiplier = 1, i = at + 1, byte;
      do {
        if (i >= joined.length) { i = -1; break; }
        byte = joined[i++]; length += (byte & 127) * multiplier; multiplier *= 128;
      } while (byte & 128);
      if (i < 0 || joined.length < i + length) break;
      this._packetIn(joined[at], joined.subarray(i, i + length));
      at = i + length;
    }
    this.buffer = joined.slice(at);
  }
  _packetIn(header, body) {
    const type = header >> 4;
    if (type === 2) {  // CONNACK
      if (body[1] !== 0) { this.ws.close(); return; }  // refused (bad credentials): retry later
      this.failures = 0;
      this._state("online");
      for (const [topic, qos] of this.subscriptions) this._send(this._subscribePacket(topic, qos));
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this._send(new Uint8Array([0xc0, 0])), this.keepaliveS * 500);
    } else if (type === 3) {  // PUBLISH
      const qos = (header >> 1) & 3;
      const topicLength = (body[0] << 8) | body[1];
      const topic = new TextDecoder().decode(body.subarray(2, 2 + topicLength));
      let at = 2 + topicLength;
      if (qos > 0) {
        const id = [body[at], body[at + 1]];
        at += 2;
        this._send(new Uint8Array(qos === 1 ? [0x40, 2, ...id] : [0x50, 2, ...id]));
      }
      const payload = new TextDecoder().decode(body.subarray(at));
      if (this.onMessage) this.onMessage(topic, payload, { retained: Boolean(header & 1) });
    }
  }
}
