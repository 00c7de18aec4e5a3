// The login page: an API token opens a session (a cookie the script never
// sees) and returns the session's CSRF token.
import { api, ApiError, type SessionInfo } from "../api";
import { h, replace } from "../dom";

/** loginPage shows the login form in app, with message (why we are here). */
export function loginPage(app: HTMLElement, message: string, done: (s: SessionInfo) => void): void {
  const token = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true });
  const err = h("p", { class: "error", id: "login-error", role: "alert" }, message && !/^Logged out/.test(message) ? message : "");
  const note = h("p", { class: "note" }, /^Logged out/.test(message) ? message : "");
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    { class: "login", id: "login-form" },
    h("h1", {}, "govisor"),
    h("label", { for: "token" }, "API token"),
    token,
    submit,
    err,
    note,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    err.textContent = "";
    try {
      done(await api.login(token.value));
    } catch (x) {
      err.textContent = x instanceof ApiError ? x.message : String(x);
      token.select();
    } finally {
      submit.disabled = false;
    }
  });
  replace(app, form);
  token.focus();
}
