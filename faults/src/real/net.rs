//! Network partitions with iptables, undone by a guard. Every rule goes at the top of the
//! OUTPUT chain (all traffic here is local, so every packet passes OUTPUT) and carries the
//! run's comment tag; [`Net`]'s drop deletes every rule carrying the tag — also after a panic,
//! also rules a crashed earlier step left — and empties and removes the run's cgroup folders.
//!
//! - Store members: member `i`'s peer traffic leaves from and arrives at `127.0.0.i:2380`, so
//!   cutting `i` off is four rules per other member (to and from port 2380, each way).
//! - A kubelet: every kubelet talks to the apiservers from 127.0.0.1 through the balancer, so
//!   addresses cannot tell them apart; their cgroups can. Each kubelet's PID is moved into its
//!   own cgroup2 folder `<unified>/<tag>/kubelet-i` and `-m cgroup --path` matches its
//!   sockets. A socket keeps the cgroup it was created in, so the connections a kubelet opened
//!   before the move are cut by their own ports (read from /proc). The apiservers' own
//!   connections to the kubelet's port 10250 are cut too.

use super::{Error, Result};
use std::path::PathBuf;
use std::process::Command;

/// Where cgroup2 is mounted on this machine (with no controllers: only for matching).
pub const CGROUP2: &str = "/sys/fs/cgroup/unified";

/// A rule's iptables arguments after `-I OUTPUT` (without the comment).
pub type Rule = Vec<String>;

/// The partitions of one run.
pub struct Net {
    tag: String,
    active: Vec<Rule>,
}

fn iptables(args: &[String]) -> Result<()> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .output()
        .map_err(Error::io("running iptables (is it installed? /usr/sbin on the PATH?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command { command: format!("iptables {}", args.join(" ")), output: String::from_utf8_lossy(&out.stderr).into_owned() })
    }
}

fn strings(parts: &[&str]) -> Rule {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Rules cutting member `i` off from member `j` (both 1-based), both ways.
pub fn member_rules(i: usize, j: usize) -> Vec<Rule> {
    let (a, b) = (format!("127.0.0.{i}"), format!("127.0.0.{j}"));
    let mut out = Vec::new();
    for (src, dst) in [(&a, &b), (&b, &a)] {
        for port in ["--dport", "--sport"] {
            out.push(strings(&["-s", src, "-d", dst, "-p", "tcp", port, "2380", "-j", "DROP"]));
        }
    }
    out
}

/// The local ports of `pid`'s TCP connections to `remote_ports` on any address, from
/// `/proc/<pid>/fd` (its socket inodes) and `/proc/<pid>/net/tcp`.
pub fn connections_of(pid: u32, remote_ports: &[u16]) -> Vec<(u16, u16)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let inodes: std::collections::BTreeSet<String> = fds
        .filter_map(|f| std::fs::read_link(f.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    parse_tcp_table(&table, &inodes, remote_ports)
}

/// (local port, remote port) of the rows of a /proc/net/tcp `table` whose inode is in
/// `inodes` and whose remote port is one of `remote_ports`.
pub fn parse_tcp_table(table: &str, inodes: &std::collections::BTreeSet<String>, remote_ports: &[u16]) -> Vec<(u16, u16)> {
    let port = |addr: &str| addr.split_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let f: Vec<&str> = row.split_whitespace().collect();
            let (local, remote, inode) = (port(f.get(1)?)?, port(f.get(2)?)?, *f.get(9)?);
            (inodes.contains(inode) && remote_ports.contains(&remote)).then_some((local, remote))
        })
        .collect()
}

impl Net {
    /// The partitions of the run tagged `tag` (letters, digits and dashes).
    pub fn new(tag: &str) -> Result<Net> {
        let folder = PathBuf::from(CGROUP2).join(tag);
        std::fs::create_dir_all(&folder).map_err(Error::io(format!("creating {}", folder.display())))?;
        Ok(Net { tag: tag.to_string(), active: Vec::new() })
    }

    /// The run's tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    fn with_comment(&self, rule: &[String]) -> Vec<String> {
        let mut args = strings(&["-I", "OUTPUT", "-m", "comment", "--comment", &self.tag]);
        args.extend(rule.iter().cloned());
        args
    }

    /// Adds `rule`.
    pub fn add(&mut self, rule: Rule) -> Result<()> {
        iptables(&self.with_comment(&rule))?;
        self.active.push(rule);
        Ok(())
    }

    /// Removes every rule added so far.
    pub fn heal(&mut self) -> Result<()> {
        let mut first_err = None;
        for rule in std::mem::take(&mut self.active) {
            let mut args = self.with_comment(&rule);
            args[0] = "-D".into();
            if let Err(e) = iptables(&args) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Cuts member `i` off from every other of `members`.
    pub fn isolate_member(&mut self, i: usize, members: usize) -> Result<()> {
        for j in (1..=members).filter(|j| *j != i) {
            for r in member_rules(i, j) {
                self.add(r)?;
            }
        }
        Ok(())
    }

    /// The cgroup2 folder of kubelet `i` (relative to the cgroup2 root, as `--path` wants it).
    pub fn kubelet_cgroup(&self, i: usize) -> String {
        format!("{}/kubelet-{i}", self.tag)
    }

    /// Moves `pid` into kubelet `i`'s folder (idempotent).
    pub fn adopt_kubelet(&self, i: usize, pid: u32) -> Result<()> {
        let folder = PathBuf::from(CGROUP2).join(self.kubelet_cgroup(i));
        std::fs::create_dir_all(&folder).map_err(Error::io(format!("creating {}", folder.display())))?;
        let mine = std::fs::read_to_string(folder.join("cgroup.procs")).unwrap_or_default();
        if mine.lines().any(|l| l.trim() == pid.to_string()) {
            return Ok(());
        }
        std::fs::write(folder.join("cgroup.procs"), pid.to_string()).map_err(Error::io(format!("moving {pid} into {}", folder.display())))
    }

    /// Cuts kubelet `i` (running as `pid`, on 127.0.0.i) off from the apiservers: its new
    /// sockets by cgroup, its open ones by port, and the apiservers' way to its port 10250.
    pub fn isolate_kubelet(&mut self, i: usize, pid: u32) -> Result<()> {
        self.adopt_kubelet(i, pid)?;
        let path = self.kubelet_cgroup(i);
        self.add(strings(&["-m", "cgroup", "--path", &path, "-p", "tcp", "-m", "multiport", "--dports", "6443,6444", "-j", "DROP"]))?;
        self.add(strings(&["-d", &format!("127.0.0.{i}"), "-p", "tcp", "--dport", "10250", "-j", "DROP"]))?;
        for (local, remote) in connections_of(pid, &[6443, 6444]) {
            let (local, remote) = (local.to_string(), remote.to_string());
            self.add(strings(&["-p", "tcp", "--sport", &local, "--dport", &remote, "-j", "DROP"]))?;
            self.add(strings(&["-p", "tcp", "--sport", &remote, "--dport", &local, "-j", "DROP"]))?;
        }
        Ok(())
    }

    /// Deletes every OUTPUT rule carrying the tag, whoever added it (`iptables -S` lists them).
    fn sweep(&self) {
        let Ok(out) = Command::new("iptables").args(["-w", "5", "-S", "OUTPUT"]).output() else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.split_whitespace().any(|w| w == self.tag)) {
            let mut args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            if args.first().map(String::as_str) == Some("-A") {
                args[0] = "-D".into();
                let _ = iptables(&args);
            }
        }
    }

    /// Moves every process out of the run's cgroup folders and removes them.
    fn release_cgroups(&self) {
        let root = PathBuf::from(CGROUP2);
        let base = root.join(&self.tag);
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let procs = std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines() {
                    let _ = std::fs::write(root.join("cgroup.procs"), pid.trim());
                }
                let _ = std::fs::remove_dir(e.path());
            }
        }
        let _ = std::fs::remove_dir(&base);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.heal();
        self.sweep();
        self.release_cgroups();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_cut_both_ways_on_the_peer_port_only() {
        let rules = member_rules(1, 3);
        assert_eq!(rules.len(), 4);
        assert!(rules.iter().all(|r| r.contains(&"2380".to_string())));
        assert!(rules.iter().any(|r| r[..4] == ["-s", "127.0.0.3", "-d", "127.0.0.1"]));
    }

    #[test]
    fn open_connections_are_found_by_inode_and_remote_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A001 0100007F:192B 01 00000000:00000000 00:00000000 00000000     0        0 111 1 0
   1: 0100007F:A002 0100007F:192B 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0
   2: 0100007F:A003 0300007F:0950 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0";
        let inodes = ["111".to_string(), "333".to_string()].into_iter().collect();
        assert_eq!(parse_tcp_table(table, &inodes, &[6443]), vec![(0xA001, 6443)]);
    }
}
