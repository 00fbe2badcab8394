// Sign-in and sign-up: the session token is kept for the API calls of the other pages (the
// server also sets it as the session cookie).
import { api, nav, say, setToken } from "/app.js";

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

for (const [formId, path] of [["login", "/api/auth/login"], ["signup", "/api/auth/signup"]]) {
  const form = document.getElementById(formId);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const session = await api(path, {
        method: "POST",
        body: { email: data.get("email"), password: data.get("password") },
      });
      setToken(session.token);
      location.href = next();
    } catch (e) {
      say(status, e.message, "error");
    } finally {
      button.disabled = false;
    }
  });
}
nav();
