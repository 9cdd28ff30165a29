//! The 21 query columns of a record, exactly as `otaudit.record.derive_columns` gives them.
//!
//! One derivation ([`derive_record`]) serves both paths: sealing, over the decoded OTLP
//! record before it is serialized, and verification, over the parsed sealed bytes
//! ([`derive`]). Each path shows its attribute values through [`AttrValue`] and its
//! attribute maps through [`Attrs`]; nothing the columns say depends on the order of a
//! map's members (the flat forms sort their keys, lookups are by key), so the client's
//! order at sealing and the canonical order at verify give the same columns.
//!
//! The conventions (which attributes fill which field, the status mapping, the required
//! fields, the producer and service attributes) come from Python (`otaudit.conventions`).

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use crate::canonical::write_str;

/// The audit fields filled from attributes, in the order of the columns.
pub const FIELDS: [&str; 7] = [
    "actor",
    "actor_role",
    "client_address",
    "action",
    "target",
    "resource_type",
    "result",
];
const RESULT: usize = 6;

/// What `otaudit.conventions` says; the core owns no configuration.
#[derive(Clone, Debug, Default)]
pub struct Conventions {
    /// For each of [`FIELDS`], the attribute keys in order of preference.
    pub field_sources: [Vec<String>; 7],
    /// Span status code -> result, used when the `result` field has no attribute.
    pub status_result: Vec<(i64, String)>,
    /// Indices into [`FIELDS`] of the required fields, in the order `missing` lists them.
    pub required: Vec<usize>,
    pub producer_id: String,
    pub producer_seq: String,
    pub service: String,
}

/// The query columns (the field order of `otaudit.record.Columns`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    pub signal: String,
    pub time_unix_nano: i64,
    pub timestamp: String,
    pub received_at: String,
    pub pipeline: String,
    pub trace_id: String,
    pub span_id: String,
    pub name: String,
    pub service: Option<String>,
    /// actor, actor_role, client_address, action, target, resource_type, result.
    pub fields: [Option<String>; 7],
    pub producer: Option<String>,
    pub producer_seq: Option<i64>,
    pub missing: Option<String>,
    pub attributes: String,
    pub resource: String,
}

/// Why the columns of a parsed envelope could not be derived (where Python would raise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnsError {
    /// A member is absent or not of the type the record format gives it.
    Member(&'static str),
    /// A time or an `int` value is not a decimal int64.
    Number(&'static str),
}

impl fmt::Display for ColumnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnsError::Member(name) => write!(f, "member {name} is missing or malformed"),
            ColumnsError::Number(name) => write!(f, "{name} is not a decimal int64"),
        }
    }
}

impl std::error::Error for ColumnsError {}

/// An encoded attribute value as the columns see it (record format, "Values").
pub enum View<'a, E> {
    Null,
    Bool(bool),
    Str(&'a str),
    /// `{"int": "<decimal>"}`: the decimal.
    Int(Cow<'a, str>),
    /// `{"double": ...}`, `{"bytes": ...}`: the string.
    Scalar(Cow<'a, str>),
    Array(&'a [E]),
    /// `{"kvlist": {...}}`: its members, in any order.
    Kvlist(Vec<(&'a str, &'a E)>),
}

/// An attribute value of either path.
pub trait AttrValue {
    /// The type of the elements of its arrays and kvlists.
    type Elem: AttrValue<Elem = Self::Elem>;
    fn view(&self) -> View<'_, Self::Elem>;
}

/// An attribute map of either path (keys are unique).
pub trait Attrs {
    type V: AttrValue;
    fn get(&self, key: &str) -> Option<&Self::V>;
    /// The members, in any order.
    fn entries(&self) -> Vec<(&str, &Self::V)>;
}

/// `text_value`: strings themselves, booleans `true`/`false`, null `""`, ints, doubles
/// and bytes their string form, arrays and kvlists compact JSON of text forms (kvlist
/// keys sorted by code point), appended to `out`.
pub fn text_value<V: AttrValue>(value: &V, out: &mut String) {
    match value.view() {
        View::Null => {}
        View::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        View::Str(s) => out.push_str(s),
        View::Int(s) | View::Scalar(s) => out.push_str(&s),
        View::Array(_) | View::Kvlist(_) => plain_json(value, out),
    }
}

fn text_string<V: AttrValue>(value: &V) -> String {
    let mut out = String::new();
    text_value(value, &mut out);
    out
}

/// orjson's compact JSON (sorted keys) of `_plain(value)`.
fn plain_json<V: AttrValue>(value: &V, out: &mut String) {
    match value.view() {
        View::Str(s) => write_str(out, s),
        View::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                plain_json(item, out);
            }
            out.push(']');
        }
        View::Kvlist(mut members) => {
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, key);
                out.push(':');
                plain_json(item, out);
            }
            out.push('}');
        }
        _ => write_str(out, &text_string(value)),
    }
}

/// `_flat`: the attributes as a JSON object of text forms, keys sorted by code point.
pub fn flat<A: Attrs>(attrs: &A) -> String {
    let mut members = attrs.entries();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(64 * members.len() + 2);
    out.push('{');
    let mut text = String::new();
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, key);
        out.push(':');
        if let View::Str(s) = value.view() {
            write_str(&mut out, s);
        } else {
            text.clear();
            text_value(value, &mut text);
            write_str(&mut out, &text);
        }
    }
    out.push('}');
    out
}

fn first<A: Attrs>(attrs: &A, keys: &[String]) -> Option<String> {
    keys.iter().find_map(|key| attrs.get(key)).map(text_string)
}

/// `_producer_seq`: an `int`, or a string of 1-19 ASCII digits that fits in int64.
fn producer_seq<V: AttrValue>(value: &V) -> Result<Option<i64>, ColumnsError> {
    match value.view() {
        View::Int(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ColumnsError::Number("audit.producer.seq")),
        View::Str(s) if !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(s.parse::<u64>().ok().and_then(|n| i64::try_from(n).ok()))
        }
        _ => Ok(None),
    }
}

/// The columns a record takes from its resource (computed once per resource).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceColumns {
    pub service: Option<String>,
    pub flat: String,
}

/// The `service` and `resource` columns of a resource's attributes.
pub fn resource_columns<A: Attrs>(attrs: &A, conventions: &Conventions) -> ResourceColumns {
    ResourceColumns {
        service: attrs.get(&conventions.service).map(text_string),
        flat: flat(attrs),
    }
}

/// What a record says besides its attributes.
pub enum Signal<'a> {
    Span {
        start_time_unix_nano: i64,
        name: &'a str,
        status_code: i64,
    },
    Log {
        time_unix_nano: i64,
        observed_time_unix_nano: i64,
        event_name: &'a str,
        /// The body when it is a string.
        body: Option<&'a str>,
    },
}

/// One record as the columns need it.
pub struct Record<'a, A> {
    pub received_at: i64,
    pub pipeline: &'a str,
    /// The `signal` member (`span`, `log`).
    pub signal_name: &'a str,
    pub signal: Signal<'a>,
    pub trace_id: &'a str,
    pub span_id: &'a str,
    pub attributes: &'a A,
}

/// `derive_columns`: the one derivation of the columns, for both paths.
pub fn derive_record<A: Attrs>(
    rec: &Record<'_, A>,
    resource: &ResourceColumns,
    conventions: &Conventions,
) -> Result<Columns, ColumnsError> {
    let mut columns = derive_own(rec, conventions)?;
    columns.service.clone_from(&resource.service);
    columns.resource.clone_from(&resource.flat);
    Ok(columns)
}

/// [`derive_record`] without the columns a record takes from its resource (`service`
/// None, `resource` empty): for a caller that holds them once per resource.
pub fn derive_own<A: Attrs>(
    rec: &Record<'_, A>,
    conventions: &Conventions,
) -> Result<Columns, ColumnsError> {
    let attrs = rec.attributes;
    let (when, name, status) = match rec.signal {
        Signal::Span {
            start_time_unix_nano,
            name,
            status_code,
        } => (start_time_unix_nano, name, Some(status_code)),
        Signal::Log {
            time_unix_nano,
            observed_time_unix_nano,
            event_name,
            body,
        } => {
            let when = if time_unix_nano != 0 {
                time_unix_nano
            } else {
                observed_time_unix_nano
            };
            let name = if event_name.is_empty() {
                body.unwrap_or("")
            } else {
                event_name
            };
            (when, name, None)
        }
    };
    let when = if when != 0 { when } else { rec.received_at };
    let mut fields: [Option<String>; 7] = Default::default();
    for (field, keys) in fields.iter_mut().zip(&conventions.field_sources) {
        *field = first(attrs, keys);
    }
    if let (None, Some(code)) = (&fields[RESULT], status) {
        fields[RESULT] = conventions
            .status_result
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, r)| r.clone());
    }
    let absent: Vec<&str> = conventions
        .required
        .iter()
        .filter(|&&f| fields[f].is_none())
        .map(|&f| FIELDS[f])
        .collect();
    let producer = match attrs.get(&conventions.producer_id) {
        None => None,
        Some(v) if matches!(v.view(), View::Null) => None,
        Some(v) => Some(text_string(v)),
    };
    let producer_seq = match attrs.get(&conventions.producer_seq) {
        None => None,
        Some(v) => producer_seq(v)?,
    };
    Ok(Columns {
        signal: rec.signal_name.to_owned(),
        time_unix_nano: when,
        timestamp: rfc3339_ns(when),
        received_at: rfc3339_ns(rec.received_at),
        pipeline: rec.pipeline.to_owned(),
        trace_id: rec.trace_id.to_owned(),
        span_id: rec.span_id.to_owned(),
        name: name.to_owned(),
        service: None,
        fields,
        producer,
        producer_seq,
        missing: if absent.is_empty() {
            None
        } else {
            Some(absent.join(","))
        },
        attributes: flat(attrs),
        resource: String::new(),
    })
}

/// UTC nanoseconds since the epoch as RFC 3339 with 9 fraction digits and `Z`.
pub fn rfc3339_ns(ns: i64) -> String {
    let seconds = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::with_capacity(30);
    let digits = |value: i64, width: usize, out: &mut String| {
        let text = itoa::Buffer::new().format(value).to_owned();
        for _ in text.len()..width {
            out.push('0');
        }
        out.push_str(&text);
    };
    if (0..10_000).contains(&year) {
        let y = year as u32;
        out.extend(
            [y / 1000, y / 100 % 10, y / 10 % 10, y % 10].map(|d| char::from(b'0' + d as u8)),
        );
    } else {
        digits(year, 4, &mut out);
    }
    let two = |v: i64, out: &mut String| {
        out.push(char::from(b'0' + (v / 10) as u8));
        out.push(char::from(b'0' + (v % 10) as u8));
    };
    out.push('-');
    two(month, &mut out);
    out.push('-');
    two(day, &mut out);
    out.push('T');
    two(secs / 3600, &mut out);
    out.push(':');
    two(secs / 60 % 60, &mut out);
    out.push(':');
    two(secs % 60, &mut out);
    out.push('.');
    let mut frac_digits = [b'0'; 9];
    let mut f = frac;
    for slot in frac_digits.iter_mut().rev() {
        *slot = b'0' + (f % 10) as u8;
        f /= 10;
    }
    out.extend(frac_digits.map(char::from));
    out.push('Z');
    out
}

// ---- the verify path: a parsed sealed envelope ----

static NULL: Value = Value::Null;

impl AttrValue for Value {
    type Elem = Value;
    fn view(&self) -> View<'_, Value> {
        match self {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::String(s) => View::Str(s),
            Value::Array(items) => View::Array(items),
            Value::Number(n) => View::Scalar(Cow::Owned(n.to_string())),
            Value::Object(map) => {
                if let Some(kv) = map.get("kvlist") {
                    return View::Kvlist(match kv {
                        Value::Object(m) => m.iter().map(|(k, v)| (k.as_str(), v)).collect(),
                        _ => Vec::new(),
                    });
                }
                let (key, value) = match map.iter().next() {
                    Some((k, v)) => (k.as_str(), v),
                    None => ("", &NULL),
                };
                let text = match value {
                    Value::String(s) => Cow::Borrowed(s.as_str()),
                    other => Cow::Owned(other.to_string()),
                };
                if key == "int" {
                    View::Int(text)
                } else {
                    View::Scalar(text)
                }
            }
        }
    }
}

impl Attrs for Map<String, Value> {
    type V = Value;
    fn get(&self, key: &str) -> Option<&Value> {
        Map::get(self, key)
    }
    fn entries(&self) -> Vec<(&str, &Value)> {
        self.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }
}

fn member<'a>(obj: &'a Value, name: &'static str) -> Result<&'a Value, ColumnsError> {
    obj.get(name).ok_or(ColumnsError::Member(name))
}

fn string<'a>(obj: &'a Value, name: &'static str) -> Result<&'a str, ColumnsError> {
    member(obj, name)?
        .as_str()
        .ok_or(ColumnsError::Member(name))
}

fn int(obj: &Value, name: &'static str) -> Result<i64, ColumnsError> {
    match member(obj, name)? {
        Value::String(s) => s.parse().map_err(|_| ColumnsError::Number(name)),
        Value::Number(n) => n.as_i64().ok_or(ColumnsError::Number(name)),
        _ => Err(ColumnsError::Member(name)),
    }
}

fn object<'a>(obj: &'a Value, name: &'static str) -> Result<&'a Map<String, Value>, ColumnsError> {
    member(obj, name)?
        .as_object()
        .ok_or(ColumnsError::Member(name))
}

/// `derive_columns` of a parsed sealed envelope (`serde_json::from_slice(sealed)`).
pub fn derive(envelope: &Value, conventions: &Conventions) -> Result<Columns, ColumnsError> {
    let rec = member(envelope, "record")?;
    let attributes = object(rec, "attributes")?;
    let resource = object(member(rec, "resource")?, "attributes")?;
    let signal_name = string(rec, "signal")?;
    let signal = if signal_name == "span" {
        let status = member(rec, "status")?;
        Signal::Span {
            start_time_unix_nano: int(rec, "start_time_unix_nano")?,
            name: string(rec, "name")?,
            status_code: member(status, "code")?
                .as_i64()
                .ok_or(ColumnsError::Member("code"))?,
        }
    } else {
        Signal::Log {
            time_unix_nano: int(rec, "time_unix_nano")?,
            observed_time_unix_nano: int(rec, "observed_time_unix_nano")?,
            event_name: string(rec, "event_name")?,
            body: member(rec, "body")?.as_str(),
        }
    };
    let record = Record {
        received_at: int(envelope, "received_at")?,
        pipeline: string(envelope, "pipeline")?,
        signal_name,
        signal,
        trace_id: string(rec, "trace_id")?,
        span_id: string(rec, "span_id")?,
        attributes,
    };
    derive_record(
        &record,
        &resource_columns(resource, conventions),
        conventions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `otaudit.conventions` as it is today.
    pub fn conventions() -> Conventions {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Conventions {
            field_sources: [
                keys(&["enduser.id", "user.id", "audit.changed_by"]),
                keys(&["enduser.role", "user.roles"]),
                keys(&["client.address", "enduser.ip"]),
                keys(&["audit.action"]),
                keys(&["audit.target_user", "audit.target"]),
                keys(&["audit.resource_type"]),
                keys(&["audit.result"]),
            ],
            status_result: vec![(1, "success".into()), (2, "failure".into())],
            required: vec![0, 6],
            producer_id: "audit.producer.id".into(),
            producer_seq: "audit.producer.seq".into(),
            service: "service.name".into(),
        }
    }

    const GOLDEN: &str = r#"{"otaudit":1,"pipeline":"otlp","received_at":"1764288000123456789","record":{"attributes":{"audit.action":"role_update","audit.new_value":"editor","audit.old_value":"viewer","audit.target_user":"bob","enduser.id":"alice","retries":{"int":"9223372036854775807"}},"dropped_attributes_count":0,"dropped_events_count":0,"dropped_links_count":0,"end_time_unix_nano":"1764288000250000000","events":[],"flags":0,"kind":2,"links":[],"name":"user.role.update","parent_span_id":"","resource":{"attributes":{"service.name":"accounts-api"},"dropped_attributes_count":0,"entity_refs":[],"schema_url":""},"scope":{"attributes":{},"dropped_attributes_count":0,"name":"audit-service","schema_url":"","version":""},"signal":"span","span_id":"0001020304050607","start_time_unix_nano":"1764288000000000000","status":{"code":1,"message":""},"trace_id":"000102030405060708090a0b0c0d0e0f","trace_state":""}}"#;

    #[test]
    fn golden_record_columns() {
        let envelope: Value = serde_json::from_str(GOLDEN).unwrap();
        let c = derive(&envelope, &conventions()).unwrap();
        assert_eq!(c.signal, "span");
        assert_eq!(c.time_unix_nano, 1764288000000000000);
        assert_eq!(c.timestamp, "2025-11-28T00:00:00.000000000Z");
        assert_eq!(c.received_at, "2025-11-28T00:00:00.123456789Z");
        assert_eq!(c.name, "user.role.update");
        assert_eq!(c.service.as_deref(), Some("accounts-api"));
        assert_eq!(c.fields[0].as_deref(), Some("alice"));
        assert_eq!(c.fields[3].as_deref(), Some("role_update"));
        assert_eq!(c.fields[4].as_deref(), Some("bob"));
        assert_eq!(c.fields[6].as_deref(), Some("success"));
        assert_eq!(c.missing, None);
        assert_eq!(
            c.attributes,
            r#"{"audit.action":"role_update","audit.new_value":"editor","audit.old_value":"viewer","audit.target_user":"bob","enduser.id":"alice","retries":"9223372036854775807"}"#
        );
        assert_eq!(c.resource, r#"{"service.name":"accounts-api"}"#);
    }

    #[test]
    fn text_forms_sort_kvlist_keys_and_nest() {
        let v: Value = serde_json::from_str(
            r#"[{"kvlist":{"b":true,"a":[{"int":"1"},null,"x\n"]}},{"double":"NaN"},{"bytes":"AA=="}]"#,
        )
        .unwrap();
        assert_eq!(
            text_string(&v),
            r#"[{"a":["1","","x\n"],"b":"true"},"NaN","AA=="]"#
        );
    }

    #[test]
    fn producer_seq_and_missing() {
        let envelope: Value = serde_json::from_str(
            r#"{"otaudit":1,"pipeline":"p","received_at":"5","record":{"signal":"log","time_unix_nano":"0","observed_time_unix_nano":"0","event_name":"","body":"hello","trace_id":"","span_id":"","attributes":{"audit.producer.seq":"0012","audit.producer.id":null,"audit.action":{"kvlist":{"z":"1","a":"2"}}},"resource":{"attributes":{}}}}"#,
        )
        .unwrap();
        let c = derive(&envelope, &conventions()).unwrap();
        assert_eq!(c.time_unix_nano, 5);
        assert_eq!(c.timestamp, "1970-01-01T00:00:00.000000005Z");
        assert_eq!(c.name, "hello");
        assert_eq!(c.producer, None);
        assert_eq!(c.producer_seq, Some(12));
        assert_eq!(c.missing.as_deref(), Some("actor,result"));
        assert_eq!(c.fields[3].as_deref(), Some(r#"{"a":"2","z":"1"}"#));
        assert_eq!(c.service, None);
        assert_eq!(c.resource, "{}");
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_ns(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(
            rfc3339_ns(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }
}
