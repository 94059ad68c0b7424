//! Pod IPs from the node's podCIDR. The gateway (the bridge) takes the first host address; pods
//! take the lowest free one after it. With a root dir, each allocation is a file
//! `<dir>/<ip>` holding the pod uid, created exclusively, so two pods never share an address and a
//! restarted kubelet keeps its pods' addresses.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;

/// An IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub network: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Cidr> {
        let bad = |m: &str| Error::Invalid { what: "pod CIDR".into(), message: format!("{s}: {m}") };
        let (ip, len) = s.split_once('/').ok_or_else(|| bad("no /prefix"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = len.parse().map_err(|_| bad("bad prefix"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("prefix must be 8..30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr { network: Ipv4Addr::from(u32::from(ip) & mask), prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// The `n`-th address of the network (0 is the network address).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u32 << (32 - self.prefix);
        (n < size - 1).then(|| Ipv4Addr::from(u32::from(self.network) + n))
    }

    /// The gateway (bridge) address: the first host.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
}

/// The allocator.
#[derive(Debug)]
pub struct Ipam {
    cidr: Cidr,
    dir: Option<PathBuf>,
    // In-memory view (the only one without a dir); a std Mutex because no await happens inside.
    held: Mutex<BTreeMap<Ipv4Addr, String>>,
}

impl Ipam {
    /// An allocator over `cidr`, persisted in `dir` when given.
    pub fn new(cidr: Cidr, dir: Option<PathBuf>) -> Result<Ipam> {
        let mut held = BTreeMap::new();
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).map_err(Error::io(d))?;
            for e in std::fs::read_dir(d).map_err(Error::io(d))?.flatten() {
                if let (Ok(ip), Ok(owner)) = (e.file_name().to_string_lossy().parse::<Ipv4Addr>(), std::fs::read_to_string(e.path())) {
                    held.insert(ip, owner);
                }
            }
        }
        Ok(Ipam { cidr, dir, held: Mutex::new(held) })
    }

    /// The network.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// The address held by `owner`, or a new one.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((ip, _)) = held.iter().find(|(_, o)| o.as_str() == owner) {
            return Ok(*ip);
        }
        let mut n = 2;
        while let Some(ip) = self.cidr.nth(n) {
            n += 1;
            if held.contains_key(&ip) {
                continue;
            }
            if let Some(d) = &self.dir {
                let path = d.join(ip.to_string());
                match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                    Ok(mut f) => {
                        use std::io::Write;
                        f.write_all(owner.as_bytes()).map_err(Error::io(&path))?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(Error::Io { path, source: e }),
                }
            }
            held.insert(ip, owner.to_string());
            return Ok(ip);
        }
        Err(Error::Runtime(format!("no free pod IP in {}", self.cidr)))
    }

    /// Gives back what `owner` holds.
    pub fn release(&self, owner: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mine: Vec<Ipv4Addr> = held.iter().filter(|(_, o)| o.as_str() == owner).map(|(ip, _)| *ip).collect();
        for ip in mine {
            held.remove(&ip);
            if let Some(d) = &self.dir {
                let _ = std::fs::remove_file(d.join(ip.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_after_the_gateway_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cidr: Cidr = "10.9.0.7/29".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cidr.to_string(), "10.9.0.0/29");
        assert_eq!(cidr.gateway(), Ipv4Addr::new(10, 9, 0, 1));
        let ipam = Ipam::new(cidr, Some(dir.path().into())).unwrap_or_else(|e| panic!("{e}"));
        let a = ipam.allocate("a").unwrap_or_else(|e| panic!("{e}"));
        let b = ipam.allocate("b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a, b), (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3)));
        assert_eq!(ipam.allocate("a").ok(), Some(a));
        ipam.release("a");
        let again = Ipam::new(cidr, Some(dir.path().into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.allocate("b").ok(), Some(b));
        assert_eq!(again.allocate("c").ok(), Some(a));
        for o in ["d", "e", "f"] {
            let _ = again.allocate(o);
        }
        assert!(again.allocate("g").is_err(), "a /29 has 5 pod addresses");
        assert!("10.0.0.0".parse::<Cidr>().is_err() && "10.0.0.0/31".parse::<Cidr>().is_err());
    }
}
