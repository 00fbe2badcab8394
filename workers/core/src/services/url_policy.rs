//! Which hosts an outbound URL a user names (a plugin's webhook URL) may point at, against
//! server-side request forgery. The host is read the way the runtime's `fetch` reads it (the
//! WHATWG URL rules): percent-decoded, every IPv4 spelling (`2130706433`, `0x7f.1`, `127.1`,
//! `0177.0.0.1`), a trailing dot, IPv6 with an IPv4 inside (mapped, compatible, NAT64, 6to4).
//! Refused: loopback, private, shared (100.64/10), link-local, documentation, benchmarking,
//! multicast and reserved ranges; `localhost` and names under it; single-label names and the
//! local-only suffixes (`.local`, `.internal`, `.home.arpa`, `.localdomain`).
//!
//! A public name that resolves to a private address is not caught here (the edge does not
//! resolve names): Workers' `fetch` has no route into private networks, and a Spin
//! deployment restricts its outbound hosts in `spin.toml`. Redirects are never followed
//! (see the hosts' outbound ports), so a public URL cannot bounce to a private one.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a host is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Not a host a URL parser accepts (a bad IPv4 number, bad percent-encoding, non-ASCII).
    #[error("the URL's host is not valid")]
    Invalid,
    /// A loopback, private or otherwise non-public address or name.
    #[error("the URL's host is not a public address ({0})")]
    NotPublic(&'static str),
}

/// Suffixes of names that only resolve inside a network.
const LOCAL_SUFFIXES: [&str; 5] = [
    ".localhost",
    ".local",
    ".internal",
    ".home.arpa",
    ".localdomain",
];

/// Checks the host of a URL (as `http::Uri::host` gives it, brackets kept for IPv6).
///
/// # Errors
/// [`HostError`] saying why it is refused.
pub fn check_host(host: &str) -> Result<(), HostError> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(HostError::Invalid)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| HostError::Invalid)?;
        return check_ipv6(ip);
    }
    let decoded = percent_decode(host).ok_or(HostError::Invalid)?;
    if !decoded.is_ascii() || decoded.is_empty() {
        return Err(HostError::Invalid);
    }
    let name = decoded.to_ascii_lowercase();
    if let Some(ip) = parse_ipv4(&name)? {
        return check_ipv4(ip);
    }
    let name = name.trim_end_matches('.');
    if name == "localhost" {
        return Err(HostError::NotPublic("localhost"));
    }
    if LOCAL_SUFFIXES
        .iter()
        .any(|suffix| name.ends_with(suffix) || name == &suffix[1..])
    {
        return Err(HostError::NotPublic("a local-only name"));
    }
    if !name.contains('.') {
        return Err(HostError::NotPublic("a single-label name"));
    }
    Ok(())
}

/// Decodes `%XX` escapes; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One part of a WHATWG IPv4 address: decimal, `0x` hex or leading-zero octal.
fn ipv4_number(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // "0x" alone is zero; an empty decimal part is not a number.
        return (radix == 16).then_some(0);
    }
    if digits.len() > 32 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Whether the last part of a name is a number, which makes the host an IPv4 address (or
/// an invalid host) for a WHATWG URL parser.
fn ends_in_number(parts: &[&str]) -> bool {
    let Some(last) = parts.last() else {
        return false;
    };
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The IPv4 address a host names, if it names one (every spelling WHATWG accepts).
///
/// # Errors
/// [`HostError::Invalid`] when the host ends in a number but is no IPv4 address.
fn parse_ipv4(host: &str) -> Result<Option<Ipv4Addr>, HostError> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    if !ends_in_number(&parts) {
        return Ok(None);
    }
    if parts.len() > 4 {
        return Err(HostError::Invalid);
    }
    let numbers = parts
        .iter()
        .map(|p| ipv4_number(p))
        .collect::<Option<Vec<u64>>>()
        .ok_or(HostError::Invalid)?;
    let (last, leading) = numbers.split_last().ok_or(HostError::Invalid)?;
    if leading.iter().any(|&n| n > 255) || *last >= 256u64.pow(5 - numbers.len() as u32) {
        return Err(HostError::Invalid);
    }
    let mut value = *last;
    for (i, n) in leading.iter().enumerate() {
        value += n << (8 * (3 - i));
    }
    Ok(Some(Ipv4Addr::from(value as u32)))
}

/// Refuses an IPv4 address outside the public unicast space.
fn check_ipv4(ip: Ipv4Addr) -> Result<(), HostError> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        (0, ..) => "this network (0.0.0.0/8)",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
        (127, ..) => "loopback",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved",
        _ => return Ok(()),
    };
    Err(HostError::NotPublic(reason))
}

/// Refuses an IPv6 address outside the public unicast space, and one carrying a refused
/// IPv4 address (mapped, compatible, NAT64, 6to4).
fn check_ipv6(ip: Ipv6Addr) -> Result<(), HostError> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let reason = match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d).
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => {
            return check_ipv4(embedded(hi, lo))
        }
        // NAT64, well-known prefix (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return check_ipv4(embedded(hi, lo)),
        // 6to4 (2002:a.b.c.d::/48).
        [0x2002, hi, lo, ..] => return check_ipv4(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 (64:ff9b:1::/48)",
        [0x0100, 0, 0, 0, ..] => "discard-only (100::/64)",
        [0x2001, 0, ..] => "Teredo (2001::/32)",
        [0x2001, 0x0db8, ..] => "documentation",
        [first, ..] if first & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        [first, ..] if first & 0xffc0 == 0xfe80 => "link-local",
        [first, ..] if first & 0xffc0 == 0xfec0 => "site-local",
        [first, ..] if first & 0xff00 == 0xff00 => "multicast",
        _ => return Ok(()),
    };
    Err(HostError::NotPublic(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_loopback_or_private_address_is_refused() {
        for host in [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0177.0.0.1",
            "0177.1",
            "127.0.0.1.",
            "%31%32%37.0.0.1",
            "0",
            "0x0",
            "10.1.2.3",
            "012.1.2.3",
            "172.16.5.5",
            "192.168.0.1",
            "3232235521",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "[::1]",
            "[::]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[::127.0.0.1]",
            "[64:ff9b::10.0.0.1]",
            "[64:ff9b::7f00:1]",
            "[64:ff9b:1::1]",
            "[2002:7f00:1::]",
            "[2002:a9fe:a9fe::1]",
            "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
            "[fd00::1]",
            "[fc00::1]",
            "[fe80::1]",
            "[fec0::1]",
            "[ff02::1]",
            "[2001:db8::1]",
            "localhost",
            "LOCALHOST",
            "localhost.",
            "x.localhost",
            "X.LOCALHOST.",
            "printer.local",
            "metadata.google.internal",
            "router.home.arpa",
            "intranet",
            "metadata",
        ] {
            assert!(
                matches!(check_host(host), Err(HostError::NotPublic(_))),
                "{host}: {:?}",
                check_host(host)
            );
        }
    }

    #[test]
    fn invalid_hosts_are_refused_as_invalid() {
        for host in [
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "1.16777216",
            "4294967296",
            "0x1g.1",
            "09.1.1.1",
            "1..1",
            "%zz.example.com",
            "%ff.example.com",
            "[::1",
            "[not-an-ip]",
            "%EF%BC%91%EF%BC%92%EF%BC%97.0.0.1",
            "",
        ] {
            assert_eq!(check_host(host), Err(HostError::Invalid), "{host}");
        }
    }

    #[test]
    fn public_hosts_pass() {
        for host in [
            "plugins.example.com",
            "example.com.",
            "93.184.216.34",
            "1.1.1.1",
            "16843009",
            "172.32.0.1",
            "100.128.0.1",
            "[2606:4700:4700::1111]",
            "[::ffff:1.1.1.1]",
            "[64:ff9b::1.1.1.1]",
            "[2002:101:101::1]",
            "192.0.3.1",
            "1x.example.com",
        ] {
            assert_eq!(check_host(host), Ok(()), "{host}");
        }
    }
}
