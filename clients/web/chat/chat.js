// Buyer chat page: ?seller=demo&store=flagship[&to=member]
// A buyer id kept in localStorage (same buyer after a reload), the conversation's history, live
// messages, the queue position while waiting, the agent's display name once served (never their
// online/idle status, R7), and messages that survive reloads and reconnects.
import { KefuSocket, newCid } from "../common/ws.js";
import { ThreadView, composer } from "../common/thread.js";
import { connBanner } from "../common/conn.js";
import { $, el, api, t, errText, toast, avatar, initials, icon } from "../common/util.js";
import { applyI18n, langButton, onLangChange } from "../common/i18n.js";

const params = new URLSearchParams(location.search);
const seller = (params.get("seller") || "").trim();
let store = (params.get("store") || "").trim();
const addressed = (params.get("to") || "").trim();

const app = {
  sock: null,
  buyer: "",
  storeName: "",
  convs: [],          // this buyer's conversations at this store, oldest first
  current: "",        // the conversation new messages go to
  state: "",          // its state: queued | active | closed
  agent: "",
  position: 0,
  paging: new Map(),  // conv -> {oldest, more}
  ready: false,       // the first history page is loaded
  early: [],          // [cid, text] typed before the socket existed
  restarts: 0,
  closed: new Set(),  // conversations known to be closed (a divider ends each)
  thread: null,
};

window.kefu = app;  // for diagnostics in the browser's console (and the end-to-end tests)

const tokenKey = () => `kefu.buyer.${seller}`;
const cursorKey = () => `kefu.buyer.cursors.${seller}.${store}`;

applyI18n();
langButton($("#lang"));
onLangChange(() => paintStatus());

if (!seller) {
  showPicker(el("div.empty", el("div.big", icon("store", 26)), t("buyer.noSeller")));
} else if (!store) {
  pickStore();
} else {
  start();
}

async function pickStore() {
  let stores = [];
  try {
    stores = (await api("GET", `/api/sellers/${encodeURIComponent(seller)}/stores`)).stores;
  } catch (e) {
    showPicker(el("div.empty", errText(e)));
    return;
  }
  if (stores.length === 1) {
    choose(stores[0].store);
    return;
  }
  if (!stores.length) {
    showPicker(el("div.empty", el("div.big", icon("store", 26)), t("buyer.noStores")));
    return;
  }
  showPicker(
    el("h2", t("buyer.pickStore")),
    el("div.store-list", stores.map((s) =>
      el("button.store-card", { type: "button", testid: "store-option", dataset: { store: s.store }, onclick: () => choose(s.store) },
        avatar(s.name, s.store), el("span", s.name, el("small", s.store))))));
}

function showPicker(...nodes) {
  const p = $("#picker");
  p.replaceChildren(...nodes);
  p.hidden = false;
  $("#thread").hidden = true;
  $("#composer").hidden = true;
}

function choose(s) {
  store = s;
  params.set("store", s);
  history.replaceState(null, "", `${location.pathname}?${params}`);
  $("#picker").hidden = true;
  $("#thread").hidden = false;
  $("#composer").hidden = false;
  start();
}

async function session() {
  const prev = localStorage.getItem(tokenKey()) || undefined;
  const s = await api("POST", "/api/buyer/session", { seller, store, token: prev });
  localStorage.setItem(tokenKey(), s.token);
  return s;
}

async function start() {
  if (!app.thread) {
    // ready to type at once: what is sent before the socket is up waits in the outbox
    app.thread = new ThreadView($("#thread"), {
      mine: (m) => m.kind === "buyer",
      nameOf: (m) => (m.kind === "buyer" ? t("buyer.me") : m.name || t("buyer.agent")),
      onLoadEarlier: loadEarlier,
      onRetry: (cid, text) => send(text),
    });
    const box = $("#input");
    const c = composer(box, send);
    $("#composer").onsubmit = (e) => { e.preventDefault(); c.submit(); };
    $("#leave").onclick = leaveQueue;
    box.focus();
  }
  let s;
  try {
    s = await session();
  } catch (e) {
    showPicker(el("div.empty", el("div.big", icon("alert", 26)), errText(e)));
    return;
  }
  app.buyer = s.buyer;
  app.storeName = s.store_name || store;
  document.title = `${app.storeName} · ${t("app.chat")}`;
  $("#store-name").textContent = app.storeName;
  $("#store-name").removeAttribute("data-i18n");
  const av = $("#store-avatar");
  av.textContent = initials(app.storeName);

  if (!$("[data-testid=welcome]")) app.thread.top.after(welcome());

  const sock = (app.sock = new KefuSocket({ token: s.token }));
  try {
    for (const [c, q] of Object.entries(JSON.parse(localStorage.getItem(cursorKey()) || "{}"))) sock.noteSeq(c, q);
  } catch { /* a bad stored value: start from now */ }
  $("#banner-mount").replaceChildren();
  connBanner(sock, $("#banner-mount"));
  sock.on("open", onOpen);
  sock.on("state", ({ state }) => {
    const mark = state === "open" ? "sending" : "queued";
    for (const cid of app.thread.pendingStates()) if (!app.thread.byCid.get(cid).classList.contains("failed")) app.thread.markPending(cid, mark);
  });
  sock.on("msg", onMsg);
  sock.on("conv.state", onConvState);
  sock.on("queue.position", ({ conv, position }) => {
    if (conv === app.current) { app.position = position; paintStatus(); }
  });
  sock.on("fatal", ({ code }) => {
    // an expired or foreign buyer token: forget it and start a fresh session (once; then say why)
    localStorage.removeItem(tokenKey());
    sock.stop();
    if (app.restarts++ < 1) start();
    else showPicker(el("div.empty", el("div.big", icon("alert", 26)), errText({ code })));
  });
  sock.start();
  for (const [cid, text] of app.early.splice(0)) transmit(cid, text);
}

function welcome() {
  return el("div.welcome", { testid: "welcome" }, avatar(app.storeName, store, "small"),
    el("div.msg-body", el("div.msg-meta", el("span.msg-name", app.storeName)),
      el("div.bubble", { "data-i18n": "buyer.welcome" }, t("buyer.welcome"))));
}

async function onOpen({ resumed }) {
  const sock = app.sock;
  if (!resumed) {
    // the buyer's conversations here, newest first: show the latest (and page back into older ones)
    let convs = [];
    try {
      convs = (await sock.request("conv.list", { limit: 20 })).convs.filter((v) => v.store === store && v.kind !== "internal");
    } catch (e) {
      toast(errText(e), "error");
    }
    app.convs = convs.map((v) => v.conv).reverse();
    for (const v of convs) if (v.state === "closed") app.closed.add(v.conv);
    app.convs.forEach((c, i) => app.thread.rank(c, i));
    const latest = convs[0];
    if (latest) {
      setCurrent(latest.conv, latest.state);
      await loadPage(latest.conv);
    } else {
      app.thread.setMore(false, false);
    }
    app.ready = true;
  } else if (app.current) {
    // the conversation may have closed (or been transferred) while we were away
    try {
      const v = await sock.request("conv.get", { conv: app.current });
      if (v.state === "closed" && app.state !== "closed") onConvState({ conv: v.conv, state: "closed" });
    } catch { /* not fatal */ }
  }
  paintStatus();
}

/** One page of history, backwards, for `conv` (or the oldest loaded conversation). */
async function loadPage(conv) {
  const p = app.paging.get(conv) || { oldest: null, more: true };
  if (!p.more) return;
  app.thread.loading = true;
  try {
    const req = { conv, limit: 50 };
    if (p.oldest) req.before = p.oldest;
    const h = await app.sock.request("history", req);
    if (h.messages.length) p.oldest = h.messages[0].seq;
    p.more = h.more;
    app.paging.set(conv, p);
    app.thread.add(h.messages, { older: !!req.before });
    if (!req.before && app.closed.has(conv)) closedDivider(conv, h.messages.at(-1)?.ts);
    if (!req.before) app.thread.scrollToBottom();
    saveCursor();
  } catch (e) {
    toast(errText(e), "error");
  } finally {
    app.thread.loading = false;
    paintMore();
  }
}

function paintMore() {
  const loaded = [...app.paging.keys()];
  const oldestLoaded = app.convs.find((c) => loaded.includes(c));
  const idx = app.convs.indexOf(oldestLoaded);
  const p = app.paging.get(oldestLoaded);
  app.thread.setMore(!!(p && p.more) || idx > 0, true);
}

async function loadEarlier() {
  const loaded = [...app.paging.keys()];
  const oldestLoaded = app.convs.find((c) => loaded.includes(c));
  if (!oldestLoaded) return;
  const p = app.paging.get(oldestLoaded);
  if (p.more) return loadPage(oldestLoaded);
  const idx = app.convs.indexOf(oldestLoaded);
  if (idx > 0) return loadPage(app.convs[idx - 1]);
}

/** Make `conv` the one new messages go to; `fresh`: we just opened it, so it has no history yet. */
function setCurrent(conv, state, fresh = false) {
  if (!app.convs.includes(conv)) {
    app.convs.push(conv);
    app.thread.rank(conv, app.convs.length - 1);
  }
  if (conv !== app.current) {
    app.current = conv;
    app.agent = "";
    app.position = 0;
    if (fresh) app.paging.set(conv, { oldest: null, more: false });
    else if (app.ready && !app.paging.has(conv)) loadPage(conv);  // opened elsewhere (another tab)
  }
  if (state) app.state = state;
}

function onMsg(m) {
  if (m.kind === "note") return;  // never sent to buyers anyway
  if (!app.convs.includes(m.conv)) setCurrent(m.conv);  // its state comes with conv.state
  app.thread.add(m);
  saveCursor();
  if (m.kind === "member" && m.name && m.conv === app.current && !app.agent) { app.agent = m.name; paintStatus(); }
  if (document.visibilityState === "visible" && m.kind === "member") markRead(m.conv, m.seq);
}

let readTimer = null;
function markRead(conv, seq) {
  clearTimeout(readTimer);
  readTimer = setTimeout(() => app.sock.request("read", { conv, seq }).catch(() => {}), 300);
}

function onConvState(s) {
  if (s.conv !== app.current) {
    if (s.state === "closed") return;  // an older conversation
    setCurrent(s.conv, s.state);
  }
  const was = app.state;
  app.state = s.state;
  if (s.state === "active") { app.agent = s.agent || app.agent; app.position = 0; }
  if (s.state === "queued") app.position = s.position || app.position;
  if (s.state === "closed" && was !== "closed") closedDivider(s.conv, Date.now());
  paintStatus();
}

function closedDivider(conv, ts) {
  app.closed.add(conv);
  app.thread.add({ conv, seq: Infinity, kind: "note", text: t("buyer.ended"), ts: ts || Date.now() });
}

function paintStatus() {
  const line = $("#status-line");
  const qb = $("#queue-bar");
  const closed = app.state === "closed";
  $("#closed-bar").hidden = !closed;
  $("#closed-bar").textContent = t("buyer.closed");
  if (app.state === "queued" && app.position > 0) {
    qb.hidden = false;
    $("#queue-num").textContent = app.position;
    $("#queue-text").textContent = app.position <= 1 ? t("buyer.queuedNext") : t("buyer.queued", { n: app.position, ahead: app.position - 1 });
  } else {
    qb.hidden = true;
  }
  if (app.state === "active" && app.agent) {
    line.replaceChildren(el("span.dot.online"), el("span", { testid: "agent-name" }, t("buyer.served", { agent: app.agent })));
  } else {
    line.replaceChildren(el("span.dot.online"), el("span", t("buyer.online")));
  }
}

function saveCursor() {
  const c = app.current;
  if (!c) return;
  const seq = app.sock.cursors.get(c);
  if (seq !== undefined) localStorage.setItem(cursorKey(), JSON.stringify({ [c]: seq }));
}

function send(text) {
  const cid = newCid();
  app.thread.addPending(cid, text, { name: t("buyer.me"), from: `buyer:${app.buyer}`, conv: app.current });
  if (!app.sock || app.sock.state !== "open") app.thread.markPending(cid, "queued");
  if (app.sock) transmit(cid, text);
  else app.early.push([cid, text]);
}

function transmit(cid, text) {
  const th = app.thread;
  // no conv: the server uses the open conversation at this store, or opens (and dispatches) one
  app.sock.sendMessage({ cid, text, to: addressed || undefined }).then((r) => {
    if (r.conv !== app.current) {
      setCurrent(r.conv, "queued", true);
      $("#closed-bar").hidden = true;
    }
    th.confirm(cid, r.seq, { conv: r.conv, kind: "buyer", from: app.buyer });
    if (r.dispatch) {
      onConvState({ conv: r.conv, state: r.dispatch.state, position: r.dispatch.position, agent: r.dispatch.agent });
    }
  }, (e) => th.markPending(cid, "failed", errText(e)));
}

async function leaveQueue() {
  try {
    const r = await app.sock.request("conv.leave", { conv: app.current });
    onConvState({ conv: r.conv, state: "closed" });
    toast(t("buyer.left"));
  } catch (e) {
    toast(errText(e), "error");
  }
}
