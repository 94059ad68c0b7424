//! LimitRanges (`core/v1`, `limits`): kube's defaulting (a Container item's `default` from
//! `max`, `defaultRequest` from `default`, then `min`; keel-access's
//! [`keel_access::admission::limit_ranger::default_limit_range`]) and kube's
//! `ValidateLimitRange` ordering checks. What a LimitRange does to pods is LimitRanger
//! admission's ([`crate::rest::admission`]).

use crate::registry::strategy::{Column, Strategy, name};
use crate::registry::validation::Cause;
use k8s_openapi::api::core::v1::LimitRange;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use keel_access::admission::quantity::Quantity;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The limitranges strategy.
pub struct LimitRanges;

const TYPES: &[&str] = &["Container", "Pod", "PersistentVolumeClaim"];

type List = BTreeMap<String, (String, Quantity)>;

/// A list's parsed quantities, keyed by resource; the unparsable ones are reported.
fn parsed(field: &str, list: Option<&BTreeMap<String, KubeQuantity>>, out: &mut Vec<Cause>) -> List {
    let mut m = List::new();
    for (k, v) in list.into_iter().flatten() {
        match Quantity::parse(&v.0) {
            Ok(q) => {
                m.insert(k.clone(), (v.0.clone(), q));
            }
            Err(_) => out.push((format!("{field}[{k}]"), format!("Invalid value: {:?}: must be a quantity", v.0))),
        }
    }
    m
}

impl Strategy for LimitRanges {
    type Object = LimitRange;

    fn default(&self, lr: &mut LimitRange) {
        keel_access::admission::limit_ranger::default_limit_range(lr);
    }

    fn validate(&self, lr: &LimitRange) -> Vec<Cause> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, item) in lr.spec.iter().flat_map(|s| s.limits.iter()).enumerate() {
            let at = format!("spec.limits[{i}]");
            let t = item.type_.as_str();
            if t.is_empty() {
                out.push((format!("{at}.type"), "Required value".into()));
            } else if !TYPES.contains(&t) && !t.contains('/') {
                out.push((format!("{at}.type"), format!("Invalid value: {t:?}: must be a standard limit type or fully qualified")));
            }
            if !t.is_empty() && !seen.insert(t.to_string()) {
                out.push((format!("{at}.type"), format!("Duplicate value: {t:?}")));
            }
            let max = parsed(&format!("{at}.max"), item.max.as_ref(), &mut out);
            let min = parsed(&format!("{at}.min"), item.min.as_ref(), &mut out);
            let default = parsed(&format!("{at}.default"), item.default.as_ref(), &mut out);
            let request = parsed(&format!("{at}.defaultRequest"), item.default_request.as_ref(), &mut out);
            let ratio = parsed(&format!("{at}.maxLimitRequestRatio"), item.max_limit_request_ratio.as_ref(), &mut out);
            if t == "Pod" {
                if !default.is_empty() {
                    out.push((format!("{at}.default"), "Forbidden: may not be specified when `type` is 'Pod'".into()));
                }
                if !request.is_empty() {
                    out.push((format!("{at}.defaultRequest"), "Forbidden: may not be specified when `type` is 'Pod'".into()));
                }
            }
            let keys: BTreeSet<&String> =
                max.keys().chain(min.keys()).chain(default.keys()).chain(request.keys()).chain(ratio.keys()).collect();
            for k in keys {
                let (mn, mx, d, r) = (min.get(k), max.get(k), default.get(k), request.get(k));
                let mut bad = |field: &str, (shown, _): &(String, Quantity), why: String| {
                    out.push((format!("{at}.{field}[{k}]"), format!("Invalid value: {shown:?}: {why}")));
                };
                if let (Some(mn), Some(mx)) = (mn, mx)
                    && mn.1 > mx.1
                {
                    bad("min", mn, format!("min value {} is greater than max value {}", mn.0, mx.0));
                }
                if let (Some(r), Some(mn)) = (r, mn)
                    && mn.1 > r.1
                {
                    bad("defaultRequest", r, format!("min value {} is greater than default request value {}", mn.0, r.0));
                }
                if let (Some(r), Some(mx)) = (r, mx)
                    && r.1 > mx.1
                {
                    bad("defaultRequest", r, format!("default request value {} is greater than max value {}", r.0, mx.0));
                }
                if let (Some(r), Some(d)) = (r, d)
                    && r.1 > d.1
                {
                    bad("defaultRequest", r, format!("default request value {} is greater than default limit value {}", r.0, d.0));
                }
                if let (Some(d), Some(mn)) = (d, mn)
                    && mn.1 > d.1
                {
                    bad("default", mn, format!("min value {} is greater than default value {}", mn.0, d.0));
                }
                if let (Some(d), Some(mx)) = (d, mx)
                    && d.1 > mx.1
                {
                    bad("default", mx, format!("default value {} is greater than max value {}", d.0, mx.0));
                }
                if let Some(ra) = ratio.get(k)
                    && ra.1 < Quantity::from_units(1)
                {
                    bad("maxLimitRequestRatio", ra, format!("ratio {} is less than 1", ra.0));
                }
            }
        }
        out
    }

    fn columns(&self) -> &'static [Column] {
        &[("Name", 0), ("Created At", 0)]
    }

    /// kube's printer: the creation time in RFC 3339, not an age.
    fn cells(&self, lr: &LimitRange, _now: i64) -> Vec<Value> {
        let created = lr.metadata.creation_timestamp.as_ref().map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        vec![json!(name(&lr.metadata)), json!(created.unwrap_or_default())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(limits: Value) -> LimitRange {
        serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"limits": limits}})).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn container_items_are_defaulted_from_max_and_validated_in_kube_order() {
        let mut l = lr(json!([{"type": "Container", "max": {"cpu": "2"}, "min": {"cpu": "100m"}}]));
        LimitRanges.default(&mut l);
        let item = &l.spec.as_ref().map(|s| s.limits[0].clone()).unwrap_or_default();
        assert_eq!(item.default.as_ref().and_then(|d| d.get("cpu")).map(|q| q.0.as_str()), Some("2"));
        assert_eq!(item.default_request.as_ref().and_then(|d| d.get("cpu")).map(|q| q.0.as_str()), Some("2"));
        assert!(LimitRanges.validate(&l).is_empty());

        let cases: &[(Value, &[(&str, &str)])] = &[
            (
                json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "2"}, "default": {"cpu": "1"}, "defaultRequest": {"cpu": "1"}}]),
                &[
                    ("spec.limits[0].min[cpu]", "Invalid value: \"2\": min value 2 is greater than max value 1"),
                    ("spec.limits[0].defaultRequest[cpu]", "Invalid value: \"1\": min value 2 is greater than default request value 1"),
                    ("spec.limits[0].default[cpu]", "Invalid value: \"2\": min value 2 is greater than default value 1"),
                ],
            ),
            (
                json!([{"type": "Pod", "default": {"cpu": "1"}}, {"type": "Pod"}]),
                &[
                    ("spec.limits[0].default", "Forbidden: may not be specified when `type` is 'Pod'"),
                    ("spec.limits[1].type", "Duplicate value: \"Pod\""),
                ],
            ),
            (
                json!([{"type": "", "maxLimitRequestRatio": {"cpu": "500m"}}]),
                &[
                    ("spec.limits[0].type", "Required value"),
                    ("spec.limits[0].maxLimitRequestRatio[cpu]", "Invalid value: \"500m\": ratio 500m is less than 1"),
                ],
            ),
        ];
        for (limits, want) in cases {
            let got = LimitRanges.validate(&lr(limits.clone()));
            let want: Vec<Cause> = want.iter().map(|(f, m)| (f.to_string(), m.to_string())).collect();
            assert_eq!(got, want, "{limits}");
        }
    }
}
