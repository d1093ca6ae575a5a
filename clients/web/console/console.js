// Agent console (客服工作台): sign in as seller:member (+ verification code, + stores to serve, R4),
// an online/idle switch (R5–R9), conversations pushed as they are assigned, full history, sending
// with optimistic display and retry, close / restart / transfer (R16–R20), internal chat (R21),
// work orders (R22–R24), and a resume after any reconnect that loses nothing (R17).
import { KefuSocket, newCid } from "../common/ws.js";
import { ThreadView, composer } from "../common/thread.js";
import { connBanner } from "../common/conn.js";
import { signIn } from "../common/login.js";
import {
  $, $$, el, tr, fill, api, t, errText, toast, avatar, buyerLabel, buyerTail, fmtTime, fmtDuration, modal, field, storeLabel,
  debounce, icon,
} from "../common/util.js";
import { hydrateIcons } from "../common/icons.js";
import { applyI18n, langButton, onLangChange } from "../common/i18n.js";

const SESSION = "kefu.console";
// R24: open → in_progress → done; open or in_progress → cancelled (PROTOCOL.md §4.1)
const WO_NEXT = { open: ["in_progress", "cancelled"], in_progress: ["done", "cancelled"], done: [], cancelled: [] };

const S = {
  session: null,          // {token, seller, member, storeNames, serving, status}
  me: null,               // the member record from auth
  status: "offline",
  sock: null,
  convs: new Map(),       // conv -> view (+ local fields: removed, with, fresh)
  msgs: new Map(),        // conv -> Map(seq -> msg)
  paging: new Map(),      // conv -> {oldest, more, loaded}
  pending: new Map(),     // conv -> Map(cid -> {text, state, why})
  contacts: new Map(),    // member -> {member, name, status, main}
  groups: [],             // [{group, name}] offered for transfers and work orders
  selected: null,
  tab: "chats",
  filter: "active",
  closedLoaded: false,
  thread: null,
  wo: { box: "pending", items: [], counts: null, selected: null, error: "", types: ["refund", "exchange", "logistics", "complaint", "invoice", "other"] },
};

applyI18n();
hydrateIcons();
window.kefu = S;  // for diagnostics in the browser's console (and the end-to-end tests)

// ---- sign in ---------------------------------------------------------------------------------

function loadSession() {
  try { return JSON.parse(sessionStorage.getItem(SESSION) || "null"); } catch { return null; }
}

async function showLogin(error = "") {
  $("#app").hidden = true;
  const mount = $("#login-mount");
  mount.hidden = false;
  const { reply, card } = await signIn(mount, { app: "app.console", error });
  const canServe = reply.member.perms.includes("serve") || reply.member.main;
  let serving = reply.stores, status = "online";
  if (canServe && reply.stores.length) ({ serving, status } = await chooseStores(card, reply));
  const sess = { token: reply.token, seller: reply.seller, member: reply.member, storeNames: reply.store_names || {},
    serving, status };
  sessionStorage.setItem(SESSION, JSON.stringify(sess));
  mount.hidden = true;
  mount.replaceChildren();
  startApp(sess, true);
}

/** R4: the stores to serve now, and whether to start online or idle. */
function chooseStores(card, reply) {
  return new Promise((resolve) => {
    const names = reply.store_names || {};
    const boxes = reply.stores.map((s) => el("label.check", el("input", { type: "checkbox", name: "store", value: s, checked: true,
      testid: `store-${s}` }), storeLabel(names, s)));
    let status = "online";
    const seg = el("div.seg", { role: "radiogroup" }, ["online", "idle"].map((st) =>
      el("button", { type: "button", "aria-selected": String(st === status), testid: `start-${st}`, disabled: reply.member.main && st === "idle",
        onclick: (e) => { status = st; for (const b of seg.children) b.setAttribute("aria-selected", String(b === e.currentTarget)); } },
        el("span.dot." + st), tr("span", "status." + st))));
    const err = el("div.form-error", { hidden: true, testid: "stores-error" });
    const form = el("form",
      el("div.field", tr("span.field-label", "login.stores"), el("div.store-choices.checks", boxes), tr("span.field-hint", "login.storesHint")),
      el("div.field", tr("span.field-label", "login.startStatus"), seg),
      err,
      tr("button.btn.primary.block", "login.start", { type: "submit", testid: "start-serving" }));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const serving = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
      if (!serving.length) { err.textContent = t("login.noStores"); err.hidden = false; return; }
      resolve({ serving, status });
    });
    card.querySelector("form").replaceWith(form);
    card.querySelector(".sub").textContent = `${reply.member.name} · ${reply.member.login}`;
  });
}

function logout(error = "") {
  if (S.sock) S.sock.stop();
  S.sock = null;
  sessionStorage.removeItem(SESSION);
  location.hash = "";
  resetState();
  showLogin(error);
}

function resetState() {
  S.convs.clear(); S.msgs.clear(); S.paging.clear(); S.pending.clear(); S.contacts.clear();
  S.selected = null; S.closedLoaded = false; S.wo = { ...S.wo, box: "pending", items: [], counts: null, selected: null, error: "" };
}

// ---- the app -----------------------------------------------------------------------------

let wired = false;

function startApp(sess, fresh) {
  S.session = sess;
  S.me = sess.member;
  $("#app").hidden = false;
  $("#login-mount").hidden = true;
  if (!wired) wireOnce();
  paintWho();
  paintServing();
  let firstStatus = fresh ? sess.status : null;
  const sock = (S.sock = new KefuSocket({
    token: sess.token,
    auth: () => {
      const a = { stores: S.session.serving };
      if (firstStatus) { a.status = firstStatus; firstStatus = null; }
      return a;
    },
  }));
  $("#banner-mount").replaceChildren();
  connBanner(sock, $("#banner-mount"));
  sock.on("open", onOpen);
  sock.on("state", ({ state }) => {
    document.body.dataset.conn = state;
    for (const [conv, m] of S.pending) for (const [cid, p] of m) if (p.state !== "failed") {
      p.state = state === "open" ? "sending" : "queued";
      if (conv === S.selected && S.thread) S.thread.markPending(cid, p.state);
    }
  });
  sock.on("fatal", ({ code }) => logout(code));
  sock.on("msg", onMsg);
  sock.on("conv.assigned", onAssigned);
  sock.on("conv.removed", onRemoved);
  sock.on("conv.state", onConvState);
  sock.on("presence", onPresence);
  sock.on("internal", ({ conv, with: other }) => { upsert({ conv, kind: "internal", with: other, state: "active" }); paintTeam(); });
  sock.on("wo", onWo);
  sock.start();
}

function wireOnce() {
  wired = true;
  langButton($("#lang"));
  onLangChange(() => {
    paintAll();
    if (S.tab === "wo" && S.wo.selected) openWo(S.wo.selected);
    else if (S.selected) renderChat();
  });
  $("#logout").onclick = () => logout();
  $("#status-switch").onclick = toggleStatus;
  for (const b of $$(".rail-btn")) b.onclick = () => setTab(b.dataset.tab);
  for (const b of $$("[data-filter]")) b.onclick = () => setFilter(b.dataset.filter);
  for (const b of $$("#wo-boxes [data-box]")) b.onclick = () => setBox(b.dataset.box);
  $("#search").addEventListener("input", debounce(paintList, 120));
  const c = composer($("#input"), sendText);
  $("#composer").onsubmit = (e) => { e.preventDefault(); c.submit(); };
  document.addEventListener("keydown", (e) => {
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "s" || e.key === "S" || e.code === "KeyS") { e.preventDefault(); toggleStatus(); }
    if (e.key === "ArrowDown" || e.key === "ArrowUp") { e.preventDefault(); stepConv(e.key === "ArrowDown" ? 1 : -1); }
  });
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible" && S.selected) markRead(S.selected); });
}

async function onOpen(data) {
  S.me = data.member;
  S.session.member = data.member;
  S.status = data.status;
  if (data.serving) S.session.serving = data.serving;
  sessionStorage.setItem(SESSION, JSON.stringify(S.session));
  paintStatus();
  paintWho();
  paintServing();
  const sock = S.sock;
  // what is mine now: conversations may have been assigned, transferred or closed while away
  try {
    const { convs } = await sock.request("conv.list", { state: "active" });
    const live = new Set(convs.map((v) => v.conv));
    for (const v of convs) {
      const known = S.convs.get(v.conv);
      upsert({ ...v, removed: null });
      if (!known || !S.paging.get(v.conv)?.loaded) loadHistory(v.conv);
    }
    for (const v of S.convs.values()) {
      if (v.kind !== "internal" && v.state === "active" && !live.has(v.conv)) {
        // gone while we were away: ask what became of it
        sock.request("conv.get", { conv: v.conv }).then(
          (nv) => upsert(nv.state === "active" && nv.member !== S.me.member
            ? { ...nv, state: "transferred", removed: { reason: "transfer", to: nv.member } } : nv),
          () => upsert({ conv: v.conv, state: "closed" }));
      }
    }
  } catch (e) {
    toast(errText(e), "error");
  }
  refreshContacts();
  loadGroups();
  refreshWoCounts();
  S.sock.request("wo.types").then((r) => { if (r.types && r.types.length) S.wo.types = r.types; }, () => {});
  if (S.tab === "wo") loadWo();
  if (S.filter === "closed") loadClosed();
  paintAll();
  if (data.resumed && S.selected) renderChat();
}

// ---- model -----------------------------------------------------------------------------

/**
 * Merge a conversation view. Unread = newest seq − read mark: a server view gives the mark
 * (seq − unread), messages raise seq, reading moves the mark — no counting, so nothing counts twice.
 */
function upsert(v) {
  const cur = S.convs.get(v.conv) || { conv: v.conv, seq: 0, readMark: 0 };
  const { unread, ...rest } = v;
  const seq = Math.max(cur.seq || 0, rest.seq || 0);
  Object.assign(cur, rest, { seq });
  if (typeof unread === "number" && typeof v.seq === "number") cur.readMark = Math.max(0, v.seq - unread);
  if (cur.kind === "internal" && !cur.with && S.me) cur.with = cur.a === S.me.member ? cur.b : cur.a;
  S.convs.set(v.conv, cur);
  paintListSoon();
  if (v.conv === S.selected) paintChatHead();
  return cur;
}

function unreadOf(v) {
  return Math.max(0, (v.seq || 0) - (v.readMark ?? v.seq ?? 0));
}

function msgsOf(conv) {
  let m = S.msgs.get(conv);
  if (!m) S.msgs.set(conv, (m = new Map()));
  return m;
}

function storeMsgs(conv, list) {
  const m = msgsOf(conv);
  const v = S.convs.get(conv);
  for (const x of list) {
    m.set(x.seq, x);
    if (!v) continue;
    v.seq = Math.max(v.seq || 0, x.seq);
    if (!v.last_ts || x.ts >= v.last_ts) { v.last_ts = x.ts; v.last_text = x.text; v.last_kind = x.kind; }
  }
}

async function loadHistory(conv, older = false) {
  const p = S.paging.get(conv) || { oldest: null, more: true, loaded: false };
  if (older && !p.more) return;
  const req = { conv, limit: 50 };
  if (older && p.oldest) req.before = p.oldest;
  if (conv === S.selected && S.thread) S.thread.loading = true;
  try {
    const h = await S.sock.request("history", req);
    storeMsgs(conv, h.messages);
    if (h.messages.length && (!p.oldest || h.messages[0].seq < p.oldest)) p.oldest = h.messages[0].seq;
    if (older || !p.loaded) p.more = h.more;
    p.loaded = true;
    S.paging.set(conv, p);
    if (conv === S.selected && S.thread) {
      S.thread.add(h.messages, { older });
      S.thread.setMore(p.more);
      if (!older) markRead(conv);
    }
    paintListSoon();
  } catch (e) {
    if (conv === S.selected) toast(errText(e), "error");
  } finally {
    if (conv === S.selected && S.thread) S.thread.loading = false;
  }
}

// ---- events ----------------------------------------------------------------------------

function onMsg(m) {
  let v = S.convs.get(m.conv);
  if (!v) {
    v = upsert({ conv: m.conv, kind: m.store ? "buyer" : "internal", state: "active", store: m.store || undefined });
    S.sock.request("conv.get", { conv: m.conv }).then((nv) => { upsert(nv); paintTeam(); }, () => {});
  }
  storeMsgs(m.conv, [m]);
  const mine = m.kind === "member" && m.from === S.me.member;
  if (m.conv === S.selected && S.thread) {
    S.thread.add(m);
    const pend = S.pending.get(m.conv);
    if (pend && m.cid) pend.delete(m.cid);
    if (document.visibilityState === "visible") markRead(m.conv);
  }
  if (mine) v.readMark = Math.max(v.readMark || 0, m.seq);  // writing means having read
  paintListSoon();
  if (v.kind === "internal") paintTeam();
}

function onAssigned(d) {
  const wasGone = S.convs.get(d.conv);
  const v = upsert({ conv: d.conv, kind: "buyer", store: d.store, buyer: d.buyer, state: "active", reason: d.reason,
    from: d.from, transfer: d.transfer || null, candidates: d.candidates, removed: null, assigned_at: Date.now(), fresh: true });
  if (d.seq && (!v.seq || d.seq > v.seq)) v.seq = d.seq;
  loadHistory(d.conv);
  // the stored view: unread count (against the read mark), timings
  S.sock.request("conv.get", { conv: d.conv }).then((view) => {
    if (S.convs.get(d.conv)?.state !== "active") return;
    const { reason, ...rest } = view;
    upsert(rest);
    if (d.conv === S.selected) markRead(d.conv);
  }, () => {});
  const who = buyerLabel(d.buyer);
  if ((!wasGone || wasGone.state !== "active") && d.reason !== "restart") toast(t("new.conv", { buyer: who, store: storeLabel(S.session.storeNames, d.store) }), "info");
  setTimeout(() => { v.fresh = false; paintListSoon(); }, 2500);
  if (S.filter !== "active" && S.tab === "chats") setFilter("active");
  paintAll();
}

function onRemoved(d) {
  const v = S.convs.get(d.conv);
  if (!v) return;
  v.state = "transferred";
  v.removed = { reason: d.reason, to: d.to };
  S.pending.delete(d.conv);
  paintAll();
  if (d.conv === S.selected) renderChat();
}

function onConvState(d) {
  const v = S.convs.get(d.conv);
  if (!v) return;
  v.state = d.state;
  if (d.state === "closed") v.closed_at = Date.now();
  paintAll();
  if (d.conv === S.selected) renderChat();
}

function onPresence(p) {
  if (S.me && p.member === S.me.member) {
    S.status = p.status;
    paintStatus();
    return;
  }
  const c = S.contacts.get(p.member) || { member: p.member, main: p.member === S.session.seller };
  c.status = p.status;
  if (p.name) c.name = p.name;
  S.contacts.set(p.member, c);
  paintTeam();
  document.dispatchEvent(new CustomEvent("kefu:contacts"));
  if (S.selected && S.convs.get(S.selected)?.with === p.member) paintChatHead();
}

async function refreshContacts() {
  try {
    const { members } = await S.sock.request("contacts");
    S.contacts.clear();
    for (const m of members) S.contacts.set(m.member, m);
    paintTeam();
    document.dispatchEvent(new CustomEvent("kefu:contacts"));
  } catch (e) { /* shown on use */ }
}

/** Groups for transfers and work orders: the admin list when we may read it, else our own groups. */
async function loadGroups() {
  const mine = (S.me.groups || []).map((g) => ({ group: g, name: g }));
  S.groups = mine;
  if (!(S.me.perms || []).includes("dashboard") && !S.me.main) return;
  try {
    const r = await api("GET", "/api/admin/groups", undefined, S.session.token);
    S.groups = r.groups.map((g) => ({ group: g.group, name: g.name || g.group }));
  } catch { /* keep our own */ }
}

// ---- status (R5–R9) -------------------------------------------------------------------------

async function toggleStatus() {
  if (!S.sock) return;
  if (S.me.main) { toast(t("err.cannot_suspend_main"), "error"); return; }  // R8
  const btn = $("#status-switch");
  btn.disabled = true;
  try {
    const r = await S.sock.request("status.set", { status: S.status === "idle" ? "online" : "idle" });
    S.status = r.status;
  } catch (e) {
    toast(errText(e), "error");
  } finally {
    btn.disabled = false;
    paintStatus();
  }
}

function paintStatus() {
  const sw = $("#status-switch");
  const st = S.status || "offline";
  sw.className = "switch " + st;
  sw.dataset.status = st;
  $("#status-label").textContent = t("status." + st);
  sw.disabled = !!(S.me && S.me.main);
  sw.title = S.me && S.me.main ? t("err.cannot_suspend_main") : t("me.toggleHint");
}

function paintWho() {
  const me = S.me;
  if (!me) return;
  $("#who").replaceChildren(avatar(me.name, me.member, "small"),
    el("div", el("div", me.name), el("small", me.login)));
}

function paintServing() {
  const names = S.session.storeNames || {};
  $("#serving").replaceChildren(...(S.session.serving || []).map((s) => el("span.badge.store", { title: t("me.serving") }, storeLabel(names, s))));
}

function paintLoad() {
  const n = [...S.convs.values()].filter((v) => v.kind !== "internal" && v.state === "active").length;
  const cap = (S.me && S.me.capacity) || 0;
  const pct = cap ? Math.min(100, (n / cap) * 100) : 0;
  $("#load-meter").replaceChildren(el("span", t("me.load")),
    el("div.loadbar" + (n >= cap && cap ? ".full" : pct >= 70 ? ".high" : ""), el("i", { style: `width:${pct}%` })),
    el("b", { testid: "load-text" }, `${n}/${cap}`));
}

// ---- tabs and lists ------------------------------------------------------------------------

function setTab(tab) {
  S.tab = tab;
  for (const b of $$(".rail-btn")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  for (const p of $$(".pane")) p.hidden = p.dataset.pane !== tab;
  if (tab === "wo") {
    loadWo();
    showMain(S.wo.selected ? "wo" : "empty");
  } else if (S.selected) {
    const v = S.convs.get(S.selected);
    if ((tab === "team") !== (v && v.kind === "internal")) { S.selected = null; showMain("empty"); } else showMain("chat");
  } else showMain("empty");
  paintAll();
}

function setFilter(f) {
  S.filter = f;
  for (const b of $$("[data-filter]")) b.setAttribute("aria-selected", String(b.dataset.filter === f));
  if (f === "closed") loadClosed();
  paintList();
}

async function loadClosed() {
  try {
    const { convs } = await S.sock.request("conv.list", { state: "closed", limit: 50 });
    for (const v of convs) if (!S.convs.has(v.conv) || S.convs.get(v.conv).state !== "active") upsert(v);
    S.closedLoaded = true;
    paintList();
  } catch (e) { toast(errText(e), "error"); }
}

const paintListSoon = (() => {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; paintList(); paintBadges(); paintLoad(); });
  };
})();

function paintAll() {
  paintList();
  paintTeam();
  paintBadges();
  paintLoad();
  paintStatus();
  paintWoBoxes();
  if (S.selected) paintChatHead();
}

function buyerConvs() {
  return [...S.convs.values()].filter((v) => v.kind !== "internal");
}

function reasonLabel(v) {
  const r = v.reason || "";
  if (!r || r === "queued") return "";
  const [head, step] = r.split(":");
  let s = t("reason." + head);
  if (step && step !== head) s += " · " + t("reason." + step);
  const from = v.transfer?.from_name || (v.from && nameOf(v.from));
  if ((head === "transfer" || head === "redispatch") && from) s += " · " + t("reason.from", { name: from });
  return s;
}

function nameOf(member) {
  if (!member) return "";
  if (S.me && member === S.me.member) return S.me.name;
  return S.contacts.get(member)?.name || member;
}

function convMatches(v, q) {
  if (!q) return true;
  q = q.toLowerCase();
  return [buyerLabel(v.buyer), v.buyer, v.last_text, storeLabel(S.session.storeNames, v.store)].some((x) => (x || "").toLowerCase().includes(q));
}

function paintList() {
  const ul = $("#conv-list");
  const q = $("#search").value.trim();
  const all = buyerConvs();
  const active = all.filter((v) => v.state === "active" || (v.state === "transferred" && v.conv === S.selected));
  $("#n-active").textContent = all.filter((v) => v.state === "active").length;
  let rows;
  if (S.filter === "active") rows = active.sort((a, b) => (b.last_ts || b.assigned_at || 0) - (a.last_ts || a.assigned_at || 0));
  else rows = all.filter((v) => v.state === "closed" || v.state === "transferred")
    .sort((a, b) => (b.closed_at || b.last_ts || 0) - (a.closed_at || a.last_ts || 0));
  rows = rows.filter((v) => convMatches(v, q));
  if (!rows.length) {
    ul.replaceChildren(el("li.empty", el("div.big", icon(S.filter === "active" ? "coffee" : "inbox", 26)),
      t(S.filter === "active" ? "list.emptyActive" : "list.emptyClosed")));
    return;
  }
  ul.replaceChildren(...rows.map(convItem));
}

function convItem(v) {
  const who = buyerLabel(v.buyer);
  const reason = reasonLabel(v);
  const last = v.last_kind === "note" ? `[${t("msg.system")}] ${v.last_text}` : (v.last_kind === "member" ? "↩ " : "") + (v.last_text || "");
  const li = el("li.conv-item" + (v.fresh ? ".new" : "") + (v.state !== "active" ? ".gone" : ""), {
    tabindex: 0, role: "option", "aria-selected": String(v.conv === S.selected), testid: "conv-item",
    dataset: { conv: v.conv, buyer: v.buyer || "", state: v.state || "" },
    onclick: () => select(v.conv), onkeydown: (e) => { if (e.key === "Enter") select(v.conv); },
  },
  avatar(buyerTail(v.buyer), v.buyer),
  el("div.title", el("span.name", { testid: "conv-buyer" }, who), el("span.badge.store", { testid: "conv-store" }, storeLabel(S.session.storeNames, v.store))),
  el("time", fmtTime(v.last_ts || v.assigned_at)),
  el("div.last", { testid: "conv-last" }, last || "…"),
  el("div.right", unreadOf(v) ? el("span.count", { testid: "conv-unread" }, unreadOf(v) > 99 ? "99+" : unreadOf(v)) : null),
  reason || v.state !== "active" ? el("div.tags",
    reason ? el("span.badge.reason", { testid: "conv-reason" }, reason) : null,
    v.state === "transferred" ? el("span.badge.warn", t("chat.removed")) : null,
    v.state === "closed" ? el("span.badge", t("state.closed")) : null) : null);
  return li;
}

function paintTeam() {
  const ul = $("#team-list");
  const internals = [...S.convs.values()].filter((v) => v.kind === "internal");
  const byMember = new Map(internals.map((v) => [v.with, v]));
  const order = { online: 0, idle: 1, offline: 2 };
  const people = [...S.contacts.values()].sort((a, b) => (order[a.status] ?? 3) - (order[b.status] ?? 3) || (a.name || "").localeCompare(b.name || ""));
  if (!people.length) { ul.replaceChildren(el("li.empty", t("team.empty"))); return; }
  ul.replaceChildren(...people.map((c) => {
    const v = byMember.get(c.member);
    const st = c.status || "offline";
    return el("li.conv-item", {
      tabindex: 0, testid: "contact", dataset: { member: c.member, status: st },
      "aria-selected": String(!!v && v.conv === S.selected),
      onclick: () => openInternal(c.member), onkeydown: (e) => { if (e.key === "Enter") openInternal(c.member); },
    },
    el("span.avatar-wrap", avatar(c.name || c.member, c.member), el("span.dot." + st)),
    el("div.title", el("span.name", c.name || c.member), c.main ? el("span.badge", t("team.main")) : null),
    el("time", v && v.last_ts ? fmtTime(v.last_ts) : ""),
    el("div.last", { testid: "contact-status" }, v && v.last_text ? v.last_text : t("status." + st)),
    el("div.right", v && unreadOf(v) ? el("span.count", { testid: "contact-unread" }, unreadOf(v)) : null));
  }));
  paintBadges();
}

function paintBadges() {
  let chats = 0, team = 0;
  for (const v of S.convs.values()) {
    if (v.kind === "internal") team += unreadOf(v);
    else if (v.state === "active") chats += unreadOf(v);
  }
  const set = (id, n) => { const b = $(id); b.hidden = !n; b.textContent = n > 99 ? "99+" : n; };
  set("#badge-chats", chats);
  set("#badge-team", team);
  set("#badge-wo", S.wo.counts ? S.wo.counts.pending || 0 : 0);
  document.title = (chats + team ? `(${chats + team}) ` : "") + `${t("app.console")} · kefu`;
}

function stepConv(dir) {
  const items = $$(S.tab === "team" ? "#team-list .conv-item" : "#conv-list .conv-item");
  if (!items.length) return;
  const i = items.findIndex((n) => n.getAttribute("aria-selected") === "true");
  const next = items[Math.max(0, Math.min(items.length - 1, i + dir))];
  next.click();
  next.focus();
}

// ---- the chat view ---------------------------------------------------------------------

function showMain(which) {
  $("#main-empty").hidden = which !== "empty";
  $("#chat").hidden = which !== "chat";
  $("#wo-detail").hidden = which !== "wo";
}

function select(conv) {
  S.selected = conv;
  renderChat();
  paintList();
  paintTeam();
  $("#input").focus();
}

async function openInternal(member) {
  try {
    const r = await S.sock.request("internal.open", { member });
    upsert({ conv: r.conv, kind: "internal", with: r.with || member, state: "active" });
    select(r.conv);
  } catch (e) { toast(errText(e), "error"); }
}

function renderChat() {
  const conv = S.selected;
  const v = S.convs.get(conv);
  if (!v) { showMain("empty"); return; }
  showMain("chat");
  $("#chat").classList.toggle("internal", v.kind === "internal");
  $("#chat").dataset.conv = conv;
  S.thread = new ThreadView($("#chat-thread"), {
    mine: (m) => m.kind === "member" && m.from === S.me.member,
    nameOf: (m) => (m.kind === "buyer" ? buyerLabel(m.from) : m.name || nameOf(m.from)),
    avatarOf: (m) => (m.kind === "buyer" ? buyerTail(m.from) : m.name || nameOf(m.from)),
    onLoadEarlier: () => loadHistory(conv, true),
    onRetry: (cid, text) => { S.pending.get(conv)?.delete(cid); sendText(text); },
  });
  const p = S.paging.get(conv);
  S.thread.add([...msgsOf(conv).values()]);
  S.thread.setMore(p ? p.more : false, !!p);
  for (const [cid, pm] of S.pending.get(conv) || []) {
    S.thread.addPending(cid, pm.text, { name: S.me.name, from: `member:${S.me.member}`, conv });
    S.thread.markPending(cid, pm.state, pm.why);
  }
  S.thread.scrollToBottom();
  if (!p || !p.loaded) loadHistory(conv);
  else markRead(conv);
  paintChatHead();
  paintInfo(v);
}

function paintChatHead() {
  const v = S.convs.get(S.selected);
  if (!v) return;
  const head = $("#chat-head");
  const bar = $("#chat-bar");
  const composerForm = $("#composer");
  const actions = el("div.actions");
  let title;
  if (v.kind === "internal") {
    const c = S.contacts.get(v.with) || { name: v.with, status: "offline" };
    title = el("div.title", el("h2", el("span", { testid: "chat-title" }, t("chat.internalWith", { name: c.name || v.with })),
      el("span.pill." + (c.status || "offline"), el("span.dot." + (c.status || "offline")), t("status." + (c.status || "offline")))),
    el("div.sub", t("chat.internalHint")));
    head.replaceChildren(avatar(c.name || v.with, v.with), title);
    bar.hidden = true;
    composerForm.hidden = false;
    return;
  }
  const who = buyerLabel(v.buyer);
  const reason = reasonLabel(v);
  title = el("div.title",
    el("h2", el("span", { testid: "chat-title" }, who), el("span.badge.store", storeLabel(S.session.storeNames, v.store)),
      v.state !== "active" ? el("span.badge" + (v.state === "transferred" ? ".warn" : ""), { testid: "chat-state" }, t(v.state === "transferred" ? "chat.removed" : "state." + v.state)) : null),
    el("div.sub", reason ? el("span.badge.reason", { testid: "chat-reason" }, reason) : null,
      v.assigned_at ? el("span", t("chat.since", { t: fmtTime(v.assigned_at) })) : null,
      el("span.mono", v.buyer || "")));
  const canTransfer = (S.me.perms || []).includes("transfer") || S.me.main;
  const canWo = (S.me.perms || []).includes("wo_create") || S.me.main;
  if (v.state === "active") {
    if (canTransfer) actions.append(el("button.btn", { type: "button", testid: "transfer", onclick: () => transferDialog(v) }, icon("transfer", 16), t("chat.transfer")));
    if (canWo) actions.append(el("button.btn", { type: "button", testid: "create-wo", onclick: () => woDialog(v) }, icon("clipboard", 16), t("chat.wo")));
    actions.append(el("button.btn.danger", { type: "button", testid: "close-conv", onclick: () => closeConv(v) }, icon("end", 14), t("chat.close")));
  } else if (v.state === "closed") {
    if (canWo) actions.append(el("button.btn", { type: "button", testid: "create-wo", onclick: () => woDialog(v) }, icon("clipboard", 16), t("chat.wo")));
    actions.append(el("button.btn.primary", { type: "button", testid: "restart-conv", onclick: () => restartConv(v) }, icon("restart", 16), t("chat.restart")));
  }
  head.replaceChildren(avatar(buyerTail(v.buyer), v.buyer), title, actions);
  if (v.state === "active") {
    bar.hidden = true;
    composerForm.hidden = false;
  } else {
    composerForm.hidden = true;
    bar.hidden = false;
    if (v.state === "transferred") {
      bar.replaceChildren(t("chat.removedBar", { to: nameOf(v.removed?.to) || t("xfer.toGroup") }));
    } else {
      bar.replaceChildren(t("chat.closedBar"), " ", el("button.link", { type: "button", onclick: () => restartConv(v) }, t("chat.closedRestart")));
    }
  }
}

async function paintInfo(v) {
  const box = $("#info");
  if (v.kind === "internal") { box.hidden = true; return; }
  box.hidden = false;
  const render = (view, xfers, wos) => {
    const dl = (pairs) => el("dl", pairs.filter(([, x]) => x !== undefined && x !== null && x !== "").flatMap(([k, x]) => [el("dt", k), el("dd", x)]));
    const wait = view.assigned_at && view.created && view.reason !== "transfer" ? fmtDuration((view.first_assigned || view.assigned_at) - view.created) : "";
    const fr = view.first_resp && view.first_buyer ? fmtDuration(view.first_resp - view.first_buyer) : "";
    const cands = view.candidates || [];
    fill(box,
      el("h3", t("visitor")),
      dl([[t("info.buyer"), el("span.mono", view.buyer)], [t("dash.store"), storeLabel(S.session.storeNames, view.store)]]),
      el("h3", t("wo.conv")),
      dl([[t("info.id"), el("span.mono", view.conv)],
        [t("dash.colStatus"), t(view.state === "transferred" ? "chat.removed" : "state." + view.state)],
        [t("info.created"), view.created ? fmtTime(view.created) : ""], [t("info.wait"), wait], [t("info.firstResp"), fr],
        [t("info.reason"), reasonLabel(view)], [t("chat.transfer"), view.transfers ? String(view.transfers) : ""]]),
      xfers && xfers.length ? el("h3", t("info.transfers")) : null,
      xfers && xfers.length ? el("ul.xfer", { testid: "info-transfers" }, xfers.map((x) => el("li",
        `${fmtTime(x.ts)} ${nameOf(x.from)} → ${x.to ? nameOf(x.to) : x.group || ""}${x.reason ? "：" + x.reason : ""}`))) : null,
      wos && wos.length ? el("h3", t("wo.buyer")) : null,
      wos && wos.length ? el("ul.xfer", { testid: "info-wos" }, wos.map((w) => el("li", el("button.link", { type: "button",
        onclick: () => { setTab("wo"); openWo(woId(w)); } }, woId(w)), ` ${woType(w.type)} · `,
        el("span.badge.st-" + w.status, t("wo.status." + w.status))))) : null,
      cands.length ? el("h3", t("info.candidates")) : null,
      cands.length ? el("ul.cand", cands.map((c) => el("li", el("span", nameOf(c.member)),
        el("span", `${c.load ?? ""}/${c.cap ?? ""} · ${t("verdict." + c.verdict) === "verdict." + c.verdict ? c.verdict : t("verdict." + c.verdict)}`)))) : null);
  };
  render(v, null);
  try {
    const [view, xf, wo] = await Promise.all([
      S.sock.request("conv.get", { conv: v.conv }),
      S.sock.request("conv.transfers", { conv: v.conv }).catch(() => ({ transfers: [] })),
      v.buyer ? S.sock.request("wo.list", { box: "all", buyer: v.buyer, limit: 10 }).catch(() => ({ items: [] })) : { items: [] },
    ]);
    if (S.selected !== v.conv) return;
    const merged = { ...v, ...view, state: v.state === "transferred" ? "transferred" : view.state, candidates: v.candidates };
    render(merged, xf.transfers, wo.items);
  } catch { /* keep the local view */ }
}

let readTimers = new Map();
function markRead(conv) {
  clearTimeout(readTimers.get(conv));
  const v = S.convs.get(conv);
  if (v) v.readMark = v.seq || 0;
  paintListSoon();
  readTimers.set(conv, setTimeout(() => {
    const seq = Math.max(0, ...msgsOf(conv).keys());
    if (seq && S.sock && S.sock.state === "open") S.sock.request("read", { conv, seq }).catch(() => {});
  }, 250));
}

function sendText(text) {
  const conv = S.selected;
  const v = S.convs.get(conv);
  if (!conv || !v || v.state !== "active") return;
  const cid = newCid();
  let pend = S.pending.get(conv);
  if (!pend) S.pending.set(conv, (pend = new Map()));
  const p = { text, state: S.sock.state === "open" ? "sending" : "queued", why: "" };
  pend.set(cid, p);
  S.thread.addPending(cid, text, { name: S.me.name, from: `member:${S.me.member}`, conv });
  if (p.state === "queued") S.thread.markPending(cid, "queued");
  S.sock.sendMessage({ cid, text, conv }).then((r) => {
    pend.delete(cid);
    if (conv === S.selected && S.thread) S.thread.confirm(cid, r.seq, { conv, kind: "member", from: S.me.member, name: S.me.name });
  }, (e) => {
    p.state = "failed";
    p.why = errText(e);
    if (conv === S.selected && S.thread) S.thread.markPending(cid, "failed", p.why);
  });
}

async function closeConv(v) {
  try {
    await S.sock.request("conv.close", { conv: v.conv });
    v.state = "closed";
    v.closed_at = Date.now();
    paintAll();
    renderChat();
  } catch (e) { toast(errText(e), "error"); }
}

async function restartConv(v) {
  try {
    await S.sock.request("conv.restart", { conv: v.conv });
    upsert({ conv: v.conv, state: "active", reason: "restart", removed: null });
    if (S.filter !== "active") setFilter("active");
    renderChat();
  } catch (e) { toast(errText(e), "error"); }
}

// ---- transfer (R18–R20) --------------------------------------------------------------------

function transferDialog(v) {
  let mode = "member";
  const list = el("div.pick-list", { testid: "xfer-members" });
  const paintMembers = () => {
    const checked = list.querySelector("input:checked")?.value;
    const online = [...S.contacts.values()].filter((c) => c.status === "online" && c.member !== S.me.member);
    list.replaceChildren(...(online.length ? online.map((c) => el("label.pick", { testid: "xfer-member", dataset: { member: c.member } },
      el("input", { type: "radio", name: "to_member", value: c.member, checked: c.member === checked }),
      el("span.avatar-wrap", avatar(c.name, c.member, "small"), el("span.dot.online")),
      el("span.grow", c.name, " ", el("small", c.member)), el("span.pill.online", t("status.online"))))
      : [el("div.empty", { testid: "xfer-none" }, t("xfer.noMember"))]));
  };
  paintMembers();
  const onContacts = () => paintMembers();
  document.addEventListener("kefu:contacts", onContacts);
  const groupSel = el("select", { name: "to_group", testid: "xfer-group" },
    S.groups.map((g) => el("option", { value: g.group }, g.name === g.group ? g.group : `${g.name} (${g.group})`)));
  const groupBox = el("div", { hidden: true }, field(t("xfer.group"), groupSel));
  const seg = el("div.seg", { style: "margin-bottom:14px" }, [["member", "xfer.toMember"], ["group", "xfer.toGroup"]].map(([k, label]) =>
    el("button", { type: "button", "aria-selected": String(k === mode), testid: `xfer-mode-${k}`, onclick: (e) => {
      mode = k;
      for (const b of seg.children) b.setAttribute("aria-selected", String(b === e.currentTarget));
      list.parentElement.hidden = k !== "member";
      groupBox.hidden = k !== "group";
    } }, t(label))));
  const body = [seg, el("div", el("div.field-label", { style: "margin-bottom:6px" }, t("xfer.member")), list), groupBox,
    field(t("xfer.reason"), el("input", { type: "text", name: "reason", maxlength: 200, testid: "xfer-reason" }))];
  modal({ title: t("xfer.title"), body, submit: t("xfer.submit"), testid: "transfer-dialog", onOpen: (dlg, onSubmit) => onSubmit(async (vals) => {
    const data = { conv: v.conv };
    if (vals.reason) data.reason = vals.reason;
    if (mode === "member") {
      if (!vals.to_member) return t("xfer.pick");
      data.to_member = vals.to_member;
    } else {
      if (!vals.to_group) return t("xfer.pick");
      data.to_group = vals.to_group;
    }
    try {
      const r = await S.sock.request("conv.transfer", data);
      if (r.state === "queued") toast(t("xfer.queued", { to: data.to_group, n: r.position }), "ok");
      else toast(t("xfer.done", { to: nameOf(r.member || data.to_member) }), "ok");
      return null;
    } catch (e) { return errText(e); }
  }) }).finally(() => document.removeEventListener("kefu:contacts", onContacts));
}

// ---- work orders (R22–R24) ------------------------------------------------------------------

function woDialog(v) {
  let mode = "member";
  const people = [...S.contacts.values()];
  const memberSel = el("select", { name: "handler_member", testid: "wo-handler-member" },
    el("option", { value: "" }, "—"),
    people.map((c) => el("option", { value: c.member }, `${c.name} (${c.member}) · ${t("status." + (c.status || "offline"))}`)));
  const groupSel = el("select", { name: "handler_group", testid: "wo-handler-group", hidden: true },
    el("option", { value: "" }, "—"), S.groups.map((g) => el("option", { value: g.group }, g.name)));
  const seg = el("div.seg", [["member", "wo.handlerMember"], ["group", "wo.handlerGroup"]].map(([k, label]) =>
    el("button", { type: "button", "aria-selected": String(k === mode), onclick: (e) => {
      mode = k;
      for (const b of seg.children) b.setAttribute("aria-selected", String(b === e.currentTarget));
      memberSel.hidden = k !== "member";
      groupSel.hidden = k !== "group";
    } }, t(label))));
  const body = [
    field(t("wo.type"), el("select", { name: "type", testid: "wo-type" }, S.wo.types.map((x) => el("option", { value: x }, woType(x))))),
    field(t("wo.content"), el("textarea", { name: "content", rows: 4, required: true, maxlength: 4000, testid: "wo-content" })),
    field(t("wo.order"), el("input", { type: "text", name: "order", maxlength: 64, testid: "wo-order" })),
    el("div.field", el("span.field-label", t("wo.handler")), seg, memberSel, groupSel),
  ];
  modal({ title: t("wo.new"), body, submit: t("create"), testid: "wo-dialog", onOpen: (dlg, onSubmit) => onSubmit(async (vals) => {
    if (!vals.content || !vals.content.trim()) return t("err.invalid") + ": " + t("wo.content");
    const data = { type: vals.type, content: vals.content.trim(), conv: v.conv, buyer: v.buyer, store: v.store };
    if (vals.order) data.order = vals.order.trim();
    if (mode === "member" && vals.handler_member) data.handler_member = vals.handler_member;
    else if (mode === "group" && vals.handler_group) data.handler_group = vals.handler_group;
    else return t("wo.pickHandler");
    try {
      const w = await S.sock.request("wo.create", data);
      toast(t("wo.created", { wo: woId(w) }), "ok");
      refreshWoCounts();
      if (S.tab === "wo") loadWo();
      return null;
    } catch (e) { return t("wo.unavailable", { err: errText(e) }); }
  }) });
}

const woId = (w) => w.wo ?? "";
const woType = (x) => (t("wo.t." + x) === "wo.t." + x ? x : t("wo.t." + x));
const groupName = (g) => (S.groups.find((x) => x.group === g)?.name) || g;
/** "m:bob" -> Bob 小波, "g:aftersales" -> 售后 After-sales (the handler key of §4.1). */
const handlerName = (key) => {
  if (!key) return "";
  if (key.startsWith("m:")) return nameOf(key.slice(2));
  if (key.startsWith("g:")) return groupName(key.slice(2));
  return nameOf(key);
};
const woHandler = (w) => handlerName(w.handler || (w.handler_member ? "m:" + w.handler_member : w.handler_group ? "g:" + w.handler_group : ""));
const woCreator = (w) => nameOf(w.creator || "");

function setBox(box) {
  S.wo.box = box;
  paintWoBoxes();
  loadWo();
}

function paintWoBoxes() {
  for (const b of $$("#wo-boxes [data-box]")) {
    b.setAttribute("aria-selected", String(b.dataset.box === S.wo.box));
    const n = b.querySelector("[data-count]");
    n.textContent = S.wo.counts ? S.wo.counts[b.dataset.box] ?? 0 : "–";
  }
  paintBadges();
}

async function refreshWoCounts() {
  try {
    S.wo.counts = await S.sock.request("wo.counts");
    S.wo.error = "";
  } catch (e) {
    S.wo.counts = null;
    S.wo.error = t("wo.unavailable", { err: errText(e) });
  }
  paintWoBoxes();
  paintWoError();
}

function paintWoError() {
  const box = $("#wo-error");
  box.hidden = !S.wo.error;
  box.textContent = S.wo.error;
}

async function loadWo() {
  if (!S.sock || S.sock.state !== "open") return;
  try {
    const r = await S.sock.request("wo.list", { box: S.wo.box, limit: 50 });
    S.wo.items = r.items || [];
    if (r.counts) S.wo.counts = r.counts;
    S.wo.error = "";
  } catch (e) {
    S.wo.items = [];
    S.wo.error = t("wo.unavailable", { err: errText(e) });
  }
  paintWoError();
  paintWoBoxes();
  paintWoList();
}

function paintWoList() {
  const ul = $("#wo-list");
  if (!S.wo.items.length) { fill(ul, S.wo.error ? null : el("li.empty", el("div.big", icon("clipboard", 26)), t("wo.empty"))); return; }
  ul.replaceChildren(...S.wo.items.map((w) => el("li.conv-item.wo-item", {
    tabindex: 0, testid: "wo-item", dataset: { wo: woId(w), status: w.status || "" },
    "aria-selected": String(String(woId(w)) === String(S.wo.selected)),
    onclick: () => openWo(woId(w)), onkeydown: (e) => { if (e.key === "Enter") openWo(woId(w)); },
  },
  el("div.title", `${woId(w)} · ${woType(w.type)}`),
  el("time", fmtTime(w.updated || w.created || w.ts)),
  el("div.last", { testid: "wo-item-content" }, w.content || ""),
  el("div.tags", el("span.badge.st-" + (w.status || "open"), { testid: "wo-status" }, t("wo.status." + (w.status || "open"))),
    woHandler(w) ? el("span.badge", "→ " + woHandler(w)) : null,
    w.order ? el("span.badge", icon("box", 12), w.order) : null))));
}

async function openWo(id) {
  S.wo.selected = id;
  paintWoList();
  showMain("wo");
  const box = $("#wo-detail");
  box.replaceChildren(el("div.empty", t("loading")));
  let w;
  try {
    w = await S.sock.request("wo.get", { wo: id });
  } catch (e) {
    w = S.wo.items.find((x) => String(woId(x)) === String(id));
    if (!w) { box.replaceChildren(el("div.wo-error", t("wo.unavailable", { err: errText(e) }))); return; }
  }
  paintWoDetail(w);
}

function paintWoDetail(w) {
  const box = $("#wo-detail");
  const comment = el("input", { type: "text", placeholder: t("wo.comment"), testid: "wo-comment", maxlength: 500 });
  const canCancel = S.me.main || (S.me.perms || []).includes("wo_cancel");
  const next = (WO_NEXT[w.status] || []).filter((s) => s !== "cancelled" || canCancel);
  const inGroup = (w.handler || "").startsWith("g:") && (S.me.groups || []).includes(w.handler.slice(2));
  const update = async (data) => {
    try {
      if (comment.value.trim()) data.comment = comment.value.trim();
      const nw = await S.sock.request("wo.update", { wo: woId(w), ...data });
      refreshWoCounts();
      loadWo();
      openWo(woId(nw));
    } catch (e) { toast(t("wo.unavailable", { err: errText(e) }), "error"); }
  };
  const conv = w.conv ? el("button.link", { type: "button", onclick: () => jumpToConv(w.conv) }, w.conv) : null;
  const open = w.status === "open" || w.status === "in_progress";
  fill(box, el("div.card",
    el("div.card-head", el("h2", `${woId(w)} · ${woType(w.type)}`),
      el("span.badge.st-" + (w.status || "open"), { testid: "wo-detail-status" }, t("wo.status." + (w.status || "open")))),
    el("div.card-body",
      el("div.content", { testid: "wo-detail-content" }, w.content || ""),
      el("dl",
        el("dt", t("wo.handler")), el("dd", { testid: "wo-detail-handler" }, woHandler(w) || "—"),
        el("dt", t("wo.by")), el("dd", woCreator(w) || "—"),
        el("dt", t("wo.conv")), el("dd", conv || "—"),
        el("dt", t("visitor")), el("dd", w.buyer ? buyerLabel(w.buyer) : "—"),
        el("dt", t("dash.store")), el("dd", storeLabel(S.session.storeNames, w.store) || "—"),
        el("dt", t("wo.orderNo")), el("dd", w.order || "—"),
        el("dt", t("info.created")), el("dd", fmtTime(w.created))),
      el("div.wo-actions", comment,
        inGroup && open ? el("button.btn", { type: "button", testid: "wo-act-take", onclick: () => update({ handler_member: S.me.member }) }, t("wo.act.take")) : null,
        next.map((st) => el("button.btn" + (st === "cancelled" ? ".danger" : ".primary"),
          { type: "button", testid: `wo-act-${st}`, onclick: () => update({ status: st }) }, t("wo.act." + st))),
        el("button.btn", { type: "button", testid: "wo-act-comment", onclick: () => { if (comment.value.trim()) update({}); else comment.focus(); } }, t("wo.act.comment"))),
      Array.isArray(w.history) && w.history.length ? el("h3", t("wo.history")) : null,
      Array.isArray(w.history) && w.history.length ? el("ul.hist", { testid: "wo-history" }, w.history.map(historyLine)) : null)));
}

/** One history entry (§4.1): created {to, status}, status {from, to}, handler/taken {from, to}, comment {text}. */
function historyLine(h) {
  let what = t("wo.h." + h.action) === "wo.h." + h.action ? h.action : t("wo.h." + h.action);
  if (h.action === "status") what += `：${t("wo.status." + h.from)} → ${t("wo.status." + h.to)}`;
  else if (h.action === "handler" || h.action === "taken") what += `：${handlerName(h.from) || "—"} → ${handlerName(h.to)}`;
  else if (h.action === "created") what += ` → ${handlerName(h.to)}`;
  else if (h.action === "comment") what += `：${h.text || ""}`;
  return el("li", el("time.faint", fmtTime(h.ts)), " · ", el("b", nameOf(h.by)), " ", what);
}

function jumpToConv(conv) {
  setTab("chats");
  if (!S.convs.has(conv)) {
    S.sock.request("conv.get", { conv }).then((v) => { upsert(v); select(conv); }, (e) => toast(errText(e), "error"));
  } else select(conv);
}

function onWo(d) {
  refreshWoCounts();
  const sel = S.convs.get(S.selected);
  if (sel && sel.buyer && sel.buyer === d.buyer && S.tab === "chats") paintInfo(sel);  // the buyer's work orders
  S.sock.request("wo.types").then((r) => { if (r.types && r.types.length) S.wo.types = r.types; }, () => {});
  if (S.tab === "wo") loadWo();
  const mine = d.by === S.me.member;
  const act = t("wo.a." + d.action) === "wo.a." + d.action ? d.action || "" : t("wo.a." + d.action);
  if (!mine) toast(t("wo.event", { wo: d.wo, action: `${act}${d.content ? " — " + d.content.slice(0, 40) : ""}` }), "info");
  if (S.wo.selected && String(S.wo.selected) === String(d.wo) && S.tab === "wo") openWo(d.wo);
}

// ---- boot --------------------------------------------------------------------------------

const saved = loadSession();
if (saved && saved.token) startApp(saved, false);
else showLogin();
