// Sign-in card shared by the console and the dashboard: account + password, then the one-time
// verification code when the seller requires one (login error `otp_required`, R4).
import { el, tr, api, t, errText } from "./util.js";
import { langButton } from "./i18n.js";

/**
 * Render the sign-in card into `mount`; resolves with {reply: the POST /api/login reply, card},
 * so that a next step (the console's store choice) can reuse the card.
 */
export function signIn(mount, { app, error = "" }) {
  return new Promise((resolve) => {
    const acct = el("input", { type: "text", name: "login", autocomplete: "username", required: true, testid: "login-account",
      placeholder: t("login.accountHint"), "data-i18n-ph": "login.accountHint", value: sessionStorage.getItem("kefu.lastLogin") || "" });
    const pw = el("input", { type: "password", name: "password", autocomplete: "current-password", required: true, testid: "login-password" });
    const otp = el("input", { type: "text", name: "otp", inputmode: "numeric", autocomplete: "one-time-code", maxlength: 8,
      pattern: "[0-9]*", testid: "login-otp" });
    const otpField = el("label.field", { hidden: true }, tr("span.field-label", "login.otp"), otp, tr("span.field-hint", "login.otpHint"));
    const err = el("div.form-error", { testid: "login-error", hidden: !error, role: "alert" }, error ? errText({ code: error }) : "");
    const submit = tr("button.btn.primary.block", "login.submit", { type: "submit", testid: "login-submit" });
    const form = el("form", { novalidate: true },
      el("label.field", tr("span.field-label", "login.account"), acct),
      el("label.field", tr("span.field-label", "login.password"), pw),
      otpField, err, submit);
    const card = el("div.login-card", { testid: "login" },
      el("div.brand", el("span.brand-mark", "客"), el("span", "kefu"), tr("small", app)),
      tr("p.sub", "login.title"),
      form,
      el("div.foot", el("span", "kefu · 客服"), langButton(el("button.lang-btn", { type: "button", testid: "lang" }))));
    mount.replaceChildren(el("div.login-screen", card));
    (acct.value ? pw : acct).focus();

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      err.hidden = true;
      submit.disabled = true;
      const body = { login: acct.value.trim(), password: pw.value };
      if (!otpField.hidden) body.otp = otp.value.trim();
      try {
        const r = await api("POST", "/api/login", body);
        sessionStorage.setItem("kefu.lastLogin", body.login);
        resolve({ reply: r, card });
      } catch (ex) {
        if (ex.code === "otp_required" || ex.code === "bad_otp") {
          otpField.hidden = false;
          otp.focus();
          otp.select();
        }
        err.textContent = errText(ex);
        err.hidden = false;
        if (ex.code === "bad_credentials") pw.select();
      } finally {
        submit.disabled = false;
      }
    });
  });
}
