//! What an encoder types to publish through the ingest gateway (OBS, Larix Broadcaster,
//! ffmpeg): the gateway's public RTMP, RTMPS and SRT addresses, checked once when the
//! configuration is read ([`parse_base`]), and the settings built from them and a channel's
//! ingest token ([`GatewaySettings::for_key`]). The stream key is the ingest token itself:
//! the gateway pushes to `{origin}/ingest/{key}/...`, so the edge checks it as it checks any
//! ingest URL (expiry, rotation).
//!
//! SRT carries the key in the stream id, in the SRT Access Control syntax
//! `#!::r={key},m=publish`. In an `srt://` URL it is the `streamid` query parameter, which
//! ffmpeg's libsrt (and OBS, which uses the same parser) read verbatim up to the next `&`,
//! turning `+` into a space and decoding no `%` escapes: the stream id goes into the URL as
//! it is (a percent-encoded one would reach the gateway still encoded). Keys are URL tokens
//! (letters, digits, `_`, `-`, `.`), which never hold `&`, `+`, `%` or spaces.

use serde::Serialize;

/// A protocol the gateway takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RTMP over TCP (`rtmp://host[:port]/app`).
    Rtmp,
    /// RTMP over TLS (`rtmps://host[:port]/app`).
    Rtmps,
    /// SRT over UDP (`srt://host:port`).
    Srt,
}

impl Protocol {
    /// The URL scheme, with its `://`.
    pub fn prefix(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp://",
            Protocol::Rtmps => "rtmps://",
            Protocol::Srt => "srt://",
        }
    }
}

/// The gateway's public base URLs, each checked by [`parse_base`]; `None`: not offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayUrls {
    /// `rtmp://host[:port]/app`.
    pub rtmp: Option<String>,
    /// `rtmps://host[:port]/app`.
    pub rtmps: Option<String>,
    /// `srt://host:port`.
    pub srt: Option<String>,
}

/// Checks a configured base URL of the gateway and returns it normalised (trimmed, the
/// scheme lower-cased, no trailing `/`); `Ok(None)` when it is empty (not offered).
///
/// RTMP(S) takes `scheme://host[:port]/app[/...]` (the key is appended as the last path
/// segment); SRT takes `srt://host:port` (the stream id is added as the query).
///
/// # Errors
/// Why the value is not such a URL (another scheme, no host, no application path for RTMP,
/// no port or a path or query for SRT, spaces, `?`, `#` or `@`), for the configuration error.
pub fn parse_base(protocol: Protocol, raw: &str) -> Result<Option<String>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let prefix = protocol.prefix();
    let rest = match raw.get(..prefix.len()) {
        Some(scheme) if scheme.eq_ignore_ascii_case(prefix) => &raw[prefix.len()..],
        _ => return Err(format!("expected a {prefix} URL, got {raw:?}")),
    };
    if let Some(bad) = rest
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '@' | '\\'))
    {
        return Err(format!("{raw:?} may not contain {bad:?}"));
    }
    let rest = rest.trim_end_matches('/');
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let port = port(authority).map_err(|reason| format!("{raw:?}: {reason}"))?;
    match protocol {
        Protocol::Rtmp | Protocol::Rtmps if path.is_empty() => Err(format!(
            "{raw:?} has no application path: expected {prefix}host[:port]/live"
        )),
        Protocol::Srt if !path.is_empty() || port.is_none() => Err(format!(
            "expected {prefix}host:port (the stream id is added per channel), got {raw:?}"
        )),
        _ => Ok(Some(format!("{prefix}{rest}"))),
    }
}

/// The port of `host[:port]` (IPv6 hosts in brackets), if one is given.
fn port(authority: &str) -> Result<Option<u16>, &'static str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or("junk after ]")?)),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("no host");
    }
    match port {
        None => Ok(None),
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err("the port is not a number from 1 to 65535"),
        },
    }
}

/// RTMP or RTMPS settings: OBS's Server and Stream Key, or the one URL ffmpeg and Larix take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RtmpSettings {
    /// The server, `rtmp://host[:port]/app` (OBS: Server).
    pub server: String,
    /// The stream key: the channel's ingest token (OBS: Stream Key).
    pub stream_key: String,
    /// Server and key in one URL, `{server}/{stream_key}` (Larix, ffmpeg).
    pub url: String,
}

/// SRT settings: the server and stream id apart (Larix), or in one URL (OBS, ffmpeg).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SrtSettings {
    /// `srt://host:port` (Larix: URL).
    pub server: String,
    /// `#!::r={key},m=publish` (Larix: Stream ID).
    pub stream_id: String,
    /// `{server}?streamid={stream_id}` (OBS: Server, with an empty Stream Key; ffmpeg).
    pub url: String,
}

/// What a broadcaster types for each protocol the gateway offers; absent ones are skipped
/// when serialised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GatewaySettings {
    /// RTMP, when offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp: Option<RtmpSettings>,
    /// RTMPS, when offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmps: Option<RtmpSettings>,
    /// SRT, when offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srt: Option<SrtSettings>,
}

impl GatewaySettings {
    /// The settings for the stream key `key` (an ingest token) at the gateway's `urls`.
    pub fn for_key(urls: &GatewayUrls, key: &str) -> GatewaySettings {
        GatewaySettings {
            rtmp: urls.rtmp.as_deref().map(|server| rtmp(server, key)),
            rtmps: urls.rtmps.as_deref().map(|server| rtmp(server, key)),
            srt: urls.srt.as_deref().map(|server| srt(server, key)),
        }
    }

    /// Whether no protocol is offered (the deployment takes HLS push and the browser only).
    pub fn is_empty(&self) -> bool {
        self.rtmp.is_none() && self.rtmps.is_none() && self.srt.is_none()
    }
}

/// RTMP(S) settings for `key` at `server` (a [`parse_base`] result).
pub fn rtmp(server: &str, key: &str) -> RtmpSettings {
    RtmpSettings {
        server: server.to_owned(),
        stream_key: key.to_owned(),
        url: format!("{server}/{key}"),
    }
}

/// The SRT stream id that publishes with `key`.
pub fn srt_stream_id(key: &str) -> String {
    format!("#!::r={key},m=publish")
}

/// SRT settings for `key` at `server` (a [`parse_base`] result).
pub fn srt(server: &str, key: &str) -> SrtSettings {
    let stream_id = srt_stream_id(key);
    SrtSettings {
        server: server.to_owned(),
        url: format!("{server}?streamid={stream_id}"),
        stream_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ingest token's shape.
    const KEY: &str =
        "i.ch_01HZX3.2.ses_01HZX4-a_b.1767225600.q1w2e3R4t5Y6u7I8o9P0-_aSdFgHjKlZxCvBnM1234567";

    /// The value of `tag` in `url`'s query as ffmpeg's `av_find_info_tag` reads it (libsrt's
    /// and OBS's SRT options): pairs split at `&`, the value runs to the next `&`, `+` is a
    /// space, nothing else is decoded.
    fn ffmpeg_query_value(url: &str, tag: &str) -> Option<String> {
        let query = &url[url.find('?')? + 1..];
        query.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name == tag).then(|| value.replace('+', " "))
        })
    }

    #[test]
    fn rtmp_settings_append_the_key_to_the_application() {
        let server = parse_base(Protocol::Rtmp, " rtmp://ingest.example.com/live/ ")
            .unwrap()
            .unwrap();
        assert_eq!(server, "rtmp://ingest.example.com/live");
        let s = rtmp(&server, KEY);
        assert_eq!(s.stream_key, KEY);
        assert_eq!(s.url, format!("rtmp://ingest.example.com/live/{KEY}"));
        let tls = parse_base(Protocol::Rtmps, "RTMPS://ingest.example.com:1936/live")
            .unwrap()
            .unwrap();
        assert_eq!(
            rtmp(&tls, KEY).url,
            format!("rtmps://ingest.example.com:1936/live/{KEY}")
        );
    }

    #[test]
    fn srt_url_carries_the_stream_id_as_ffmpeg_reads_it() {
        let server = parse_base(Protocol::Srt, "srt://ingest.example.com:8890")
            .unwrap()
            .unwrap();
        let s = srt(&server, KEY);
        assert_eq!(s.stream_id, format!("#!::r={KEY},m=publish"));
        assert_eq!(s.server, "srt://ingest.example.com:8890");
        assert!(s.url.starts_with("srt://ingest.example.com:8890?streamid="));
        // ffmpeg and OBS hand the gateway exactly the stream id.
        assert_eq!(
            ffmpeg_query_value(&s.url, "streamid").as_deref(),
            Some(s.stream_id.as_str())
        );
        // Nothing in a key could end the value early or be rewritten.
        assert!(!KEY.contains(['&', '+', '%', ' ', '#']));
    }

    #[test]
    fn absent_settings_are_not_offered() {
        for raw in ["", "   "] {
            assert_eq!(parse_base(Protocol::Rtmp, raw), Ok(None));
        }
        let none = GatewaySettings::for_key(&GatewayUrls::default(), KEY);
        assert!(none.is_empty());
        assert_eq!(serde_json::to_value(&none).unwrap(), serde_json::json!({}));
        let urls = GatewayUrls {
            rtmp: None,
            rtmps: Some("rtmps://h:1936/live".into()),
            srt: Some("srt://h:8890".into()),
        };
        let some = serde_json::to_value(GatewaySettings::for_key(&urls, KEY)).unwrap();
        assert!(some.get("rtmp").is_none());
        assert_eq!(some["rtmps"]["url"], format!("rtmps://h:1936/live/{KEY}"));
        assert_eq!(some["srt"]["stream_id"], format!("#!::r={KEY},m=publish"));
    }

    #[test]
    fn bad_urls_are_refused() {
        let bad = [
            (Protocol::Rtmp, "http://ingest.example.com/live"),
            (Protocol::Rtmp, "rtmps://ingest.example.com/live"),
            (Protocol::Rtmp, "ingest.example.com/live"),
            (Protocol::Rtmp, "rtmp://ingest.example.com"),
            (Protocol::Rtmp, "rtmp:///live"),
            (Protocol::Rtmp, "rtmp://host:port/live"),
            (Protocol::Rtmp, "rtmp://host:0/live"),
            (Protocol::Rtmp, "rtmp://host/live?x=1"),
            (Protocol::Rtmp, "rtmp://user@host/live"),
            (Protocol::Rtmp, "rtmp://ho st/live"),
            (Protocol::Rtmps, "rtmp://ingest.example.com/live"),
            (Protocol::Srt, "rtmp://ingest.example.com:8890"),
            (Protocol::Srt, "srt://ingest.example.com"),
            (Protocol::Srt, "srt://ingest.example.com:8890/live"),
            (Protocol::Srt, "srt://ingest.example.com:8890?streamid=x"),
            (Protocol::Srt, "srt://[::1:8890"),
        ];
        for (protocol, raw) in bad {
            assert!(
                parse_base(protocol, raw).is_err(),
                "{raw} must be refused as {protocol:?}"
            );
        }
        assert_eq!(
            parse_base(Protocol::Srt, "srt://[::1]:8890/"),
            Ok(Some("srt://[::1]:8890".into()))
        );
    }
}
