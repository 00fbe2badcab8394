//! Secrets sealed at rest: a plugin's signing secret is stored encrypted (ChaCha20-Poly1305,
//! a fresh 96-bit nonce each time, the plugin id as associated data so a sealed value copied
//! to another plugin's row does not open). A database dump alone then signs nothing.
//!
//! **Keys.** The sealing key comes from `SECRETS_KEY`, a secret of its own, so that rotating
//! `SESSION_SECRET` (to log everyone out) leaves every stored secret readable. Production
//! requires it ([`crate::config`]); development without it derives the key from
//! `SESSION_SECRET` as before it existed.
//!
//! **Formats.** `sealed2.{key id}.{base64url(nonce | ciphertext)}` names the key that sealed
//! it (a short keyed hash of the key, not the key), so a value opens with the key that made
//! it whatever the current one is. Two older forms are still read: `sealed1.{...}`, sealed
//! under the key derived from `SESSION_SECRET` before `SECRETS_KEY` existed, and a plain
//! `whsec_...` stored before sealing. [`Keys::is_current`] tells a value to seal again under
//! the current key: [`reseal_stale`], run by the delivery job, does it for the plugin it
//! delivers for and then for every other plugin, so no stored secret is lost when the session
//! secret changes later.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::config::Config;
use crate::model::keyed;
use crate::ports::Platform;
use crate::store::plugins as stored;

/// Plugins read at once by [`reseal_stale`].
const RESEAL_BATCH: u64 = 50;
/// Most batches one [`reseal_stale`] goes through (2,500 plugins).
const RESEAL_ROUNDS: usize = 50;

/// The prefix of a value sealed with a named key.
const SEALED_PREFIX: &str = "sealed2.";
/// The prefix of a value sealed under the key derived from `SESSION_SECRET`, without a key id.
const LEGACY_SEALED_PREFIX: &str = "sealed1.";
/// The prefix of a secret stored before sealing.
const PLAIN_PREFIX: &str = "whsec_";

/// Why a stored secret cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealedError {
    /// Not a sealed value nor a plain secret.
    #[error("the stored secret is neither sealed nor plain")]
    Malformed,
    /// It does not open with this deployment's keys (another key, or tampered with).
    #[error("the stored secret does not open with this deployment's keys")]
    WrongKey,
}

/// One sealing key and its id.
#[derive(Clone, PartialEq, Eq)]
struct NamedKey {
    id: String,
    key: [u8; 32],
}

impl NamedKey {
    fn new(key: [u8; 32]) -> Self {
        let tag = keyed::tag(&key, b"edgevideo sealing key id", b"");
        NamedKey {
            id: URL_SAFE_NO_PAD.encode(&tag[..6]),
            key,
        }
    }
}

/// The keys of a deployment: the one that seals, and the one derived from `SESSION_SECRET`,
/// which opens values sealed before `SECRETS_KEY` was set.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    current: NamedKey,
    legacy: NamedKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("current", &self.current.id)
            .field("legacy", &self.legacy.id)
            .finish()
    }
}

impl Keys {
    /// The keys for `secrets_key` (`SECRETS_KEY`; `None`: the session-derived key seals too)
    /// and `session_secret`.
    pub fn new(secrets_key: Option<&str>, session_secret: &str) -> Self {
        let legacy = NamedKey::new(keyed::tag(
            session_secret.as_bytes(),
            b"edgevideo sealed secrets v1",
            b"",
        ));
        let current = match secrets_key {
            Some(secret) => NamedKey::new(keyed::tag(
                secret.as_bytes(),
                b"edgevideo sealed secrets v2",
                b"",
            )),
            None => legacy.clone(),
        };
        Keys { current, legacy }
    }

    /// The keys of a deployment's configuration.
    pub fn from_config(config: &Config) -> Self {
        Self::new(config.secrets_key.as_deref(), &config.session_secret)
    }

    /// Seals `secret` for the row `context` (e.g. the plugin id) with a fresh `nonce`, under
    /// the current key.
    pub fn seal(&self, nonce: [u8; 12], context: &str, secret: &str) -> String {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.current.key));
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption fails only for messages of gigabytes.
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!(
            "{SEALED_PREFIX}{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// Opens a stored secret of the row `context`: a value sealed under either key, or a
    /// plain one stored before sealing.
    ///
    /// # Errors
    /// [`SealedError`] when it is malformed or does not open.
    pub fn open(&self, context: &str, stored: &str) -> Result<String, SealedError> {
        if stored.starts_with(PLAIN_PREFIX) {
            return Ok(stored.to_owned());
        }
        let (key, encoded) = if let Some(rest) = stored.strip_prefix(SEALED_PREFIX) {
            let (id, encoded) = rest.split_once('.').ok_or(SealedError::Malformed)?;
            let key = [&self.current, &self.legacy]
                .into_iter()
                .find(|k| k.id == id)
                .ok_or(SealedError::WrongKey)?;
            (key, encoded)
        } else if let Some(encoded) = stored.strip_prefix(LEGACY_SEALED_PREFIX) {
            (&self.legacy, encoded)
        } else {
            return Err(SealedError::Malformed);
        };
        open_with(&key.key, context, encoded)
    }

    /// Whether `stored` is sealed under the current key (otherwise it is sealed again when
    /// its row is next used).
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(SEALED_PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(id, _)| id == self.current.id)
    }
}

/// Seals again under the current key the stored secrets of plugin `plugin_id` (`secret`
/// and `previous`, as read) when one is not (sealed before `SECRETS_KEY`, or stored plain);
/// when one was not, also those of every other plugin (in batches of [`RESEAL_BATCH`], at
/// most [`RESEAL_ROUNDS`]), so that idle and disabled plugins move too: the first delivery
/// after `SECRETS_KEY` is set moves them all. Each column is replaced only while it still
/// holds what was read. Best effort: what fails is tried again at the next delivery of a
/// plugin still stale, and an old value still opens meanwhile.
pub async fn reseal_stale<P: Platform>(
    p: &P,
    plugin_id: &str,
    secret: Option<&str>,
    previous: Option<&str>,
) {
    let keys = Keys::from_config(p.config());
    if !reseal_row(p, &keys, plugin_id, secret, previous).await {
        return;
    }
    let prefix = format!("{SEALED_PREFIX}{}.", keys.current.id);
    for _ in 0..RESEAL_ROUNDS {
        let Ok(others) = stored::stale_secrets(p.sql(), &prefix, RESEAL_BATCH).await else {
            return;
        };
        let full = others.len() as u64 == RESEAL_BATCH;
        let mut moved = false;
        for row in others {
            let previous = row.previous_secret.as_deref();
            moved |= reseal_row(p, &keys, &row.id, Some(&row.secret), previous).await;
        }
        // A batch of values that do not open (another key) would come back every round.
        if !full || !moved {
            return;
        }
    }
}

/// Seals one plugin's stale secrets again; whether one was stale.
async fn reseal_row<P: Platform>(
    p: &P,
    keys: &Keys,
    plugin_id: &str,
    secret: Option<&str>,
    previous: Option<&str>,
) -> bool {
    let reseal = |stored: Option<&str>| -> Option<(String, String)> {
        let stored = stored.filter(|s| !keys.is_current(s))?;
        let secret = keys.open(plugin_id, stored).ok()?;
        let mut nonce = [0u8; 12];
        p.entropy().fill(&mut nonce);
        Some((stored.to_owned(), keys.seal(nonce, plugin_id, &secret)))
    };
    let current = reseal(secret);
    let previous = reseal(previous);
    if current.is_none() && previous.is_none() {
        return false;
    }
    // Ignored on failure: see above.
    let _ = stored::reseal(p.sql(), plugin_id, current, previous).await;
    true
}

/// Opens `encoded` (base64url of nonce and ciphertext) with `key`.
fn open_with(key: &[u8; 32], context: &str, encoded: &str) -> Result<String, SealedError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| SealedError::Malformed)?;
    if bytes.len() < 12 + 16 {
        return Err(SealedError::Malformed);
    }
    let (nonce, sealed) = bytes.split_at(12);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let payload = Payload {
        msg: sealed,
        aad: context.as_bytes(),
    };
    let plain = cipher
        .decrypt(Nonce::from_slice(nonce), payload)
        .map_err(|_| SealedError::WrongKey)?;
    String::from_utf8(plain).map_err(|_| SealedError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// A value sealed the way it was before `SECRETS_KEY` (format `sealed1.`, the key derived
    /// from the session secret), for the compatibility tests.
    fn sealed_v1(session_secret: &str, nonce: [u8; 12], context: &str, secret: &str) -> String {
        let key = keyed::tag(
            session_secret.as_bytes(),
            b"edgevideo sealed secrets v1",
            b"",
        );
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: context.as_bytes(),
        };
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&cipher.encrypt(Nonce::from_slice(&nonce), payload).unwrap());
        format!("{LEGACY_SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_row() {
        let k = Keys::new(Some("secrets key one"), "session one");
        let sealed = k.seal([7; 12], "plg_1", SECRET);
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("MfKQ9r8"));
        assert!(k.is_current(&sealed));
        assert_eq!(k.open("plg_1", &sealed).as_deref(), Ok(SECRET));
        assert_ne!(sealed, k.seal([8; 12], "plg_1", SECRET), "fresh nonces");
        let other = Keys::new(Some("secrets key two"), "session one");
        assert_eq!(other.open("plg_1", &sealed), Err(SealedError::WrongKey));
        assert_eq!(k.open("plg_2", &sealed), Err(SealedError::WrongKey));
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            k.open("plg_1", &String::from_utf8(tampered).unwrap()),
            Err(SealedError::WrongKey)
        );
        // A forged key id naming the other key does not open it either.
        let (_, body) = sealed[SEALED_PREFIX.len()..].split_once('.').unwrap();
        let relabelled = format!("{SEALED_PREFIX}{}.{body}", k.legacy.id);
        assert_eq!(k.open("plg_1", &relabelled), Err(SealedError::WrongKey));
    }

    #[test]
    fn rotating_the_session_secret_keeps_values_sealed_under_the_secrets_key() {
        let before = Keys::new(Some("secrets key"), "session one");
        let sealed = before.seal([1; 12], "plg_1", SECRET);
        let after = Keys::new(Some("secrets key"), "session two");
        assert_eq!(after.open("plg_1", &sealed).as_deref(), Ok(SECRET));
        assert!(after.is_current(&sealed));
    }

    #[test]
    fn values_sealed_before_the_secrets_key_still_open_and_are_not_current() {
        let old = sealed_v1("session one", [3; 12], "plg_1", SECRET);
        // Development without SECRETS_KEY: the same key as before, now with a key id.
        let dev = Keys::new(None, "session one");
        assert_eq!(dev.open("plg_1", &old).as_deref(), Ok(SECRET));
        assert!(!dev.is_current(&old));
        let resealed = dev.seal([4; 12], "plg_1", SECRET);
        assert!(dev.is_current(&resealed));
        // SECRETS_KEY set: the old value still opens (read both), new ones use the new key.
        let with_key = Keys::new(Some("secrets key"), "session one");
        assert_eq!(with_key.open("plg_1", &old).as_deref(), Ok(SECRET));
        assert_eq!(with_key.open("plg_1", &resealed).as_deref(), Ok(SECRET));
        assert!(!with_key.is_current(&old) && !with_key.is_current(&resealed));
        let new = with_key.seal([5; 12], "plg_1", SECRET);
        assert!(with_key.is_current(&new));
        assert_eq!(dev.open("plg_1", &new), Err(SealedError::WrongKey));
        // Only the session-derived key opened the old value: a new session secret does not.
        let rotated = Keys::new(Some("secrets key"), "session two");
        assert_eq!(rotated.open("plg_1", &old), Err(SealedError::WrongKey));
        assert_eq!(rotated.open("plg_1", &new).as_deref(), Ok(SECRET));
    }

    #[test]
    fn plain_legacy_values_read_and_garbage_is_refused() {
        let k = Keys::new(None, "s");
        assert_eq!(k.open("plg_1", SECRET).as_deref(), Ok(SECRET));
        assert!(!k.is_current(SECRET));
        for bad in [
            "",
            "sealed1.",
            "sealed1.!!",
            "sealed1.AAAA",
            "sealed2.",
            "sealed2.nodot",
            "other",
        ] {
            assert_eq!(k.open("plg_1", bad), Err(SealedError::Malformed), "{bad}");
        }
        let id = &k.current.id;
        for bad in [format!("sealed2.{id}."), format!("sealed2.{id}.!!")] {
            assert_eq!(k.open("plg_1", &bad), Err(SealedError::Malformed), "{bad}");
        }
        assert_eq!(
            k.open("plg_1", "sealed2.unknown.AAAA"),
            Err(SealedError::WrongKey)
        );
    }
}
