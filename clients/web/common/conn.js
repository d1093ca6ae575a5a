// The reconnect banner shared by the three apps: shown while the socket is down, then a short
// "reconnected — you're up to date" once the resume (auth with cursors) succeeded.
import { el, t } from "./util.js";
import { onLangChange } from "./i18n.js";

export function connBanner(sock, mount) {
  const text = el("span", { testid: "conn-text" });
  const detail = el("span.faint");
  const now = el("button.btn.small", { type: "button", onclick: () => sock.reconnectNow() }, t("conn.now"));
  const bar = el("div.conn-banner", { testid: "conn-banner", role: "status", hidden: true },
    el("span.spin"), text, detail, now);
  mount.prepend(bar);
  let okTimer = null, tick = null, due = 0, wasDown = false;

  const paintDown = () => {
    text.textContent = t("conn.down");
    const s = Math.max(0, Math.ceil((due - Date.now()) / 1000));
    detail.textContent = due ? t("conn.retryIn", { s, n: sock.attempt }) : "";
    now.textContent = t("conn.now");
  };
  sock.on("state", ({ state, delay }) => {
    if (state === "reconnecting") {
      wasDown = true;
      clearTimeout(okTimer);
      due = delay ? Date.now() + delay : 0;
      bar.hidden = false;
      bar.classList.remove("ok");
      bar.dataset.state = "down";
      bar.querySelector(".spin").hidden = false;
      now.hidden = false;
      paintDown();
      clearInterval(tick);
      tick = setInterval(paintDown, 500);
    } else if (state === "open") {
      clearInterval(tick);
      if (!wasDown) { bar.hidden = true; return; }
      wasDown = false;
      bar.classList.add("ok");
      bar.dataset.state = "ok";
      bar.querySelector(".spin").hidden = true;
      now.hidden = true;
      text.textContent = t("conn.back");
      detail.textContent = "";
      okTimer = setTimeout(() => { bar.hidden = true; }, 2500);
    } else if (state === "closed") {
      clearInterval(tick);
      bar.hidden = true;
    }
  });
  onLangChange(() => { if (!bar.hidden && bar.dataset.state === "down") paintDown(); });
  return bar;
}
