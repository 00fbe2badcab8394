// The plugin developer page: register plugins (the signing secret is shown once), read each
// plugin's delivery log and redeliver. API: POST/GET /api/plugins,
// GET /api/plugins/{id}/deliveries, POST /api/plugins/{id}/deliveries/{delivery}/redeliver.
import { api, fill, fmtTime, h, nav, say } from "/app.js";

const status = document.getElementById("status");
const list = document.getElementById("plugins");
const secretBox = document.getElementById("secret");

function deliveriesTable(plugin, deliveries, reload) {
  if (!deliveries.length) return h("p", { class: "meta" }, "No deliveries yet.");
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Event", "Status", "Attempts", "Last error", "Sent", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, deliveries.map((d) => h("tr", { "data-delivery": d.id },
      h("td", { class: "mono" }, d.event_type || ""),
      h("td", {}, h("span", { class: `status ${d.status === "delivered" ? "published" : "failed"}` }, d.status || "")),
      h("td", {}, Array.isArray(d.attempts) ? d.attempts.length : (d.attempts ?? "")),
      h("td", {}, d.last_error || ""),
      h("td", {}, fmtTime(d.created_at)),
      h("td", {}, h("button", { type: "button", onclick: async () => {
        try {
          await api(`/api/plugins/${encodeURIComponent(plugin.id)}/deliveries/${encodeURIComponent(d.id)}/redeliver`, { method: "POST" });
          say(status, "Redelivery queued.", "ok");
          reload();
        } catch (e) {
          say(status, e.message, "error");
        }
      } }, "Redeliver")))))));
}

function pluginItem(plugin) {
  const log = h("div", { hidden: true, style: "flex-basis:100%" });
  const load = async () => {
    try {
      const { deliveries } = await api(`/api/plugins/${encodeURIComponent(plugin.id)}/deliveries`);
      fill(log, deliveriesTable(plugin, deliveries || [], load));
      log.hidden = false;
    } catch (e) {
      say(status, e.message, "error");
    }
  };
  return h("li", { "data-plugin": plugin.id },
    h("strong", {}, plugin.name),
    h("span", { class: "tag" }, plugin.hook),
    h("span", { class: "meta mono" }, plugin.url),
    plugin.enabled === false ? h("span", { class: "status failed" }, "disabled") : null,
    plugin.scope === "all"
      ? h("span", { class: "tag" }, plugin.approved ? "every video" : "every video: awaiting approval")
      : h("span", { class: "tag" }, "my channels"),
    h("button", { type: "button", onclick: load }, "Deliveries"),
    log);
}

async function loadPlugins() {
  const { plugins } = await api("/api/plugins");
  fill(list, plugins.length ? plugins.map(pluginItem) : h("li", {}, "No plugins yet."));
}

document.getElementById("register").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    const r = await api("/api/plugins", { method: "POST", body: {
      name: form.name.value, hook: form.hook.value, url: form.url.value, description: form.description.value,
      scope: form.scope.value } });
    fill(secretBox,
      h("p", {}, h("strong", {}, "Signing secret of ", r.plugin.name, ": copy it now, it is shown only once.")),
      h("pre", { class: "plugin-secret" }, r.secret),
      h("p", { class: "meta" }, "Verify each webhook with a Standard Webhooks library and this secret."));
    secretBox.hidden = false;
    form.reset();
    await loadPlugins();
  } catch (e) {
    say(status, e.message, "error");
  }
});

(async () => {
  const user = await nav();
  if (!user) {
    fill(status, "Sign in to manage plugins. ", h("a", { href: "/login?next=/developer" }, "Sign in"));
    status.hidden = false;
    return;
  }
  if (user.role !== "developer" && user.role !== "admin") {
    say(status, "Managing plugins needs the developer role: ask an admin.", "warn");
    return;
  }
  document.getElementById("content").hidden = false;
  try {
    await loadPlugins();
  } catch (e) {
    say(status, e.status === 404 ? "The plugin API is not available on this deployment yet." : e.message, "error");
  }
})();
