// KefuSocket: the kefu.v1.json WebSocket sub-protocol (protocol/PROTOCOL.md) for browsers.
//
// - request/reply by id (`request(type, data)` resolves with the `ok` data, rejects with the `error` data)
// - events are re-dispatched as DOM events: `sock.on("msg", data => …)`
// - reconnect with exponential backoff and jitter; auth again with `cursors` = last seq per
//   conversation, so the server replays exactly what was missed (R17)
// - de-duplication by (conv, seq); outgoing messages wait in an outbox and are retried with the
//   same `cid` after a reconnect (the server answers a retry with `dup: true`, storing nothing new)
// - close codes 40xx mean "log in again" (no reconnect), everything else reconnects (§7)

const NO_RECONNECT = new Set([1008, 1009, 4001, 4003]);
const RETRYABLE = new Set(["rate_limited", "overloaded", "disconnected", "timeout"]);

export class KefuError extends Error {
  constructor(code, message, detail) {
    super(message || code);
    this.code = code;
    this.detail = detail;
  }
}

export function wsUrl(path = "/ws") {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

export class KefuSocket extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.token        member or buyer token
   * @param {() => object} [o.auth] extra auth fields, read at every (re)connect (stores, status)
   * @param {string} [o.url]
   */
  constructor({ token, auth = () => ({}), url = wsUrl() }) {
    super();
    this.token = token;
    this.authExtra = auth;
    this.url = url;
    this.state = "idle";          // idle | connecting | open | reconnecting | closed
    this.cursors = new Map();     // conv -> last seq this client has (sent as auth.cursors)
    this.seen = new Map();        // conv -> Set(seq): de-duplication of msg events
    this.pending = new Map();     // request id -> {resolve, reject, timer, type}
    this.outbox = new Map();      // cid -> {data, resolve, reject, inflight}
    this.nextId = 1;
    this.attempt = 0;
    this.connects = 0;
    this.ws = null;
    this._retryTimer = null;
    this._holdUntil = 0;
    this._pingTimer = null;
    this._onOnline = () => { if (this.state === "reconnecting") this.reconnectNow(); };
  }

  on(type, fn) {
    const h = (e) => fn(e.detail);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(s, extra = {}) {
    this.state = s;
    this._emit("state", { state: s, attempt: this.attempt, ...extra });
  }

  start() {
    window.addEventListener("online", this._onOnline);
    this._connect();
    return this;
  }

  stop() {
    window.removeEventListener("online", this._onOnline);
    clearTimeout(this._retryTimer);
    clearInterval(this._pingTimer);
    this._setState("closed");
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "bye");
    this._failPending("disconnected");
    for (const [, o] of this.outbox) o.reject(new KefuError("closed", "connection closed"));
    this.outbox.clear();
  }

  /** Drop the socket as a network failure would, and stay down for at least `holdMs` (tests, diagnostics). */
  drop(holdMs = 0) {
    this._holdUntil = Date.now() + holdMs;
    if (this.ws) this.ws.close(4999, "dropped by client");
  }

  _connect() {
    this._setState(this.connects === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url, ["kefu.v1.json"]);
    } catch (e) {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    const authId = this.nextId++;
    let authed = false;
    ws.onopen = () => {
      const data = { token: this.token, cursors: Object.fromEntries(this.cursors), ...this.authExtra() };
      ws.send(JSON.stringify({ type: "auth", id: authId, data }));
    };
    ws.onmessage = (ev) => {
      let env;
      try { env = JSON.parse(ev.data); } catch { return; }
      if (!authed && env.id === authId) {
        if (env.type === "ok") {
          authed = true;
          this._onAuthed(env.data);
        } else {
          this._fatal(env.data?.code || "unauthorized", env.data?.message || "");
        }
        return;
      }
      this._onFrame(env);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this._pingTimer);
      this._failPending("disconnected");
      for (const o of this.outbox.values()) o.inflight = false;
      if (this.state === "closed") return;
      if (NO_RECONNECT.has(ev.code)) {
        this._fatal(ev.code === 4003 ? "kicked" : (ev.reason || "unauthorized"), ev.reason, ev.code);
        return;
      }
      this._emit("down", { code: ev.code, reason: ev.reason });
      this._scheduleReconnect();
    };
    ws.onerror = () => {};  // onclose follows
  }

  _onAuthed(data) {
    const resumed = this.connects > 0;
    this.connects++;
    this.attempt = 0;
    this._setState("open");
    this._emit("open", { ...data, resumed });
    // retry whatever was not acknowledged, with the same cid: the server de-duplicates (R17)
    for (const [cid, o] of this.outbox) if (!o.inflight) this._transmit(cid, o);
    clearInterval(this._pingTimer);
    this._pingTimer = setInterval(() => {
      this.request("ping", {}, { timeout: 10000 }).catch((e) => {
        if (e.code === "timeout" && this.ws) this.ws.close(4998, "ping timeout");
      });
    }, 25000);
  }

  _fatal(code, message, closeCode) {
    clearTimeout(this._retryTimer);
    this._setState("closed", { code });
    this._emit("fatal", { code, message, closeCode });
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(1000); }
  }

  _scheduleReconnect() {
    this.attempt++;
    const base = Math.min(10000, 400 * 2 ** Math.min(this.attempt - 1, 5));
    const delay = Math.max(Math.round(base * (0.6 + Math.random() * 0.4)), (this._holdUntil || 0) - Date.now());
    this._setState("reconnecting", { delay });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  reconnectNow() {
    if (this.state !== "reconnecting") return;
    this._holdUntil = 0;
    clearTimeout(this._retryTimer);
    this._connect();
  }

  _failPending(code) {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new KefuError(code, "connection lost"));
      this.pending.delete(id);
    }
  }

  _onFrame(env) {
    if (env.id !== undefined && env.id !== null && this.pending.has(env.id)) {
      const p = this.pending.get(env.id);
      this.pending.delete(env.id);
      clearTimeout(p.timer);
      if (env.type === "ok") {
        if (p.type === "history") this._noteHistory(env.data);
        p.resolve(env.data);
      } else {
        const d = env.data || {};
        p.reject(new KefuError(d.code || "internal", d.message, d.detail));
      }
      return;
    }
    if (env.type === "error") {
      this._emit("server-error", env.data);
      return;
    }
    const data = env.data || {};
    if (env.type === "msg") {
      if (!this.markSeen(data.conv, data.seq)) return;  // duplicate (two tabs, replay overlap)
      this.noteSeq(data.conv, data.seq);
    } else if (env.type === "conv.assigned" && data.seq !== undefined) {
      this.noteSeq(data.conv, data.seq);
    } else if (env.type === "conv.removed") {
      this.cursors.delete(data.conv);
    }
    this._emit(env.type, data);
  }

  /** Remember (conv, seq); false when it was already seen. */
  markSeen(conv, seq) {
    let s = this.seen.get(conv);
    if (!s) this.seen.set(conv, (s = new Set()));
    if (s.has(seq)) return false;
    s.add(seq);
    return true;
  }

  noteSeq(conv, seq) {
    if (!conv || typeof seq !== "number") return;
    if ((this.cursors.get(conv) ?? -1) < seq) this.cursors.set(conv, seq);
  }

  _noteHistory(d) {
    if (!d || !d.messages || !d.messages.length) return;
    for (const m of d.messages) this.markSeen(m.conv, m.seq);
    // a page is contiguous, so the client has everything up to its newest message
    this.noteSeq(d.conv, d.messages[d.messages.length - 1].seq);
  }

  /** One request; resolves with the reply's data or rejects with a KefuError. */
  request(type, data = {}, { timeout = 15000 } = {}) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.state !== "open") {
        reject(new KefuError("disconnected", "not connected"));
        return;
      }
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new KefuError("timeout", `${type}: no reply`));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer, type });
      this.ws.send(JSON.stringify({ type, id, data }));
    });
  }

  /**
   * Send a chat message; kept in the outbox until the server acknowledges it, retried with the
   * same cid after a reconnect. Rejects only for permanent errors (closed conversation, …).
   */
  sendMessage({ cid = newCid(), text, conv, to }) {
    return new Promise((resolve, reject) => {
      const data = { cid, text };
      if (conv) data.conv = conv;
      if (to) data.to = to;
      const o = { data, resolve, reject, inflight: false };
      this.outbox.set(cid, o);
      if (this.state === "open") this._transmit(cid, o);
    });
  }

  /** Drop a message from the outbox (the user gave up on it). */
  discard(cid) {
    const o = this.outbox.get(cid);
    if (o) { this.outbox.delete(cid); o.reject(new KefuError("cancelled", "cancelled")); }
  }

  _transmit(cid, o) {
    o.inflight = true;
    this.request("send", o.data).then((r) => {
      this.outbox.delete(cid);
      o.resolve(r);
    }, (e) => {
      o.inflight = false;
      if (e.code === "disconnected") return;  // stays in the outbox: retried on reconnect
      if (RETRYABLE.has(e.code)) {
        setTimeout(() => { if (this.outbox.has(cid) && this.state === "open" && !o.inflight) this._transmit(cid, o); }, 1000);
        return;
      }
      this.outbox.delete(cid);
      o.reject(e);
    });
  }
}

let cidCounter = 0;
export function newCid() {
  const rnd = Math.random().toString(36).slice(2, 10);
  return `w${Date.now().toString(36)}.${(cidCounter++).toString(36)}.${rnd}`;
}
