//! Deployment configuration, read from the host's variables and secrets.
//!
//! Hosts pass a lookup function (Workers: `env.var`/`env.secret`; Spin: variables). The names
//! are the constants in [`names`], mirrored in `wrangler.toml` and `spin.toml`. A production
//! deployment refuses to serve with a development secret.

/// Names of the variables and secrets, exactly as declared in `wrangler.toml` and `spin.toml`.
pub mod names {
    /// `development` or `production` (the default).
    pub const ENVIRONMENT: &str = "ENVIRONMENT";
    /// Secret for session tokens (JWT HS256).
    pub const SESSION_SECRET: &str = "SESSION_SECRET";
    /// Secret for signed ingest and playback URLs.
    pub const URL_SIGNING_SECRET: &str = "URL_SIGNING_SECRET";
    /// `on` exposes the binding diagnostics under `/api/_diag/` (development only).
    pub const DIAGNOSTICS: &str = "DIAGNOSTICS";
}

/// Prefix that marks a secret as a development default; production refuses it.
pub const DEV_SECRET_PREFIX: &str = "dev-only-";

/// Shortest secret accepted in production, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Where the deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// A developer's machine or a test run.
    Development,
    /// A real deployment.
    Production,
}

/// Why the configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable or secret is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable has a value that is not allowed.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The validated configuration of one deployment.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the deployment runs.
    pub environment: Environment,
    /// Key for session tokens.
    pub session_secret: String,
    /// Key for signed URLs.
    pub url_signing_secret: String,
    /// Whether `/api/_diag/` routes are served.
    pub diagnostics: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("environment", &self.environment)
            .field("session_secret", &"<redacted>")
            .field("url_signing_secret", &"<redacted>")
            .field("diagnostics", &self.diagnostics)
            .finish()
    }
}

impl Config {
    /// Reads and validates the configuration through `lookup` (name to value).
    ///
    /// # Errors
    /// [`ConfigError::Missing`] for an unset secret; [`ConfigError::Invalid`] for an unknown
    /// environment, or, in production, a development or too short secret, or diagnostics on.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let environment = match lookup(names::ENVIRONMENT).as_deref().map(str::trim) {
            None | Some("") | Some("production") => Environment::Production,
            Some("development") => Environment::Development,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: names::ENVIRONMENT,
                    reason: format!("expected development or production, got {other:?}"),
                })
            }
        };
        let secret = |name: &'static str| -> Result<String, ConfigError> {
            let value = lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name))?;
            if environment == Environment::Production
                && (value.starts_with(DEV_SECRET_PREFIX) || value.len() < MIN_SECRET_LEN)
            {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!(
                        "production needs a secret of at least {MIN_SECRET_LEN} bytes that is not a development default"
                    ),
                });
            }
            Ok(value)
        };
        let diagnostics = lookup(names::DIAGNOSTICS).as_deref() == Some("on");
        if diagnostics && environment == Environment::Production {
            return Err(ConfigError::Invalid {
                name: names::DIAGNOSTICS,
                reason: "diagnostics routes are for development only".into(),
            });
        }
        Ok(Config {
            environment,
            session_secret: secret(names::SESSION_SECRET)?,
            url_signing_secret: secret(names::URL_SIGNING_SECRET)?,
            diagnostics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const STRONG: &str = "0123456789abcdef0123456789abcdef-strong";

    #[test]
    fn development_accepts_dev_secrets() {
        let config = Config::from_lookup(lookup(&[
            ("ENVIRONMENT", "development"),
            ("SESSION_SECRET", "dev-only-session"),
            ("URL_SIGNING_SECRET", "dev-only-urls"),
            ("DIAGNOSTICS", "on"),
        ]))
        .unwrap();
        assert_eq!(config.environment, Environment::Development);
        assert!(config.diagnostics);
    }

    #[test]
    fn production_is_the_default_and_refuses_dev_secrets() {
        let err = Config::from_lookup(lookup(&[
            ("SESSION_SECRET", "dev-only-session-0123456789abcdef0123"),
            ("URL_SIGNING_SECRET", STRONG),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "SESSION_SECRET",
                ..
            }
        ));
    }

    #[test]
    fn production_refuses_short_secrets_and_diagnostics() {
        let short = Config::from_lookup(lookup(&[
            ("ENVIRONMENT", "production"),
            ("SESSION_SECRET", "short"),
            ("URL_SIGNING_SECRET", STRONG),
        ]));
        assert!(short.is_err());
        let diag = Config::from_lookup(lookup(&[
            ("SESSION_SECRET", STRONG),
            ("URL_SIGNING_SECRET", STRONG),
            ("DIAGNOSTICS", "on"),
        ]));
        assert!(matches!(
            diag,
            Err(ConfigError::Invalid {
                name: "DIAGNOSTICS",
                ..
            })
        ));
    }

    #[test]
    fn missing_secret_and_unknown_environment_are_errors() {
        assert_eq!(
            Config::from_lookup(lookup(&[("URL_SIGNING_SECRET", STRONG)])).unwrap_err(),
            ConfigError::Missing("SESSION_SECRET")
        );
        assert!(Config::from_lookup(lookup(&[("ENVIRONMENT", "staging")])).is_err());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let config = Config::from_lookup(lookup(&[
            ("SESSION_SECRET", STRONG),
            ("URL_SIGNING_SECRET", STRONG),
        ]))
        .unwrap();
        assert!(!format!("{config:?}").contains(STRONG));
    }
}
