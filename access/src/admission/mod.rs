//! Admission cores: pure functions the apiserver calls between authorization and the write,
//! in kube's plugin order (mutating, then validating): NamespaceLifecycle, LimitRanger,
//! ServiceAccount, DefaultTolerationSeconds, NodeRestriction, then LimitRanger's and
//! ResourceQuota's checks.
//! Each takes the object and what the apiserver's caches know, and returns the mutated object
//! or kube's Status error. None does I/O.

pub mod lifecycle;
pub mod limit_ranger;
pub mod node_restriction;
pub mod quantity;
pub mod quota;
pub mod resources;
pub mod service_account;
pub mod tolerations;

use crate::error::Error;
use crate::gostr::quote;

/// An admission plugin `--enable-admission-plugins` can name that keel-access implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Plugin {
    /// No creates in missing or terminating namespaces.
    NamespaceLifecycle,
    /// LimitRange defaults and bounds.
    LimitRanger,
    /// Default service account and token volume.
    ServiceAccount,
    /// 300 s not-ready/unreachable tolerations.
    DefaultTolerationSeconds,
    /// ResourceQuota.
    ResourceQuota,
    /// Kubelets limited to their own Node and pods (not in kube's defaults; kubeadm enables it).
    NodeRestriction,
}

/// kube's default set (those of it keel-access implements), in kube's order.
pub const DEFAULT_PLUGINS: &[Plugin] =
    &[Plugin::NamespaceLifecycle, Plugin::LimitRanger, Plugin::ServiceAccount, Plugin::DefaultTolerationSeconds, Plugin::ResourceQuota];

/// Parses `--enable-admission-plugins` (added to the defaults, as kube does) and
/// `--disable-admission-plugins`; plugins kube has but Keel does not are accepted and ignored
/// only if listed in `known_elsewhere`, unknown ones are an error with kube's message.
pub fn enabled_plugins(enable: &str, disable: &str, known_elsewhere: &[&str]) -> Result<Vec<Plugin>, Error> {
    let parse = |list: &str| -> Result<Vec<Plugin>, Error> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let p = match name {
                "NamespaceLifecycle" => Plugin::NamespaceLifecycle,
                "LimitRanger" => Plugin::LimitRanger,
                "ServiceAccount" => Plugin::ServiceAccount,
                "DefaultTolerationSeconds" => Plugin::DefaultTolerationSeconds,
                "ResourceQuota" => Plugin::ResourceQuota,
                "NodeRestriction" => Plugin::NodeRestriction,
                other if known_elsewhere.contains(&other) => continue,
                other => return Err(Error::BadRequest(format!("admission-control plugin {} is unknown", quote(other)))),
            };
            out.push(p);
        }
        Ok(out)
    };
    let enabled = parse(enable)?;
    let disabled = parse(disable)?;
    let mut out: Vec<Plugin> = DEFAULT_PLUGINS.iter().copied().filter(|p| !disabled.contains(p) || enabled.contains(p)).collect();
    out.extend(enabled.iter().copied().filter(|p| !DEFAULT_PLUGINS.contains(p)));
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_flags_add_to_and_remove_from_kubes_defaults() {
        assert_eq!(enabled_plugins("", "", &[]).unwrap(), DEFAULT_PLUGINS);
        let with = enabled_plugins("NodeRestriction,EventRateLimit", "ResourceQuota", &["EventRateLimit"]).unwrap();
        assert_eq!(
            with,
            [
                Plugin::NamespaceLifecycle,
                Plugin::LimitRanger,
                Plugin::ServiceAccount,
                Plugin::DefaultTolerationSeconds,
                Plugin::NodeRestriction
            ]
        );
        assert!(enabled_plugins("AlwaysPullImages", "", &[]).is_err());
    }
}
