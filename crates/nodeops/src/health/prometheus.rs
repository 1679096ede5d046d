//! The prometheus check's reading of a `/api/v1/query` answer and its
//! decision: without a threshold it passes when the query returns no
//! series; with one, when it returns at least one sample and every sample
//! compares true. Pure: the GET is the caller's.

use std::collections::BTreeMap;

use drover_api::gates::Threshold;
use serde::Deserialize;

/// The longest query or series shown in an answer.
const SHOWN: usize = 120;
/// The most series named in an answer.
const NAMED: usize = 3;

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// An instant vector's sample.
    #[serde(default)]
    value: Option<(f64, String)>,
    /// A range vector's samples.
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// One series: its name and labels, and its sample values.
struct Seen {
    name: String,
    samples: Vec<f64>,
}

/// The query's result as (series, samples), or what is wrong with the answer.
fn series(status: u16, body: &str) -> Result<Vec<Seen>, String> {
    let answer: Answer = match serde_json::from_str(body) {
        Ok(a) => a,
        Err(e) => {
            return Err(format!(
                "answered HTTP {status} with no Prometheus query result ({e}): {}",
                super::excerpt(body)
            ));
        }
    };
    if answer.status != "success" {
        let kind = answer.error_type.unwrap_or_default();
        let error = answer.error.unwrap_or_else(|| "no error given".into());
        return Err(match kind.is_empty() {
            true => format!("failed: {error}"),
            false => format!("failed: {kind}: {error}"),
        });
    }
    let Some(data) = answer.data else {
        return Err("answered success without data".into());
    };
    let sample = |v: &str| parse_sample(v).ok_or_else(|| format!("returned the sample {v:?}, not a number"));
    match data.result_type.as_str() {
        "scalar" => {
            let (_, v): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| format!("returned a scalar that does not parse: {e}"))?;
            Ok(vec![Seen {
                name: "the scalar".into(),
                samples: vec![sample(&v)?],
            }])
        }
        "vector" | "matrix" => {
            let list: Vec<Series> = serde_json::from_value(data.result)
                .map_err(|e| format!("returned a {} that does not parse: {e}", data.result_type))?;
            list.into_iter()
                .map(|s| {
                    let samples = s
                        .value
                        .iter()
                        .chain(&s.values)
                        .map(|(_, v)| sample(v))
                        .collect::<Result<Vec<f64>, String>>()?;
                    Ok(Seen {
                        name: series_name(&s.metric),
                        samples,
                    })
                })
                .collect()
        }
        other => Err(format!("returned a {other}, not series")),
    }
}

/// Prometheus writes samples as strings: numbers, `NaN`, `+Inf`, `-Inf`.
fn parse_sample(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// `ALERTS{alertname="X",severity="critical"}`, as Prometheus prints a series.
fn series_name(metric: &BTreeMap<String, String>) -> String {
    let name = metric.get("__name__").cloned().unwrap_or_default();
    let labels: Vec<String> = metric
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    shorten(&format!("{name}{{{}}}", labels.join(",")))
}

/// A sample as Prometheus prints it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// At most [`SHOWN`] characters, on one line.
pub fn shorten(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// The check's decision on one answer of `/api/v1/query`: (passed, answer).
pub fn judge(query: &str, threshold: Option<&Threshold>, status: u16, body: &str) -> (bool, String) {
    let q = shorten(query);
    let found = match series(status, body) {
        Ok(s) => s,
        Err(why) => return (false, format!("query {q} {why}")),
    };
    let names = |list: &[Seen]| {
        let mut shown: Vec<&str> = list.iter().take(NAMED).map(|s| s.name.as_str()).collect();
        let more = list.len().saturating_sub(NAMED);
        let more = format!("and {more} more");
        if list.len() > NAMED {
            shown.push(&more);
        }
        shown.join(", ")
    };
    match threshold {
        None if found.is_empty() => (true, format!("query {q} returned no series")),
        None => (
            false,
            format!("query {q} returned {} series: {}", found.len(), names(&found)),
        ),
        Some(t) => {
            let want = format!("{} {}", t.op.as_str(), number(t.value));
            let samples: usize = found.iter().map(|s| s.samples.len()).sum();
            if samples == 0 {
                return (
                    false,
                    format!("query {q} returned no series (threshold {want} needs one)"),
                );
            }
            for s in &found {
                if let Some(v) = s.samples.iter().find(|v| !t.op.holds(**v, t.value)) {
                    return (false, format!("sample {} of {} is not {want}", number(*v), s.name));
                }
            }
            let series = match found.len() {
                1 => "1 series".to_string(),
                n => format!("{n} series"),
            };
            (true, format!("query {q} returned {series}, every sample {want}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::gates::CompareOp;

    fn vector(series: &[(&str, &str)]) -> String {
        let result: Vec<serde_json::Value> = series
            .iter()
            .map(|(alert, v)| {
                serde_json::json!({"metric": {"__name__": "ALERTS", "alertname": alert, "severity": "critical"}, "value": [1.0, v]})
            })
            .collect();
        serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}}).to_string()
    }

    fn gt(value: f64) -> Threshold {
        Threshold {
            op: CompareOp::Gt,
            value,
        }
    }

    #[test]
    fn without_a_threshold_any_series_fails_and_the_answer_names_them() {
        let (ok, answer) = judge("ALERTS", None, 200, &vector(&[]));
        assert!(ok, "{answer}");
        assert_eq!(answer, "query ALERTS returned no series");
        let five = vector(&[("A", "1"), ("B", "1"), ("C", "1"), ("D", "1"), ("E", "1")]);
        let (ok, answer) = judge("ALERTS", None, 200, &five);
        assert!(!ok);
        assert_eq!(
            answer,
            r#"query ALERTS returned 5 series: ALERTS{alertname="A",severity="critical"}, ALERTS{alertname="B",severity="critical"}, ALERTS{alertname="C",severity="critical"}, and 2 more"#
        );
    }

    #[test]
    fn with_a_threshold_every_sample_must_hold_and_one_is_needed() {
        let (ok, answer) = judge("up", Some(&gt(0.99)), 200, &vector(&[]));
        assert!(!ok);
        assert_eq!(answer, "query up returned no series (threshold > 0.99 needs one)");
        let (ok, answer) = judge("up", Some(&gt(0.99)), 200, &vector(&[("A", "1"), ("B", "0.97")]));
        assert!(!ok);
        assert_eq!(
            answer,
            r#"sample 0.97 of ALERTS{alertname="B",severity="critical"} is not > 0.99"#
        );
        let (ok, answer) = judge("up", Some(&gt(0.99)), 200, &vector(&[("A", "1"), ("B", "+Inf")]));
        assert!(ok, "{answer}");
        assert_eq!(answer, "query up returned 2 series, every sample > 0.99");
        // NaN compares false with anything: it never passes.
        let (ok, answer) = judge("up", Some(&gt(0.99)), 200, &vector(&[("A", "NaN")]));
        assert!(!ok);
        assert!(answer.starts_with("sample NaN of"), "{answer}");
    }

    #[test]
    fn scalars_and_range_vectors_are_samples_too() {
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"0.5"]}}"#;
        let le = Threshold {
            op: CompareOp::Le,
            value: 0.5,
        };
        assert_eq!(
            judge("scalar(x)", Some(&le), 200, scalar),
            (true, "query scalar(x) returned 1 series, every sample <= 0.5".into())
        );
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"etcd"},"values":[[1,"3"],[2,"7"]]}]}}"#;
        let lt = Threshold {
            op: CompareOp::Lt,
            value: 5.0,
        };
        assert_eq!(
            judge("x[1m]", Some(&lt), 200, matrix),
            (false, r#"sample 7 of {job="etcd"} is not < 5"#.into())
        );
    }

    #[test]
    fn errors_and_foreign_answers_fail_with_what_was_said() {
        let error = r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}"#;
        assert_eq!(
            judge("up{", None, 400, error),
            (
                false,
                "query up{ failed: bad_data: 1:5: parse error: unexpected end of input".into()
            )
        );
        let (ok, answer) = judge("up", None, 200, "<html>\n<body>login</body></html>");
        assert!(!ok);
        assert!(
            answer.starts_with("query up answered HTTP 200 with no Prometheus query result (")
                && answer.ends_with("): <html> <body>login</body></html>"),
            "{answer}"
        );
        let string = r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#;
        assert_eq!(
            judge("\"x\"", None, 200, string),
            (false, "query \"x\" returned a string, not series".into())
        );
    }

    #[test]
    fn long_queries_are_shortened_on_one_line() {
        let q = format!("sum by (node) (\n  rate(x[5m])\n) {}", "+ 1 ".repeat(60));
        let shown = shorten(&q);
        assert!(shown.starts_with("sum by (node) ( rate(x[5m]) ) + 1"), "{shown}");
        assert_eq!(shown.chars().count(), SHOWN + 1);
        assert!(shown.ends_with('…'));
    }
}
