//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as
//! kubectl and client-go's typed clients send them for built-in kinds.
//!
//! A body is the 4 bytes `k8s\0`, then a `runtime.Unknown` message:
//! `typeMeta` (1: apiVersion, kind), `raw` (2: the object's own protobuf
//! encoding), `contentEncoding` (3), `contentType` (4). The object is decoded
//! by a generic wire-format reader driven by `schema.txt`: the field numbers,
//! JSON names and shapes of every message the served kinds reach, generated
//! by reflection over the Go types the real API server decodes into (see
//! `gen/`). The result is the JSON the real server would produce for the
//! same object (non-pointer `omitempty` fields dropped when zero), so the
//! JSON path takes over from there. Responses stay JSON, which clients
//! accept since they read the response's Content-Type.

use crate::error::ApiError;
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

const MAGIC: &[u8] = b"k8s\0";

/// Decodes a protobuf body into the object's JSON, `apiVersion` and `kind`
/// included. Errors are 400 BadRequest saying what could not be decoded.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("error decoding protobuf body: {m}"));
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request(format!(
            "provided data does not appear to be a protobuf message, expected prefix {MAGIC:?}"
        ))
    })?;
    let unknown = Unknown::decode(rest).map_err(bad)?;
    if !unknown.content_encoding.is_empty() {
        return Err(bad(format!(
            "unsupported content encoding {:?}",
            unknown.content_encoding
        )));
    }
    let schema = schema();
    let &root = schema
        .roots
        .get(&(unknown.api_version.clone(), unknown.kind.clone()))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no kind {:?} is registered for version {:?}",
                unknown.kind, unknown.api_version
            ))
        })?;
    let mut out = Map::new();
    out.insert("kind".into(), Value::String(unknown.kind.clone()));
    out.insert("apiVersion".into(), Value::String(unknown.api_version.clone()));
    schema
        .message(root, unknown.raw, &mut out)
        .map_err(|e| bad(format!("{} {}: {e}", unknown.api_version, unknown.kind)))?;
    Ok(Value::Object(out))
}

/// The envelope.
struct Unknown<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Unknown<'a> {
    fn decode(b: &'a [u8]) -> Result<Self, String> {
        let mut u = Unknown {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
        };
        let mut r = Reader(b);
        while let Some((tag, w)) = r.next()? {
            match (tag, w) {
                (1, Wire::Len(tm)) => {
                    let mut r = Reader(tm);
                    while let Some((tag, w)) = r.next()? {
                        match (tag, w) {
                            (1, Wire::Len(s)) => u.api_version = text(s),
                            (2, Wire::Len(s)) => u.kind = text(s),
                            _ => {}
                        }
                    }
                }
                (2, Wire::Len(raw)) => u.raw = raw,
                (3, Wire::Len(s)) => u.content_encoding = text(s),
                _ => {}
            }
        }
        if u.kind.is_empty() {
            return Err("the envelope names no kind".into());
        }
        Ok(u)
    }
}

/// Go strings may hold invalid UTF-8; encoding/json writes U+FFFD for it.
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One field's value on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    /// No Kubernetes field is a fixed32 or float; the value is skipped.
    Fixed32,
}

/// Reads (field number, value) pairs off a message's bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.0.split_first().ok_or("truncated varint")?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!("field of {n} bytes runs past the end of its message"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, String> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| format!("field number {} out of range", key >> 3))?;
        if tag == 0 {
            return Err("field number 0".into());
        }
        let w = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                Wire::Len(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            t => return Err(format!("field {tag}: unsupported wire type {t}")),
        };
        Ok(Some((tag, w)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    One,
    List,
    Map,
    /// A map whose values are named lists: a message of `repeated items = 1`.
    MapOfLists,
    /// An embedded struct: a nested message whose fields sit in the parent's JSON.
    Inline,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    String,
    Bool,
    Int,
    Double,
    Bytes,
    Time,
    MicroTime,
    Duration,
    Quantity,
    IntOrString,
    /// RawExtension, FieldsV1: JSON carried as bytes.
    Raw,
    Message(usize),
}

#[derive(Debug)]
struct Field {
    tag: u32,
    json: String,
    shape: Shape,
    kind: Kind,
    /// A non-pointer `omitempty` field: encoding/json leaves it out when zero.
    omit_zero: bool,
}

#[derive(Debug, Default)]
struct Message {
    name: String,
    fields: Vec<Field>,
}

struct Schema {
    roots: HashMap<(String, String), usize>,
    messages: Vec<Message>,
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse(include_str!("schema.txt")).expect("schema.txt is well formed"))
}

impl Schema {
    fn parse(text: &str) -> Result<Schema, String> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("msg ")).collect();
        for (i, n) in names.iter().enumerate() {
            index.insert(n, i);
        }
        let resolve = |n: &str| index.get(n).copied().ok_or_else(|| format!("unknown message {n}"));
        let mut messages: Vec<Message> = Vec::with_capacity(names.len());
        let mut roots = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["root", api_version, kind, msg] => {
                    roots.insert((api_version.to_string(), kind.to_string()), resolve(msg)?);
                }
                ["msg", name] => messages.push(Message {
                    name: name.to_string(),
                    fields: Vec::new(),
                }),
                [tag, json, shape, kind, flags @ ..] => {
                    let shape = match *shape {
                        "." => Shape::One,
                        "[]" => Shape::List,
                        "{}" => Shape::Map,
                        "{[]}" => Shape::MapOfLists,
                        "^" => Shape::Inline,
                        s => return Err(format!("bad shape {s}")),
                    };
                    let kind = match *kind {
                        "string" => Kind::String,
                        "bool" => Kind::Bool,
                        "int" => Kind::Int,
                        "double" => Kind::Double,
                        "bytes" => Kind::Bytes,
                        "time" => Kind::Time,
                        "microtime" => Kind::MicroTime,
                        "duration" => Kind::Duration,
                        "quantity" => Kind::Quantity,
                        "intorstring" => Kind::IntOrString,
                        "raw" => Kind::Raw,
                        m => Kind::Message(resolve(m)?),
                    };
                    let field = Field {
                        tag: tag.parse().map_err(|_| format!("bad tag in {line:?}"))?,
                        json: json.to_string(),
                        shape,
                        kind,
                        omit_zero: flags == ["z"],
                    };
                    messages.last_mut().ok_or("field before any msg")?.fields.push(field);
                }
                _ => return Err(format!("bad line {line:?}")),
            }
        }
        Ok(Schema { roots, messages })
    }

    /// Decodes message `m` from `b` into `out` (merging, as protobuf merges a
    /// message field that appears twice).
    fn message(&self, m: usize, b: &[u8], out: &mut Map<String, Value>) -> Result<(), String> {
        let msg = &self.messages[m];
        let mut r = Reader(b);
        while let Some((tag, w)) = r.next()? {
            // Unknown fields are skipped, as the generated Go decoders do.
            let Some(f) = msg.fields.iter().find(|f| f.tag == tag) else {
                continue;
            };
            let at = |e: String| format!("{}.{}: {e}", msg.name, f.json);
            match f.shape {
                Shape::Inline => {
                    let Kind::Message(sub) = f.kind else {
                        return Err(at("inlined field is not a message".into()));
                    };
                    self.message(sub, len(w).map_err(at)?, out)?;
                }
                Shape::One => {
                    if let Kind::Message(sub) = f.kind {
                        let slot = out.entry(f.json.clone()).or_insert_with(|| Value::Object(Map::new()));
                        if !slot.is_object() {
                            *slot = Value::Object(Map::new());
                        }
                        let Value::Object(obj) = slot else { unreachable!() };
                        self.message(sub, len(w).map_err(at)?, obj)?;
                    } else {
                        let v = self.value(f.kind, w).map_err(at)?;
                        if f.omit_zero && is_zero(&v) {
                            out.remove(&f.json);
                        } else {
                            out.insert(f.json.clone(), v);
                        }
                    }
                }
                Shape::List => {
                    let items = self.list_items(f.kind, w).map_err(at)?;
                    let slot = out.entry(f.json.clone()).or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(a) = slot {
                        a.extend(items);
                    }
                }
                Shape::Map | Shape::MapOfLists => {
                    let (k, v) = self.map_entry(f, w).map_err(at)?;
                    let slot = out.entry(f.json.clone()).or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(o) = slot {
                        o.insert(k, v);
                    }
                }
            }
        }
        Ok(())
    }

    /// The items one occurrence of a repeated field carries (several when packed).
    fn list_items(&self, kind: Kind, w: Wire) -> Result<Vec<Value>, String> {
        match (kind, w) {
            (Kind::Int | Kind::Bool, Wire::Len(b)) => {
                let mut r = Reader(b);
                let mut out = Vec::new();
                while !r.0.is_empty() {
                    out.push(self.value(kind, Wire::Varint(r.varint()?))?);
                }
                Ok(out)
            }
            (Kind::Double, Wire::Len(b)) => {
                let mut r = Reader(b);
                let mut out = Vec::new();
                while !r.0.is_empty() {
                    let x = u64::from_le_bytes(r.take(8)?.try_into().unwrap());
                    out.push(self.value(kind, Wire::Fixed64(x))?);
                }
                Ok(out)
            }
            _ => Ok(vec![self.value(kind, w)?]),
        }
    }

    fn map_entry(&self, f: &Field, w: Wire) -> Result<(String, Value), String> {
        let mut r = Reader(len(w)?);
        let mut key = String::new();
        let mut value = None;
        while let Some((tag, w)) = r.next()? {
            match tag {
                1 => key = text(len(w)?),
                2 if f.shape == Shape::MapOfLists => {
                    let mut items = Vec::new();
                    let mut r = Reader(len(w)?);
                    while let Some((tag, w)) = r.next()? {
                        if tag == 1 {
                            items.extend(self.list_items(f.kind, w)?);
                        }
                    }
                    value = Some(Value::Array(items));
                }
                2 => value = Some(self.value(f.kind, w)?),
                _ => {}
            }
        }
        let value = match value {
            Some(v) => v,
            // An absent value is the zero value.
            None => self.value(f.kind, Wire::Len(&[]))?,
        };
        Ok((key, value))
    }

    /// One value of a kind (a whole message for message kinds).
    fn value(&self, kind: Kind, w: Wire) -> Result<Value, String> {
        Ok(match kind {
            Kind::String => Value::String(text(len(w)?)),
            Kind::Bool => Value::Bool(varint(w)? != 0),
            // int32 and int64 alike: negative values are sign-extended to 64 bits.
            Kind::Int => Value::from(varint(w)? as i64),
            Kind::Double => {
                let Wire::Fixed64(x) = w else {
                    return Err(format!("expected a double, got {w:?}"));
                };
                serde_json::Number::from_f64(f64::from_bits(x))
                    .map(Value::Number)
                    .ok_or("a double that is not a finite number")?
            }
            Kind::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(len(w)?)),
            Kind::Time | Kind::MicroTime => time(len(w)?, kind == Kind::MicroTime)?,
            Kind::Duration => {
                let mut ns = 0i64;
                let mut r = Reader(len(w)?);
                while let Some((tag, w)) = r.next()? {
                    if tag == 1 {
                        ns = varint(w)? as i64;
                    }
                }
                Value::String(go_duration(ns))
            }
            Kind::Quantity => {
                let mut s = "0".to_string();
                let mut r = Reader(len(w)?);
                while let Some((tag, w)) = r.next()? {
                    if tag == 1 {
                        s = text(len(w)?);
                    }
                }
                Value::String(s)
            }
            Kind::IntOrString => {
                let (mut ty, mut int, mut string) = (0, 0i64, String::new());
                let mut r = Reader(len(w)?);
                while let Some((tag, w)) = r.next()? {
                    match tag {
                        1 => ty = varint(w)?,
                        2 => int = varint(w)? as i64 as i32 as i64,
                        3 => string = text(len(w)?),
                        _ => {}
                    }
                }
                if ty == 1 {
                    Value::String(string)
                } else {
                    Value::from(int)
                }
            }
            Kind::Raw => {
                let mut raw: &[u8] = &[];
                let mut r = Reader(len(w)?);
                while let Some((tag, w)) = r.next()? {
                    if tag == 1 {
                        raw = len(w)?;
                    }
                }
                if raw.is_empty() {
                    Value::Null
                } else if raw.starts_with(MAGIC) {
                    decode(raw).map_err(|e| format!("embedded object: {}", e.message))?
                } else {
                    serde_json::from_slice(raw).map_err(|e| format!("embedded raw object is not JSON: {e}"))?
                }
            }
            Kind::Message(m) => {
                let mut obj = Map::new();
                self.message(m, len(w)?, &mut obj)?;
                Value::Object(obj)
            }
        })
    }
}

fn len(w: Wire<'_>) -> Result<&[u8], String> {
    match w {
        Wire::Len(b) => Ok(b),
        other => Err(format!("expected a length-delimited value, got {other:?}")),
    }
}

fn varint(w: Wire<'_>) -> Result<u64, String> {
    match w {
        Wire::Varint(v) => Ok(v),
        other => Err(format!("expected a varint, got {other:?}")),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// `metav1.Time` (RFC 3339, seconds) and `metav1.MicroTime` (microseconds);
/// an empty message is the zero time, which is `null` in JSON.
fn time(b: &[u8], micro: bool) -> Result<Value, String> {
    let (mut seconds, mut nanos, mut any) = (0i64, 0i32, false);
    let mut r = Reader(b);
    while let Some((tag, w)) = r.next()? {
        match tag {
            1 => (seconds, any) = (varint(w)? as i64, true),
            2 => (nanos, any) = (varint(w)? as i64 as i32, true),
            _ => {}
        }
    }
    if !any {
        return Ok(Value::Null);
    }
    let ts = jiff::Timestamp::new(seconds, nanos).map_err(|e| format!("time out of range: {e}"))?;
    let s = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    Ok(Value::String(if micro {
        format!("{s}.{:06}Z", ts.subsec_nanosecond() / 1000)
    } else {
        format!("{s}Z")
    }))
}

/// A Go `time.Duration` as `Duration.String()` writes it: `1h2m3.5s`, `1.5ms`, `0s`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let frac = |v: u64, unit: u64| -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let f = format!("{rest:0digits$}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let (h, m) = (u / 3_600_000_000_000, (u / 60_000_000_000) % 60);
    let s = frac(u % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A minimal protobuf writer, so the tests spell bodies out by hand.
    fn key(tag: u32, wire: u8, out: &mut Vec<u8>) {
        varint_to(u64::from(tag) << 3 | u64::from(wire), out);
    }
    fn varint_to(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes(tag: u32, b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        key(tag, 2, &mut out);
        varint_to(b.len() as u64, &mut out);
        out.extend_from_slice(b);
        out
    }
    fn int(tag: u32, v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        key(tag, 0, &mut out);
        varint_to(v as u64, &mut out);
        out
    }
    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [bytes(1, api_version.as_bytes()), bytes(2, kind.as_bytes())].concat();
        [b"k8s\0".to_vec(), bytes(1, &type_meta), bytes(2, raw)].concat()
    }

    #[test]
    fn the_schema_parses_and_names_the_kinds_kubectl_sends() {
        let s = schema();
        for (v, k) in [
            ("v1", "Namespace"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "Service"),
            ("v1", "Pod"),
            ("apps/v1", "Deployment"),
            ("batch/v1", "Job"),
            ("batch/v1", "CronJob"),
            ("policy/v1", "PodDisruptionBudget"),
            ("policy/v1", "Eviction"),
            ("autoscaling/v1", "Scale"),
            ("v1", "DeleteOptions"),
        ] {
            assert!(s.roots.contains_key(&(v.into(), k.into())), "{v} {k}");
        }
    }

    #[test]
    fn a_hand_encoded_configmap_decodes_to_its_json() {
        // ConfigMap: metadata = 1 (name = 1, namespace = 3, labels = 11,
        // creationTimestamp = 8), data = 2 (map), binaryData = 3 (map of bytes),
        // immutable = 4 (pointer: kept even when false).
        let meta = [
            bytes(1, b"settings"),
            bytes(3, b"default"),
            bytes(11, &[bytes(1, b"app"), bytes(2, b"web")].concat()),
            bytes(8, &[]),
        ]
        .concat();
        let raw = [
            bytes(1, &meta),
            bytes(2, &[bytes(1, b"mode"), bytes(2, b"fast")].concat()),
            bytes(2, &[bytes(1, b"empty")].concat()),
            bytes(3, &[bytes(1, b"blob"), bytes(2, &[0, 1, 2, 255])].concat()),
            int(4, 0),
        ]
        .concat();
        let v = decode(&envelope("v1", "ConfigMap", &raw)).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "default", "labels": {"app": "web"}, "creationTimestamp": null},
                "data": {"mode": "fast", "empty": ""},
                "binaryData": {"blob": "AAEC/w=="},
                "immutable": false,
            })
        );
    }

    #[test]
    fn zero_values_follow_go_json_and_special_types_keep_their_json_form() {
        // Deployment spec: replicas = 1 (pointer: 0 kept), minReadySeconds = 5
        // (non-pointer omitempty: 0 dropped), strategy = 4 with
        // rollingUpdate = 2 { maxUnavailable = 1 (int), maxSurge = 2 (string) }.
        let strategy = [
            bytes(1, b"RollingUpdate"),
            bytes(
                2,
                &[
                    bytes(1, &[int(1, 0), int(2, 1)].concat()),
                    bytes(2, &[int(1, 1), bytes(3, b"25%")].concat()),
                ]
                .concat(),
            ),
        ]
        .concat();
        let spec = [int(1, 0), int(5, 0), bytes(4, &strategy)].concat();
        let meta = [
            bytes(1, b"web"),
            bytes(8, &[int(1, 1_700_000_000), int(2, 0)].concat()),
            bytes(9, &[int(1, 1_700_000_000), int(2, 500_000_000)].concat()),
        ]
        .concat();
        let raw = [bytes(1, &meta), bytes(2, &spec)].concat();
        let v = decode(&envelope("apps/v1", "Deployment", &raw)).unwrap();
        assert_eq!(v["spec"]["replicas"], json!(0));
        assert!(v["spec"].get("minReadySeconds").is_none(), "{v}");
        assert_eq!(
            v["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}})
        );
        assert_eq!(v["metadata"]["creationTimestamp"], json!("2023-11-14T22:13:20Z"));
        assert_eq!(v["metadata"]["deletionTimestamp"], json!("2023-11-14T22:13:20Z"));
        // A negative int32 is sign-extended to ten bytes on the wire.
        let v = decode(&envelope("v1", "Pod", &bytes(2, &int(4, -5)))).unwrap();
        assert_eq!(v["spec"]["terminationGracePeriodSeconds"], json!(-5));
    }

    #[test]
    fn undecodable_bodies_are_bad_requests_naming_what_failed() {
        let e = decode(b"{\"kind\":\"ConfigMap\"}").unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert!(e.message.contains("expected prefix"), "{}", e.message);

        let e = decode(&envelope("v1", "Gadget", &[])).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.message, r#"no kind "Gadget" is registered for version "v1""#);

        // metadata claims 50 bytes, 2 follow.
        let mut raw = Vec::new();
        key(1, 2, &mut raw);
        raw.extend_from_slice(&[50, 0x0a, 0]);
        let e = decode(&envelope("v1", "Namespace", &raw)).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message.starts_with("error decoding protobuf body: v1 Namespace: ")
                && e.message.contains("runs past the end"),
            "{}",
            e.message
        );

        // A string field sent as a varint.
        let e = decode(&envelope("v1", "Namespace", &bytes(1, &int(1, 7)))).unwrap_err();
        assert!(
            e.message.contains("ObjectMeta.name: expected a length-delimited value"),
            "{}",
            e.message
        );

        // A truncated envelope.
        let body = envelope("v1", "Namespace", &bytes(1, &bytes(1, b"x")));
        let e = decode(&body[..body.len() - 3]).unwrap_err();
        assert_eq!(e.code, 400, "{}", e.message);
    }

    #[test]
    fn durations_print_as_go_does() {
        for (ns, s) in [
            (0, "0s"),
            (1_500_000, "1.5ms"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(ns), s);
        }
    }
}
