//! Label selectors as the API server evaluates them, through kube's own
//! [`Selector`]. Parse once, match many times.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

/// A parsed selector. An operator the API does not define matches nothing
/// (the schema refuses one in a ClusterUpgrade; a pod selector read from
/// the cluster never has one).
#[derive(Debug, Clone)]
pub struct Matcher(Option<Selector>);

impl Matcher {
    pub fn new(selector: &LabelSelector) -> Matcher {
        Matcher(Selector::try_from(selector.clone()).ok())
    }

    /// A matcher for an optional selector: none selects everything.
    pub fn optional(selector: Option<&LabelSelector>) -> Matcher {
        match selector {
            Some(s) => Matcher::new(s),
            None => Matcher(Some(Selector::default())),
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.as_ref().is_some_and(|s| s.matches(labels))
    }
}

/// Whether `labels` match `selector` (parses it each call: prefer [`Matcher`] in loops).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    Matcher::new(selector).matches(labels)
}

/// A selector as `kubectl -l` writes it: `app=web,tier in (a,b),!legacy`.
pub fn describe(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    if parts.is_empty() {
        "(everything)".into()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|s| s.to_string()).collect()),
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn empty_and_absent_selectors_match_all() {
        assert!(matches(&LabelSelector::default(), &labels(&[])));
        assert!(Matcher::optional(None).matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_and_expressions() {
        let l = labels(&[("pool", "a"), ("zone", "x")]);
        let sel = LabelSelector {
            match_labels: Some(BTreeMap::from([("pool".into(), "a".into())])),
            match_expressions: None,
        };
        assert!(matches(&sel, &l));
        assert!(matches(&expr("zone", "In", &["x", "y"]), &l));
        assert!(!matches(&expr("zone", "NotIn", &["x"]), &l));
        assert!(matches(&expr("gpu", "NotIn", &["true"]), &l));
        assert!(matches(&expr("pool", "Exists", &[]), &l));
        assert!(!matches(&expr("pool", "DoesNotExist", &[]), &l));
        assert!(!matches(&expr("pool", "Bogus", &[]), &l));
    }
}
