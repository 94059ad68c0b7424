//! Zones, disruption and the eviction rate (kube's `ComputeZoneState`, `handleDisruption`,
//! `RateLimitedTimedQueue`), without I/O.
//!
//! - A zone (`topology.kubernetes.io/region` + `zone` labels) is in FullDisruption when none of
//!   its nodes is Ready, PartialDisruption when more than 2 and at least
//!   `--unhealthy-zone-threshold` of them are not, Normal otherwise.
//! - Nodes are tainted for eviction at `--node-eviction-rate` per second per zone (Normal and
//!   FullDisruption), `--secondary-node-eviction-rate` in PartialDisruption of a large zone
//!   (more than `--large-cluster-size-threshold` nodes), not at all in a small disrupted one.
//! - When every zone is fully disrupted the controller assumes the problem is its own (or the
//!   apiserver's) connectivity, not the nodes': it removes the NoExecute taints and stops
//!   evicting, until some node is Ready again.

use k8s_openapi::api::core::v1::Node;
use std::collections::{BTreeMap, HashSet, VecDeque};
use tokio::time::Instant;

/// A zone's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    /// First seen.
    Initial,
    /// Few nodes unhealthy.
    Normal,
    /// Many unhealthy.
    PartialDisruption,
    /// None healthy.
    FullDisruption,
}

/// Rates and thresholds.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// `--node-eviction-rate` (0.1).
    pub eviction_qps: f64,
    /// `--secondary-node-eviction-rate` (0.01).
    pub secondary_qps: f64,
    /// `--unhealthy-zone-threshold` (0.55).
    pub unhealthy_threshold: f64,
    /// `--large-cluster-size-threshold` (50).
    pub large_cluster: usize,
}

impl Default for Rates {
    fn default() -> Self {
        Rates { eviction_qps: 0.1, secondary_qps: 0.01, unhealthy_threshold: 0.55, large_cluster: 50 }
    }
}

/// kube's `nodetopology.GetZoneKey`.
pub fn zone_key(node: &Node) -> String {
    let l = node.metadata.labels.as_ref();
    let get = |k: &str, legacy: &str| l.and_then(|l| l.get(k).or_else(|| l.get(legacy))).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() { String::new() } else { format!("{region}:\x00:{zone}") }
}

/// `ComputeZoneState` from the Ready statuses of a zone's nodes: (unhealthy count, state).
pub fn zone_state(ready: &[bool], threshold: f64) -> (usize, ZoneState) {
    let ok = ready.iter().filter(|r| **r).count();
    let bad = ready.len() - ok;
    if ok == 0 && bad > 0 {
        (bad, ZoneState::FullDisruption)
    } else if bad > 2 && bad as f64 / (bad + ok) as f64 >= threshold {
        (bad, ZoneState::PartialDisruption)
    } else {
        (bad, ZoneState::Normal)
    }
}

/// The eviction rate of a zone of `size` nodes in `state`.
pub fn qps(state: ZoneState, size: usize, r: &Rates) -> f64 {
    match state {
        ZoneState::Initial | ZoneState::Normal | ZoneState::FullDisruption => r.eviction_qps,
        ZoneState::PartialDisruption => {
            if size <= r.large_cluster {
                0.0
            } else {
                r.secondary_qps
            }
        }
    }
}

/// What [`Disruption::update`] asks the shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Nothing changes.
    Nothing,
    /// Every zone just went dark: remove NoExecute taints from all nodes, stop evicting.
    EnterMasterDisruption,
    /// Some node is back: treat all nodes as just heard from, and set these zone rates.
    ExitMasterDisruption(BTreeMap<String, f64>),
    /// These zones changed state: new rates.
    Rates(BTreeMap<String, f64>),
}

/// The zone states across passes.
#[derive(Debug, Default)]
pub struct Disruption {
    states: BTreeMap<String, ZoneState>,
}

impl Disruption {
    /// No zones seen.
    pub fn new() -> Disruption {
        Disruption::default()
    }

    /// True when every known zone is fully disrupted (evictions stopped).
    pub fn all_down(&self) -> bool {
        !self.states.is_empty() && self.states.values().all(|s| *s == ZoneState::FullDisruption)
    }

    /// `handleDisruption`, given each zone's Ready statuses.
    pub fn update(&mut self, zones: &BTreeMap<String, Vec<bool>>, r: &Rates) -> Step {
        let mut new: BTreeMap<String, (usize, ZoneState)> = BTreeMap::new();
        let mut all_are = true;
        for (z, ready) in zones {
            let (_, st) = zone_state(ready, r.unhealthy_threshold);
            if st != ZoneState::FullDisruption {
                all_are = false;
            }
            new.insert(z.clone(), (ready.len(), st));
            self.states.entry(z.clone()).or_insert(ZoneState::Initial);
        }
        self.states.retain(|z, _| zones.contains_key(z));
        let all_were = self.states.values().all(|s| *s == ZoneState::FullDisruption);
        if all_are && all_were {
            return Step::Nothing;
        }
        if all_are {
            for s in self.states.values_mut() {
                *s = ZoneState::FullDisruption;
            }
            return Step::EnterMasterDisruption;
        }
        if all_were {
            let mut rates = BTreeMap::new();
            for (z, (size, st)) in &new {
                self.states.insert(z.clone(), *st);
                rates.insert(z.clone(), qps(*st, *size, r));
            }
            return Step::ExitMasterDisruption(rates);
        }
        let mut rates = BTreeMap::new();
        for (z, (size, st)) in &new {
            if self.states.get(z) != Some(st) {
                self.states.insert(z.clone(), *st);
                rates.insert(z.clone(), qps(*st, *size, r));
            }
        }
        if rates.is_empty() { Step::Nothing } else { Step::Rates(rates) }
    }
}

/// A token bucket (client-go's `flowcontrol.NewTokenBucketRateLimiter(qps, burst)`), full at
/// start; qps 0 never allows.
#[derive(Clone, Debug)]
pub struct Bucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(qps: f64, burst: u32, now: Instant) -> Bucket {
        Bucket { qps, burst: f64::from(burst), tokens: f64::from(burst), last: now }
    }

    /// Takes a token if one is there.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.qps).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// `SwapLimiter`: a new rate, starting full (as kube's new limiter does).
    pub fn set_qps(&mut self, qps: f64, now: Instant) {
        if (qps - self.qps).abs() > f64::EPSILON {
            *self = Bucket::new(qps, self.burst as u32, now);
        }
    }
}

/// One zone's nodes waiting to be tainted, in order, each taken when the bucket allows. A node
/// taken stays known (a second `add` is a no-op) until `remove`d, as kube's
/// `RateLimitedTimedQueue` keeps processed values in its set.
#[derive(Debug)]
pub struct TaintQueue {
    order: VecDeque<String>,
    set: HashSet<String>,
    /// The zone's rate.
    pub bucket: Bucket,
}

impl TaintQueue {
    /// An empty queue at `qps`.
    pub fn new(qps: f64, now: Instant) -> TaintQueue {
        TaintQueue { order: VecDeque::new(), set: HashSet::new(), bucket: Bucket::new(qps, 1, now) }
    }

    /// Queues `node`; false when already queued.
    pub fn add(&mut self, node: &str) -> bool {
        if !self.set.insert(node.to_string()) {
            return false;
        }
        self.order.push_back(node.to_string());
        true
    }

    /// Forgets `node` (it recovered, or its taint must be applied again).
    pub fn remove(&mut self, node: &str) {
        if self.set.remove(node) {
            self.order.retain(|n| n != node);
        }
    }

    /// The next node to taint, if the rate allows one now.
    pub fn next(&mut self, now: Instant) -> Option<String> {
        if self.order.is_empty() || !self.bucket.try_take(now) {
            return None;
        }
        self.order.pop_front()
    }

    /// Every node queued or processed and not removed.
    pub fn known(&self) -> Vec<String> {
        self.set.iter().cloned().collect()
    }

    /// Nodes waiting.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when none waits.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // TestComputeZoneState-style rows: (ready flags) → state.
    #[test]
    fn zone_state_follows_kubes_thresholds() {
        let rows: Vec<(Vec<bool>, ZoneState)> = vec![
            (vec![true, true, true], ZoneState::Normal),
            (vec![false, false, false], ZoneState::FullDisruption),
            (vec![true, false, false], ZoneState::Normal),
            (vec![true, false, false, false], ZoneState::PartialDisruption),
            (vec![true, true, false, false, false], ZoneState::PartialDisruption),
            (vec![true, true, true, false, false, false, false, true, true, true], ZoneState::Normal),
            (vec![], ZoneState::Normal),
        ];
        for (ready, want) in rows {
            assert_eq!(zone_state(&ready, 0.55).1, want, "{ready:?}");
        }
    }

    #[test]
    fn every_zone_dark_stops_evictions_until_a_node_returns() {
        let r = Rates::default();
        let mut d = Disruption::new();
        let zones = |a: Vec<bool>, b: Vec<bool>| BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
        assert!(matches!(d.update(&zones(vec![true, true], vec![true]), &r), Step::Rates(_)), "initial → normal");
        assert_eq!(d.update(&zones(vec![false, true], vec![true]), &r), Step::Nothing);
        assert!(matches!(d.update(&zones(vec![false, false], vec![true]), &r), Step::Rates(_)), "zone a fully disrupted");
        assert_eq!(d.update(&zones(vec![false, false], vec![false]), &r), Step::EnterMasterDisruption);
        assert!(d.all_down());
        assert_eq!(d.update(&zones(vec![false, false], vec![false]), &r), Step::Nothing);
        match d.update(&zones(vec![false, false], vec![true]), &r) {
            Step::ExitMasterDisruption(rates) => assert_eq!(rates.get("b"), Some(&0.1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn partial_disruption_slows_or_stops_evictions_by_zone_size() {
        let r = Rates::default();
        assert_eq!(qps(ZoneState::PartialDisruption, 10, &r), 0.0);
        assert_eq!(qps(ZoneState::PartialDisruption, 51, &r), 0.01);
        assert_eq!(qps(ZoneState::Normal, 10, &r), 0.1);
    }

    #[test]
    fn the_taint_queue_releases_one_node_per_token() {
        let t0 = Instant::now();
        let mut q = TaintQueue::new(0.5, t0);
        q.add("n1");
        q.add("n2");
        assert!(!q.add("n1"), "once");
        assert_eq!(q.next(t0).as_deref(), Some("n1"), "the bucket starts full");
        assert_eq!(q.next(t0 + Duration::from_secs(1)), None, "half a token");
        assert_eq!(q.next(t0 + Duration::from_secs(2)).as_deref(), Some("n2"));
        assert!(!q.add("n1"), "processed nodes stay known until removed");
        q.remove("n1");
        assert!(q.add("n1"));
        q.remove("n1");
        q.add("n3");
        q.remove("n3");
        assert!(q.is_empty());
        q.bucket.set_qps(0.0, t0);
        q.add("n4");
        assert_eq!(q.next(t0 + Duration::from_secs(100)), None, "rate 0 never evicts");
    }
}
