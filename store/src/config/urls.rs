//! etcd's URL flags: `http://host:port`, where host is an IP or `localhost`.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(Url::parse("http://localhost:2379").unwrap().addr.to_string(), "127.0.0.1:2379");
        assert_eq!(Url::parse("http://127.0.0.2:2380/").unwrap().addr.to_string(), "127.0.0.2:2380");
        assert_eq!(Url::parse("http://[::1]:2379").unwrap().addr.to_string(), "[::1]:2379");
        assert!(Url::parse("127.0.0.1:2379").is_err());
        assert!(Url::parse("http://example.com:2379").is_err());
    }
}
