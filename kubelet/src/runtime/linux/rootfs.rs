//! The container's file system view, assembled by the shim inside the container's new mount
//! namespace: a small tmpfs root that bind-mounts the host's top-level folders (containers are
//! host programs and need the host's binaries and libraries), a private `/tmp` in the run's
//! folder, a fresh `/proc` (mounted by the init, inside the new PID namespace), the kubelet's
//! root dir hidden under an empty read-only tmpfs, and the pod's volumes at their mountPaths.
//!
//! Invariants: nothing here writes to a host folder. A mountPath whose parent is a host folder
//! gets an overlay over that folder (its upper layer in the run's folder), so creating the mount
//! point lands in the pod's folder; a symlink on a mountPath is followed inside the container's
//! root, never to the host's (`/var/run` → `/run` lands on the root's `/run`). All mounts are
//! private to the container's mount namespace and vanish with its last process.

use nix::mount::{MsFlags, mount};
use std::path::{Component, Path, PathBuf};

use super::record::ShimConfig;

fn m(src: Option<&Path>, target: &Path, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> Result<(), String> {
    mount(src, target, fstype, flags, data)
        .map_err(|e| format!("mount {} on {}: {e}", src.map(|s| s.display().to_string()).unwrap_or_default(), target.display()))
}

/// A mountPath as relative components, or why it is refused.
pub fn relative(container_path: &str) -> Result<PathBuf, String> {
    let p = Path::new(container_path);
    if !p.is_absolute() {
        return Err(format!("mountPath {container_path:?} must be absolute"));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => out.push(s),
            Component::ParentDir | Component::Prefix(_) => return Err(format!("mountPath {container_path:?} must not contain '..'")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("mountPath \"/\" is not allowed".into());
    }
    Ok(out)
}

/// Builds the root at `cfg.rootfs`. Runs in the shim, after `unshare(CLONE_NEWNS)`.
pub fn build(cfg: &ShimConfig) -> Result<(), String> {
    let root = &cfg.rootfs;
    m(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    m(Some(Path::new("tmpfs")), root, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=755,size=16m"))?;
    let entries = std::fs::read_dir("/").map_err(|e| format!("read /: {e}"))?;
    for e in entries.flatten() {
        let name = e.file_name();
        if matches!(name.to_str(), Some("proc" | "tmp" | "lost+found")) {
            continue;
        }
        let host = Path::new("/").join(&name);
        let target = root.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&host) else { continue };
        if meta.file_type().is_symlink() {
            if let Ok(to) = std::fs::read_link(&host) {
                let _ = std::os::unix::fs::symlink(to, &target);
            }
        } else if meta.is_dir() {
            std::fs::create_dir(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            m(Some(&host), &target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        } else if meta.is_file() {
            std::fs::File::create(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            m(Some(&host), &target, None, MsFlags::MS_BIND, None)?;
        }
    }
    let tmp_src = cfg.dir.join("tmp");
    std::fs::create_dir_all(&tmp_src).map_err(|e| format!("{}: {e}", tmp_src.display()))?;
    set_mode(&tmp_src, 0o1777);
    let tmp = root.join("tmp");
    std::fs::create_dir(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    m(Some(&tmp_src), &tmp, None, MsFlags::MS_BIND, None)?;
    let proc_dir = root.join("proc");
    std::fs::create_dir(&proc_dir).map_err(|e| format!("{}: {e}", proc_dir.display()))?;
    for hide in &cfg.mask {
        let Ok(rel) = relative(&hide.to_string_lossy()) else { continue };
        let target = root.join(rel);
        if target.is_dir() {
            m(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("size=4k,mode=755"),
            )?;
        }
    }
    let mut ours: Vec<PathBuf> = vec![root.clone()];
    let mut overlays = 0usize;
    for mnt in &cfg.container.mounts {
        let rel = relative(&mnt.container_path)?;
        let dir = mnt.host_path.is_dir();
        let target = mount_point(cfg, root, &rel, dir, &mut ours, &mut overlays)?;
        m(Some(&mnt.host_path), &target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        if mnt.read_only {
            m(None, &target, None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None)?;
        }
    }
    Ok(())
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
}

/// Where a symlink met while walking a mountPath leads, inside the container's root (as runc's
/// securejoin): an absolute target starts again at `root`, a relative one at `cur`; returns the
/// folder to continue from and the target's components still to walk. `..` never leaves `root`.
pub fn follow(root: &Path, cur: &Path, target: &Path) -> (PathBuf, Vec<std::ffi::OsString>) {
    let start = if target.is_absolute() { root.to_path_buf() } else { cur.to_path_buf() };
    let rest = target
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    (start, rest)
}

/// Most symlinks followed for one mountPath (the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// Finds or makes `root/rel` as a mount point without writing to a host folder. Symlinks on the
/// way are followed inside the root ([`follow`]), so `/var/run/secrets/…` works on hosts where
/// `/var/run` links to `/run`.
fn mount_point(
    cfg: &ShimConfig,
    root: &Path,
    rel: &Path,
    dir: bool,
    ours: &mut Vec<PathBuf>,
    overlays: &mut usize,
) -> Result<PathBuf, String> {
    let mut cur = root.to_path_buf();
    let mut pending: std::collections::VecDeque<std::ffi::OsString> = rel.components().map(|c| c.as_os_str().to_os_string()).collect();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            if cur != *root {
                cur.pop();
            }
            continue;
        }
        let next = cur.join(&c);
        let last = pending.is_empty();
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(format!("mountPath /{}: too many levels of symbolic links", rel.display()));
                }
                let to = std::fs::read_link(&next).map_err(|e| format!("{}: {e}", next.display()))?;
                let (start, rest) = follow(root, &cur, &to);
                cur = start;
                for part in rest.into_iter().rev() {
                    pending.push_front(part);
                }
                continue;
            }
            Ok(_) => {}
            Err(_) => {
                // Ours: the root's own tmpfs (not the host folders bound into it), a folder we
                // made, or anything under an overlay or a folder of ours.
                if !ours.iter().any(|o| if o == root { cur == *o } else { cur.starts_with(o) }) {
                    // `cur` is a host folder: put an overlay on it whose upper layer is ours.
                    *overlays += 1;
                    let base = cfg.dir.join(format!("overlay-{overlays}"));
                    let (upper, work) = (base.join("upper"), base.join("work"));
                    for d in [&upper, &work] {
                        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
                    }
                    let data = format!("lowerdir={},upperdir={},workdir={}", cur.display(), upper.display(), work.display());
                    m(Some(Path::new("overlay")), &cur, Some("overlay"), MsFlags::empty(), Some(&data))
                        .map_err(|e| format!("cannot create mountPath /{} under a host folder: {e}", rel.display()))?;
                    ours.push(cur.clone());
                }
                if last && !dir {
                    std::fs::File::create(&next).map_err(|e| format!("{}: {e}", next.display()))?;
                } else {
                    std::fs::create_dir(&next).map_err(|e| format!("{}: {e}", next.display()))?;
                    ours.push(next.clone());
                }
            }
        }
        cur = next;
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_must_be_absolute_and_stay_inside() {
        assert_eq!(relative("/etc/config/").ok(), Some(PathBuf::from("etc/config")));
        assert_eq!(relative("/a/./b").ok(), Some(PathBuf::from("a/b")));
        assert!(relative("etc").is_err());
        assert!(relative("/a/../../etc").is_err());
        assert!(relative("/").is_err());
    }

    #[test]
    fn symlinks_on_a_mount_path_resolve_inside_the_root() {
        let root = Path::new("/r/root");
        let parts = |v: Vec<std::ffi::OsString>| v.into_iter().map(|s| s.to_string_lossy().into_owned()).collect::<Vec<_>>();
        // /var/run -> /run (Debian): starts again at the root, not the host's /.
        let (start, rest) = follow(root, &root.join("var"), Path::new("/run"));
        assert_eq!((start, parts(rest)), (root.to_path_buf(), vec!["run".to_string()]));
        // A relative link continues beside it; `..` is walked (and clamped at the root) later.
        let (start, rest) = follow(root, &root.join("var"), Path::new("../run/./x"));
        assert_eq!((start, parts(rest)), (root.join("var"), vec!["..".to_string(), "run".to_string(), "x".to_string()]));
    }
}
