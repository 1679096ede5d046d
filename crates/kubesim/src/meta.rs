//! Object-metadata helpers: timestamps, generated names, name validation,
//! and the human-readable ages `kubectl get` prints.

use crate::error::Cause;
use serde_json::{Value, json};

/// The annotation of a mirror pod (a kubelet's static pod, as the API
/// shows it); a pod's cannot change.
pub const MIRROR: &str = "kubernetes.io/config.mirror";

/// An object's `metadata`, made an object if it is not one.
pub(crate) fn metadata_mut(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !v["metadata"].is_object() {
        v["metadata"] = json!({});
    }
    v["metadata"].as_object_mut().unwrap()
}

/// RFC 3339 with second precision, as `metav1.Time` serialises.
pub fn now() -> String {
    format_time(jiff::Timestamp::now())
}

pub fn format_time(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// The five-character suffix `generateName` gets (same alphabet as the real server).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4();
    bytes.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks `metadata.name` the way the real server does for most kinds
/// (DNS-1123 subdomain; namespaces need a DNS-1123 label).
pub fn validate_name(name: &str, label_only: bool) -> Option<Cause> {
    let ok = if label_only {
        is_label(name)
    } else {
        name.len() <= 253 && name.split('.').all(is_label)
    };
    if ok {
        None
    } else {
        Some(Cause::invalid(
            "metadata.name",
            &json!(name),
            if label_only {
                DNS1123_LABEL_MSG
            } else {
                DNS1123_SUBDOMAIN_MSG
            },
        ))
    }
}

/// The rule of names that only have to be a path segment (PodDisruptionBudgets).
pub fn validate_path_segment(name: &str, field: &str) -> Option<Cause> {
    let msg = if name == "." || name == ".." {
        format!("may not be '{name}'")
    } else if name.contains('/') {
        "may not contain '/'".to_string()
    } else if name.contains('%') {
        "may not contain '%'".to_string()
    } else {
        return None;
    };
    Some(Cause::invalid(field, &json!(name), &msg))
}

/// Checks `metadata.generateName` as the real server: the name rule with
/// a trailing '-' allowed.
pub fn validate_generate_name(prefix: &str, label_only: bool) -> Option<Cause> {
    let masked = match prefix.strip_suffix('-') {
        Some(p) => format!("{p}a"),
        None => prefix.to_string(),
    };
    validate_name(&masked, label_only).map(|c| {
        Cause::invalid(
            "metadata.generateName",
            &json!(prefix),
            c.message.split_once(": ").map(|(_, m)| m).unwrap_or(&c.message),
        )
    })
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain.
fn is_qualified_name(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && prefix.len() <= 253 && prefix.split('.').all(is_label) && is_qualified_part(name)
        }
        None => is_qualified_part(k),
    }
}

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// The label and annotation rules of `ValidateObjectMeta`: keys are
/// qualified names, label values short qualified parts (or empty),
/// annotations at most 256 KiB in all.
pub fn validate_labels_and_annotations(meta: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", &json!(k), QUALIFIED_NAME_MSG));
            }
            let v = v.as_str().unwrap_or("");
            if !v.is_empty() && !is_qualified_part(v) {
                causes.push(Cause::invalid("metadata.labels", &json!(v), LABEL_VALUE_MSG));
            }
        }
    }
    if let Some(ann) = meta["annotations"].as_object() {
        let mut total = 0;
        for (k, v) in ann {
            total += k.len() + v.as_str().map_or(0, str::len);
            if !is_qualified_name(&k.to_ascii_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", &json!(k), QUALIFIED_NAME_MSG));
            }
        }
        if total > 256 * 1024 {
            causes.push(Cause::new(
                "FieldValueTooLong",
                "metadata.annotations",
                format!("Too long: may not be more than {} bytes", 256 * 1024),
            ));
        }
    }
    causes
}

/// `duration.HumanDuration` from apimachinery, which `kubectl get` shows as AGE.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, d)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// AGE of a timestamp string, `<unknown>` when absent.
pub fn age(ts: Option<&Value>) -> String {
    match ts.and_then(Value::as_str).and_then(parse_time) {
        Some(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_apimachinery() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(60 * 30), "30m");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(3600 * 30), "30h");
        assert_eq!(human_duration(3600 * 24 * 3), "3d");
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("node-1.example", false).is_none());
        assert!(validate_name("Bad_Name", false).is_some());
        assert!(validate_name("a.b", true).is_some());
    }
}
