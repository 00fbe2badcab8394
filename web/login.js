// Sign-in and sign-up: a sign-in is answered with the session cookie (HttpOnly), which the
// other pages' API calls carry; the token in the answer is for API clients, not kept here.
import { api, nav, say } from "/app.js";

const status = document.getElementById("status");
const next = () => {
  const target = new URLSearchParams(location.search).get("next") || "/";
  // Only pages of this site: resolved as the browser would (so `/\evil.com` and
  // `//evil.com` are other origins), anything elsewhere goes home.
  try {
    const url = new URL(target, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
  } catch {
    return "/";
  }
};

// Signing in: home (or `next`). Signing up: the server mails a link (the verify page), and
// says the same whether or not the address has an account.
for (const [formId, path] of [["login", "/api/auth/login"], ["signup", "/api/auth/signup"]]) {
  const form = document.getElementById(formId);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const answer = await api(path, {
        method: "POST",
        body: { email: data.get("email"), password: data.get("password") },
      });
      if (formId === "signup") {
        form.reset();
        say(status, answer.message, "ok");
      } else {
        location.href = next();
      }
    } catch (e) {
      say(status, e.message, "error");
    } finally {
      button.disabled = false;
    }
  });
}
nav();
