//! Cgroups for containers: v2 where the unified hierarchy has the controllers, else v1 (this
//! machine: memory, cpu, cpuacct and pids mounted separately). Every container run gets
//! `<controller>/<root>/pod<uid>/<container id>`; the pod folder aggregates for pod stats.
//!
//! Invariants: paths are built only from the kubelet's own ids (never from a pod spec string);
//! a controller that is not mounted is reported once as degraded and skipped, never faked.

use std::path::{Path, PathBuf};

/// Which hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2 at this mount point.
    V2(PathBuf),
    /// cgroup v1: each controller's mount point (`None` when not mounted).
    V1 {
        /// `memory`.
        memory: Option<PathBuf>,
        /// `cpu` (CFS quota and shares).
        cpu: Option<PathBuf>,
        /// `cpuacct` (usage).
        cpuacct: Option<PathBuf>,
        /// `pids`.
        pids: Option<PathBuf>,
    },
}

/// Limits of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes.
    pub memory: Option<u64>,
    /// Millicores, as CFS quota over a 100 ms period.
    pub cpu_limit_millis: Option<u64>,
    /// Millicores, as cpu shares (v1) or weight (v2).
    pub cpu_request_millis: Option<u64>,
    /// Max processes.
    pub pids: Option<u64>,
}

/// The kubelet's cgroups.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// The hierarchy found.
    pub hierarchy: Hierarchy,
    /// The folder under each controller that holds Keel's pods (`--cgroup-root`).
    pub root: String,
}

fn mounted(p: &Path) -> Option<PathBuf> {
    p.join("cgroup.procs").exists().then(|| p.to_path_buf())
}

/// cpu shares for a request, as kubelet's `MilliCPUToShares` (min 2).
pub fn shares(millis: u64) -> u64 {
    (millis * 1024 / 1000).max(2)
}

/// CFS quota in microseconds per 100 ms period, as `MilliCPUToQuota` (min 1 ms).
pub fn quota(millis: u64) -> u64 {
    (millis * 100_000 / 1000).max(1000)
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, memory.events).
fn stat_field(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

impl Cgroups {
    /// Looks at `/sys/fs/cgroup`; returns the cgroups and what is missing.
    pub fn detect(base: &Path, root: &str) -> (Cgroups, Vec<String>) {
        let mut missing = Vec::new();
        let v2 = base.join("cgroup.controllers");
        let hierarchy = if let Ok(ctl) = std::fs::read_to_string(&v2) {
            for want in ["memory", "cpu", "pids"] {
                if !ctl.split_whitespace().any(|c| c == want) {
                    missing.push(format!("no cgroup v2 {want} controller"));
                }
            }
            Hierarchy::V2(base.to_path_buf())
        } else {
            let h = Hierarchy::V1 {
                memory: mounted(&base.join("memory")),
                cpu: mounted(&base.join("cpu")),
                cpuacct: mounted(&base.join("cpuacct")),
                pids: mounted(&base.join("pids")),
            };
            if let Hierarchy::V1 { memory, cpu, cpuacct, pids } = &h {
                for (name, m) in [("memory", memory), ("cpu", cpu), ("cpuacct", cpuacct), ("pids", pids)] {
                    if m.is_none() {
                        missing.push(format!("no cgroup v1 {name} controller (limits and stats of it are not enforced)"));
                    }
                }
            }
            h
        };
        (Cgroups { hierarchy, root: root.to_string() }, missing)
    }

    fn rel(&self, pod: &str, container: Option<&str>) -> PathBuf {
        let mut p = PathBuf::from(&self.root).join(format!("pod{pod}"));
        if let Some(c) = container {
            p.push(c);
        }
        p
    }

    /// Every folder of the pod (or of one container) across controllers.
    pub fn dirs(&self, pod: &str, container: Option<&str>) -> Vec<PathBuf> {
        let rel = self.rel(pod, container);
        match &self.hierarchy {
            Hierarchy::V2(base) => vec![base.join(rel)],
            Hierarchy::V1 { memory, cpu, cpuacct, pids } => {
                [memory, cpu, cpuacct, pids].into_iter().flatten().map(|m| m.join(&rel)).collect()
            }
        }
    }

    /// Creates the container's folders and writes its limits. The files a process writes its
    /// pid into to join are returned (`cgroup.procs` of each).
    pub fn create(&self, pod: &str, container: &str, limits: &Limits) -> std::io::Result<Vec<PathBuf>> {
        let rel = self.rel(pod, Some(container));
        let mut procs = Vec::new();
        match &self.hierarchy {
            Hierarchy::V2(base) => {
                // Controllers must be enabled in every ancestor's subtree_control.
                let mut at = base.clone();
                for part in rel.iter() {
                    let _ = write(&at.join("cgroup.subtree_control"), "+memory +cpu +pids");
                    at.push(part);
                    std::fs::create_dir_all(&at)?;
                }
                if let Some(m) = limits.memory {
                    write(&at.join("memory.max"), &m.to_string())?;
                    let _ = write(&at.join("memory.swap.max"), "0");
                }
                if let Some(c) = limits.cpu_limit_millis {
                    write(&at.join("cpu.max"), &format!("{} 100000", quota(c)))?;
                }
                if let Some(r) = limits.cpu_request_millis {
                    // shares 2..262144 map onto weight 1..10000 as the kernel docs and runc do.
                    let w = 1 + ((shares(r).saturating_sub(2)) * 9999) / 262142;
                    let _ = write(&at.join("cpu.weight"), &w.to_string());
                }
                if let Some(p) = limits.pids {
                    let _ = write(&at.join("pids.max"), &p.to_string());
                }
                procs.push(at.join("cgroup.procs"));
            }
            Hierarchy::V1 { memory, cpu, cpuacct, pids } => {
                if let Some(m) = memory {
                    let d = m.join(&rel);
                    std::fs::create_dir_all(&d)?;
                    if let Some(b) = limits.memory {
                        write(&d.join("memory.limit_in_bytes"), &b.to_string())?;
                        let _ = write(&d.join("memory.swappiness"), "0");
                    }
                    procs.push(d.join("cgroup.procs"));
                }
                if let Some(c) = cpu {
                    let d = c.join(&rel);
                    std::fs::create_dir_all(&d)?;
                    if let Some(l) = limits.cpu_limit_millis {
                        write(&d.join("cpu.cfs_period_us"), "100000")?;
                        write(&d.join("cpu.cfs_quota_us"), &quota(l).to_string())?;
                    }
                    if let Some(r) = limits.cpu_request_millis {
                        write(&d.join("cpu.shares"), &shares(r).to_string())?;
                    }
                    procs.push(d.join("cgroup.procs"));
                }
                if let Some(a) = cpuacct {
                    let d = a.join(&rel);
                    std::fs::create_dir_all(&d)?;
                    procs.push(d.join("cgroup.procs"));
                }
                if let Some(p) = pids {
                    let d = p.join(&rel);
                    std::fs::create_dir_all(&d)?;
                    if let Some(n) = limits.pids {
                        write(&d.join("pids.max"), &n.to_string())?;
                    }
                    procs.push(d.join("cgroup.procs"));
                }
            }
        }
        Ok(procs)
    }

    /// Whether the kernel's OOM killer killed a process of the container.
    pub fn oom_killed(&self, pod: &str, container: &str) -> bool {
        let rel = self.rel(pod, Some(container));
        match &self.hierarchy {
            Hierarchy::V2(base) => stat_field(&base.join(rel).join("memory.events"), "oom_kill").unwrap_or(0) > 0,
            Hierarchy::V1 { memory: Some(m), .. } => stat_field(&m.join(rel).join("memory.oom_control"), "oom_kill").unwrap_or(0) > 0,
            Hierarchy::V1 { .. } => false,
        }
    }

    /// (cpu ns, memory working set bytes) of a pod or container folder.
    pub fn usage(&self, pod: &str, container: Option<&str>) -> Option<(u64, u64)> {
        let rel = self.rel(pod, container);
        match &self.hierarchy {
            Hierarchy::V2(base) => {
                let d = base.join(rel);
                let cpu = stat_field(&d.join("cpu.stat"), "usage_usec")? * 1000;
                let mem = read_u64(&d.join("memory.current"))
                    .unwrap_or(0)
                    .saturating_sub(stat_field(&d.join("memory.stat"), "inactive_file").unwrap_or(0));
                Some((cpu, mem))
            }
            Hierarchy::V1 { memory, cpuacct, .. } => {
                let cpu = cpuacct.as_ref().and_then(|a| read_u64(&a.join(&rel).join("cpuacct.usage"))).unwrap_or(0);
                let mem = memory
                    .as_ref()
                    .map(|m| {
                        let d = m.join(&rel);
                        read_u64(&d.join("memory.usage_in_bytes"))
                            .unwrap_or(0)
                            .saturating_sub(stat_field(&d.join("memory.stat"), "total_inactive_file").unwrap_or(0))
                    })
                    .unwrap_or(0);
                (cpuacct.is_some() || memory.is_some()).then_some((cpu, mem))
            }
        }
    }

    /// The pids in a container's (or pod's) folders.
    pub fn pids(&self, pod: &str, container: Option<&str>) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .dirs(pod, container)
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Removes a container's (or, with `None`, the whole pod's) folders; they must be empty of
    /// processes. Children first.
    pub fn remove(&self, pod: &str, container: Option<&str>) {
        for d in self.dirs(pod, container) {
            remove_tree(&d);
        }
    }

    /// Removes every folder under the kubelet's root (`keel-kubelet reset`).
    pub fn remove_all(&self) {
        let roots: Vec<PathBuf> = match &self.hierarchy {
            Hierarchy::V2(base) => vec![base.join(&self.root)],
            Hierarchy::V1 { memory, cpu, cpuacct, pids } => {
                [memory, cpu, cpuacct, pids].into_iter().flatten().map(|m| m.join(&self.root)).collect()
            }
        };
        for r in roots {
            remove_tree(&r);
        }
    }

    /// Every pid under the kubelet's root, in any controller.
    pub fn all_pids(&self) -> Vec<i32> {
        let roots: Vec<PathBuf> = match &self.hierarchy {
            Hierarchy::V2(base) => vec![base.join(&self.root)],
            Hierarchy::V1 { memory, cpu, cpuacct, pids } => {
                [memory, cpu, cpuacct, pids].into_iter().flatten().map(|m| m.join(&self.root)).collect()
            }
        };
        let mut out = Vec::new();
        for r in roots {
            collect_pids(&r, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn collect_pids(d: &Path, out: &mut Vec<i32>) {
    if let Ok(t) = std::fs::read_to_string(d.join("cgroup.procs")) {
        out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out);
            }
        }
    }
}

/// rmdir of a cgroup folder and its children (cgroup folders are removed with rmdir, their
/// files go with them).
fn remove_tree(d: &Path) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_quota_as_kubelet_computes_them() {
        assert_eq!((shares(0), shares(100), shares(1000)), (2, 102, 1024));
        assert_eq!((quota(250), quota(1), quota(2000)), (25_000, 1000, 200_000));
    }
}
