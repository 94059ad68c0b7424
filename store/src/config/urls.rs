//! etcd's URL flags: `http://host:port`, where host is an IP or `localhost`; and the peer URLs
//! of a MemberAdd/MemberUpdate, checked as etcd's `types.NewURLs` checks them (Go's
//! `url.Parse`, then scheme, `host:port` and no path).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A listen or peer URL resolved to a socket address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// As written.
    pub text: String,
    /// `http` (TLS arrives with the security work).
    pub scheme: String,
    /// Where to bind or connect.
    pub addr: SocketAddr,
}

impl Url {
    /// Parse `scheme://host:port`.
    pub fn parse(s: &str) -> Result<Url, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| format!("URL {s:?} has no scheme"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!("URL scheme must be http or https, got {scheme:?}"));
        }
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| format!("URL {s:?} has no port"))?;
        let port: u16 = port.parse().map_err(|_| format!("URL {s:?} has a bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = if host == "localhost" {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse().map_err(|_| format!("URL {s:?}: host must be an IP address or localhost"))?
        };
        Ok(Url { text: s.to_string(), scheme: scheme.to_string(), addr: SocketAddr::new(ip, port) })
    }
}

/// Characters Go's `url.Parse` takes in a host name as they are (`shouldEscape` in host mode).
fn host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"".contains(&c) || c >= 0x80
}

/// A port as Go's `validOptionalPort` takes it: empty, or `:` and digits.
fn optional_port(p: &str) -> bool {
    p.is_empty() || p.strip_prefix(':').is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
}

/// One peer URL as etcd's `types.NewURLs` takes it: returned as etcd stores it (spaces trimmed,
/// scheme in lower case), or why not.
pub fn member_url(raw: &str) -> Result<String, &'static str> {
    let s = raw.trim();
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("invalid control character in URL");
    }
    // Go's getScheme: letters, then letters, digits, `+-.`, up to the first `:`.
    let colon = s.find(':').ok_or("missing scheme")?;
    let scheme = &s[..colon];
    let scheme_ok =
        scheme.bytes().enumerate().all(|(i, b)| b.is_ascii_alphabetic() || (i > 0 && (b.is_ascii_digit() || b"+-.".contains(&b))));
    if scheme.is_empty() || !scheme_ok {
        return Err("missing scheme");
    }
    let scheme = scheme.to_ascii_lowercase();
    if !["http", "https", "unix", "unixs"].contains(&scheme.as_str()) {
        return Err("scheme must be http, https, unix, or unixs");
    }
    let rest = &s[colon + 1..];
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let authority = rest.strip_prefix("//").ok_or("no host")?;
    let (authority, path) = authority.split_at(authority.find('/').unwrap_or(authority.len()));
    if !path.is_empty() {
        return Err("must not contain a path");
    }
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // Go's parseHost, then net.SplitHostPort.
    let port = if let Some(inner) = host.strip_prefix('[') {
        let close = inner.find(']').ok_or("missing ']' in host")?;
        let after = &inner[close + 1..];
        if !optional_port(after) {
            return Err("invalid port");
        }
        if after.is_empty() {
            return Err("missing port in address");
        }
        after
    } else {
        let at = host.rfind(':').ok_or("missing port in address")?;
        if host[..at].contains(':') {
            return Err("too many colons in address");
        }
        &host[at..]
    };
    if !optional_port(port) {
        return Err("invalid port");
    }
    let b = host.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            // An escape in a host must be of a byte >= 0x80 (or `%25`).
            let hex = |c: u8| (c as char).to_digit(16);
            match (b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c))) {
                (Some(h), Some(_)) if h >= 8 || &b[i..i + 3] == b"%25" => i += 3,
                _ => return Err("invalid URL escape in host"),
            }
        } else if !host_char(b[i]) {
            return Err("invalid character in host name");
        } else {
            i += 1;
        }
    }
    Ok(format!("{scheme}{}", &s[colon..]))
}

/// The peer URLs of a MemberAdd or MemberUpdate as etcd's `types.NewURLs` takes them (at least
/// one, each well formed), sorted as etcd stores them; `None` if etcd refuses them.
pub fn member_urls(raw: &[String]) -> Option<Vec<String>> {
    let mut urls = raw.iter().map(|u| member_url(u).ok()).collect::<Option<Vec<_>>>()?;
    if urls.is_empty() {
        return None;
    }
    urls.sort();
    Some(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd 3.4.23's answers to MemberAdd with these peer URLs (tests/differential.rs asks it).
    #[test]
    fn member_urls_as_etcd_takes_them() {
        let valid = [
            ("http://127.0.0.1:7000", "http://127.0.0.1:7000"),
            (" http://127.0.0.1:7002 ", "http://127.0.0.1:7002"),
            ("HTTP://127.0.0.1:7003", "http://127.0.0.1:7003"),
            ("http://127.0.0.1:", "http://127.0.0.1:"),
            ("http://[::1]:7001", "http://[::1]:7001"),
            ("unix://x:7004", "unix://x:7004"),
            ("unixs://x:7005", "unixs://x:7005"),
            ("http://127.0.0.1:7007?x=1", "http://127.0.0.1:7007?x=1"),
            ("http://127.0.0.1:7008#f", "http://127.0.0.1:7008#f"),
            ("http://u@127.0.0.1:7009", "http://u@127.0.0.1:7009"),
            ("http://127.0.0.1:7011\n", "http://127.0.0.1:7011"),
            ("https://example.com:7015", "https://example.com:7015"),
        ];
        for (raw, stored) in valid {
            assert_eq!(member_url(raw).as_deref(), Ok(stored), "{raw:?}");
        }
        let invalid = [
            "",
            "foo",
            "127.0.0.1:7001",
            "ftp://127.0.0.1:7001",
            "http://127.0.0.1:7001/",
            "http://127.0.0.1:7001/x",
            "http://127.0.0.1",
            "http://127.0.0.1:x",
            "http://127.0.0.1:70x2",
            "http://a:b:7001",
            "http://[::1]",
            "http://[::1:7001",
            "http://a b:7006",
            "http:127.0.0.1:7010",
            "http://%41:7013",
            "http://a\x01:1",
        ];
        for raw in invalid {
            assert!(member_url(raw).is_err(), "{raw:?} taken");
        }
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(member_urls(&list(&["http://b:1", "http://a:1"])), Some(list(&["http://a:1", "http://b:1"])));
        assert_eq!(member_urls(&[]), None, "no URLs");
        assert_eq!(member_urls(&list(&["http://a:1", "foo"])), None, "one bad URL");
    }

    #[test]
    fn urls() {
        assert_eq!(Url::parse("http://localhost:2379").unwrap().addr.to_string(), "127.0.0.1:2379");
        assert_eq!(Url::parse("http://127.0.0.2:2380/").unwrap().addr.to_string(), "127.0.0.2:2380");
        assert_eq!(Url::parse("http://[::1]:2379").unwrap().addr.to_string(), "[::1]:2379");
        assert!(Url::parse("127.0.0.1:2379").is_err());
        assert!(Url::parse("http://example.com:2379").is_err());
    }
}
