//! Label selectors, evaluated as the API server does.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` match `selector`. An empty selector matches everything;
/// an operator the API does not define matches nothing.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
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
    fn empty_selector_matches_all() {
        assert!(matches(&LabelSelector::default(), &labels(&[])));
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
