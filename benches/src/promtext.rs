//! The apiserver's request latency as SIG Scalability reads it: the
//! `apiserver_request_duration_seconds` histogram from `/metrics` (Prometheus text), kept per
//! (verb, resource, subresource, scope) with group and version summed, two scrapes subtracted
//! to get one interval, and quantiles computed from the buckets the way Prometheus'
//! `histogram_quantile` does (linear interpolation inside the bucket that holds the rank).
//!
//! Invariants: bucket counts are cumulative and sorted by upper bound (`+Inf` last); a diff
//! never goes negative (a counter reset, i.e. a restarted apiserver, yields the later scrape
//! alone); a quantile is `None` for an empty histogram and never above the largest finite
//! bound (the `+Inf` bucket has no width to interpolate in, so Prometheus returns the bound
//! below it, and so do we).

use std::collections::BTreeMap;

/// The metric read.
pub const DURATION: &str = "apiserver_request_duration_seconds";

/// What a latency row is keyed by (kube's labels less group, version and component).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// `GET`, `LIST`, `POST`, `PUT`, `PATCH`, `DELETE`, `APPLY`, …
    pub verb: String,
    /// Plural resource; empty for non-resource paths.
    pub resource: String,
    /// `status`, `binding`, … or empty.
    pub subresource: String,
    /// `resource`, `namespace`, `cluster` or empty.
    pub scope: String,
}

impl Key {
    /// `VERB resource[/subresource] scope`, as the report prints it.
    pub fn name(&self) -> String {
        let res = if self.subresource.is_empty() { self.resource.clone() } else { format!("{}/{}", self.resource, self.subresource) };
        format!("{} {} {}", self.verb, res, self.scope).trim_end().to_string()
    }

    /// The SLO class of SIG Scalability's API call latency SLI: single-object mutating calls,
    /// single-object reads, and lists (namespace- or cluster-scoped).
    pub fn class(&self) -> Class {
        match self.verb.as_str() {
            "LIST" => Class::List,
            "GET" => Class::Read,
            "POST" | "PUT" | "PATCH" | "DELETE" | "APPLY" | "DELETECOLLECTION" => Class::Mutating,
            _ => Class::Other,
        }
    }
}

/// SLO classes (issue 24's targets: mutating and read p99 ≤ 250 ms, lists ≤ 5 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// POST, PUT, PATCH, DELETE, APPLY.
    Mutating,
    /// GET of one object.
    Read,
    /// LIST.
    List,
    /// Anything else with a duration (non-resource GETs keep verb GET but an empty resource).
    Other,
}

impl Class {
    /// The report's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Class::Mutating => "mutating",
            Class::Read => "read",
            Class::List => "list",
            Class::Other => "other",
        }
    }
}

/// One histogram: cumulative counts per upper bound, the sum and the count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hist {
    /// (upper bound, cumulative count), sorted, `f64::INFINITY` last.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of observations, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl Hist {
    fn add_bucket(&mut self, le: f64, v: f64) {
        match self.buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += v,
            None => {
                self.buckets.push((le, v));
                self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
    }

    /// Adds `other` bucket by bucket (both from the same bucket layout).
    pub fn merge(&mut self, other: &Hist) {
        for (le, c) in &other.buckets {
            self.add_bucket(*le, *c);
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// `self − before`, or `self` when a count went down (the process restarted).
    pub fn minus(&self, before: &Hist) -> Hist {
        if before.count > self.count {
            return self.clone();
        }
        let buckets =
            self.buckets.iter().map(|(le, c)| (*le, c - before.buckets.iter().find(|(b, _)| b == le).map_or(0.0, |(_, p)| *p))).collect();
        Hist { buckets, sum: self.sum - before.sum, count: self.count - before.count }
    }

    /// Prometheus' `histogram_quantile(q)`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map(|(_, c)| *c)?;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = (0.0, 0.0);
        for &(le, cum) in &self.buckets {
            if cum >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let width = cum - lower.1;
                let into = if width > 0.0 { (rank - lower.1) / width } else { 1.0 };
                return Some(lower.0 + (le - lower.0) * into);
            }
            lower = (le, cum);
        }
        Some(lower.0)
    }
}

/// Every series of [`DURATION`] in one scrape, by [`Key`].
pub type Scrape = BTreeMap<Key, Hist>;

/// `name{a="x",b="y"} value` → (name, labels, value); `None` for comments and other shapes.
fn sample(line: &str) -> Option<(&str, BTreeMap<&str, &str>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse::<f64>().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let mut map = BTreeMap::new();
    // Label values here never hold `",` (kube's verbs, resources and scopes are plain words).
    for pair in labels.split("\",").filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once("=\"")?;
        map.insert(k, v.trim_end_matches('"'));
    }
    Some((name, map, value))
}

/// Parses the [`DURATION`] families out of a `/metrics` text.
pub fn parse(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for (name, labels, value) in text.lines().filter_map(sample) {
        let Some(part) = name.strip_prefix(DURATION) else { continue };
        let get = |k: &str| labels.get(k).map(|s| s.to_string()).unwrap_or_default();
        let key = Key { verb: get("verb"), resource: get("resource"), subresource: get("subresource"), scope: get("scope") };
        match part {
            "_bucket" => {
                let le = match labels.get("le") {
                    Some(&"+Inf") => f64::INFINITY,
                    Some(v) => match v.parse::<f64>() {
                        Ok(v) => v,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                out.entry(key).or_default().add_bucket(le, value);
            }
            "_sum" => out.entry(key).or_default().sum += value,
            "_count" => out.entry(key).or_default().count += value,
            _ => {}
        }
    }
    out
}

/// The counter of requests the apiserver's max-in-flight limits answered 429.
pub const DROPPED: &str = "apiserver_dropped_requests_total";

/// [`DROPPED`] summed over its `request_kind`s (`readOnly`, `mutating`): what a retrying client
/// (kube-client's `default_retry` retries 429s) shows only as latency.
pub fn dropped(text: &str) -> f64 {
    text.lines().filter_map(sample).filter(|(name, _, _)| *name == DROPPED).map(|(_, _, v)| v).sum()
}

/// `after − before`, series by series; series with no request in between are left out.
pub fn interval(after: &Scrape, before: &Scrape) -> Scrape {
    after.iter().map(|(k, h)| (k.clone(), before.get(k).map_or_else(|| h.clone(), |b| h.minus(b)))).filter(|(_, h)| h.count > 0.0).collect()
}

/// All series of one class merged (the per-class p99 of the report's timeline).
pub fn by_class(scrape: &Scrape, class: Class) -> Hist {
    let mut h = Hist::default();
    for (_, v) in scrape.iter().filter(|(k, _)| k.class() == class) {
        h.merge(v);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_sums_the_request_kinds_and_nothing_else() {
        let text = "# TYPE apiserver_dropped_requests_total counter\n\
            apiserver_dropped_requests_total{request_kind=\"readOnly\"} 3\n\
            apiserver_dropped_requests_total{request_kind=\"mutating\"} 39\n\
            apiserver_dropped_requests_totals{request_kind=\"mutating\"} 1000\n\
            apiserver_current_inflight_requests{request_kind=\"mutating\"} 200\n";
        assert_eq!(dropped(text), 42.0);
        assert_eq!(dropped(""), 0.0);
    }

    const TEXT: &str = r#"# HELP apiserver_request_duration_seconds Response latency.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_sum{verb="POST",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver"} 1.5
apiserver_request_duration_seconds_count{verb="POST",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver"} 10
apiserver_request_duration_seconds_bucket{le="0.005",verb="POST",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver"} 0
apiserver_request_duration_seconds_bucket{le="0.1",verb="POST",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver"} 5
apiserver_request_duration_seconds_bucket{le="0.2",verb="POST",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver"} 9
apiserver_request_duration_seconds_bucket{le="+Inf",verb="POST",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver"} 10
apiserver_request_total{verb="POST",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver",code="201"} 10
apiserver_request_duration_seconds_count{verb="LIST",group="apps",version="v1",resource="deployments",subresource="",scope="cluster",component="apiserver"} 2
apiserver_request_duration_seconds_bucket{verb="LIST",group="apps",version="v1",resource="deployments",subresource="",scope="cluster",component="apiserver",le="1.0"} 2
apiserver_request_duration_seconds_bucket{verb="LIST",group="apps",version="v1",resource="deployments",subresource="",scope="cluster",component="apiserver",le="+Inf"} 2
"#;

    fn key(verb: &str, resource: &str, scope: &str) -> Key {
        Key { verb: verb.into(), resource: resource.into(), subresource: String::new(), scope: scope.into() }
    }

    #[test]
    fn parses_buckets_sum_and_count_whatever_the_label_order() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 2, "{s:?}");
        let post = &s[&key("POST", "pods", "resource")];
        assert_eq!(post.buckets, vec![(0.005, 0.0), (0.1, 5.0), (0.2, 9.0), (f64::INFINITY, 10.0)]);
        assert_eq!((post.sum, post.count), (1.5, 10.0));
        assert_eq!(s[&key("LIST", "deployments", "cluster")].count, 2.0);
        assert_eq!(s[&key("LIST", "deployments", "cluster")].buckets[0], (1.0, 2.0));
    }

    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        let h = Hist { buckets: vec![(0.1, 5.0), (0.2, 9.0), (f64::INFINITY, 10.0)], sum: 0.0, count: 10.0 };
        // (q, expected): rank 5 is the top of the first bucket; rank 7 is half-way into the
        // second; rank 9.9 falls in +Inf, which reports the largest finite bound.
        let table = [(0.5, Some(0.1)), (0.7, Some(0.15)), (0.25, Some(0.05)), (0.99, Some(0.2)), (0.0, Some(0.0))];
        for (q, want) in table {
            let got = h.quantile(q);
            assert!(got.zip(want).is_some_and(|(g, w)| (g - w).abs() < 1e-9), "q={q}: got {got:?}, want {want:?}");
        }
        assert_eq!(Hist::default().quantile(0.99), None);
        let empty = Hist { buckets: vec![(0.1, 0.0), (f64::INFINITY, 0.0)], sum: 0.0, count: 0.0 };
        assert_eq!(empty.quantile(0.5), None);
    }

    #[test]
    fn intervals_subtract_and_drop_idle_series_and_survive_a_restart() {
        let before = parse(TEXT);
        let later = TEXT.replace("} 10\n", "} 30\n").replace("le=\"0.1\",verb=\"POST\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"resource\",component=\"apiserver\"} 5", "le=\"0.1\",verb=\"POST\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"resource\",component=\"apiserver\"} 25");
        let after = parse(&later);
        let d = interval(&after, &before);
        assert_eq!(d.len(), 1, "the idle LIST series is left out: {d:?}");
        let post = &d[&key("POST", "pods", "resource")];
        assert_eq!(post.count, 20.0);
        assert_eq!(post.buckets[1], (0.1, 20.0));
        // A restarted apiserver: counts went down, the later scrape stands alone.
        let d = interval(&before, &after);
        assert_eq!(d[&key("POST", "pods", "resource")].count, 10.0);
    }

    #[test]
    fn classes_follow_the_slo_split() {
        let table = [
            ("POST", Class::Mutating),
            ("PATCH", Class::Mutating),
            ("DELETE", Class::Mutating),
            ("GET", Class::Read),
            ("LIST", Class::List),
            ("WATCH", Class::Other),
        ];
        for (verb, want) in table {
            assert_eq!(key(verb, "pods", "resource").class(), want, "{verb}");
        }
        let s = parse(TEXT);
        assert_eq!(by_class(&s, Class::Mutating).count, 10.0);
        assert_eq!(by_class(&s, Class::List).count, 2.0);
        assert_eq!(key("PUT", "deployments", "resource").name(), "PUT deployments resource");
    }
}
