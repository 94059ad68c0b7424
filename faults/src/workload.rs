//! Seeded workload plans: what users do to the cluster while the faults run — Deployments
//! created, scaled, rolled out (`kubectl set image`) and rolled back (`kubectl rollout undo`),
//! their pods deleted, bare pods created and deleted. A seed and a [`Config`] give the same
//! plan on every run; the harness carries it out and records what was acknowledged (the
//! plan never predicts the cluster's answers, so a write that failed at the client but landed
//! anyway cannot make the checkers wrong).
//!
//! Names are never reused within a plan (bare pods `bare-<n>`, Deployments `web-<n>`), so every
//! key in the store's history belongs to one object of the plan.

use crate::rng::Rng;
use std::time::Duration;

/// One thing a user does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `kubectl create deployment`-like: a Deployment with this many replicas of `image`.
    CreateDeployment {
        /// Its name.
        name: String,
        /// spec.replicas.
        replicas: u32,
        /// The container's image.
        image: String,
    },
    /// `kubectl scale deployment/<name> --replicas`.
    Scale {
        /// The Deployment.
        name: String,
        /// The new count.
        replicas: u32,
    },
    /// `kubectl set image deployment/<name> c=<image>`.
    SetImage {
        /// The Deployment.
        name: String,
        /// The new image.
        image: String,
    },
    /// `kubectl rollout undo deployment/<name>`.
    Rollback {
        /// The Deployment.
        name: String,
    },
    /// Delete one of the Deployment's pods (the `pick`-th, modulo how many there are).
    DeleteOnePod {
        /// The Deployment.
        deployment: String,
        /// Which one.
        pick: u64,
    },
    /// Create a bare pod, placed on `node` by its author when no scheduler runs.
    CreatePod {
        /// Its name.
        name: String,
        /// spec.nodeName, or None for the scheduler to choose.
        node: Option<String>,
    },
    /// Delete a bare pod.
    DeletePod {
        /// Its name.
        name: String,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::CreateDeployment { name, replicas, image } => write!(f, "create deployment {name} ×{replicas} {image}"),
            Action::Scale { name, replicas } => write!(f, "scale {name} to {replicas}"),
            Action::SetImage { name, image } => write!(f, "set image {name} {image}"),
            Action::Rollback { name } => write!(f, "rollout undo {name}"),
            Action::DeleteOnePod { deployment, pick } => write!(f, "delete pod #{pick} of {deployment}"),
            Action::CreatePod { name, node } => write!(f, "create pod {name} on {}", node.as_deref().unwrap_or("(scheduler)")),
            Action::DeletePod { name } => write!(f, "delete pod {name}"),
        }
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// When, from the start of the workload.
    pub at: Duration,
    /// What.
    pub action: Action,
}

/// What a plan may contain.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long the workload runs.
    pub duration: Duration,
    /// Deployments created at the start (none without a controller-manager).
    pub deployments: usize,
    /// Whether a controller-manager runs (Deployments mean nothing without one).
    pub controllers: bool,
    /// Whether a scheduler runs (else bare pods name their node).
    pub scheduler: bool,
    /// The nodes (`keel-1` … `keel-<nodes>`).
    pub nodes: usize,
    /// Most replicas a Deployment is scaled to.
    pub max_replicas: u32,
    /// Most bare pods alive at once.
    pub bare_pods_max: usize,
    /// Time between two actions.
    pub pace: (Duration, Duration),
}

impl Config {
    /// Three Deployments and a few bare pods on 3 nodes, an action every 0.5–2 s.
    pub fn full(secs: u64) -> Config {
        Config {
            duration: Duration::from_secs(secs),
            deployments: 3,
            controllers: true,
            scheduler: true,
            nodes: 3,
            max_replicas: 4,
            bare_pods_max: 6,
            pace: (Duration::from_millis(500), Duration::from_secs(2)),
        }
    }
}

/// The images a plan uses.
pub const IMAGES: [&str; 4] = ["keel.dev/web:v1", "keel.dev/web:v2", "keel.dev/web:v3", "keel.dev/web:v4"];

/// The plan of `seed` under `c`.
pub fn plan(seed: u64, c: &Config) -> Vec<Step> {
    let mut r = Rng::fork(seed, "workload");
    let mut out = Vec::new();
    let mut deployments: Vec<(String, bool)> = Vec::new(); // (name, rolled out at least once)
    let mut bare: Vec<String> = Vec::new();
    let (mut next_pod, mut next_node) = (0, 0);
    if c.controllers {
        for i in 0..c.deployments {
            let name = format!("web-{i}");
            let replicas = r.between(2, u64::from(c.max_replicas.max(2))) as u32;
            out.push(Step {
                at: Duration::ZERO,
                action: Action::CreateDeployment { name: name.clone(), replicas, image: IMAGES[0].into() },
            });
            deployments.push((name, false));
        }
    }
    let mut at = r.duration(c.pace.0, c.pace.1);
    while at < c.duration {
        let mut kinds: Vec<(u64, u8)> = Vec::new();
        if !deployments.is_empty() {
            kinds.extend([(3, 0), (3, 1), (2, 3)]);
            if deployments.iter().any(|(_, rolled)| *rolled) {
                kinds.push((2, 2));
            }
        }
        if bare.len() < c.bare_pods_max {
            kinds.push((2, 4));
        }
        if !bare.is_empty() {
            kinds.push((1, 5));
        }
        let pick = |r: &mut Rng, n: usize| r.below(n as u64) as usize;
        let action = match kinds_pick(&mut r, &kinds) {
            Some(0) => {
                let (name, _) = &deployments[pick(&mut r, deployments.len())];
                Action::Scale { name: name.clone(), replicas: r.between(1, u64::from(c.max_replicas)) as u32 }
            }
            Some(1) => {
                let i = pick(&mut r, deployments.len());
                deployments[i].1 = true;
                Action::SetImage { name: deployments[i].0.clone(), image: IMAGES[pick(&mut r, IMAGES.len())].into() }
            }
            Some(2) => {
                let rolled: Vec<&String> = deployments.iter().filter(|(_, x)| *x).map(|(n, _)| n).collect();
                Action::Rollback { name: rolled[pick(&mut r, rolled.len())].clone() }
            }
            Some(3) => Action::DeleteOnePod { deployment: deployments[pick(&mut r, deployments.len())].0.clone(), pick: r.next_u64() },
            Some(4) => {
                let name = format!("bare-{next_pod}");
                next_pod += 1;
                bare.push(name.clone());
                let node = (!c.scheduler).then(|| {
                    next_node = next_node % c.nodes.max(1) + 1;
                    format!("keel-{next_node}")
                });
                Action::CreatePod { name, node }
            }
            Some(_) => Action::DeletePod { name: bare.remove(pick(&mut r, bare.len())) },
            None => break,
        };
        out.push(Step { at, action });
        at += r.duration(c.pace.0, c.pace.1);
    }
    out
}

fn kinds_pick(r: &mut Rng, kinds: &[(u64, u8)]) -> Option<u8> {
    r.weighted(kinds).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_plan_with_fresh_names() {
        let c = Config::full(300);
        let p = plan(9, &c);
        assert_eq!(p, plan(9, &c));
        assert_ne!(p, plan(10, &c));
        let created: Vec<&String> =
            p.iter().filter_map(|s| if let Action::CreatePod { name, .. } = &s.action { Some(name) } else { None }).collect();
        let mut unique = created.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(created.len(), unique.len(), "bare pod names are never reused");
        assert!(p.iter().take(3).all(|s| matches!(s.action, Action::CreateDeployment { .. })));
    }

    #[test]
    fn without_controllers_only_bare_pods_and_without_a_scheduler_they_name_nodes() {
        let c = Config { controllers: false, scheduler: false, ..Config::full(300) };
        let p = plan(1, &c);
        assert!(!p.is_empty());
        let mut alive = std::collections::BTreeSet::new();
        for s in &p {
            match &s.action {
                Action::CreatePod { name, node } => {
                    assert!(node.as_deref().is_some_and(|n| n.starts_with("keel-")), "{}", s.action);
                    alive.insert(name.clone());
                    assert!(alive.len() <= c.bare_pods_max);
                }
                Action::DeletePod { name } => assert!(alive.remove(name), "deletes only live pods: {name}"),
                other => panic!("no controllers, yet {other}"),
            }
        }
    }

    #[test]
    fn rollbacks_follow_a_rollout_of_the_same_deployment() {
        let p = plan(5, &Config::full(600));
        let mut rolled = std::collections::BTreeSet::new();
        for s in &p {
            match &s.action {
                Action::SetImage { name, .. } => {
                    rolled.insert(name.clone());
                }
                Action::Rollback { name } => assert!(rolled.contains(name), "{name} rolled back before any rollout"),
                _ => {}
            }
        }
        assert!(p.iter().any(|s| matches!(s.action, Action::Rollback { .. })));
    }
}
