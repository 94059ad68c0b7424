//! Pod startup latency and scheduler throughput from the benchmark's own pod watch, the way
//! clusterloader2's PodStartupLatency measurement takes them: per pod, its
//! `creationTimestamp`, when the watch first delivered it, when it first arrived bound
//! (`spec.nodeName`), and when it first arrived Running (phase `Running` or a `Ready=True`
//! condition, whichever the watch shows first).
//!
//! Two startup figures, because neither is exact: `created_to_running` starts at
//! `creationTimestamp`, which has one-second granularity (truncated, so it overstates by up to
//! 1 s); `seen_to_running` starts at the watch's first arrival, which is precise but misses the
//! create → first-event delay. The truth is between them.
//!
//! Invariants: a pod is keyed by UID (names recur across a rolling update); each "first" time is
//! set once and never moved; a deleted pod leaves the live counts but keeps its times; a
//! re-list (the watch fell behind the apiserver's window and listed again) marks deleted every
//! pod the new list did not hold, since its DELETED event was lost in the gap; the
//! phase a pod belongs to is the phase running when it was first seen. All times are wall-clock
//! seconds passed in by the caller (the clock is the shell's).

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the tracker needs of one watch event's pod.
#[derive(Clone, Debug, Default)]
pub struct PodView {
    /// metadata.uid.
    pub uid: String,
    /// metadata.creationTimestamp, Unix seconds.
    pub created: Option<i64>,
    /// spec.nodeName is set.
    pub bound: bool,
    /// status.phase is Running or the Ready condition is True.
    pub running: bool,
}

/// One pod's times (wall-clock Unix seconds).
#[derive(Clone, Debug, Default)]
pub struct PodTimes {
    /// creationTimestamp.
    pub created: Option<i64>,
    /// First watch arrival.
    pub seen: f64,
    /// First arrival bound.
    pub bound: Option<f64>,
    /// First arrival Running.
    pub running: Option<f64>,
    /// Deleted (a watch DELETED event).
    pub deleted: bool,
    /// The run's phase when first seen.
    pub phase: String,
}

/// Every pod the watch delivered.
#[derive(Debug, Default)]
pub struct Tracker {
    pods: HashMap<String, PodTimes>,
    /// UIDs of the list in progress.
    listing: Option<HashSet<String>>,
    /// Lists started, the first one included.
    lists: usize,
}

/// Live counts at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pods seen, ever.
    pub seen: usize,
    /// Pods not deleted.
    pub live: usize,
    /// Live pods bound.
    pub bound: usize,
    /// Live pods Running.
    pub running: usize,
}

impl Tracker {
    /// Records one ADDED/MODIFIED (or initial-list) arrival at `now`.
    pub fn apply(&mut self, p: &PodView, now: f64, phase: &str) {
        let t = self.pods.entry(p.uid.clone()).or_insert_with(|| PodTimes {
            created: p.created,
            seen: now,
            phase: phase.to_string(),
            ..PodTimes::default()
        });
        if p.bound && t.bound.is_none() {
            t.bound = Some(now);
        }
        if p.running && t.running.is_none() {
            t.running = Some(now);
        }
    }

    /// A list starts (the watch's first, or a re-list after it fell behind).
    pub fn begin_list(&mut self) {
        self.listing = Some(HashSet::new());
        self.lists += 1;
    }

    /// One pod of the list in progress.
    pub fn listed(&mut self, p: &PodView, now: f64, phase: &str) {
        if let Some(l) = self.listing.as_mut() {
            l.insert(p.uid.clone());
        }
        self.apply(p, now, phase);
    }

    /// The list is complete: every pod it did not hold is gone.
    pub fn end_list(&mut self) {
        let Some(listed) = self.listing.take() else { return };
        for (uid, t) in self.pods.iter_mut() {
            if !listed.contains(uid) {
                t.deleted = true;
            }
        }
    }

    /// Re-lists after the first list.
    pub fn relists(&self) -> usize {
        self.lists.saturating_sub(1)
    }

    /// Records a DELETED arrival.
    pub fn delete(&mut self, uid: &str) {
        if let Some(t) = self.pods.get_mut(uid) {
            t.deleted = true;
        }
    }

    /// The live counts.
    pub fn counts(&self) -> Counts {
        let mut c = Counts { seen: self.pods.len(), ..Counts::default() };
        for t in self.pods.values().filter(|t| !t.deleted) {
            c.live += 1;
            c.bound += usize::from(t.bound.is_some());
            c.running += usize::from(t.running.is_some());
        }
        c
    }

    /// Pods first seen in `phase`.
    pub fn in_phase<'a>(&'a self, phase: &'a str) -> impl Iterator<Item = &'a PodTimes> + 'a {
        self.pods.values().filter(move |t| t.phase == phase)
    }

    /// Startup latency of the pods first seen in `phase` (see the module doc).
    pub fn startup(&self, phase: &str) -> Value {
        let pods: Vec<&PodTimes> = self.in_phase(phase).collect();
        let from_created: Vec<f64> = pods.iter().filter_map(|t| Some(t.running? - t.created? as f64)).collect();
        let from_seen: Vec<f64> = pods.iter().filter_map(|t| Some(t.running? - t.seen)).collect();
        let seen_to_bound: Vec<f64> = pods.iter().filter_map(|t| Some(t.bound? - t.seen)).collect();
        json!({
            "pods": pods.len(),
            "running": from_seen.len(),
            "created_to_running_s": summary(from_created),
            "seen_to_running_s": summary(from_seen),
            "seen_to_bound_s": summary(seen_to_bound),
        })
    }

    /// Binds per whole second since `t0` (from the first arrival bound of each pod).
    pub fn binds_per_second(&self, t0: f64) -> BTreeMap<i64, u64> {
        let mut m = BTreeMap::new();
        for b in self.pods.values().filter_map(|t| t.bound) {
            *m.entry((b - t0).floor() as i64).or_insert(0) += 1;
        }
        m
    }

    /// Scheduler throughput over the binds of pods first seen in `phase`: binds, first → last
    /// bind, the mean rate over that span and the busiest second.
    pub fn throughput(&self, phase: &str, t0: f64) -> Value {
        let binds: Vec<f64> = self.in_phase(phase).filter_map(|t| t.bound).collect();
        let (Some(first), Some(last)) = (binds.iter().copied().reduce(f64::min), binds.iter().copied().reduce(f64::max)) else {
            return json!({"binds": 0});
        };
        let mut per_second: BTreeMap<i64, u64> = BTreeMap::new();
        for b in &binds {
            *per_second.entry((b - t0).floor() as i64).or_insert(0) += 1;
        }
        let span = (last - first).max(1.0);
        json!({
            "binds": binds.len(),
            "first_s": round3(first - t0),
            "last_s": round3(last - t0),
            "mean_per_s": round1(binds.len() as f64 / span),
            "max_per_s": per_second.values().max(),
        })
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Nearest-rank percentile of sorted values (`q` in 0..=1).
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1).min(sorted.len() - 1)).copied()
}

/// p50, p90, p99, max and count of `values`, in seconds rounded to the millisecond.
pub fn summary(mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    let p = |q| percentile(&values, q).map(round3);
    json!({"count": values.len(), "p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": p(1.0)})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(uid: &str, created: i64, bound: bool, running: bool) -> PodView {
        PodView { uid: uid.into(), created: Some(created), bound, running }
    }

    #[test]
    fn first_times_are_set_once_and_deletes_leave_the_live_counts() {
        let mut t = Tracker::default();
        t.apply(&view("a", 100, false, false), 100.2, "ramp");
        t.apply(&view("a", 100, true, false), 100.3, "ramp");
        t.apply(&view("a", 100, true, true), 101.0, "ramp");
        t.apply(&view("a", 100, true, true), 105.0, "update");
        t.apply(&view("b", 101, true, false), 101.5, "ramp");
        assert_eq!(t.counts(), Counts { seen: 2, live: 2, bound: 2, running: 1 });
        t.delete("a");
        t.delete("missing");
        assert_eq!(t.counts(), Counts { seen: 2, live: 1, bound: 1, running: 0 });
        let a = &t.pods["a"];
        assert_eq!((a.seen, a.bound, a.running, a.phase.as_str()), (100.2, Some(100.3), Some(101.0), "ramp"));
    }

    #[test]
    fn a_relist_deletes_what_it_no_longer_holds() {
        let mut t = Tracker::default();
        t.begin_list();
        t.end_list();
        t.apply(&view("a", 1, true, true), 2.0, "ramp");
        t.apply(&view("b", 1, true, true), 2.0, "ramp");
        // The watch fell behind: the new list holds only b and a new c.
        t.begin_list();
        t.listed(&view("b", 1, true, true), 9.0, "delete");
        t.listed(&view("c", 8, false, false), 9.0, "delete");
        assert_eq!(t.counts().live, 3, "nothing is judged before the list is complete");
        t.end_list();
        assert_eq!(t.counts(), Counts { seen: 3, live: 2, bound: 1, running: 1 });
        assert_eq!(t.relists(), 1);
        assert_eq!(t.pods["b"].seen, 2.0, "times are kept across lists");
    }

    #[test]
    fn startup_reports_both_starts_per_phase() {
        let mut t = Tracker::default();
        // Pod i: created at second 10, seen 0.4 s in, Running i/10 s after being seen.
        for i in 0..10 {
            let uid = format!("p{i}");
            t.apply(&view(&uid, 10, true, false), 10.4, "ramp");
            t.apply(&view(&uid, 10, true, true), 10.4 + (i + 1) as f64 / 10.0, "ramp");
        }
        t.apply(&view("late", 20, false, false), 20.0, "update");
        let s = t.startup("ramp");
        assert_eq!(s["pods"], 10);
        assert_eq!(s["seen_to_running_s"]["p50"], 0.5);
        assert_eq!(s["seen_to_running_s"]["p99"], 1.0);
        assert_eq!(s["created_to_running_s"]["p90"], 1.3);
        let u = t.startup("update");
        assert_eq!((u["pods"].as_u64(), u["running"].as_u64()), (Some(1), Some(0)));
        assert_eq!(u["seen_to_running_s"]["p99"], Value::Null);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let table = [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0), (1.0, 100.0), (0.0, 1.0)];
        for (q, want) in table {
            assert_eq!(percentile(&v, q), Some(want), "q={q}");
        }
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[3.0], 0.99), Some(3.0));
    }

    #[test]
    fn throughput_counts_binds_per_second() {
        let mut t = Tracker::default();
        for i in 0..30 {
            t.apply(&view(&format!("p{i}"), 0, true, false), 1000.0 + f64::from(i) / 10.0, "ramp");
        }
        let th = t.throughput("ramp", 1000.0);
        assert_eq!(th["binds"], 30);
        assert_eq!(th["max_per_s"], 10);
        assert_eq!(th["mean_per_s"], 10.3);
        assert_eq!(t.throughput("none", 1000.0)["binds"], 0);
        assert_eq!(t.binds_per_second(1000.0).get(&2), Some(&10));
    }
}
