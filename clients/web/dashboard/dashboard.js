// Admin presence dashboard (客服分流 · 实时数据): every member's live status, load and conversations
// with a suspend/resume switch (R9), the queues with their oldest wait, today's figures when the
// stats API is there (R26), and member / group / store / permission management (R1–R4).
// Live by push: `dash.snapshot` once, then `presence`, `load` and `queue` events; a cheap
// re-snapshot every 30 s is only a safety net.
import { KefuSocket } from "../common/ws.js";
import { connBanner } from "../common/conn.js";
import { signIn } from "../common/login.js";
import {
  $, $$, el, fill, api, t, errText, toast, avatar, fmtTime, fmtDuration, modal, field, debounce, icon,
} from "../common/util.js";
import { hydrateIcons } from "../common/icons.js";
import { applyI18n, langButton, onLangChange } from "../common/i18n.js";

const SESSION = "kefu.dashboard";
const PERMS = ["serve", "transfer", "dashboard", "manage", "wo_create", "wo_cancel", "wo_export"];
const ROLES = {
  agent: ["serve", "transfer", "wo_create"],
  supervisor: ["serve", "transfer", "wo_create", "dashboard", "wo_cancel", "wo_export"],
  manager: PERMS,
  viewer: ["dashboard"],
};

const D = {
  session: null,
  me: null,
  sock: null,
  members: new Map(),     // member -> {member, name, status, want, load, cap, convs, main, routable}
  queues: new Map(),      // queue -> {queue, length, oldest}
  offset: 0,              // server clock - local clock (ms)
  ts: 0,
  stats: undefined,       // undefined: not asked yet; null: not available
  admin: { members: [], quota: 0, groups: [], stores: [], seller: null },
  mtab: "members",
  flash: new Set(),
};

applyI18n();
hydrateIcons();
window.kefu = D;  // for diagnostics in the browser's console (and the end-to-end tests)

const can = (p) => !!D.me && (D.me.main || (D.me.perms || []).includes(p));
const now = () => Date.now() + D.offset;

// ---- sign in ---------------------------------------------------------------------------------

async function showLogin(error = "") {
  $("#app").hidden = true;
  const mount = $("#login-mount");
  mount.hidden = false;
  const { reply } = await signIn(mount, { app: "app.dashboard", error });
  if (!reply.member.main && !reply.member.perms.includes("dashboard")) {
    showLogin("dash.needDashboard");
    return;
  }
  const sess = { token: reply.token, seller: reply.seller, member: reply.member, storeNames: reply.store_names || {} };
  sessionStorage.setItem(SESSION, JSON.stringify(sess));
  mount.hidden = true;
  mount.replaceChildren();
  start(sess);
}

function logout(error = "") {
  if (D.sock) D.sock.stop();
  D.sock = null;
  sessionStorage.removeItem(SESSION);
  D.members.clear();
  D.queues.clear();
  showLogin(error);
}

let wired = false;
let resnap = null, ticker = null;

function start(sess) {
  D.session = sess;
  D.me = sess.member;
  $("#app").hidden = false;
  if (!wired) {
    wired = true;
    langButton($("#lang"));
    onLangChange(() => { paintAll(); paintManage(); });
    $("#logout").onclick = () => logout();
    for (const b of $$("[data-mtab]")) b.onclick = () => { D.mtab = b.dataset.mtab; paintManage(); };
  }
  $("#seller-name").textContent = sess.seller;
  $("#who").replaceChildren(avatar(D.me.name, D.me.member, "small"), el("div", el("div", D.me.name), el("small", D.me.login)));
  // app "dashboard": a watch-only connection — it never makes anyone online or routable
  const sock = (D.sock = new KefuSocket({ token: sess.token, auth: () => ({ app: "dashboard" }) }));
  $("#banner-mount").replaceChildren();
  connBanner(sock, $("#banner-mount"));
  sock.on("state", ({ state }) => { document.body.dataset.conn = state; });
  sock.on("fatal", ({ code }) => logout(code));
  sock.on("open", async (data) => {
    D.me = data.member;
    await snapshot();
    loadAdmin();
    loadStats();
  });
  sock.on("presence", onPresence);
  sock.on("load", onLoad);
  sock.on("queue", onQueue);
  sock.start();
  clearInterval(resnap);
  resnap = setInterval(() => { if (sock.state === "open") { snapshot(); loadStats(); } }, 30000);
  clearInterval(ticker);
  ticker = setInterval(paintWaits, 1000);
}

// ---- live data -----------------------------------------------------------------------------

async function snapshot() {
  try {
    const s = await D.sock.request("dash.snapshot");
    D.offset = s.ts - Date.now();
    D.ts = s.ts;
    D.members.clear();
    for (const m of s.members) D.members.set(m.member, m);
    D.queues.clear();
    for (const q of s.queues) D.queues.set(q.queue, q);
    paintAll();
  } catch (e) {
    if (e.code === "forbidden") logout("dash.needDashboard");
    else toast(errText(e), "error");
  }
}

const resnapSoon = debounce(() => { if (D.sock && D.sock.state === "open") snapshot(); }, 800);

function onPresence(p) {
  const m = D.members.get(p.member);
  if (!m) { resnapSoon(); return; }
  m.status = p.status;
  if (p.status !== "offline") m.want = p.status;
  if (p.name) m.name = p.name;
  D.flash.add(p.member);
  paintMembers();
  paintKpis();
}

function onLoad(l) {
  const m = D.members.get(l.member);
  if (!m) { resnapSoon(); return; }
  m.load = l.load;
  m.cap = l.cap;
  paintMembers();
  paintKpis();
  resnapSoon();   // which conversations: the load event carries counts only
  restatSoon();   // an assignment, a close or a transfer: today's figures moved
}

const restatSoon = debounce(() => { if (D.sock && D.sock.state === "open") loadStats(); }, 1500);

function onQueue(q) {
  const cur = D.queues.get(q.queue) || { queue: q.queue };
  cur.length = q.length;
  cur.oldest = q.oldest;
  D.queues.set(q.queue, cur);
  paintQueues();
  paintKpis();
}

async function loadStats() {
  const tz = -new Date().getTimezoneOffset();  // "today" as the browser's clock reads it
  try {
    D.stats = await api("GET", `/api/admin/stats?by=member&tz=${tz}`, undefined, D.session.token);
  } catch (e) {
    D.stats = null;
  }
  paintKpis();
  paintMembers();
}

// ---- painting --------------------------------------------------------------------------

function paintAll() {
  paintKpis();
  paintMembers();
  paintQueues();
  $("#updated").textContent = D.ts ? t("dash.updated", { t: fmtTime(D.ts) }) : "";
}

function kpi(cls, label, value, small, testid) {
  return el("div.kpi." + cls, { testid }, el("div.label", label), el("div.value", value, small ? el("small", small) : null));
}

function paintKpis() {
  const ms = [...D.members.values()];
  const n = (st) => ms.filter((m) => m.status === st).length;
  const waiting = [...D.queues.values()].reduce((a, q) => a + (q.length || 0), 0);
  const serving = ms.reduce((a, m) => a + (m.load || 0), 0);
  const cap = ms.filter((m) => m.status !== "offline").reduce((a, m) => a + (m.cap || 0), 0);
  const tiles = [
    kpi("online", [el("span.dot.online"), t("dash.online")], n("online"), null, "kpi-online"),
    kpi("idle", [el("span.dot.idle"), t("dash.idle")], n("idle"), null, "kpi-idle"),
    kpi("offline", [el("span.dot.offline"), t("dash.offline")], n("offline"), null, "kpi-offline"),
    kpi("queue", [icon("clock", 14), t("dash.waiting")], waiting, null, "kpi-waiting"),
    kpi("load", [icon("chat", 14), t("dash.serving")], serving, `/ ${cap}`, "kpi-serving"),
  ];
  fill($("#kpis"), tiles);
  fill($("#today-tiles"), statTiles().map(([label, value, key]) => el("div.stat", { testid: "stat", dataset: { key } },
    el("div.stat-value", value), el("div.stat-label", label))));
  const note = $("#stats-note");
  note.hidden = D.stats !== null;
  note.textContent = t("dash.statsMissing");
}

const STAT_TILES = [
  ["conversations", "st.conversations"], ["served", "st.served"], ["first_resp_avg_ms", "st.firstResp"],
  ["resp_avg_ms", "st.resp"], ["queue_wait_avg_ms", "st.wait"], ["left_queue", "st.left"],
];

/** Today's figures (R26) from GET /api/admin/stats: the seller's totals. */
function statTiles() {
  const tot = D.stats && D.stats.total;
  if (!tot) return [];
  return STAT_TILES.filter(([k]) => k in tot).map(([k, label]) => [t(label), k.endsWith("_ms") ? (tot[k] === null ? "–" : fmtDuration(tot[k])) : tot[k], k]);
}

function statOf(member) {
  return D.stats && (D.stats.rows || []).find((r) => r.key === member);
}

const STATUS_ORDER = { online: 0, idle: 1, offline: 2 };

function paintMembers() {
  const body = $("#members-body");
  const ms = [...D.members.values()].sort((a, b) => (b.main - a.main) || (STATUS_ORDER[a.status] - STATUS_ORDER[b.status]) || a.name.localeCompare(b.name));
  $("#members-sub").textContent = `${ms.length}`;
  const manage = can("manage");
  fill(body, ms.map((m) => {
    const pct = m.cap ? Math.min(100, (m.load / m.cap) * 100) : 0;
    const suspended = m.want === "idle";
    const sw = el("button.switch.mini." + (suspended ? "idle" : "online"), {
      type: "button", testid: "suspend-switch", dataset: { member: m.member, want: m.want || "online" },
      disabled: m.main || !manage, title: m.main ? t("dash.mainNoSuspend") : (suspended ? t("dash.resume") : t("dash.suspend")),
      onclick: () => setStatus(m, suspended ? "online" : "idle"),
    }, el("span.knob"), t(suspended ? "status.idle" : "status.online"));
    const tr = el("tr" + (D.flash.has(m.member) ? ".flash" : ""), { testid: "member-row", dataset: { member: m.member, status: m.status } },
      el("td", el("div.member-cell",
        el("span.avatar-wrap", avatar(m.name, m.member, "small"), el("span.dot." + m.status)),
        el("div", el("div", m.name, m.main ? el("span.badge", t("team.main")) : null), el("small", m.member === D.session.seller ? m.member : `${D.session.seller}:${m.member}`)))),
      el("td", el("span.pill." + m.status, { testid: "member-status" }, el("span.dot." + m.status), t("status." + m.status)),
        m.status === "offline" && m.want === "idle" ? el("div.faint", { style: "font-size:11px;margin-top:3px" }, t("dash.wantIdle")) : null,
        !m.routable && m.status !== "offline" ? el("div.faint", { style: "font-size:11px;margin-top:3px" }, t("dash.notRoutable")) : null),
      el("td", el("div.load-cell",
        el("div.loadbar" + (m.cap && m.load >= m.cap ? ".full" : pct >= 70 ? ".high" : ""), el("i", { style: `width:${pct}%` })),
        el("b", { testid: "member-load" }, `${m.load}/${m.cap}`))),
      el("td.num", { testid: "member-today" }, (() => {
        const st = statOf(m.member);
        if (!st) return el("span.faint", "–");
        return [el("b", st.served), st.first_resp_avg_ms !== null && st.first_resp_avg_ms !== undefined ? el("div.faint", { style: "font-size:11px" }, `${t("st.firstRespShort")} ${fmtDuration(st.first_resp_avg_ms)}`) : null];
      })()),
      el("td", el("div.conv-chips", { testid: "member-convs" }, (m.convs || []).slice(0, 6).map((c) =>
        el("span.badge.conv-chip", { title: c, onclick: () => explain(c) }, c.slice(-6))),
      (m.convs || []).length > 6 ? el("span.badge", `+${m.convs.length - 6}`) : null,
      !(m.convs || []).length ? el("span.faint", "—") : null)),
      el("td", sw));
    return tr;
  }));
  D.flash.clear();
}

function queueLabel(q) {
  const [kind, id] = [q.slice(0, 1), q.slice(2)];
  if (kind === "s") {
    const name = D.session.storeNames[id] || D.admin.stores.find((s) => s.store === id)?.name || id;
    return [el("span.badge.store", t("dash.store")), name];
  }
  const g = D.admin.groups.find((x) => x.group === id);
  return [el("span.badge", t("dash.group")), g ? g.name : id];
}

function paintQueues() {
  const qs = [...D.queues.values()].sort((a, b) => (b.length || 0) - (a.length || 0) || a.queue.localeCompare(b.queue));
  $("#queues-sub").textContent = `${qs.reduce((a, q) => a + (q.length || 0), 0)}`;
  if (!qs.length) { fill($("#queues-body"), el("tr", el("td", { colspan: 3 }, el("div.empty", t("dash.noQueue"))))); return; }
  fill($("#queues-body"), qs.map((q) => el("tr", { testid: "queue-row", dataset: { queue: q.queue, length: q.length || 0 } },
    el("td", el("div.queue-name", queueLabel(q.queue), el("small", q.queue))),
    el("td.num", el("span.qlen" + (q.length ? "" : ".zero"), { testid: "queue-length" }, q.length || 0)),
    el("td.num", el("span.wait", { testid: "queue-wait", dataset: { oldest: q.length ? q.oldest || 0 : 0 } }, "–")))));
  paintWaits();
}

function paintWaits() {
  for (const w of $$("#queues-body .wait")) {
    const oldest = Number(w.dataset.oldest || 0);
    if (!oldest) { w.textContent = "–"; w.className = "wait"; continue; }
    const ms = now() - oldest;
    w.textContent = fmtDuration(ms);
    w.className = "wait" + (ms > 120000 ? " bad" : ms > 30000 ? " warn" : "");
  }
}

async function setStatus(m, status) {
  try {
    const r = await D.sock.request("status.set", { member: m.member, status });
    m.want = r.want || status;
    if (r.status) m.status = r.status;
    toast(t(status === "idle" ? "dash.suspended" : "dash.resumed", { name: m.name }), "ok");
    paintMembers();
    paintKpis();
  } catch (e) {
    toast(errText(e), "error");
  }
}

async function explain(conv) {
  let x;
  try {
    x = await api("GET", `/api/admin/conversations/${encodeURIComponent(conv)}`, undefined, D.session.token);
  } catch (e) { toast(errText(e), "error"); return; }
  const name = (id) => D.members.get(id)?.name || id;
  modal({
    title: `${t("wo.conv")} ${conv}`, submit: t("close"), wide: true, testid: "explain-dialog",
    body: [el("dl.explain", { style: "display:grid;grid-template-columns:auto 1fr;gap:6px 16px;margin:0 0 14px" },
      el("dt.faint", t("dash.colStatus")), el("dd", { style: "margin:0" }, t("state." + x.state)),
      el("dt.faint", t("dash.colMember")), el("dd", { style: "margin:0" }, name(x.member) || "—"),
      el("dt.faint", t("info.reason")), el("dd", { style: "margin:0" }, x.reason || "—"),
      el("dt.faint", t("dash.colQueue")), el("dd", { style: "margin:0" }, x.queue || "—")),
    (x.candidates || []).length ? el("table.grid", el("thead", el("tr", el("th", t("dash.colMember")), el("th", t("dash.colStatus")), el("th.num", t("dash.colLoad")), el("th", t("info.reason")))),
      el("tbody", x.candidates.map((c) => el("tr", el("td", name(c.member)), el("td", t("status." + c.status)), el("td.num", `${c.load}/${c.cap}`), el("td", c.verdict))))) : null,
    (x.transfers || []).length ? el("ul.hist", { style: "margin-top:14px" }, x.transfers.map((tr) => el("li", `${fmtTime(tr.ts)} ${name(tr.from)} → ${name(tr.to) || tr.group || ""}${tr.reason ? "：" + tr.reason : ""}`))) : null,
    ].filter(Boolean),
  });
}

// ---- management (R1–R4, §8 admin API) -----------------------------------------------------

async function loadAdmin() {
  const tok = D.session.token;
  try {
    const [m, g, s] = await Promise.all([
      api("GET", "/api/admin/members", undefined, tok),
      api("GET", "/api/admin/groups", undefined, tok),
      api("GET", "/api/admin/stores", undefined, tok),
    ]);
    D.admin.members = m.members;
    D.admin.quota = m.quota;
    D.admin.groups = g.groups;
    D.admin.stores = s.stores;
    D.session.storeNames = Object.fromEntries(s.stores.map((x) => [x.store, x.name]));
    try { D.admin.seller = await api("GET", "/api/admin/seller", undefined, tok); } catch { D.admin.seller = null; }
  } catch (e) {
    toast(errText(e), "error");
  }
  paintManage();
  paintQueues();
}

const ADD = { members: "m.addMember", groups: "m.addGroup", stores: "m.addStore" };

function paintManage() {
  for (const b of $$("[data-mtab]")) b.setAttribute("aria-selected", String(b.dataset.mtab === D.mtab));
  const add = $("#manage-add");
  const manage = can("manage");
  add.hidden = !manage || !ADD[D.mtab];
  if (ADD[D.mtab]) {
    add.replaceChildren(icon("plus", 14), t(ADD[D.mtab]));
    add.onclick = () => ({ members: memberDialog, groups: groupDialog, stores: storeDialog })[D.mtab]();
  }
  const subs = D.admin.members.filter((m) => !m.main).length;
  $("#quota").textContent = D.admin.quota ? t("m.quota", { used: subs, quota: D.admin.quota }) : "";
  const body = $("#manage-body");
  if (D.mtab === "members") fill(body, membersTable(manage));
  else if (D.mtab === "groups") fill(body, groupsTable());
  else if (D.mtab === "stores") fill(body, storesTable(manage));
  else fill(body, settingsForm());
}

const groupName = (g) => D.admin.groups.find((x) => x.group === g)?.name || g;
const storeName = (s) => D.admin.stores.find((x) => x.store === s)?.name || s;

function membersTable(manage) {
  const rows = D.admin.members.slice().sort((a, b) => (b.main - a.main) || a.member.localeCompare(b.member));
  return el("table.grid", { testid: "admin-members" },
    el("thead", el("tr", ["m.id", "m.role", "m.perms", "m.groupsField", "m.capacity", "m.expires", "dash.colStatus", ""].map((k) =>
      el("th", k ? t(k).replace(/（.*|\(.*/, "") : "")))),
    el("tbody", rows.map((m) => el("tr", { testid: "admin-member", dataset: { member: m.member } },
      el("td", el("div.member-cell", avatar(m.name, m.member, "small"), el("div", el("div", m.name), el("small", m.login)))),
      el("td", m.main ? el("span.badge", t("team.main")) : t("role." + m.role)),
      el("td", el("div.perm-list", m.perms.map((p) => el("span.badge" + (m.grants.includes(p) ? ".ok" : ""), t("perm." + p))),
        m.revokes.map((p) => el("span.badge.danger", { style: "text-decoration:line-through" }, t("perm." + p))))),
      el("td", m.groups.map(groupName).join("、") || "—", m.stores.length ? el("div.faint", { style: "font-size:12px" }, m.stores.map(storeName).join("、")) : null),
      el("td.num", m.capacity),
      el("td", m.expires ? (m.expires < Date.now() ? el("span.badge.danger", t("m.expired")) : new Date(m.expires).toLocaleDateString()) : el("span.faint", t("m.never"))),
      el("td", m.disabled ? el("span.badge.danger", t("m.disabled")) : el("span.badge.ok", t("m.enabled"))),
      el("td", manage ? el("div.row-actions",
        el("button.btn.small", { type: "button", testid: "edit-member", onclick: () => memberDialog(m) }, t("edit")),
        m.main ? null : el("button.btn.small.danger", { type: "button", testid: "delete-member", onclick: () => deleteMember(m) }, icon("trash", 13))) : null)))));
}

function groupsTable() {
  return el("table.grid", { testid: "admin-groups" },
    el("thead", el("tr", el("th", t("m.groupId")), el("th", t("m.name")), el("th", t("m.members")), el("th", t("m.stores")))),
    el("tbody", D.admin.groups.map((g) => el("tr", { testid: "admin-group", dataset: { group: g.group } },
      el("td.mono", g.group), el("td", g.name),
      el("td", (g.members || []).map((m) => D.members.get(m)?.name || m).join("、") || "—"),
      el("td", D.admin.stores.filter((s) => (s.groups || []).includes(g.group)).map((s) => s.name).join("、") || "—")))));
}

function storesTable(manage) {
  return el("table.grid", { testid: "admin-stores" },
    el("thead", el("tr", el("th", t("m.storeId")), el("th", t("m.name")), el("th", t("m.storeGroups")), el("th", ""))),
    el("tbody", D.admin.stores.map((s) => el("tr", { testid: "admin-store", dataset: { store: s.store } },
      el("td.mono", s.store), el("td", s.name),
      el("td", (s.groups || []).map(groupName).join("、") || "—"),
      el("td", manage ? el("div.row-actions", el("button.btn.small", { type: "button", onclick: () => storeDialog(s) }, t("edit"))) : null)))));
}

function settingsForm() {
  const s = D.admin.seller;
  if (!s) return el("div.empty", t("loading"));
  const mainOnly = !!D.me.main;
  const name = el("input", { type: "text", name: "name", value: s.name || "", disabled: !mainOnly });
  const quota = el("input", { type: "number", name: "quota", min: 0, value: s.quota || 0, disabled: !mainOnly, testid: "set-quota" });
  const policy = el("select", { name: "policy", disabled: !mainOnly }, ["redispatch", "wait"].map((p) =>
    el("option", { value: p, selected: (s.policy || "redispatch") === p }, t("m.policy." + p))));
  const sticky = el("input", { type: "number", name: "sticky", min: 0, step: 1, disabled: !mainOnly,
    value: s.sticky_window ? Math.round(Number(s.sticky_window) / 3600) : "" , placeholder: "72" });
  const otp = el("input", { type: "checkbox", name: "require_otp", checked: s.require_otp === "1" || s.require_otp === 1, disabled: !mainOnly });
  const save = el("button.btn.primary", { type: "submit", disabled: !mainOnly, testid: "save-settings" }, t("save"));
  const form = el("form.settings-form",
    field(t("m.sellerName"), name), field(t("m.quotaField"), quota),
    field(t("m.policy"), policy), field(t("m.sticky"), sticky),
    el("label.check", otp, t("m.otp")),
    mainOnly ? null : el("p.faint", t("m.mainOnly")),
    el("div", save));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim(), quota: Number(quota.value), policy: policy.value, require_otp: otp.checked };
    if (sticky.value !== "") body.sticky_window = Math.round(Number(sticky.value) * 3600);
    try {
      D.admin.seller = await api("PATCH", "/api/admin/seller", body, D.session.token);
      toast(t("m.saved"), "ok");
      loadAdmin();
    } catch (ex) { toast(errText(ex), "error"); }
  });
  return form;
}

function checks(name, options, selected, testid) {
  return el("div.checks", { testid }, options.map(([value, label]) => el("label.check",
    el("input", { type: "checkbox", name, value, checked: selected.includes(value) }), label)));
}

function memberDialog(m = null) {
  const isNew = !m;
  const main = m && m.main;
  const role = el("select", { name: "role", disabled: main, testid: "m-role" }, Object.keys(ROLES).map((r) =>
    el("option", { value: r, selected: (m ? m.role : "agent") === r }, t("role." + r))));
  const permBox = checks("perms", PERMS.map((p) => [p, t("perm." + p)]), m ? m.perms : ROLES.agent, "m-perms");
  role.addEventListener("change", () => {
    for (const i of permBox.querySelectorAll("input")) i.checked = ROLES[role.value].includes(i.value);
  });
  const body = [
    isNew ? field(t("m.id"), el("input", { type: "text", name: "member", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,31}", testid: "m-id" }))
      : field(t("m.id"), el("input", { type: "text", value: m.member, disabled: true })),
    el("div.row",
      field(t("m.name"), el("input", { type: "text", name: "name", value: m ? m.name : "", testid: "m-name" })),
      field(isNew ? t("m.password") : t("m.newPassword"), el("input", { type: "password", name: "password", autocomplete: "new-password", minlength: 6, testid: "m-password" }))),
    el("div.row",
      field(t("m.role"), role),
      field(t("m.capacity"), el("input", { type: "number", name: "capacity", min: 0, max: 1000, value: m ? m.capacity : 5, testid: "m-capacity" }))),
    main ? null : el("div.field", el("span.field-label", t("m.perms")), permBox),
    el("div.field", el("span.field-label", t("m.groupsField")), checks("groups", D.admin.groups.map((g) => [g.group, g.name]), m ? m.groups : [], "m-groups")),
    el("div.field", el("span.field-label", t("m.storesField")), checks("stores", D.admin.stores.map((s) => [s.store, s.name]), m ? m.stores : [], "m-stores")),
    main ? null : el("div.row",
      field(t("m.expires"), el("input", { type: "date", name: "expires", value: m && m.expires ? new Date(m.expires).toISOString().slice(0, 10) : "" })),
      el("label.check", el("input", { type: "checkbox", name: "disabled", checked: !!(m && m.disabled) }), t("m.disabled"))),
  ].filter(Boolean);
  modal({ title: isNew ? t("m.addMember") : `${t("edit")} · ${m.name}`, body, submit: isNew ? t("create") : t("save"), wide: true, testid: "member-dialog",
    onOpen: (dlg, onSubmit) => onSubmit(async (v) => {
      const list = (x) => [].concat(x || []);
      const perms = list(v.perms);
      const r = main ? null : role.value;
      const out = { name: v.name || undefined, capacity: Number(v.capacity), groups: list(v.groups), stores: list(v.stores) };
      if (!main) {
        out.role = r;
        out.grants = perms.filter((p) => !ROLES[r].includes(p));
        out.revokes = ROLES[r].filter((p) => !perms.includes(p));
        out.expires = v.expires ? new Date(v.expires + "T23:59:59").getTime() : 0;
        out.disabled = !!v.disabled;
      }
      if (v.password) out.password = v.password;
      try {
        if (isNew) {
          out.member = v.member;
          delete out.disabled;
          await api("POST", "/api/admin/members", out, D.session.token);
          toast(t("m.created"), "ok");
        } else {
          await api("PATCH", `/api/admin/members/${encodeURIComponent(m.member)}`, out, D.session.token);
          toast(t("m.saved"), "ok");
        }
        loadAdmin();
        snapshot();
        return null;
      } catch (e) { return errText(e) + (e.message && errText(e) !== e.message ? ` (${e.message})` : ""); }
    }) });
}

async function deleteMember(m) {
  const ok = await modal({ title: t("m.confirmDelete", { m: m.login }), body: [el("p", m.name)], submit: t("delete"), testid: "delete-dialog" });
  if (!ok) return;
  try {
    await api("DELETE", `/api/admin/members/${encodeURIComponent(m.member)}`, undefined, D.session.token);
    loadAdmin();
    snapshot();
  } catch (e) { toast(errText(e), "error"); }
}

function groupDialog() {
  modal({ title: t("m.addGroup"), submit: t("create"), testid: "group-dialog",
    body: [field(t("m.groupId"), el("input", { type: "text", name: "group", required: true, testid: "g-id" })),
      field(t("m.name"), el("input", { type: "text", name: "name", testid: "g-name" }))],
    onOpen: (dlg, onSubmit) => onSubmit(async (v) => {
      try {
        await api("POST", "/api/admin/groups", { group: v.group, name: v.name }, D.session.token);
        loadAdmin();
        return null;
      } catch (e) { return errText(e); }
    }) });
}

function storeDialog(s = null) {
  const isNew = !s;
  modal({ title: isNew ? t("m.addStore") : `${t("edit")} · ${s.name}`, submit: isNew ? t("create") : t("save"), testid: "store-dialog",
    body: [isNew ? field(t("m.storeId"), el("input", { type: "text", name: "store", required: true, testid: "s-id" }))
      : field(t("m.storeId"), el("input", { type: "text", value: s.store, disabled: true })),
    field(t("m.name"), el("input", { type: "text", name: "name", value: s ? s.name : "", testid: "s-name" })),
    el("div.field", el("span.field-label", t("m.storeGroups")), checks("groups", D.admin.groups.map((g) => [g.group, g.name]), s ? s.groups : [], "s-groups"))],
    onOpen: (dlg, onSubmit) => onSubmit(async (v) => {
      const groups = [].concat(v.groups || []);
      try {
        if (isNew) {
          const r = await api("POST", "/api/admin/stores", { store: v.store, name: v.name, groups }, D.session.token);
          modal({ title: t("m.created"), body: [el("p", t("m.secret", { s: "" })), el("div.secret", { testid: "store-secret" }, r.secret)], submit: t("ok") });
        } else {
          await api("PATCH", `/api/admin/stores/${encodeURIComponent(s.store)}`, { name: v.name, groups }, D.session.token);
          toast(t("m.saved"), "ok");
        }
        loadAdmin();
        snapshot();
        return null;
      } catch (e) { return errText(e); }
    }) });
}

// ---- boot --------------------------------------------------------------------------------

let saved = null;
try { saved = JSON.parse(sessionStorage.getItem(SESSION) || "null"); } catch { saved = null; }
if (saved && saved.token) start(saved);
else showLogin();
