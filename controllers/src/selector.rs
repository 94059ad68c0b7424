//! Label selectors as Kubernetes evaluates them (`metav1.LabelSelectorAsSelector`): an empty
//! selector matches everything, a selector with an unknown operator is invalid.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeMap;

/// A parsed selector.
#[derive(Clone, Debug)]
pub struct Sel {
    inner: Selector,
    empty: bool,
}

impl Sel {
    /// Parses `s`; `Err` carries why it is invalid.
    pub fn parse(s: &LabelSelector) -> Result<Sel, String> {
        let empty = s.match_labels.as_ref().is_none_or(|m| m.is_empty()) && s.match_expressions.as_ref().is_none_or(|e| e.is_empty());
        let inner = Selector::try_from(s.clone()).map_err(|e| e.to_string())?;
        Ok(Sel { inner, empty })
    }

    /// True when the selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.inner.matches(labels.unwrap_or(&NONE))
    }
}

/// A selector matching exactly `labels` (a Service's `spec.selector`, a nodeSelector).
pub fn equality(labels: &BTreeMap<String, String>) -> Sel {
    Sel { inner: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), empty: labels.is_empty() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn empty_matches_everything_and_expressions_apply() {
        let all = Sel::parse(&LabelSelector::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(all.is_empty() && all.matches(None));
        let s = LabelSelector {
            match_labels: Some([("app".to_string(), "a".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        let s = Sel::parse(&s).unwrap_or_else(|e| panic!("{e}"));
        let l = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        assert!(s.matches(Some(&l(&[("app", "a")]))));
        assert!(s.matches(Some(&l(&[("app", "a"), ("tier", "web")]))));
        assert!(!s.matches(Some(&l(&[("app", "a"), ("tier", "db")]))));
        assert!(!s.matches(Some(&l(&[("app", "b")]))));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement { key: "k".into(), operator: "Near".into(), values: None }]),
            ..Default::default()
        };
        assert!(Sel::parse(&bad).is_err());
    }
}
