import * as api from "../api.js";
import { announce, describeError, h, mount } from "../dom.js";

/**
 * Email and password → POST /api/v1/auth/token; the token goes to sessionStorage only.
 * @param {HTMLElement} main
 * @param {{next: string}} params
 * @param {{onSignedIn: (next: string) => void}} hooks
 */
export function renderLogin(main, { next }, { onSignedIn }) {
  const error = h("div", { class: "error-box", role: "alert", hidden: true, id: "login-error" });
  const email = h("input", {
    id: "login-email",
    name: "email",
    type: "email",
    autocomplete: "username",
    required: true,
    spellcheck: "false",
    autocapitalize: "none",
  });
  const password = h("input", {
    id: "login-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit", class: "button button-primary", text: "Sign in" });

  const form = h(
    "form",
    { class: "login-form", "aria-describedby": "login-help", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "login-email", text: "Email" }), email),
    h("div", { class: "field" }, h("label", { for: "login-password", text: "Password" }), password),
    error,
    submit,
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (!email.value.trim() || !password.value) {
      error.textContent = "Enter your email and password.";
      error.hidden = false;
      (email.value.trim() ? password : email).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    form.setAttribute("aria-busy", "true");
    try {
      await api.login(email.value.trim(), password.value);
      password.value = "";
      announce("Signed in");
      onSignedIn(next);
    } catch (err) {
      password.value = "";
      error.textContent =
        err.status === 401 ? "That email and password do not match an account." : describeError(err);
      error.hidden = false;
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
      form.removeAttribute("aria-busy");
    }
  });

  mount(
    main,
    h(
      "section",
      { class: "login-card", "aria-labelledby": "login-title" },
      h("h1", { id: "login-title", text: "Sign in to ResolutionFlow" }),
      h("p", {
        id: "login-help",
        class: "muted",
        text: "Sign in with your ResolutionFlow account.",
      }),
      form,
    ),
  );
  email.focus();
  return () => {
    password.value = "";
  };
}
