//! Signed ingest and playback URLs. The token lives in the URL path (`/ingest/{token}/...`,
//! `/play/{token}/...`) so that the relative segment URLs a player or ffmpeg derives keep it.
//!
//! A token is dot-separated fields followed by a signature:
//! `i.{channel}.{key_version}.{session}.{exp}.{sig}` (ingest),
//! `c.{channel}.{viewer}.{exp}.{sig}` (play a channel live) and
//! `v.{video}.{channel}.{broadcast}.{viewer}.{exp}.{sig}` (play a video), with `-` for no
//! viewer or no recording, and
//! `u.{video}.{kind}.{exp}.{sig}` (the transcoder uploads a video's MP4 or poster). The signature is
//! HMAC-SHA256 over `edgevideo/url/v1\n` followed by everything before the last dot,
//! base64url without padding, compared in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const DOMAIN: &[u8] = b"edgevideo/url/v1\n";

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Push HLS to a channel, for one ingest session, while the channel's stream key
    /// version is `key_version`.
    Ingest {
        /// The channel.
        channel_id: String,
        /// The stream key version when the URL was issued; rotation invalidates the URL.
        key_version: i64,
        /// The ingest session: one broadcaster process at a time.
        session: String,
    },
    /// Play a channel live.
    PlayChannel {
        /// The channel.
        channel_id: String,
    },
    /// Play a recorded video. The channel and the recording's broadcast are signed in, so
    /// that playlist and segment requests need no catalogue query.
    PlayVideo {
        /// The video.
        video_id: String,
        /// The channel it was broadcast on.
        channel_id: String,
        /// The broadcast whose segments are its HLS recording, if it has one.
        broadcast_id: Option<String>,
    },
    /// Upload one of a video's files (the transcoder's output).
    Upload {
        /// The video.
        video_id: String,
        /// Which file: `mp4` or `poster`.
        kind: String,
    },
}

/// A signed URL token's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlToken {
    /// What it allows.
    pub scope: Scope,
    /// The viewer it was issued to, if any (playback only).
    pub viewer: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Why a token was refused. Every variant is answered with 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlTokenError {
    /// Not a token of ours.
    #[error("malformed URL token")]
    Malformed,
    /// The signature does not verify: tampered or signed with another key.
    #[error("URL token signature does not verify")]
    Signature,
    /// Authentic but past its expiry; carries the token so the refusal can be reported.
    #[error("URL token expired")]
    Expired(Box<UrlToken>),
}

fn is_field(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn signature(secret: &[u8], unsigned: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(DOMAIN);
    mac.update(unsigned.as_bytes());
    mac
}

impl UrlToken {
    fn unsigned(&self) -> String {
        let viewer = self.viewer.as_deref().unwrap_or("-");
        match &self.scope {
            Scope::Ingest {
                channel_id,
                key_version,
                session,
            } => format!("i.{channel_id}.{key_version}.{session}.{}", self.exp),
            Scope::PlayChannel { channel_id } => format!("c.{channel_id}.{viewer}.{}", self.exp),
            Scope::PlayVideo {
                video_id,
                channel_id,
                broadcast_id,
            } => {
                let broadcast = broadcast_id.as_deref().unwrap_or("-");
                format!(
                    "v.{video_id}.{channel_id}.{broadcast}.{viewer}.{}",
                    self.exp
                )
            }
            Scope::Upload { video_id, kind } => format!("u.{video_id}.{kind}.{}", self.exp),
        }
    }

    /// Signs the token with `secret`.
    pub fn sign(&self, secret: &[u8]) -> String {
        let unsigned = self.unsigned();
        let sig = signature(secret, &unsigned).finalize().into_bytes();
        format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Verifies a token string with `secret` at `now_s`.
    ///
    /// # Errors
    /// [`UrlTokenError`] saying why it is refused.
    pub fn verify(raw: &str, secret: &[u8], now_s: u64) -> Result<UrlToken, UrlTokenError> {
        let (unsigned, sig) = raw.rsplit_once('.').ok_or(UrlTokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| UrlTokenError::Malformed)?;
        signature(secret, unsigned)
            .verify_slice(&sig)
            .map_err(|_| UrlTokenError::Signature)?;
        let fields: Vec<&str> = unsigned.split('.').collect();
        let token = match fields.as_slice() {
            ["i", channel, version, session, exp] if is_field(channel) && is_field(session) => {
                UrlToken {
                    scope: Scope::Ingest {
                        channel_id: (*channel).to_owned(),
                        key_version: version.parse().map_err(|_| UrlTokenError::Malformed)?,
                        session: (*session).to_owned(),
                    },
                    viewer: None,
                    exp: exp.parse().map_err(|_| UrlTokenError::Malformed)?,
                }
            }
            ["u", id, kind, exp] if is_field(id) && is_field(kind) => UrlToken {
                scope: Scope::Upload {
                    video_id: (*id).to_owned(),
                    kind: (*kind).to_owned(),
                },
                viewer: None,
                exp: exp.parse().map_err(|_| UrlTokenError::Malformed)?,
            },
            ["c", id, viewer, exp] if is_field(id) && is_field(viewer) => UrlToken {
                scope: Scope::PlayChannel {
                    channel_id: (*id).to_owned(),
                },
                viewer: (*viewer != "-").then(|| (*viewer).to_owned()),
                exp: exp.parse().map_err(|_| UrlTokenError::Malformed)?,
            },
            ["v", id, channel, broadcast, viewer, exp]
                if [id, channel, broadcast, viewer].iter().all(|f| is_field(f)) =>
            {
                UrlToken {
                    scope: Scope::PlayVideo {
                        video_id: (*id).to_owned(),
                        channel_id: (*channel).to_owned(),
                        broadcast_id: (*broadcast != "-").then(|| (*broadcast).to_owned()),
                    },
                    viewer: (*viewer != "-").then(|| (*viewer).to_owned()),
                    exp: exp.parse().map_err(|_| UrlTokenError::Malformed)?,
                }
            }
            _ => return Err(UrlTokenError::Malformed),
        };
        if token.exp <= now_s {
            return Err(UrlTokenError::Expired(Box::new(token)));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"url-key-0123456789abcdef0123456789";

    fn ingest() -> UrlToken {
        UrlToken {
            scope: Scope::Ingest {
                channel_id: "ch_abcdefgh12345678".into(),
                key_version: 3,
                session: "ses_x1y2z3w4".into(),
            },
            viewer: None,
            exp: 2000,
        }
    }

    #[test]
    fn round_trips_every_scope() {
        let play = UrlToken {
            scope: Scope::PlayVideo {
                video_id: "vid_abcdefgh".into(),
                channel_id: "ch_abcdefgh".into(),
                broadcast_id: Some("brd_abcdefgh".into()),
            },
            viewer: Some("usr_viewer01".into()),
            exp: 2000,
        };
        let unrecorded = UrlToken {
            scope: Scope::PlayVideo {
                video_id: "vid_abcdefgh".into(),
                channel_id: "ch_abcdefgh".into(),
                broadcast_id: None,
            },
            viewer: None,
            exp: 2000,
        };
        let live = UrlToken {
            scope: Scope::PlayChannel {
                channel_id: "ch_abcdefgh".into(),
            },
            viewer: None,
            exp: 2000,
        };
        let upload = UrlToken {
            scope: Scope::Upload {
                video_id: "vid_abcdefgh".into(),
                kind: "mp4".into(),
            },
            viewer: None,
            exp: 2000,
        };
        for token in [ingest(), play, unrecorded, live, upload] {
            assert_eq!(UrlToken::verify(&token.sign(KEY), KEY, 1000), Ok(token));
        }
    }

    #[test]
    fn refuses_tampering_wrong_keys_and_expiry() {
        let raw = ingest().sign(KEY);
        assert_eq!(
            UrlToken::verify(&raw, b"other", 1000),
            Err(UrlTokenError::Signature)
        );
        let other_channel = raw.replacen("ch_abcdefgh12345678", "ch_zzzzzzzz12345678", 1);
        assert_eq!(
            UrlToken::verify(&other_channel, KEY, 1000),
            Err(UrlTokenError::Signature)
        );
        let longer = raw.replacen(".2000.", ".9999.", 1);
        assert_eq!(
            UrlToken::verify(&longer, KEY, 1000),
            Err(UrlTokenError::Signature)
        );
        assert!(matches!(
            UrlToken::verify(&raw, KEY, 2000),
            Err(UrlTokenError::Expired(t)) if *t == ingest()
        ));
        assert_eq!(
            UrlToken::verify("nodots", KEY, 0),
            Err(UrlTokenError::Malformed)
        );
        assert!(UrlToken::verify(&raw[..raw.len() - 3], KEY, 1000).is_err());
    }

    #[test]
    fn a_playback_token_is_not_an_ingest_token() {
        // Re-scoping: the same fields under another kind change the signed string.
        let raw = ingest().sign(KEY);
        let rescoped = format!("c{}", &raw[1..]);
        assert!(UrlToken::verify(&rescoped, KEY, 1000).is_err());
    }
}
