// ThreadView: a conversation's messages in seq order, each once — shared by the console and the
// buyer page (which may show a buyer's earlier conversations above the current one). Confirmed
// messages are keyed by (conv, seq); optimistic ones by cid until the server's copy (same cid)
// arrives. System notes (kind "note") are centered grey lines.
import { el, tr, fmtTime, avatar, t } from "./util.js";

const GROUP_MS = 3 * 60 * 1000;

export class ThreadView {
  /**
   * @param {HTMLElement} root
   * @param {object} o
   * @param {(m: object) => boolean} o.mine        is this message from the viewer?
   * @param {(m: object) => string} [o.nameOf]     display name for a sender
   * @param {(m: object) => string} [o.avatarOf]   text the avatar's initials come from (default: the name)
   * @param {() => void} [o.onLoadEarlier]
   * @param {(cid: string) => void} [o.onRetry]
   */
  constructor(root, { mine, nameOf = (m) => m.name || m.from, avatarOf = null, onLoadEarlier, onRetry }) {
    this.root = root;
    this.avatarOf = avatarOf || nameOf;
    this.ranks = new Map();   // conv -> order (a buyer's page shows several conversations, oldest first)
    this.mine = mine;
    this.nameOf = nameOf;
    this.onRetry = onRetry;
    this.top = el("div.thread-top");
    this.earlier = tr("button.btn.ghost.small", "msg.earlier", { type: "button", testid: "load-earlier", hidden: true,
      onclick: () => onLoadEarlier && onLoadEarlier() });
    this.start = tr("div.thread-start", "msg.start", { hidden: true });
    this.top.append(this.earlier, this.start);
    this.list = el("div.thread-list", { testid: "messages", role: "log", "aria-live": "polite" });
    this.root.classList.add("thread");
    this.root.replaceChildren(this.top, this.list);
    this.byKey = new Map();   // "conv#seq" -> row
    this.byCid = new Map();   // pending only
    this.root.addEventListener("scroll", () => {
      if (this.root.scrollTop < 40 && !this.earlier.hidden && !this._loading && onLoadEarlier) onLoadEarlier();
    });
  }

  reset() {
    this.list.replaceChildren();
    this.byKey.clear();
    this.ranks.clear();
    this.byCid.clear();
    this.setMore(false, false);
  }

  setMore(more, known = true) {
    this.earlier.hidden = !more;
    this.start.hidden = more || !known;
  }

  set loading(v) {
    this._loading = v;
    this.earlier.disabled = v;
  }

  get size() {
    return this.byKey.size;
  }

  /** Order conversations: a conversation ranked lower is shown above. Unknown ones go last. */
  rank(conv, r) {
    this.ranks.set(conv, r);
  }

  _rank(conv) {
    if (!this.ranks.has(conv)) this.ranks.set(conv, this.ranks.size ? Math.max(...this.ranks.values()) + 1 : 0);
    return this.ranks.get(conv);
  }

  _before(aConv, aSeq, bConv, bSeq) {
    const ra = this._rank(aConv), rb = this._rank(bConv);
    return ra !== rb ? ra < rb : aSeq < bSeq;
  }

  has(conv, seq) {
    return this.byKey.has(`${conv}#${seq}`);
  }

  _nearBottom() {
    const r = this.root;
    return r.scrollHeight - r.scrollTop - r.clientHeight < 80;
  }

  scrollToBottom() {
    this.root.scrollTop = this.root.scrollHeight;
  }

  /** Add confirmed messages (any order, duplicates ignored). */
  add(msgs, { older = false } = {}) {
    const stick = this._nearBottom();
    const h0 = this.root.scrollHeight, s0 = this.root.scrollTop;
    let added = 0;
    for (const m of [].concat(msgs)) {
      const key = `${m.conv}#${m.seq}`;
      if (this.byKey.has(key)) continue;
      const pend = m.cid && this.byCid.get(m.cid);
      if (pend) {
        pend.remove();
        this.byCid.delete(m.cid);
      }
      const node = this._render(m);
      node.dataset.conv = m.conv;
      this.byKey.set(key, node);
      this._insert(node, m.conv, m.seq);
      added++;
    }
    if (!added) return 0;
    if (older) this.root.scrollTop = s0 + (this.root.scrollHeight - h0);
    else if (stick) this.scrollToBottom();
    return added;
  }

  _insert(node, conv, seq) {
    // most messages are the newest: walk back from the last confirmed one
    let after = null;
    const rows = this.list.children;
    for (let i = rows.length - 1; i >= 0; i--) {
      const r = rows[i];
      if (r.dataset.seq === undefined) continue;  // pending rows stay last
      if (this._before(r.dataset.conv, Number(r.dataset.seq), conv, seq)) { after = r; break; }
    }
    if (after) after.after(node);
    else this.list.prepend(node);
    this._regroup(node);
    if (node.nextElementSibling) this._regroup(node.nextElementSibling);
  }

  _regroup(node) {
    const prev = node.previousElementSibling;
    const cont = prev && !node.classList.contains("note") && !prev.classList.contains("note") &&
      prev.dataset.from === node.dataset.from && prev.dataset.conv === node.dataset.conv && Math.abs(Number(node.dataset.ts) - Number(prev.dataset.ts)) < GROUP_MS;
    node.classList.toggle("cont", !!cont);
  }

  _render(m) {
    if (m.kind === "note") {
      return el("div.msg.note", { dataset: { seq: m.seq, from: "system", ts: m.ts }, testid: "msg-note" },
        el("span", m.text), el("time", fmtTime(m.ts)));
    }
    const mine = this.mine(m);
    const name = this.nameOf(m);
    const node = el("div.msg" + (mine ? ".mine" : ".theirs") + "." + (m.kind || "member"),
      { dataset: { seq: m.seq, from: `${m.kind}:${m.from}`, ts: m.ts, cid: m.cid || "" }, testid: "msg" },
      mine ? null : avatar(this.avatarOf(m), m.from, "small"),
      el("div.msg-body",
        el("div.msg-meta", el("span.msg-name", name), el("time", { datetime: new Date(m.ts).toISOString() }, fmtTime(m.ts))),
        el("div.bubble", { testid: "bubble" }, m.text)));
    return node;
  }

  /** An optimistic message: shown at once, replaced when the server's copy (same cid) arrives. */
  addPending(cid, text, { name = "", from = "", conv = "" } = {}) {
    const node = el("div.msg.mine.pending", { dataset: { cid, from, conv, ts: Date.now() }, testid: "msg-pending" },
      el("div.msg-body",
        el("div.msg-meta", el("span.msg-name", name), el("span.msg-state", t("msg.pending"))),
        el("div.bubble", { testid: "bubble" }, text)));
    this.byCid.set(cid, node);
    this.list.append(node);
    this._regroup(node);
    this.scrollToBottom();
  }

  /** sending | queued (offline, will resend) | failed (permanent) */
  markPending(cid, state, why = "") {
    const node = this.byCid.get(cid);
    if (!node) return;
    node.classList.toggle("failed", state === "failed");
    node.classList.toggle("waiting", state === "queued");
    const s = node.querySelector(".msg-state");
    s.replaceChildren(state === "failed" ? `${t("msg.failed")}${why ? ": " + why : ""}` :
      state === "queued" ? t("msg.queued") : t("msg.pending"));
    if (state === "failed" && this.onRetry) {
      s.append(" ", el("button.link", { type: "button", onclick: () => { node.remove(); this.byCid.delete(cid); this.onRetry(cid, node.querySelector(".bubble").textContent); } }, t("retry")));
    }
  }

  /** The send was acknowledged (maybe before its msg event): show it as stored, at its seq. */
  confirm(cid, seq, base = {}) {
    const node = this.byCid.get(cid);
    if (!node) return;
    const text = node.querySelector(".bubble").textContent;
    node.remove();
    this.byCid.delete(cid);
    this.add({ kind: "member", ts: Date.now(), ...base, seq, cid, text });
  }

  pendingStates() {
    return [...this.byCid.keys()];
  }
}

/** Composer behaviour: Enter sends, Shift+Enter newline, the textarea grows with its content. */
export function composer(textarea, onSend) {
  const grow = () => {
    textarea.style.height = "auto";
    textarea.style.height = Math.min(textarea.scrollHeight, 160) + "px";
  };
  textarea.addEventListener("input", grow);
  textarea.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submit();
    }
  });
  function submit() {
    const text = textarea.value.replace(/\s+$/, "");
    if (!text.trim()) return;
    if (text.length > 4000) return;
    onSend(text);
    textarea.value = "";
    grow();
  }
  return { submit, grow };
}
