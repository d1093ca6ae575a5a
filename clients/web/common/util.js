// Small DOM and formatting helpers shared by the console, the dashboard and the buyer page.
import { KefuError } from "./ws.js";
import { t, lang, has } from "./i18n.js";
import { icon } from "./icons.js";

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** el("div.a.b", {title: "x", onclick}, child, "text", …) */
export function el(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  if (attrs !== undefined && attrs !== null && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = {};
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className += (node.className ? " " : "") + v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "text") node.textContent = v;
    else if (k === "testid") node.setAttribute("data-testid", v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** An element whose text is the translation of `key`, kept in step with the 中/EN toggle. */
export function tr(spec, key, attrs = {}) {
  return el(spec, { ...attrs, "data-i18n": key }, t(key));
}

/** replaceChildren, skipping null/false/undefined (which replaceChildren would print as text). */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false && c !== ""));
  return node;
}

const pad = (n) => String(n).padStart(2, "0");

/** 14:03 today, 11-24 14:03 another day, 2025-11-24 another year. */
export function fmtTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  const now = new Date();
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (d.toDateString() === now.toDateString()) return hm;
  if (d.getFullYear() === now.getFullYear()) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** 0.4s, 42s, 3m 05s, 1h 02m */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "–";
  if (ms < 10000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${pad(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${pad(m % 60)}m`;
}

/** A buyer id as a person reads it: "a-3f2c91…" -> "访客 3F2C" / "Visitor 3F2C"; "x-123" -> "123". */
export function buyerLabel(id) {
  if (!id) return "";
  if (id.startsWith("x-")) return id.slice(2);
  return `${t("visitor")} ${buyerTail(id)}`;
}

export function buyerTail(id) {
  return String(id || "").replace(/^[ax]-/, "").slice(0, 4).toUpperCase();
}

/** Initials for an avatar: "Bob 小波" -> "B", "小爱" -> "小", "3F2C" -> "3F", "Ann Lee" -> "AL". */
export function initials(name) {
  const s = String(name || "?").trim();
  const words = s.split(/[\s_.:-]+/).filter(Boolean);
  const w0 = words[0] || "?";
  if (/^[\u4e00-\u9fff]/.test(w0)) return w0[0];
  if (/^[0-9A-F]{2,}$/.test(w0)) return w0.slice(0, 2);
  const w1 = words[1] && /^[A-Za-z]/.test(words[1]) ? words[1][0] : "";
  return (w0[0] + w1).toUpperCase();
}

const HUES = [210, 160, 28, 270, 340, 190, 45, 120, 300, 0];
export function avatarColor(key) {
  let h = 0;
  for (const ch of String(key || "")) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${HUES[h % HUES.length]} 62% 46%)`;
}

export function avatar(name, key, cls = "") {
  return el("span.avatar" + (cls ? "." + cls : ""), { style: `background:${avatarColor(key || name)}`, "aria-hidden": "true" },
    initials(name));
}

/** JSON over HTTP; throws KefuError with the server's stable code. */
export async function api(method, path, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new KefuError("network", String(e.message || e));
  }
  let data = null;
  try { data = await res.json(); } catch { /* empty or not JSON */ }
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw new KefuError(err.code || `http_${res.status}`, err.message || res.statusText, { status: res.status });
  }
  return data;
}

/** A human message for an error code: the translated text when we have one, else the server's. */
export function errText(e) {
  const code = e && e.code;
  const key = "err." + code;
  const tr = t(key);
  if (tr !== key) return tr;
  if (code && has(code)) return t(code);
  return (e && e.message) || code || String(e);
}

let toastBox = null;
export function toast(text, kind = "info", ms = 3500) {
  if (!toastBox) {
    toastBox = el("div.toasts", { role: "status", "aria-live": "polite" });
    document.body.append(toastBox);
  }
  const n = el("div.toast.t-" + kind, { testid: "toast", dataset: { kind } }, text);
  toastBox.append(n);
  setTimeout(() => n.classList.add("out"), ms);
  setTimeout(() => n.remove(), ms + 400);
  return n;
}

export function debounce(fn, ms) {
  let timer = null;
  return (...a) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...a), ms);
  };
}

/** A modal dialog built on <dialog>; resolves with the submitted FormData's object or null. */
export function modal({ title, body, submit, cancel, testid, wide = false, onOpen }) {
  return new Promise((resolve) => {
    const form = el("form.modal-body", { method: "dialog" });
    const errBox = el("div.form-error", { testid: "modal-error", hidden: true });
    const submitBtn = el("button.btn.primary", { type: "submit", value: "ok", testid: "modal-submit" }, submit || t("ok"));
    const dlg = el("dialog.modal" + (wide ? ".wide" : ""), { testid },
      el("header.modal-head", el("h2", title),
        el("button.icon-btn", { type: "button", "aria-label": t("close"), onclick: () => done(null) }, icon("close", 16))),
      form);
    form.append(...[].concat(body), errBox,
      el("footer.modal-foot",
        el("button.btn", { type: "button", onclick: () => done(null) }, cancel || t("cancel")),
        submitBtn));
    let finished = false;
    const done = (v) => {
      if (finished) return;
      finished = true;
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    dlg.addEventListener("cancel", (e) => { e.preventDefault(); done(null); });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const values = {};
      for (const [k, v] of new FormData(form)) {
        if (k in values) values[k] = [].concat(values[k], v);
        else values[k] = v;
      }
      // a validator/submitter may return an error message to keep the dialog open
      const check = dlg._onSubmit ? dlg._onSubmit(values) : null;
      Promise.resolve(check).then((msg) => {
        if (msg) {
          errBox.textContent = msg;
          errBox.hidden = false;
          submitBtn.disabled = false;
        } else done(values);
      });
      submitBtn.disabled = true;
    });
    document.body.append(dlg);
    dlg.showModal();
    if (onOpen) onOpen(dlg, (fn) => { dlg._onSubmit = fn; });
    const first = form.querySelector("input:not([type=hidden]):not([type=radio]):not([type=checkbox]),textarea,select");
    if (first) first.focus();
  });
}

export function field(label, input, hint) {
  return el("label.field", el("span.field-label", label), input, hint ? el("span.field-hint", hint) : null);
}

export function storeLabel(names, store) {
  return (names && names[store]) || store || "";
}

export { t, lang, icon };
