//! The mail server of a deployment: `SMTP_URL` parsed (`smtp://` or `smtps://`, with
//! optional credentials), and our name in `EHLO`. The dialogue is [`crate::smtp`].

/// Where mail goes: the parsed `SMTP_URL`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpServer {
    /// Host name or address.
    pub host: String,
    /// Port (default 465 for `smtps`, 25 for `smtp`).
    pub port: u16,
    /// Whether the connection is TLS from its first byte (`smtps://`).
    pub tls: bool,
    /// `AUTH PLAIN` user and password, percent-decoded from the URL.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl SmtpServer {
    /// Parses `smtp://[user[:password]@]host[:port]` or `smtps://...` (user and password
    /// percent-encoded; a trailing `/` allowed).
    ///
    /// # Errors
    /// A reason when the URL has another scheme, no host, a bad port or a path.
    pub fn parse(url: &str) -> Result<SmtpServer, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("smtps://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("smtp://") {
            (false, rest)
        } else {
            return Err("expected smtp://host[:port] or smtps://host[:port]".into());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        if hostport.contains(['/', '?', '#']) {
            return Err("the URL takes no path or query".into());
        }
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let (host, port) = match hostport.strip_prefix('[') {
            Some(bracketed) => match bracketed.split_once(']') {
                Some((host, "")) => (host, None),
                Some((host, port)) => (host, Some(port.strip_prefix(':').unwrap_or("?"))),
                None => return Err("unclosed [ in the host".into()),
            },
            None => match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            },
        };
        let port = match port {
            None => {
                if tls {
                    465
                } else {
                    25
                }
            }
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("invalid port {port:?}"))?,
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err("the URL has no host".into());
        }
        let credentials = match userinfo {
            None => None,
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Some((percent_decode(user)?, percent_decode(password)?))
            }
        };
        Ok(SmtpServer {
            host: host.to_owned(),
            port,
            tls,
            credentials,
        })
    }
}

/// Decodes `%XX` escapes (user names and passwords in URLs).
fn percent_decode(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("invalid percent escape in the URL's user or password")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL's user or password is not UTF-8".into())
}

/// Our name in `EHLO`: the host of `public_url` (`https://host[:port]`), else `localhost`.
pub fn helo_name(public_url: Option<&str>) -> String {
    public_url
        .and_then(|u| u.split_once("://"))
        .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or_default())
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        })
        .unwrap_or("localhost")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_credentials() {
        let s = SmtpServer::parse("smtps://user%40x:p%3Ass@mail.example.com").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("mail.example.com", 465, true)
        );
        assert_eq!(s.credentials, Some(("user@x".into(), "p:ss".into())));
        assert!(!format!("{s:?}").contains("p:ss"));
        let s = SmtpServer::parse("smtp://127.0.0.1:2525/").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("127.0.0.1", 2525, false));
        assert_eq!(s.credentials, None);
        let s = SmtpServer::parse("smtp://[::1]:2525").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 2525));
        assert_eq!(SmtpServer::parse("smtp://[::1]").unwrap().port, 25);
        for bad in [
            "http://x",
            "smtp://",
            "smtp://x:0",
            "smtp://x:99999",
            "smtp://x/p",
            "smtp://u:%zz@x",
        ] {
            assert!(SmtpServer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn helo_names_the_public_host() {
        assert_eq!(
            helo_name(Some("https://video.example.com")),
            "video.example.com"
        );
        assert_eq!(helo_name(Some("http://127.0.0.1:8787/")), "127.0.0.1");
        assert_eq!(helo_name(Some("https://[::1]:8787")), "localhost");
        assert_eq!(helo_name(None), "localhost");
    }
}
