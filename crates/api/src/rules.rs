//! What the schema and the Rust validation share: the patterns fields
//! must match, the CEL rule builders, the label selector's schema, and the
//! environment variables every Job takes. Depends on no other module of
//! the crate, so that `spec` and `gates` can both use it.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Versions: semantic versions with an optional leading `v`, as Kubernetes
/// (`v1.31.2`), containerd (`1.7.22`) and Calico (`v3.28.1`) write them, or
/// two-part versions where a tool asks for a series (Kubespray's
/// `docker_version: "20.10"`): `20.10` is any `20.10.x`. Docker's zero-padded
/// months (`19.03`, `18.09`) are accepted and read as numbers.
pub const VERSION_PATTERN: &str =
    r"^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*|0[1-9])(\.(0|[1-9][0-9]*))?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$";
/// What an OS image or kernel version may be (`24.04.1`, `6.8.0-45-generic`,
/// `Ubuntu 24.04.1 LTS`): components verified by `nodeInfo.osImage` or
/// `nodeInfo.kernelVersion` take free text, since those strings are not
/// semantic versions.
pub const OS_VERSION_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9 ._+~:()/-]*$";
/// Go-style durations as `metav1.Duration` accepts them (`90s`, `1h30m`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";
/// `HH:MM`, 24-hour clock.
pub const CLOCK_PATTERN: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";
/// A DNS-1123 label: what a component name must be, since it ends up in Job names.
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A DNS-1123 subdomain: what a workload's name must be.
pub const SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// An image reference: `[registry[:port]/]path[:tag][@sha256:digest]`, no spaces.
pub const IMAGE_PATTERN: &str = r"^[a-z0-9]+([._-]+[a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$";
/// An image repository: an image reference without tag or digest.
pub const REPOSITORY_PATTERN: &str = r"^[a-z0-9]+([._-]+[a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$";
/// A ConfigMap key.
pub const CONFIG_MAP_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// An environment variable name: a C identifier.
pub const ENV_NAME_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
/// What an IANA time zone name looks like (`UTC`, `Europe/Berlin`,
/// `America/Argentina/Buenos_Aires`); drover checks the name is known.
pub const TIME_ZONE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$";
/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 characters.
pub const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/// A label value: empty, or at most 63 characters of letters, digits, `-`, `_`
/// and `.`, starting and ending with a letter or digit.
pub const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
/// The longest duration any timeout or soak may be.
pub const MAX_DURATION: &str = "24h";
/// Environment variables drover sets on every Job; a spec may not override them.
pub const RESERVED_ENV: [&str; 3] = ["DROVER_COMPONENT", "DROVER_VERSION", "DROVER_NODE"];

/// A plain name/value environment variable.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    /// A C identifier: letters, digits and '_', not starting with a digit.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new(matches_rule(ENV_NAME_PATTERN)).message("env[].name must be a C identifier: letters, digits and '_', not starting with a digit"))]
    #[x_kube(validation = Rule::new(format!("!(self in [{}])", RESERVED_ENV.map(|n| format!("'{n}'")).join(", "))).message("env[].name may not be DROVER_COMPONENT, DROVER_VERSION or DROVER_NODE: drover sets those"))]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// Quote a regex for a single-quoted CEL string literal.
pub(crate) fn escape_cel(pattern: &str) -> String {
    pattern.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A CEL rule: the string matches `pattern`.
pub(crate) fn matches_rule(pattern: &str) -> String {
    format!("self.matches('{}')", escape_cel(pattern))
}

/// A CEL rule: a Go duration of at most `MAX_DURATION`, and above zero when
/// `positive`. The pattern is checked first, so `duration()` never sees a
/// string it cannot parse.
pub(crate) fn duration_rule(positive: bool) -> String {
    let floor = if positive {
        " && duration(self) > duration('0s')"
    } else {
        ""
    };
    format!(
        "{} && duration(self) <= duration('{MAX_DURATION}'){floor}",
        matches_rule(DURATION_PATTERN)
    )
}

/// `metav1.LabelSelector`'s schema with what the API server checks of a
/// selector added: the operators, values by operator, and label syntax.
pub(crate) fn label_selector_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let key = serde_json::json!({
        "type": "string",
        "maxLength": 317,
        "x-kubernetes-validations": [{
            "rule": matches_rule(LABEL_KEY_PATTERN),
            "message": "a label key is an optional DNS-subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        }]
    });
    let value = serde_json::json!({
        "type": "string",
        "maxLength": 63,
        "x-kubernetes-validations": [{
            "rule": matches_rule(LABEL_VALUE_PATTERN),
            "message": "a label value is empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        }]
    });
    let schema = serde_json::json!({
        "description": "A label selector (matchLabels and matchExpressions, ANDed), as kubectl's -l and a Deployment's selector take.",
        "type": "object",
        "nullable": true,
        "properties": {
            "matchLabels": {
                "description": "Labels a node must carry, key to value.",
                "type": "object",
                "maxProperties": 64,
                "additionalProperties": value,
                "x-kubernetes-validations": [{
                    "rule": format!("self.all(k, k.size() <= 317 && {})", matches_rule(LABEL_KEY_PATTERN).replace("self.", "k.")),
                    "message": "matchLabels keys are label keys: an optional DNS-subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' and '.'"
                }]
            },
            "matchExpressions": {
                "description": "Requirements on labels, ANDed.",
                "type": "array",
                "maxItems": 32,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": key,
                        "operator": {
                            "description": "In, NotIn, Exists or DoesNotExist.",
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"]
                        },
                        "values": {
                            "description": "Non-empty for In and NotIn, empty for Exists and DoesNotExist.",
                            "type": "array",
                            "maxItems": 64,
                            "items": value
                        }
                    },
                    "x-kubernetes-validations": [{
                        "rule": "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                        "message": "values must be non-empty for the operators In and NotIn, and empty for Exists and DoesNotExist"
                    }]
                }
            }
        }
    });
    schemars::Schema::try_from(schema).expect("a JSON object is a schema")
}

/// A label selector's shape without CEL rules, for selectors inside lists
/// (`spec.healthChecks[].pods.selector`): the API server bounds the cost of
/// a CRD's rules, and a list of sixteen checks each with the full
/// selector rules exceeds it. drover checks such selectors itself, with
/// the same messages (`validate::check_selector`).
pub(crate) fn plain_selector_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let strings = serde_json::json!({"type": "array", "maxItems": 64, "items": {"type": "string", "maxLength": 317}});
    let schema = serde_json::json!({
        "description": "A label selector (matchLabels and matchExpressions, ANDed).",
        "type": "object",
        "properties": {
            "matchLabels": {"type": "object", "maxProperties": 64, "additionalProperties": {"type": "string", "maxLength": 63}},
            "matchExpressions": {
                "type": "array",
                "maxItems": 32,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string", "maxLength": 317},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": strings
                    }
                }
            }
        }
    });
    schemars::Schema::try_from(schema).expect("a JSON object is a schema")
}

/// Status keeps Jobs as drover wrote them: no rules to check there (and
/// none to cost the API server's CEL budget).
pub(crate) fn opaque_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let schema = serde_json::json!({
        "description": "An upgrade Job as the spec had it (image, command, args, env, privileged, hostRoot, timeout, reboots, backoffLimit).",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    });
    schemars::Schema::try_from(schema).expect("a JSON object is a schema")
}
