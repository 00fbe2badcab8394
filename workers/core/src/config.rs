//! Deployment configuration, read from the host's variables and secrets.
//!
//! Hosts pass a lookup function (Workers: `env.var`/`env.secret`; Spin: variables). The names
//! are the constants in [`names`], mirrored in `wrangler.toml` and `spin.toml`. A production
//! deployment refuses to serve with a development secret.

use crate::model::gateway::{self, GatewayUrls, Protocol};
use crate::model::smtp_server::SmtpServer;

/// Names of the variables and secrets, exactly as declared in `wrangler.toml` and `spin.toml`.
pub mod names {
    /// `development` or `production` (the default).
    pub const ENVIRONMENT: &str = "ENVIRONMENT";
    /// Secret for session tokens (JWT HS256).
    pub const SESSION_SECRET: &str = "SESSION_SECRET";
    /// The session secret before the last rotation: tokens it signed keep working until they
    /// expire; new ones are signed with `SESSION_SECRET`. Unset once they have.
    pub const SESSION_SECRET_PREVIOUS: &str = "SESSION_SECRET_PREVIOUS";
    /// Secret for signed ingest and playback URLs.
    pub const URL_SIGNING_SECRET: &str = "URL_SIGNING_SECRET";
    /// Secret the key that seals plugin signing secrets at rest is derived from, apart from
    /// `SESSION_SECRET` so that rotating that one loses no stored secret. Required in
    /// production; development without it derives the key from `SESSION_SECRET`.
    pub const SECRETS_KEY: &str = "SECRETS_KEY";
    /// `on` exposes the binding diagnostics under `/api/_diag/` (development only).
    pub const DIAGNOSTICS: &str = "DIAGNOSTICS";
    /// `on`: playback skips the edge cache and its single flight (every request reads the
    /// room or the blob store, as before the cache; for benchmarks and debugging).
    pub const BYPASS_EDGE_CACHE: &str = "BYPASS_EDGE_CACHE";
    /// Comma-separated email domains whose users become broadcasters at signup.
    pub const BROADCASTER_DOMAINS: &str = "BROADCASTER_DOMAINS";
    /// Comma-separated emails that are admins.
    pub const ADMIN_EMAILS: &str = "ADMIN_EMAILS";
    /// PBKDF2 iteration count for new password hashes.
    pub const PASSWORD_ITERATIONS: &str = "PASSWORD_ITERATIONS";
    /// Lifetime of session tokens, in seconds.
    pub const SESSION_TTL_SECONDS: &str = "SESSION_TTL_SECONDS";
    /// Failed logins on one account before its attempts back off (1 s, doubling, at most
    /// 5 minutes).
    pub const LOGIN_LIMIT_PER_EMAIL: &str = "LOGIN_LIMIT_PER_EMAIL";
    /// Login attempts allowed per client IP per window.
    pub const LOGIN_LIMIT_PER_IP: &str = "LOGIN_LIMIT_PER_IP";
    /// Accounts one network address may create per hour (default 20).
    pub const SIGNUP_LIMIT_PER_IP: &str = "SIGNUP_LIMIT_PER_IP";
    /// Seconds without a segment after which a live broadcast ends.
    pub const LIVE_IDLE_TIMEOUT_SECONDS: &str = "LIVE_IDLE_TIMEOUT_SECONDS";
    /// Largest segment accepted, in bytes.
    pub const MAX_SEGMENT_BYTES: &str = "MAX_SEGMENT_BYTES";
    /// Part size of the transcoder's multipart uploads (MP4s larger than one part), in bytes.
    pub const UPLOAD_PART_BYTES: &str = "UPLOAD_PART_BYTES";
    /// Lifetime of signed ingest URLs, in seconds.
    pub const INGEST_URL_TTL_SECONDS: &str = "INGEST_URL_TTL_SECONDS";
    /// Lifetime of signed playback URLs, in seconds.
    pub const PLAYBACK_URL_TTL_SECONDS: &str = "PLAYBACK_URL_TTL_SECONDS";
    /// Segments in the live playlist's window.
    pub const LIVE_WINDOW_SEGMENTS: &str = "LIVE_WINDOW_SEGMENTS";
    /// Seconds after sending a transcode job at which, if its video is still processing, the
    /// job is sent again (the transcoder lost it); 0 turns re-sending off (default 900).
    pub const TRANSCODE_REDRIVE_SECONDS: &str = "TRANSCODE_REDRIVE_SECONDS";
    /// The public origin of this deployment (`https://...`), for URLs handed to plugins and
    /// the transcoder outside a request.
    pub const PUBLIC_URL: &str = "PUBLIC_URL";
    /// `on` lets plugins use loopback and private addresses (development only: production
    /// refuses to start with it).
    pub const ALLOW_PRIVATE_URLS: &str = "ALLOW_PRIVATE_URLS";
    /// Most channels one user may have (default 20).
    pub const MAX_CHANNELS_PER_USER: &str = "MAX_CHANNELS_PER_USER";
    /// Most segments one broadcast may store, all renditions together (default 200,000:
    /// about 37 hours of a three-rendition ladder of 2 s segments).
    pub const MAX_BROADCAST_SEGMENTS: &str = "MAX_BROADCAST_SEGMENTS";
    /// Sockets one presence shard of a channel is meant to hold.
    pub const PRESENCE_SHARD_SOCKETS: &str = "PRESENCE_SHARD_SOCKETS";
    /// Most bytes one broadcast may store, segments and parts (default 100 GiB).
    pub const MAX_BROADCAST_BYTES: &str = "MAX_BROADCAST_BYTES";
    /// Most plugins one developer may have registered (default 20).
    pub const MAX_PLUGINS_PER_USER: &str = "MAX_PLUGINS_PER_USER";
    /// Delivery attempts per webhook before it is dead-lettered.
    pub const WEBHOOK_MAX_ATTEMPTS: &str = "WEBHOOK_MAX_ATTEMPTS";
    /// First retry delay of a webhook, in seconds (doubled per attempt, with jitter).
    pub const WEBHOOK_RETRY_BASE_SECONDS: &str = "WEBHOOK_RETRY_BASE_SECONDS";
    /// Timeout of one webhook attempt, in milliseconds.
    pub const WEBHOOK_TIMEOUT_MS: &str = "WEBHOOK_TIMEOUT_MS";
    /// Deadlines of plugin tasks per hook, in seconds.
    pub const PLUGIN_DEADLINES_SECONDS: &str = "PLUGIN_DEADLINES_SECONDS";
    /// The transcoder's job endpoint (`http://host:port`); unset: no transcoding.
    pub const TRANSCODER_URL: &str = "TRANSCODER_URL";
    /// The secret (`whsec_...`) signing jobs to and callbacks from the transcoder.
    pub const TRANSCODER_SECRET: &str = "TRANSCODER_SECRET";
    /// Transcoder containers jobs are spread over when `TRANSCODER_URL` is
    /// `container://transcoder` (1-64, default 1; at most the `[[containers]]` `max_instances`).
    pub const TRANSCODER_INSTANCES: &str = "TRANSCODER_INSTANCES";
    /// The mail server that sends email-verification links (`smtps://user:password@host[:port]`,
    /// or `smtp://host[:port]` for a relay on a private network); unset: nobody can sign up.
    pub const SMTP_URL: &str = "SMTP_URL";
    /// The sender of our mail (`no-reply@example.com`); required in production with
    /// `SMTP_URL`.
    pub const MAIL_FROM: &str = "MAIL_FROM";
    /// The ingest gateway's public RTMP server (`rtmp://host[:port]/app`); unset or empty:
    /// RTMP is not offered to broadcasters.
    pub const GATEWAY_RTMP_URL: &str = "GATEWAY_RTMP_URL";
    /// The ingest gateway's public RTMPS server (`rtmps://host[:port]/app`); unset or empty:
    /// not offered.
    pub const GATEWAY_RTMPS_URL: &str = "GATEWAY_RTMPS_URL";
    /// The ingest gateway's public SRT address (`srt://host:port`); unset or empty: not
    /// offered.
    pub const GATEWAY_SRT_URL: &str = "GATEWAY_SRT_URL";
}

/// Smallest part of a multipart upload but the last, in bytes (R2's and S3's minimum).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

/// Largest upload request the Worker accepts, in bytes (a Worker holds the body in memory and
/// Cloudflare caps request bodies at 100 MB on most plans): one PUT of a poster or a small
/// MP4, or one part of a multipart upload.
pub const MAX_UPLOAD_BYTES: usize = 96 * 1024 * 1024;

/// Default part size of multipart uploads: small enough that a part and its copies fit in a
/// Worker isolate's 128 MB with room to spare, large enough for 160 GB in R2's 10,000 parts.
pub const DEFAULT_UPLOAD_PART_BYTES: u64 = 16 * 1024 * 1024;

/// Default PBKDF2-HMAC-SHA256 iteration count: the most Workers' own WebCrypto PBKDF2 accepts,
/// and about 0.1 s of CPU per login in Wasm (see the README for the measured figure).
pub const DEFAULT_PASSWORD_ITERATIONS: u32 = 100_000;
/// Default session lifetime: 7 days.
pub const DEFAULT_SESSION_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// The `iss` claim of our session tokens.
pub const TOKEN_ISSUER: &str = "edgevideo";
/// Length of a login rate-limit window, in seconds.
pub const LOGIN_WINDOW_SECONDS: u64 = 900;

/// The sender of our mail when `MAIL_FROM` is unset (development only).
pub const DEV_MAIL_FROM: &str = "no-reply@edgevideo.invalid";

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
    /// The previous key for session tokens, still accepted ([`names::SESSION_SECRET_PREVIOUS`]).
    pub session_secret_previous: Option<String>,
    /// Key for signed URLs.
    pub url_signing_secret: String,
    /// The secret that seals stored secrets ([`names::SECRETS_KEY`]); `None` (development
    /// only): the key derived from the session secret seals them.
    pub secrets_key: Option<String>,
    /// Whether `/api/_diag/` routes are served.
    pub diagnostics: bool,
    /// Whether playback skips the edge cache ([`names::BYPASS_EDGE_CACHE`]).
    pub bypass_edge_cache: bool,
    /// The `iss` claim of session tokens.
    pub token_issuer: String,
    /// Lifetime of session tokens, in seconds.
    pub session_ttl_s: u64,
    /// PBKDF2 iterations for new password hashes.
    pub password_iterations: u32,
    /// Email domains (lower-case) whose users become broadcasters at signup.
    pub broadcaster_domains: Vec<String>,
    /// Emails (lower-case) whose accounts become admins once the address is verified.
    pub admin_emails: Vec<String>,
    /// The mail server ([`names::SMTP_URL`]); `None`: no mail, so no signup.
    pub smtp: Option<SmtpServer>,
    /// The sender address of our mail.
    pub mail_from: String,
    /// Failed logins on one account before its attempts back off.
    pub login_limit_per_email: u64,
    /// Login attempts allowed per client IP per window.
    pub login_limit_per_ip: u64,
    /// Accounts one network address may create per hour.
    pub signup_limit_per_ip: u64,
    /// Silence after which a live broadcast ends, in seconds.
    pub live_idle_timeout_s: u64,
    /// When a transcode job whose video is still processing is sent again, in seconds
    /// (0: never).
    pub transcode_redrive_s: u64,
    /// Largest segment accepted, in bytes.
    pub max_segment_bytes: u64,
    /// Part size of the transcoder's multipart uploads, in bytes.
    pub upload_part_bytes: u64,
    /// Lifetime of signed ingest URLs, in seconds.
    pub ingest_url_ttl_s: u64,
    /// Lifetime of signed playback URLs, in seconds.
    pub playback_url_ttl_s: u64,
    /// Segments in the live playlist's window.
    pub live_window_segments: u64,
    /// The public origin, without a trailing slash.
    pub public_url: Option<String>,
    /// Whether plugin and transcoder URLs may point at loopback or private addresses.
    pub allow_private_urls: bool,
    /// Most channels one user may have.
    pub max_channels_per_user: u64,
    /// Most plugins one developer may have registered.
    pub max_plugins_per_user: u64,
    /// Most segments one broadcast may store.
    pub max_broadcast_segments: u64,
    /// Most bytes one broadcast may store.
    pub max_broadcast_bytes: u64,
    /// Sockets a channel's presence shard is meant to hold: a channel's viewers are spread
    /// over enough shards for this many each ([`crate::room::shards_for`]).
    pub presence_shard_sockets: u64,
    /// Delivery attempts per webhook.
    pub webhook_max_attempts: u32,
    /// First retry delay of a webhook, in seconds.
    pub webhook_retry_base_s: u32,
    /// Timeout of one webhook attempt, in milliseconds.
    pub webhook_timeout_ms: u64,
    /// Task deadlines per hook in lifecycle order (preValidate, postValidate, preMetadata,
    /// postMetadata), in seconds.
    pub plugin_deadlines_s: [u64; 4],
    /// The transcoder's endpoint.
    pub transcoder_url: Option<String>,
    /// The transcoder's signing secret.
    pub transcoder_secret: Option<String>,
    /// Transcoder containers to spread jobs over (container URLs only).
    pub transcoder_instances: u32,
    /// The ingest gateway's public addresses, each checked against its scheme.
    pub gateway: GatewayUrls,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("environment", &self.environment)
            .field("session_secret", &"<redacted>")
            .field(
                "session_secret_previous",
                &self.session_secret_previous.as_ref().map(|_| "<redacted>"),
            )
            .field("url_signing_secret", &"<redacted>")
            .field(
                "secrets_key",
                &self.secrets_key.as_ref().map(|_| "<redacted>"),
            )
            .field("diagnostics", &self.diagnostics)
            .field("bypass_edge_cache", &self.bypass_edge_cache)
            .field("password_iterations", &self.password_iterations)
            .field("broadcaster_domains", &self.broadcaster_domains)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads and validates the configuration through `lookup` (name to value).
    ///
    /// # Errors
    /// [`ConfigError::Missing`] for an unset secret; [`ConfigError::Invalid`] for an unknown
    /// environment, a gateway URL of the wrong scheme or shape, or, in production, a
    /// development or too short secret, no `SECRETS_KEY` or one equal to `SESSION_SECRET`,
    /// or diagnostics on.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let environment = environment(lookup(names::ENVIRONMENT))?;
        let vars = Vars {
            lookup,
            environment,
        };
        let diagnostics = vars.flag(names::DIAGNOSTICS);
        if diagnostics && environment == Environment::Production {
            return Err(ConfigError::Invalid {
                name: names::DIAGNOSTICS,
                reason: "diagnostics routes are for development only".into(),
            });
        }
        // The secrets first: their refusal is the one an operator must see first.
        let session_secret = vars.secret(names::SESSION_SECRET)?;
        let session_secret_previous = match (vars.lookup)(names::SESSION_SECRET_PREVIOUS) {
            Some(v) if !v.is_empty() => Some(vars.secret(names::SESSION_SECRET_PREVIOUS)?),
            _ => None,
        };
        let url_signing_secret = vars.secret(names::URL_SIGNING_SECRET)?;
        let secrets_key = vars.secrets_key(&session_secret)?;
        let allow_private_urls = vars.flag(names::ALLOW_PRIVATE_URLS);
        if allow_private_urls && environment == Environment::Production {
            return Err(ConfigError::Invalid {
                name: names::ALLOW_PRIVATE_URLS,
                reason: "plugin URLs to private addresses are for development only".into(),
            });
        }
        let smtp = vars.smtp()?;
        let mail_from = vars.mail_from(smtp.is_some())?;
        let public_url = vars.url(names::PUBLIC_URL);
        if smtp.is_some() && public_url.is_none() && environment == Environment::Production {
            return Err(ConfigError::Invalid {
                name: names::PUBLIC_URL,
                reason: "mail links need the public origin: set PUBLIC_URL with SMTP_URL".into(),
            });
        }
        Ok(Config {
            environment,
            session_secret,
            session_secret_previous,
            url_signing_secret,
            secrets_key,
            diagnostics,
            bypass_edge_cache: vars.flag(names::BYPASS_EDGE_CACHE),
            token_issuer: TOKEN_ISSUER.to_owned(),
            session_ttl_s: vars.number(
                names::SESSION_TTL_SECONDS,
                DEFAULT_SESSION_TTL_SECONDS,
                60,
            )?,
            password_iterations: vars.password_iterations()?,
            broadcaster_domains: vars.list(names::BROADCASTER_DOMAINS),
            admin_emails: vars.list(names::ADMIN_EMAILS),
            smtp,
            mail_from,
            login_limit_per_email: vars.number(names::LOGIN_LIMIT_PER_EMAIL, 10, 1)?,
            login_limit_per_ip: vars.number(names::LOGIN_LIMIT_PER_IP, 100, 1)?,
            signup_limit_per_ip: vars.number(names::SIGNUP_LIMIT_PER_IP, 20, 1)?,
            live_idle_timeout_s: vars.number(names::LIVE_IDLE_TIMEOUT_SECONDS, 30, 1)?,
            transcode_redrive_s: vars
                .number(names::TRANSCODE_REDRIVE_SECONDS, 900, 0)?
                .min(12 * 3600),
            max_segment_bytes: vars.number(names::MAX_SEGMENT_BYTES, 32 * 1024 * 1024, 188)?,
            upload_part_bytes: vars.upload_part_bytes()?,
            ingest_url_ttl_s: vars.number(names::INGEST_URL_TTL_SECONDS, 24 * 3600, 60)?,
            playback_url_ttl_s: vars.number(names::PLAYBACK_URL_TTL_SECONDS, 6 * 3600, 60)?,
            live_window_segments: vars.number(names::LIVE_WINDOW_SEGMENTS, 6, 3)?,
            public_url,
            allow_private_urls,
            max_channels_per_user: vars.number(names::MAX_CHANNELS_PER_USER, 20, 1)?,
            max_plugins_per_user: vars.number(names::MAX_PLUGINS_PER_USER, 20, 1)?,
            max_broadcast_segments: vars.number(names::MAX_BROADCAST_SEGMENTS, 200_000, 1)?,
            max_broadcast_bytes: vars.number(names::MAX_BROADCAST_BYTES, 100 << 30, 188)?,
            presence_shard_sockets: vars.number(names::PRESENCE_SHARD_SOCKETS, 2_000, 1)?,
            webhook_max_attempts: vars.number(names::WEBHOOK_MAX_ATTEMPTS, 5, 1)?.min(20) as u32,
            webhook_retry_base_s: vars
                .number(names::WEBHOOK_RETRY_BASE_SECONDS, 30, 1)?
                .min(3600) as u32,
            webhook_timeout_ms: vars.number(names::WEBHOOK_TIMEOUT_MS, 10_000, 100)?,
            plugin_deadlines_s: deadlines((vars.lookup)(names::PLUGIN_DEADLINES_SECONDS))?,
            transcoder_url: vars.url(names::TRANSCODER_URL),
            transcoder_instances: u32::try_from(
                vars.number(names::TRANSCODER_INSTANCES, 1, 1)?.min(64),
            )
            .unwrap_or(64),
            transcoder_secret: transcoder_secret(
                (vars.lookup)(names::TRANSCODER_SECRET),
                environment,
            )?,
            gateway: GatewayUrls {
                rtmp: vars.gateway(names::GATEWAY_RTMP_URL, Protocol::Rtmp)?,
                rtmps: vars.gateway(names::GATEWAY_RTMPS_URL, Protocol::Rtmps)?,
                srt: vars.gateway(names::GATEWAY_SRT_URL, Protocol::Srt)?,
            },
        })
    }
}

/// Parses `ENVIRONMENT` (unset means production).
fn environment(raw: Option<String>) -> Result<Environment, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") | Some("production") => Ok(Environment::Production),
        Some("development") => Ok(Environment::Development),
        Some(other) => Err(ConfigError::Invalid {
            name: names::ENVIRONMENT,
            reason: format!("expected development or production, got {other:?}"),
        }),
    }
}

/// The variables of one deployment, read by kind.
struct Vars<L> {
    lookup: L,
    environment: Environment,
}

impl<L: Fn(&str) -> Option<String>> Vars<L> {
    /// A required secret; production refuses development defaults and short secrets.
    fn secret(&self, name: &'static str) -> Result<String, ConfigError> {
        let value = (self.lookup)(name)
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Missing(name))?;
        if self.environment == Environment::Production
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
    }

    /// `SECRETS_KEY`: required in production (as a secret, and not the session secret, whose
    /// rotation it must survive); optional in development.
    fn secrets_key(&self, session_secret: &str) -> Result<Option<String>, ConfigError> {
        if self.environment == Environment::Development
            && (self.lookup)(names::SECRETS_KEY).is_none_or(|v| v.is_empty())
        {
            return Ok(None);
        }
        let key = self.secret(names::SECRETS_KEY)?;
        if self.environment == Environment::Production && key == session_secret {
            return Err(ConfigError::Invalid {
                name: names::SECRETS_KEY,
                reason: "must differ from SESSION_SECRET, so that rotating that one keeps \
                         stored plugin secrets readable"
                    .into(),
            });
        }
        Ok(Some(key))
    }

    /// A whole number of at least `min`, `default` when unset.
    fn number(&self, name: &'static str, default: u64, min: u64) -> Result<u64, ConfigError> {
        match (self.lookup)(name).as_deref().map(str::trim) {
            None | Some("") => Ok(default),
            Some(raw) => match raw.parse::<u64>() {
                Ok(v) if v >= min => Ok(v),
                _ => Err(ConfigError::Invalid {
                    name,
                    reason: format!("expected a whole number >= {min}, got {raw:?}"),
                }),
            },
        }
    }

    /// A comma-separated list, lower-cased, empty items dropped.
    fn list(&self, name: &str) -> Vec<String> {
        (self.lookup)(name)
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// `SMTP_URL` ([`SmtpServer::parse`]); production refuses credentials over plain SMTP.
    fn smtp(&self) -> Result<Option<SmtpServer>, ConfigError> {
        let Some(raw) = self.url(names::SMTP_URL) else {
            return Ok(None);
        };
        let server = SmtpServer::parse(&raw).map_err(|reason| ConfigError::Invalid {
            name: names::SMTP_URL,
            reason,
        })?;
        if self.environment == Environment::Production
            && !server.tls
            && server.credentials.is_some()
        {
            return Err(ConfigError::Invalid {
                name: names::SMTP_URL,
                reason: "credentials over plain SMTP: use smtps://".into(),
            });
        }
        Ok(Some(server))
    }

    /// `MAIL_FROM`: a plain address; required in production when mail is configured.
    fn mail_from(&self, mail_configured: bool) -> Result<String, ConfigError> {
        let value = (self.lookup)(names::MAIL_FROM)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        let Some(value) = value else {
            if mail_configured && self.environment == Environment::Production {
                return Err(ConfigError::Missing(names::MAIL_FROM));
            }
            return Ok(DEV_MAIL_FROM.to_owned());
        };
        let plain = value.len() <= 254
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"<>\",;:\\".contains(&b))
            && value
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'));
        if plain {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                name: names::MAIL_FROM,
                reason: "expected a plain address such as no-reply@example.com".into(),
            })
        }
    }

    /// `on` or anything else.
    fn flag(&self, name: &str) -> bool {
        (self.lookup)(name).as_deref() == Some("on")
    }

    /// An origin or base URL without its trailing slash; `None` when unset or empty.
    fn url(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
    }

    /// A gateway base URL of `protocol` ([`gateway::parse_base`]); `None` when unset or empty.
    fn gateway(
        &self,
        name: &'static str,
        protocol: Protocol,
    ) -> Result<Option<String>, ConfigError> {
        gateway::parse_base(protocol, &(self.lookup)(name).unwrap_or_default())
            .map_err(|reason| ConfigError::Invalid { name, reason })
    }

    /// `PASSWORD_ITERATIONS`: at least 10,000 in production.
    fn password_iterations(&self) -> Result<u32, ConfigError> {
        let raw = self.number(
            names::PASSWORD_ITERATIONS,
            DEFAULT_PASSWORD_ITERATIONS.into(),
            1,
        )?;
        let iterations = u32::try_from(raw).map_err(|_| ConfigError::Invalid {
            name: names::PASSWORD_ITERATIONS,
            reason: "too large".into(),
        })?;
        if self.environment == Environment::Production && iterations < 10_000 {
            return Err(ConfigError::Invalid {
                name: names::PASSWORD_ITERATIONS,
                reason: "production needs at least 10000 iterations".into(),
            });
        }
        Ok(iterations)
    }

    /// `UPLOAD_PART_BYTES`: between the multipart minimum and what one request carries.
    fn upload_part_bytes(&self) -> Result<u64, ConfigError> {
        let bytes = self.number(
            names::UPLOAD_PART_BYTES,
            DEFAULT_UPLOAD_PART_BYTES,
            MIN_PART_BYTES,
        )?;
        if bytes > MAX_UPLOAD_BYTES as u64 {
            return Err(ConfigError::Invalid {
                name: names::UPLOAD_PART_BYTES,
                reason: format!("at most {MAX_UPLOAD_BYTES} bytes (one request)"),
            });
        }
        Ok(bytes)
    }
}

/// Checks `TRANSCODER_SECRET`: a `whsec_` secret, and in production not the development
/// default (whose key starts with the development prefix).
fn transcoder_secret(
    raw: Option<String>,
    environment: Environment,
) -> Result<Option<String>, ConfigError> {
    let Some(secret) = raw.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let invalid = |reason: &str| ConfigError::Invalid {
        name: names::TRANSCODER_SECRET,
        reason: reason.to_owned(),
    };
    let key =
        crate::webhooks::secret_key(&secret).map_err(|_| invalid("expected whsec_<base64>"))?;
    if environment == Environment::Production && key.starts_with(DEV_SECRET_PREFIX.as_bytes()) {
        return Err(invalid("production refuses the development default"));
    }
    Ok(Some(secret))
}

/// Parses `PLUGIN_DEADLINES_SECONDS`: four comma-separated whole seconds in hook order;
/// unset means the seed's 900, 30, 600, 600.
fn deadlines(raw: Option<String>) -> Result<[u64; 4], ConfigError> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok([900, 30, 600, 600]);
    };
    let invalid = || ConfigError::Invalid {
        name: names::PLUGIN_DEADLINES_SECONDS,
        reason: format!("expected four whole seconds, e.g. 900,30,600,600; got {raw:?}"),
    };
    let values: Vec<u64> = raw
        .split(',')
        .map(|v| v.trim().parse::<u64>().ok().filter(|v| *v > 0))
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    values.try_into().map_err(|_| invalid())
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
    const SEALING: &str = "fedcba9876543210fedcba9876543210-sealing";

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
            ("SECRETS_KEY", SEALING),
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
            ("SECRETS_KEY", SEALING),
        ]));
        assert!(short.is_err());
        let diag = Config::from_lookup(lookup(&[
            ("SESSION_SECRET", STRONG),
            ("URL_SIGNING_SECRET", STRONG),
            ("SECRETS_KEY", SEALING),
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
    fn private_plugin_urls_are_for_development_only() {
        let vars = |environment| {
            lookup(&[
                ("ENVIRONMENT", environment),
                ("SESSION_SECRET", STRONG),
                ("URL_SIGNING_SECRET", STRONG),
                ("SECRETS_KEY", SEALING),
                ("ALLOW_PRIVATE_URLS", "on"),
            ])
        };
        assert!(matches!(
            Config::from_lookup(vars("production")),
            Err(ConfigError::Invalid {
                name: "ALLOW_PRIVATE_URLS",
                ..
            })
        ));
        assert!(
            Config::from_lookup(vars("development"))
                .unwrap()
                .allow_private_urls
        );
    }

    #[test]
    fn production_mail_needs_tls_for_credentials_a_sender_and_the_public_origin() {
        let prod = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = vec![
                ("SESSION_SECRET", STRONG),
                ("URL_SIGNING_SECRET", STRONG),
                ("SECRETS_KEY", SEALING),
            ];
            pairs.extend_from_slice(extra);
            Config::from_lookup(lookup(&pairs))
        };
        let invalid = |result: Result<Config, ConfigError>| match result {
            Err(ConfigError::Invalid { name, .. }) => name,
            Err(ConfigError::Missing(name)) => name,
            Ok(_) => "accepted",
        };
        let full = [
            ("SMTP_URL", "smtps://user:pa%40ss@smtp.example.com"),
            ("MAIL_FROM", "no-reply@example.com"),
            ("PUBLIC_URL", "https://video.example.com"),
        ];
        let config = prod(&full).unwrap();
        let server = config.smtp.unwrap();
        assert_eq!((server.port, server.tls), (465, true));
        assert_eq!(server.credentials, Some(("user".into(), "pa@ss".into())));
        assert_eq!(
            invalid(prod(&[
                ("SMTP_URL", "smtp://user:pass@relay"),
                full[1],
                full[2]
            ])),
            "SMTP_URL"
        );
        assert!(prod(&[("SMTP_URL", "smtp://relay.internal"), full[1], full[2]]).is_ok());
        assert_eq!(invalid(prod(&[full[0], full[2]])), "MAIL_FROM");
        assert_eq!(invalid(prod(&[full[0], full[1]])), "PUBLIC_URL");
        assert_eq!(
            invalid(prod(&[full[0], ("MAIL_FROM", "Name <a@b.c>"), full[2]])),
            "MAIL_FROM"
        );
        assert_eq!(
            invalid(prod(&[("SMTP_URL", "https://x"), full[1], full[2]])),
            "SMTP_URL"
        );
        // No mail server: no signup, but the deployment serves.
        assert!(prod(&[]).unwrap().smtp.is_none());
    }

    #[test]
    fn production_needs_its_own_secrets_key_and_development_falls_back() {
        let with = |environment: &'static str, key: Option<&'static str>| {
            let mut vars = vec![
                ("ENVIRONMENT", environment),
                ("SESSION_SECRET", STRONG),
                ("URL_SIGNING_SECRET", STRONG),
            ];
            vars.extend(key.map(|k| ("SECRETS_KEY", k)));
            Config::from_lookup(lookup(&vars))
        };
        let missing = with("production", None).unwrap_err();
        assert_eq!(missing, ConfigError::Missing("SECRETS_KEY"));
        assert_eq!(missing.to_string(), "SECRETS_KEY is not set");
        assert_eq!(
            with("production", Some("")).unwrap_err(),
            ConfigError::Missing("SECRETS_KEY")
        );
        for bad in ["dev-only-secrets-key-0123456789abcdef", "short", STRONG] {
            assert!(
                matches!(
                    with("production", Some(bad)),
                    Err(ConfigError::Invalid {
                        name: "SECRETS_KEY",
                        ..
                    })
                ),
                "{bad} must be refused in production"
            );
        }
        let config = with("production", Some(SEALING)).unwrap();
        assert_eq!(config.secrets_key.as_deref(), Some(SEALING));
        assert!(!format!("{config:?}").contains(SEALING));
        assert_eq!(with("development", None).unwrap().secrets_key, None);
        assert_eq!(
            with("development", Some("dev-only-sealing"))
                .unwrap()
                .secrets_key
                .as_deref(),
            Some("dev-only-sealing")
        );
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
    fn lists_and_numbers_are_parsed_and_checked() {
        let config = Config::from_lookup(lookup(&[
            ("SESSION_SECRET", STRONG),
            ("URL_SIGNING_SECRET", STRONG),
            ("SECRETS_KEY", SEALING),
            ("BROADCASTER_DOMAINS", " Amazon.com, ,example.org "),
            ("PASSWORD_ITERATIONS", "200000"),
        ]))
        .unwrap();
        assert_eq!(
            config.broadcaster_domains,
            vec!["amazon.com", "example.org"]
        );
        assert_eq!(config.password_iterations, 200_000);
        assert_eq!(config.login_limit_per_email, 10);
        for bad in ["0", "-1", "many", "1000"] {
            let result = Config::from_lookup(lookup(&[
                ("SESSION_SECRET", STRONG),
                ("URL_SIGNING_SECRET", STRONG),
                ("SECRETS_KEY", SEALING),
                ("PASSWORD_ITERATIONS", bad),
            ]));
            assert!(result.is_err(), "{bad} must be refused in production");
        }
    }

    #[test]
    fn transcoder_secret_is_checked() {
        let dev_key = "whsec_ZGV2LW9ubHktdHJhbnNjb2Rlci1zZWNyZXQtMDEyMzQ1Njc4OQ==";
        let with = |env: &'static str, secret: &'static str| {
            Config::from_lookup(lookup(&[
                ("ENVIRONMENT", env),
                ("SESSION_SECRET", STRONG),
                ("URL_SIGNING_SECRET", STRONG),
                ("SECRETS_KEY", SEALING),
                ("PASSWORD_ITERATIONS", "100000"),
                ("TRANSCODER_SECRET", secret),
            ]))
        };
        assert!(with("development", dev_key).is_ok());
        assert!(with("production", dev_key).is_err());
        assert!(with("production", "not-a-whsec").is_err());
        assert!(with("production", "whsec_c3Ryb25nLXByb2R1Y3Rpb24ta2V5LTEyMzQ=").is_ok());
    }

    #[test]
    fn gateway_urls_are_optional_and_checked_at_load() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut all = vec![
                ("SESSION_SECRET", STRONG),
                ("URL_SIGNING_SECRET", STRONG),
                ("SECRETS_KEY", SEALING),
            ];
            all.extend_from_slice(pairs);
            Config::from_lookup(lookup(&all))
        };
        assert_eq!(with(&[]).unwrap().gateway, GatewayUrls::default());
        let config = with(&[
            ("GATEWAY_RTMP_URL", "rtmp://ingest.example.com/live/"),
            ("GATEWAY_RTMPS_URL", ""),
            ("GATEWAY_SRT_URL", "srt://ingest.example.com:8890"),
        ])
        .unwrap();
        assert_eq!(
            config.gateway,
            GatewayUrls {
                rtmp: Some("rtmp://ingest.example.com/live".into()),
                rtmps: None,
                srt: Some("srt://ingest.example.com:8890".into()),
            }
        );
        for (name, bad) in [
            ("GATEWAY_RTMP_URL", "https://ingest.example.com/live"),
            ("GATEWAY_RTMPS_URL", "rtmp://ingest.example.com:1936/live"),
            ("GATEWAY_SRT_URL", "rtmp://ingest.example.com:8890"),
            ("GATEWAY_SRT_URL", "srt://ingest.example.com"),
        ] {
            match with(&[(name, bad)]) {
                Err(ConfigError::Invalid {
                    name: refused,
                    reason,
                }) => {
                    assert_eq!(refused, name);
                    assert!(reason.contains(bad), "{reason}");
                }
                other => panic!("{name}={bad} must be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let config = Config::from_lookup(lookup(&[
            ("SESSION_SECRET", STRONG),
            ("URL_SIGNING_SECRET", STRONG),
            ("SECRETS_KEY", SEALING),
        ]))
        .unwrap();
        assert!(!format!("{config:?}").contains(STRONG));
    }
}
