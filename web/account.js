// The signed-in user's account: the password change (which ends every other session; the
// answer's session cookie keeps this browser signed in) and signing out everywhere.
import { api, nav, say } from "/app.js";

const status = document.getElementById("status");
const content = document.getElementById("content");
const form = document.getElementById("password");

const user = await nav();
if (!user) {
  location.href = `/login?next=${encodeURIComponent("/account")}`;
} else {
  document.getElementById("who").textContent =
    `${user.email} · ${user.role}${user.email_verified ? "" : " · address not verified"}`;
  content.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    await api("/api/auth/password", {
      method: "POST",
      body: { current_password: data.get("current"), new_password: data.get("new") },
    });
    form.reset();
    say(status, "Password changed. Every other session is signed out.", "ok");
  } catch (e) {
    say(status, e.message, "error");
  } finally {
    button.disabled = false;
  }
});

document.getElementById("everywhere").addEventListener("click", async () => {
  try {
    await api("/api/auth/logout", { method: "POST", body: { everywhere: true } });
  } finally {
    location.href = "/";
  }
});
