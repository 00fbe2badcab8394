//! The plugin registry: developers register webhook endpoints for a lifecycle hook or an
//! event, with a signing secret shown once; secrets rotate with a grace period during which
//! the old and new both sign. Plugins are stored by [`crate::store::plugins`]; the hooks and
//! events they subscribe to are [`crate::model::hook`]'s.
//!
//! Scope: a plugin acts (lifecycle tasks, event deliveries) only on videos of channels its
//! owner owns ([`PluginScope::Own`], the default). One registered with
//! [`PluginScope::All`] acts on every video once an admin approves it; until then (and after
//! a revocation, or a change of its URL) it acts on its owner's channels only.

use super::url_policy::{check_host, HostError};
use serde::{Deserialize, Serialize};

use crate::store::plugins::{Plugin, SCOPE_ALL, SCOPE_OWN};

/// Which videos a plugin acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PluginScope {
    /// Videos of channels its owner owns.
    #[default]
    Own,
    /// Every video, once an admin approves the plugin (its owner's channels until then).
    All,
}

impl PluginScope {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginScope::Own => SCOPE_OWN,
            PluginScope::All => SCOPE_ALL,
        }
    }

    /// The scope of a stored name (anything but `all` is `own`).
    pub fn parse(stored: &str) -> Self {
        if stored == SCOPE_ALL {
            PluginScope::All
        } else {
            PluginScope::Own
        }
    }
}

/// How long a rotated-out secret keeps signing, in ms.
pub const ROTATION_GRACE_MS: i64 = 24 * 3600 * 1000;

/// The public view of a plugin (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PluginView {
    /// Identifier.
    pub id: String,
    /// Owner.
    pub owner_id: String,
    /// Name.
    pub name: String,
    /// Hook or event.
    pub hook: String,
    /// Endpoint.
    pub url: String,
    /// Description.
    pub description: String,
    /// Whether deliveries are sent.
    pub enabled: bool,
    /// Which videos it acts on: `own` (its owner's channels) or `all` (every video, once
    /// approved).
    pub scope: PluginScope,
    /// Whether an admin approved scope `all` (always `false` for `own`); an unapproved `all`
    /// plugin acts on its owner's channels only.
    pub approved: bool,
    /// When it was approved, Unix ms.
    pub approved_at: Option<i64>,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

impl From<&Plugin> for PluginView {
    fn from(p: &Plugin) -> Self {
        PluginView {
            id: p.id.clone(),
            owner_id: p.owner_id.clone(),
            name: p.name.clone(),
            hook: p.hook.clone(),
            url: p.url.clone(),
            description: p.description.clone(),
            enabled: p.enabled != 0,
            scope: PluginScope::parse(&p.scope),
            approved: p.scope == SCOPE_ALL && p.approved_at.is_some(),
            approved_at: p.approved_at,
            created_at: p.created_at,
        }
    }
}

/// The secrets that sign a delivery at `now_ms`: the current one, and the previous one until
/// the end of its grace period.
pub fn signing_secrets<'a>(
    current: &'a str,
    previous: Option<&'a str>,
    previous_until: Option<i64>,
    now_ms: i64,
) -> Vec<&'a str> {
    let mut secrets = vec![current];
    if let (Some(previous), Some(until)) = (previous, previous_until) {
        if now_ms < until {
            secrets.push(previous);
        }
    }
    secrets
}

/// Why a plugin URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not an absolute http(s) URL with a valid host.
    #[error("plugin URLs are absolute http or https URLs with a valid host")]
    NotHttp,
    /// Its host is not public (loopback, private, link-local, a local-only name, ...), and
    /// the deployment does not allow those.
    #[error("plugin URLs may not point at loopback, private or local-only hosts: {0}")]
    Private(HostError),
}

/// Checks a plugin URL, at registration and again before every delivery (see
/// [`url_policy`](super::url_policy) for what is refused and what cannot be).
///
/// # Errors
/// [`UrlError`] saying why it is refused.
pub fn check_url(raw: &str, allow_private: bool) -> Result<(), UrlError> {
    let uri: http::Uri = raw.parse().map_err(|_| UrlError::NotHttp)?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || raw.len() > 2048 {
        return Err(UrlError::NotHttp);
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or(UrlError::NotHttp)?;
    match check_host(host) {
        Ok(()) => Ok(()),
        Err(HostError::Invalid) => Err(UrlError::NotHttp),
        Err(_) if allow_private => Ok(()),
        Err(e) => Err(UrlError::Private(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(check_url("https://plugins.example.com/hook", false).is_ok());
        assert!(check_url("http://example.com:8080/x?y=1", false).is_ok());
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "https://",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(check_url(bad, true), Err(UrlError::NotHttp), "{bad}");
        }
    }

    #[test]
    fn private_targets_need_the_local_setting() {
        for private in [
            "http://127.0.0.1:9000/",
            "http://localhost/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://172.16.5.5/",
            "http://169.254.169.254/latest",
            "http://[::1]:80/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
            "http://2130706433/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost./",
            "http://x.LOCALHOST/",
            "http://100.64.0.1/",
            "http://[64:ff9b::a00:1]/",
            "http://user@127.0.0.1/",
        ] {
            assert!(
                matches!(check_url(private, false), Err(UrlError::Private(_))),
                "{private}"
            );
            assert!(check_url(private, true).is_ok(), "{private}");
        }
        assert!(check_url("http://172.32.0.1/", false).is_ok());
    }

    #[test]
    fn previous_secret_signs_during_its_grace_only() {
        let at = |now| signing_secrets("whsec_new", Some("whsec_old"), Some(1000), now);
        assert_eq!(at(999), vec!["whsec_new", "whsec_old"]);
        assert_eq!(at(1000), vec!["whsec_new"]);
        assert_eq!(
            signing_secrets("whsec_new", None, None, 0),
            vec!["whsec_new"]
        );
    }
}
