// The page a verification mail links to (`/verify#{token}`): the token rides in the fragment,
// which browsers send to no server and in no Referer. The signup's password, with the
// token, verifies the address and answers with the session cookie; then home.
import { api, nav, say } from "/app.js";

const status = document.getElementById("status");
const form = document.getElementById("verify");
const token = (() => {
  try {
    return decodeURIComponent(location.hash.slice(1));
  } catch {
    return ""; // a mangled link: said below
  }
})();
// Out of the address bar and the history once read.
history.replaceState(null, "", location.pathname);

if (!token) {
  form.hidden = true;
  say(status, "This page needs the link from your mail: open it again from there.", "error");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    await api("/api/auth/verify", {
      method: "POST",
      body: { token, password: new FormData(form).get("password") },
    });
    location.href = "/";
  } catch (e) {
    say(status, e.message, "error");
    if (e.code === "link_used" || e.code === "link_expired" || e.code === "invalid_link") {
      form.hidden = true;
    }
  } finally {
    button.disabled = false;
  }
});
nav();
