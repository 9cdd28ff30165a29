//! Select, check, redact, encode and seal the audit records of one OTLP export request,
//! as `otaudit.otlp.convert` selects and `otaudit.record.seal` seals them.
//!
//! The record content is written once, as canonical JSON, straight into the buffer of
//! its sealed envelope; the columns are derived from the decoded record through the
//! traits of [`crate::columns`]. Every problem is a typed value that Python words
//! (`otaudit.otlp.native`), with the reference's own wording functions.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::canonical::{utf16_cmp, write_base64, write_double, write_hex, write_int, write_str};
use crate::columns::{
    self, AttrValue, Attrs, Columns, Conventions, Record, ResourceColumns, Signal, View,
};
use crate::merkle;
use crate::otlp::{
    any_value::Value as V, AnyValue, ExportLogsServiceRequest, ExportTraceServiceRequest,
    InstrumentationScope, KeyValue, LogRecord, Resource, Span,
};
use crate::redact::{Action, Redactor, MARK};

/// `otaudit.otlp.convert.MAX_TIME_NS`.
pub const MAX_TIME_NS: u64 = i64::MAX as u64;

/// `otaudit.otlp.convert.Limits`.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_attributes: usize,
    pub max_value_bytes: usize,
    pub max_resource_bytes: usize,
    pub max_records: usize,
    pub max_sealed_ratio: u64,
    pub min_sealed_budget: u64,
}

impl Limits {
    /// `Limits.sealed_budget`.
    pub fn sealed_budget(&self, request_bytes: u64) -> u64 {
        self.min_sealed_budget
            .max(self.max_sealed_ratio.saturating_mul(request_bytes))
    }
}

/// Everything a request is prepared under (passed from Python once per setting).
#[derive(Clone, Debug)]
pub struct Options {
    pub audit_attribute: String,
    pub limits: Limits,
    pub conventions: Conventions,
    pub redactor: Option<Redactor>,
    /// How many rejection reasons a Selection keeps (`convert._MAX_REASONS`).
    pub max_reasons: usize,
}

/// Whose limits a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Record,
    Resource,
    Scope,
}

/// Why one record is rejected (the rest of the request is kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// More attributes than the limit.
    Attributes {
        what: Context,
        count: usize,
        limit: usize,
    },
    /// One attribute value over the limit (its protobuf size).
    Value {
        what: Context,
        key: String,
        size: usize,
        limit: usize,
    },
    /// A resource or scope over the limit (its protobuf size).
    Size {
        what: Context,
        size: usize,
        limit: usize,
    },
    /// The request's sealed bytes would pass the budget.
    Budget { budget: u64, request_bytes: u64 },
    /// An attribute key repeated in one map.
    Duplicate(String),
    /// A time after 2^63-1 ns.
    Time { name: &'static str, value: u64 },
}

/// Why the whole request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// The wire walk counted more than `max_records` (`records_over`).
    TooManyOnWire(usize),
    /// The decoded request holds more than `max_records`.
    TooMany(usize),
    /// prost could not decode it (or it nests too deep): the reference decides.
    Undecodable,
    /// An id of the wrong length (HTTP 400).
    BadId {
        at: [usize; 3],
        name: &'static str,
        size: usize,
        got: usize,
    },
}

/// One rejected record: where it is (resource, scope, item) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub at: [usize; 3],
    pub reason: Reason,
}

/// A resource as a store keeps it once: its canonical bytes and their SHA-256.
#[derive(Clone, Debug)]
pub struct ResourcePart {
    pub hash: [u8; 32],
    pub body: String,
}

/// One sealed record.
#[derive(Clone, Debug)]
pub struct Sealed {
    pub sealed: String,
    pub leaf: [u8; 32],
    pub dedup_key: [u8; 16],
    /// Without `service` and `resource`: those are the part's ([`Outcome::part_columns`]).
    pub columns: Columns,
    /// Index into [`Outcome::parts`].
    pub part: usize,
    /// Where the resource body starts in `sealed`.
    pub resource_at: usize,
}

/// What became of one export request (`Selection` plus the sealed entries).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub received: usize,
    pub dropped: usize,
    pub rejected: usize,
    pub reasons: Vec<Rejection>,
    pub near_misses: usize,
    pub near_miss_keys: Vec<String>,
    pub parts: Vec<ResourcePart>,
    /// The resource columns of each part.
    pub part_columns: Vec<ResourceColumns>,
    pub records: Vec<Sealed>,
}

impl Outcome {
    fn reject(&mut self, at: [usize; 3], reason: Reason, max_reasons: usize) {
        self.rejected += 1;
        if self.reasons.len() < max_reasons {
            self.reasons.push(Rejection { at, reason });
        }
    }
}

// ---- attribute maps as the record holds them (after redaction) ----

/// An attribute value in a record: as sent, or a string redaction put there.
pub enum Val<'a> {
    Any(&'a AnyValue),
    Text(String),
}

impl AttrValue for AnyValue {
    type Elem = AnyValue;
    fn view(&self) -> View<'_, AnyValue> {
        match &self.value {
            Some(V::StringValue(s)) => View::Str(s),
            Some(V::BoolValue(b)) => View::Bool(*b),
            Some(V::IntValue(n)) => View::Int(n.to_string().into()),
            Some(V::DoubleValue(d)) => {
                let mut s = String::new();
                write_double(&mut s, *d);
                View::Scalar(s.into())
            }
            Some(V::BytesValue(b)) => {
                let mut s = String::new();
                write_base64(&mut s, b);
                View::Scalar(s.into())
            }
            Some(V::ArrayValue(a)) => View::Array(&a.values),
            Some(V::KvlistValue(l)) => View::Kvlist(
                l.values
                    .iter()
                    .map(|kv| (kv.key.as_str(), kv.any()))
                    .collect(),
            ),
            None | Some(V::StringValueStrindex(_)) => View::Null,
        }
    }
}

impl AttrValue for Val<'_> {
    type Elem = AnyValue;
    fn view(&self) -> View<'_, AnyValue> {
        match self {
            Val::Any(v) => v.view(),
            Val::Text(s) => View::Str(s),
        }
    }
}

/// A record's (or resource's) attributes: unique keys, in the order sent.
pub struct AttrList<'a>(pub Vec<(&'a str, Val<'a>)>);

impl<'a> AttrList<'a> {
    fn of(items: &'a [KeyValue]) -> AttrList<'a> {
        AttrList(
            items
                .iter()
                .map(|kv| (kv.key.as_str(), Val::Any(kv.any())))
                .collect(),
        )
    }

    /// `Redactor.apply`, then the mark of what was done.
    fn redact(self, redactor: Option<&Redactor>) -> AttrList<'a> {
        let Some(redactor) = redactor else {
            return self;
        };
        let mut done: Vec<String> = Vec::new();
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for (key, value) in self.0 {
            match redactor.action(key) {
                None => out.push((key, value)),
                Some(Action::Drop) => done.push(format!("drop:{key}")),
                Some(Action::Hmac) => {
                    let mut text = String::new();
                    columns::text_value(&value, &mut text);
                    out.push((key, Val::Text(redactor.pseudonym(&text))));
                    done.push(format!("hmac:{key}"));
                }
            }
        }
        if !done.is_empty() {
            let mark = Val::Text(done.join(","));
            match out.iter_mut().find(|(k, _)| *k == MARK) {
                Some(slot) => slot.1 = mark,
                None => out.push((MARK, mark)),
            }
        }
        AttrList(out)
    }
}

impl<'a> Attrs for AttrList<'a> {
    type V = Val<'a>;
    fn get(&self, key: &str) -> Option<&Val<'a>> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
    fn entries(&self) -> Vec<(&str, &Val<'a>)> {
        self.0.iter().map(|(k, v)| (*k, v)).collect()
    }
}

// ---- checks ----

/// `key_values` without building anything: nested problems first, then this level's
/// first repeated key.
fn check_kvs(items: &[KeyValue]) -> Result<(), Reason> {
    for kv in items {
        check_any(kv.any())?;
    }
    if items.len() <= 16 {
        for (i, kv) in items.iter().enumerate().skip(1) {
            if items[..i].iter().any(|other| other.key == kv.key) {
                return Err(Reason::Duplicate(kv.key.clone()));
            }
        }
    } else {
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        for kv in items {
            if !seen.insert(kv.key.as_str()) {
                return Err(Reason::Duplicate(kv.key.clone()));
            }
        }
    }
    Ok(())
}

fn check_any(value: &AnyValue) -> Result<(), Reason> {
    match &value.value {
        Some(V::ArrayValue(a)) => a.values.iter().try_for_each(check_any),
        Some(V::KvlistValue(l)) => check_kvs(&l.values),
        _ => Ok(()),
    }
}

fn check_time(value: u64, name: &'static str) -> Result<(), Reason> {
    if value > MAX_TIME_NS {
        Err(Reason::Time { name, value })
    } else {
        Ok(())
    }
}

fn id_ok(value: &[u8], size: usize) -> bool {
    value.is_empty() || value.len() == size
}

fn over_limits(attributes: &[KeyValue], what: Context, limits: &Limits) -> Option<Reason> {
    if attributes.len() > limits.max_attributes {
        return Some(Reason::Attributes {
            what,
            count: attributes.len(),
            limit: limits.max_attributes,
        });
    }
    attributes.iter().find_map(|kv| {
        let size = kv.any().encoded_len();
        (size > limits.max_value_bytes).then(|| Reason::Value {
            what,
            key: kv.key.clone(),
            size,
            limit: limits.max_value_bytes,
        })
    })
}

fn context_over_limits(
    attributes: &[KeyValue],
    size: usize,
    what: Context,
    limits: &Limits,
) -> Option<Reason> {
    over_limits(attributes, what, limits).or_else(|| {
        (size > limits.max_resource_bytes).then_some(Reason::Size {
            what,
            size,
            limit: limits.max_resource_bytes,
        })
    })
}

// ---- canonical writing ----

fn write_any(out: &mut String, value: &AnyValue) {
    match &value.value {
        Some(V::StringValue(s)) => write_str(out, s),
        Some(V::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(V::IntValue(n)) => {
            out.push_str("{\"int\":\"");
            write_int(out, *n);
            out.push_str("\"}");
        }
        Some(V::DoubleValue(d)) => {
            out.push_str("{\"double\":\"");
            write_double(out, *d);
            out.push_str("\"}");
        }
        Some(V::BytesValue(b)) => {
            out.push_str("{\"bytes\":\"");
            write_base64(out, b);
            out.push_str("\"}");
        }
        Some(V::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_any(out, v);
            }
            out.push(']');
        }
        Some(V::KvlistValue(l)) => {
            out.push_str("{\"kvlist\":");
            write_kvs(out, &l.values);
            out.push('}');
        }
        None | Some(V::StringValueStrindex(_)) => out.push_str("null"),
    }
}

fn write_members<'v, T>(out: &mut String, members: &mut [(&str, &'v T)], value: fn(&mut String, &T))
where
    T: ?Sized,
{
    if members
        .windows(2)
        .any(|w| utf16_cmp(w[0].0, w[1].0).is_gt())
    {
        members.sort_unstable_by(|a, b| utf16_cmp(a.0, b.0));
    }
    out.push('{');
    for (i, (key, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, key);
        out.push(':');
        value(out, v);
    }
    out.push('}');
}

/// Attributes sent (unique keys, checked before) as a canonical object.
fn write_kvs(out: &mut String, items: &[KeyValue]) {
    let mut members: Vec<(&str, &AnyValue)> =
        items.iter().map(|kv| (kv.key.as_str(), kv.any())).collect();
    write_members(out, &mut members, write_any);
}

fn write_val(out: &mut String, value: &Val<'_>) {
    match value {
        Val::Any(v) => write_any(out, v),
        Val::Text(s) => write_str(out, s),
    }
}

fn write_attrs(out: &mut String, attrs: &AttrList<'_>) {
    let mut members: Vec<(&str, &Val<'_>)> = attrs.0.iter().map(|(k, v)| (*k, v)).collect();
    write_members(out, &mut members, write_val);
}

fn member(out: &mut String, name: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

fn string_member(out: &mut String, name: &str, value: &str) {
    member(out, name);
    write_str(out, value);
    out.push(',');
}

fn int_member<T: itoa::Integer>(out: &mut String, name: &str, value: T) {
    member(out, name);
    write_int(out, value);
    out.push(',');
}

fn decimal_member(out: &mut String, name: &str, value: u64) {
    member(out, name);
    out.push('"');
    write_int(out, value);
    out.push_str("\",");
}

fn hex_member(out: &mut String, name: &str, value: &[u8]) {
    member(out, name);
    out.push('"');
    write_hex(out, value);
    out.push_str("\",");
}

/// The canonical bytes of a resource (after redaction of its attributes).
fn resource_body(resource: &Resource, attrs: &AttrList<'_>, schema_url: &str) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    member(&mut out, "attributes");
    write_attrs(&mut out, attrs);
    out.push(',');
    int_member(
        &mut out,
        "dropped_attributes_count",
        resource.dropped_attributes_count,
    );
    member(&mut out, "entity_refs");
    out.push('[');
    for (i, e) in resource.entity_refs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        let list = |out: &mut String, name: &str, items: &[String]| {
            member(out, name);
            out.push('[');
            for (j, s) in items.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                write_str(out, s);
            }
            out.push_str("],");
        };
        list(&mut out, "description_keys", &e.description_keys);
        list(&mut out, "id_keys", &e.id_keys);
        string_member(&mut out, "schema_url", &e.schema_url);
        member(&mut out, "type");
        write_str(&mut out, &e.r#type);
        out.push('}');
    }
    out.push_str("],");
    member(&mut out, "schema_url");
    write_str(&mut out, schema_url);
    out.push('}');
    out
}

/// The canonical bytes of a scope.
fn scope_body(scope: &InstrumentationScope, schema_url: &str) -> String {
    let mut out = String::with_capacity(128);
    out.push('{');
    member(&mut out, "attributes");
    write_kvs(&mut out, &scope.attributes);
    out.push(',');
    int_member(
        &mut out,
        "dropped_attributes_count",
        scope.dropped_attributes_count,
    );
    string_member(&mut out, "name", &scope.name);
    string_member(&mut out, "schema_url", schema_url);
    member(&mut out, "version");
    write_str(&mut out, &scope.version);
    out.push('}');
    out
}

// ---- the two signals ----

/// A signal's records: where they sit in a request and how each is checked and written.
trait Item {
    const SIGNAL: &'static str;
    fn attributes(&self) -> &[KeyValue];
    /// `Err(Some(fatal))` for a bad link id, `Err(None)`... see [`Problem`].
    fn ids(&self) -> [(&'static str, usize, &[u8]); 3];
    fn check(&self, at: [usize; 3]) -> Result<(), Problem>;
    /// Write the members that sort before `resource`; then [`Item::write_tail`] those after
    /// `scope`.
    fn write_head(&self, out: &mut String, attrs: &AttrList<'_>, ids: &Ids);
    fn write_tail(&self, out: &mut String, ids: &Ids);
    fn signal<'a>(&'a self) -> Signal<'a>;
}

/// A record's problem: rejected on its own, or the whole request refused.
enum Problem {
    Reject(Reason),
    Fatal(Fatal),
}

impl From<Reason> for Problem {
    fn from(reason: Reason) -> Problem {
        Problem::Reject(reason)
    }
}

/// A record's trace and span ids as hex.
struct Ids {
    trace_id: String,
    span_id: String,
}

impl Item for Span {
    const SIGNAL: &'static str = "span";
    fn attributes(&self) -> &[KeyValue] {
        &self.attributes
    }
    fn ids(&self) -> [(&'static str, usize, &[u8]); 3] {
        [
            ("trace_id", 16, &self.trace_id),
            ("span_id", 8, &self.span_id),
            ("parent_span_id", 8, &self.parent_span_id),
        ]
    }
    fn check(&self, at: [usize; 3]) -> Result<(), Problem> {
        check_time(self.start_time_unix_nano, "start_time_unix_nano")?;
        check_time(self.end_time_unix_nano, "end_time_unix_nano")?;
        check_kvs(&self.attributes)?;
        for ev in &self.events {
            check_kvs(&ev.attributes)?;
        }
        for ln in &self.links {
            for (name, size, value) in [
                ("links.trace_id", 16, &ln.trace_id),
                ("links.span_id", 8, &ln.span_id),
            ] {
                if !id_ok(value, size) {
                    return Err(Problem::Fatal(Fatal::BadId {
                        at,
                        name,
                        size,
                        got: value.len(),
                    }));
                }
            }
            check_kvs(&ln.attributes)?;
        }
        Ok(())
    }
    fn write_head(&self, out: &mut String, attrs: &AttrList<'_>, _ids: &Ids) {
        member(out, "attributes");
        write_attrs(out, attrs);
        out.push(',');
        int_member(
            out,
            "dropped_attributes_count",
            self.dropped_attributes_count,
        );
        int_member(out, "dropped_events_count", self.dropped_events_count);
        int_member(out, "dropped_links_count", self.dropped_links_count);
        decimal_member(out, "end_time_unix_nano", self.end_time_unix_nano);
        member(out, "events");
        out.push('[');
        for (i, ev) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            member(out, "attributes");
            write_kvs(out, &ev.attributes);
            out.push(',');
            int_member(out, "dropped_attributes_count", ev.dropped_attributes_count);
            string_member(out, "name", &ev.name);
            member(out, "time_unix_nano");
            out.push('"');
            write_int(out, ev.time_unix_nano);
            out.push_str("\"}");
        }
        out.push_str("],");
        int_member(out, "flags", self.flags);
        int_member(out, "kind", self.kind);
        member(out, "links");
        out.push('[');
        for (i, ln) in self.links.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            member(out, "attributes");
            write_kvs(out, &ln.attributes);
            out.push(',');
            int_member(out, "dropped_attributes_count", ln.dropped_attributes_count);
            int_member(out, "flags", ln.flags);
            hex_member(out, "span_id", &ln.span_id);
            hex_member(out, "trace_id", &ln.trace_id);
            member(out, "trace_state");
            write_str(out, &ln.trace_state);
            out.push('}');
        }
        out.push_str("],");
        string_member(out, "name", &self.name);
        hex_member(out, "parent_span_id", &self.parent_span_id);
    }
    fn write_tail(&self, out: &mut String, ids: &Ids) {
        string_member(out, "signal", "span");
        string_member(out, "span_id", &ids.span_id);
        decimal_member(out, "start_time_unix_nano", self.start_time_unix_nano);
        member(out, "status");
        let (code, message) = self
            .status
            .as_ref()
            .map_or((0, ""), |s| (s.code, s.message.as_str()));
        out.push('{');
        int_member(out, "code", code);
        member(out, "message");
        write_str(out, message);
        out.push_str("},");
        string_member(out, "trace_id", &ids.trace_id);
        member(out, "trace_state");
        write_str(out, &self.trace_state);
    }
    fn signal(&self) -> Signal<'_> {
        Signal::Span {
            start_time_unix_nano: self.start_time_unix_nano as i64,
            name: &self.name,
            status_code: self.status.as_ref().map_or(0, |s| i64::from(s.code)),
        }
    }
}

impl Item for LogRecord {
    const SIGNAL: &'static str = "log";
    fn attributes(&self) -> &[KeyValue] {
        &self.attributes
    }
    fn ids(&self) -> [(&'static str, usize, &[u8]); 3] {
        [
            ("trace_id", 16, &self.trace_id),
            ("span_id", 8, &self.span_id),
            ("", 0, &[]),
        ]
    }
    fn check(&self, _at: [usize; 3]) -> Result<(), Problem> {
        check_time(self.time_unix_nano, "time_unix_nano")?;
        check_time(self.observed_time_unix_nano, "observed_time_unix_nano")?;
        if let Some(body) = &self.body {
            check_any(body)?;
        }
        check_kvs(&self.attributes)?;
        Ok(())
    }
    fn write_head(&self, out: &mut String, attrs: &AttrList<'_>, _ids: &Ids) {
        member(out, "attributes");
        write_attrs(out, attrs);
        out.push(',');
        member(out, "body");
        write_any(out, self.body.as_ref().unwrap_or(&crate::otlp::NULL_VALUE));
        out.push(',');
        int_member(
            out,
            "dropped_attributes_count",
            self.dropped_attributes_count,
        );
        string_member(out, "event_name", &self.event_name);
        int_member(out, "flags", self.flags);
        decimal_member(out, "observed_time_unix_nano", self.observed_time_unix_nano);
    }
    fn write_tail(&self, out: &mut String, ids: &Ids) {
        int_member(out, "severity_number", self.severity_number);
        string_member(out, "severity_text", &self.severity_text);
        string_member(out, "signal", "log");
        string_member(out, "span_id", &ids.span_id);
        decimal_member(out, "time_unix_nano", self.time_unix_nano);
        member(out, "trace_id");
        write_str(out, &ids.trace_id);
    }
    fn signal(&self) -> Signal<'_> {
        let body = match self.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(V::StringValue(s)) => Some(s.as_str()),
            _ => None,
        };
        Signal::Log {
            time_unix_nano: self.time_unix_nano as i64,
            observed_time_unix_nano: self.observed_time_unix_nano as i64,
            event_name: &self.event_name,
            body,
        }
    }
}

/// One resource group or scope group, as the selection walks it.
struct Group<'a, T> {
    resource: &'a Resource,
    resource_schema_url: &'a str,
    scopes: Vec<(&'a InstrumentationScope, &'a str, &'a [T])>,
}

static EMPTY_RESOURCE: Resource = Resource {
    attributes: Vec::new(),
    dropped_attributes_count: 0,
    entity_refs: Vec::new(),
};
static EMPTY_SCOPE: InstrumentationScope = InstrumentationScope {
    name: String::new(),
    version: String::new(),
    attributes: Vec::new(),
    dropped_attributes_count: 0,
};

/// A resource built for sealing: its part index, its body, its columns.
struct Built {
    part: usize,
}

/// The envelope of every record of a request up to its `record` member.
struct Envelope {
    /// `{"otaudit":1,"pipeline":"..."` (the envelope without `received_at`, open).
    prefix: String,
    /// `,"received_at":"<ns>"`.
    received: String,
    received_ns: i64,
    pipeline: String,
}

const RECORD_MARKER: &str = ",\"record\":";

fn select<T: Item>(
    groups: Vec<Group<'_, T>>,
    options: &Options,
    envelope: &Envelope,
    request_bytes: u64,
) -> Result<Outcome, Fatal> {
    let limits = &options.limits;
    let audit = options.audit_attribute.as_str();
    let namespace = match audit.rfind('.') {
        Some(dot) if dot > 0 => Some(&audit[..=dot]),
        _ => None,
    };
    let budget = limits.sealed_budget(request_bytes);
    let max_reasons = options.max_reasons;
    let redactor = options.redactor.as_ref();
    let mut sealed_bytes: u64 = 0;
    let mut out = Outcome::default();
    for (r, group) in groups.iter().enumerate() {
        let res = group.resource;
        let resource_problem = context_over_limits(
            &res.attributes,
            res.encoded_len(),
            Context::Resource,
            limits,
        );
        let mut resource: Option<Result<Built, Reason>> = None;
        for (s, &(scope, scope_schema_url, items)) in group.scopes.iter().enumerate() {
            let shared = resource_problem.clone().or_else(|| {
                context_over_limits(
                    &scope.attributes,
                    scope.encoded_len(),
                    Context::Scope,
                    limits,
                )
            });
            let mut scope_built: Option<Result<String, Reason>> = None;
            for (i, item) in items.iter().enumerate() {
                let at = [r, s, i];
                out.received += 1;
                for (name, size, value) in item.ids() {
                    if size > 0 && !id_ok(value, size) {
                        return Err(Fatal::BadId {
                            at,
                            name,
                            size,
                            got: value.len(),
                        });
                    }
                }
                let attributes = item.attributes();
                if !attributes.iter().any(|kv| kv.key == audit) {
                    out.dropped += 1;
                    if let Some(ns) = namespace {
                        note_near_miss(&mut out, attributes, ns);
                    }
                    continue;
                }
                if let Some(problem) = shared
                    .clone()
                    .or_else(|| over_limits(attributes, Context::Record, limits))
                {
                    out.reject(at, problem, max_reasons);
                    continue;
                }
                if sealed_bytes > budget {
                    out.reject(at, over_budget(budget, request_bytes), max_reasons);
                    continue;
                }
                let built = resource.get_or_insert_with(|| {
                    check_kvs(&res.attributes)?;
                    let attrs = AttrList::of(&res.attributes).redact(redactor);
                    let body = resource_body(res, &attrs, group.resource_schema_url);
                    out.part_columns
                        .push(columns::resource_columns(&attrs, &options.conventions));
                    out.parts.push(ResourcePart {
                        hash: Sha256::digest(body.as_bytes()).into(),
                        body,
                    });
                    Ok(Built {
                        part: out.parts.len() - 1,
                    })
                });
                let part = match built {
                    Ok(b) => b.part,
                    Err(reason) => {
                        out.reject(at, reason.clone(), max_reasons);
                        continue;
                    }
                };
                let scope_body = match scope_built.get_or_insert_with(|| {
                    check_kvs(&scope.attributes)?;
                    Ok(scope_body(scope, scope_schema_url))
                }) {
                    Ok(body) => body,
                    Err(reason) => {
                        out.reject(at, reason.clone(), max_reasons);
                        continue;
                    }
                };
                match item.check(at) {
                    Ok(()) => {}
                    Err(Problem::Reject(reason)) => {
                        out.reject(at, reason, max_reasons);
                        continue;
                    }
                    Err(Problem::Fatal(fatal)) => return Err(fatal),
                }
                let mut attrs = AttrList::of(attributes).redact(redactor);
                // Canonical order once: the writer then finds it sorted, and the text
                // column's code point order differs from it only beyond the BMP.
                attrs.0.sort_unstable_by(|a, b| utf16_cmp(a.0, b.0));
                let [(_, _, trace), (_, _, span), _] = item.ids();
                let ids = Ids {
                    trace_id: hex(trace),
                    span_id: hex(span),
                };
                let body = &out.parts[part].body;
                let mut sealed = String::with_capacity(
                    envelope.prefix.len() + envelope.received.len() + 2 * body.len() + 1024,
                );
                sealed.push_str(&envelope.prefix);
                sealed.push_str(&envelope.received);
                let record_at = sealed.len();
                sealed.push_str(RECORD_MARKER);
                let content_at = sealed.len();
                sealed.push('{');
                item.write_head(&mut sealed, &attrs, &ids);
                member(&mut sealed, "resource");
                let resource_at = sealed.len();
                sealed.push_str(body);
                sealed.push(',');
                member(&mut sealed, "scope");
                sealed.push_str(scope_body);
                sealed.push(',');
                item.write_tail(&mut sealed, &ids);
                sealed.push('}');
                sealed_bytes += (sealed.len() - content_at) as u64;
                if sealed_bytes > budget {
                    out.reject(at, over_budget(budget, request_bytes), max_reasons);
                    continue;
                }
                sealed.push('}');
                let mut key = Sha256::new();
                key.update(&sealed.as_bytes()[..envelope.prefix.len()]);
                key.update(&sealed.as_bytes()[record_at..]);
                let key: [u8; 32] = key.finalize().into();
                let record = Record {
                    received_at: envelope.received_ns,
                    pipeline: &envelope.pipeline,
                    signal_name: T::SIGNAL,
                    signal: item.signal(),
                    trace_id: &ids.trace_id,
                    span_id: &ids.span_id,
                    attributes: &attrs,
                };
                // The resource's columns are the part's (`Outcome::part_columns`).
                let columns = columns::derive_own(&record, &options.conventions)
                    .expect("the columns of a decoded record");
                out.records.push(Sealed {
                    leaf: merkle::leaf_hash(sealed.as_bytes()),
                    dedup_key: key[..16].try_into().expect("16 bytes"),
                    sealed,
                    columns,
                    part,
                    resource_at,
                });
            }
        }
    }
    Ok(out)
}

fn hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(2 * data.len());
    write_hex(&mut s, data);
    s
}

fn over_budget(budget: u64, request_bytes: u64) -> Reason {
    Reason::Budget {
        budget,
        request_bytes,
    }
}

fn note_near_miss(out: &mut Outcome, attributes: &[KeyValue], namespace: &str) {
    let mut keys = attributes
        .iter()
        .filter(|kv| kv.key.starts_with(namespace))
        .peekable();
    if keys.peek().is_none() {
        return;
    }
    out.near_misses += 1;
    if out.near_miss_keys.is_empty() {
        out.near_miss_keys = keys
            .take(5)
            .map(|kv| kv.key.chars().take(64).collect())
            .collect();
    }
}

fn envelope(pipeline: &str, received_ns: i64) -> Envelope {
    let mut prefix = String::from("{\"otaudit\":1,\"pipeline\":");
    write_str(&mut prefix, pipeline);
    Envelope {
        prefix,
        received: format!(",\"received_at\":\"{received_ns}\""),
        received_ns,
        pipeline: pipeline.to_owned(),
    }
}

/// Deeper than this (arrays and kvlists in one value), a request goes to the reference,
/// which refuses what upb's recursion limit refuses.
const MAX_VALUE_DEPTH: usize = 30;

fn too_deep(items: &[KeyValue]) -> bool {
    items
        .iter()
        .any(|kv| crate::otlp::max_depth(kv.any()) > MAX_VALUE_DEPTH)
}

/// A request whose bytes could hold more records than allowed (each takes at least two
/// bytes on the wire) is counted before it is decoded, so that one of half a million
/// records is refused without decoding it.
fn preflight(data: &[u8], options: &Options) -> Result<(), Fatal> {
    if data.len() / 2 <= options.limits.max_records {
        return Ok(());
    }
    match crate::otlp::records_over(data, options.limits.max_records) {
        Some(count) => Err(Fatal::TooManyOnWire(count)),
        None => Ok(()),
    }
}

/// The refusal for a request prost could not decode (`decoded` None) or that holds
/// `decoded` records, over the limit: the wire count runs first in the reference, so
/// whenever it passes the limit its refusal is the one given; it is only walked when the
/// answer can depend on it (when prost decodes a request, the wire count and the decoded
/// count are equal unless the walk stops at bytes prost skips, such as groups).
fn refusal(data: &[u8], options: &Options, decoded: Option<usize>) -> Fatal {
    match crate::otlp::records_over(data, options.limits.max_records) {
        Some(count) => Fatal::TooManyOnWire(count),
        None => decoded.map_or(Fatal::Undecodable, Fatal::TooMany),
    }
}

/// Prepare an `ExportTraceServiceRequest` (protobuf bytes, decompressed).
pub fn prepare_spans(
    data: &[u8],
    options: &Options,
    pipeline: &str,
    received_ns: i64,
) -> Result<Outcome, Fatal> {
    preflight(data, options)?;
    let request =
        ExportTraceServiceRequest::decode(data).map_err(|_| refusal(data, options, None))?;
    if request.encoded_len() != data.len() {
        return Err(Fatal::Undecodable); // not canonical: see `crate::otlp`
    }
    let mut count = 0;
    let mut groups = Vec::with_capacity(request.resource_spans.len());
    for rs in &request.resource_spans {
        let resource = rs.resource.as_ref().unwrap_or(&EMPTY_RESOURCE);
        let mut deep = too_deep(&resource.attributes);
        let mut scopes = Vec::with_capacity(rs.scope_spans.len());
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().unwrap_or(&EMPTY_SCOPE);
            deep |= too_deep(&scope.attributes);
            for span in &ss.spans {
                deep |= too_deep(&span.attributes)
                    || span.events.iter().any(|e| too_deep(&e.attributes))
                    || span.links.iter().any(|l| too_deep(&l.attributes));
            }
            count += ss.spans.len();
            scopes.push((scope, ss.schema_url.as_str(), ss.spans.as_slice()));
        }
        if deep {
            return Err(Fatal::Undecodable);
        }
        groups.push(Group {
            resource,
            resource_schema_url: &rs.schema_url,
            scopes,
        });
    }
    if count > options.limits.max_records {
        return Err(refusal(data, options, Some(count)));
    }
    select(
        groups,
        options,
        &envelope(pipeline, received_ns),
        data.len() as u64,
    )
}

/// Prepare an `ExportLogsServiceRequest` (protobuf bytes, decompressed).
pub fn prepare_logs(
    data: &[u8],
    options: &Options,
    pipeline: &str,
    received_ns: i64,
) -> Result<Outcome, Fatal> {
    preflight(data, options)?;
    let request =
        ExportLogsServiceRequest::decode(data).map_err(|_| refusal(data, options, None))?;
    if request.encoded_len() != data.len() {
        return Err(Fatal::Undecodable); // not canonical: see `crate::otlp`
    }
    let mut count = 0;
    let mut groups = Vec::with_capacity(request.resource_logs.len());
    for rl in &request.resource_logs {
        let resource = rl.resource.as_ref().unwrap_or(&EMPTY_RESOURCE);
        let mut deep = too_deep(&resource.attributes);
        let mut scopes = Vec::with_capacity(rl.scope_logs.len());
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref().unwrap_or(&EMPTY_SCOPE);
            deep |= too_deep(&scope.attributes);
            for rec in &sl.log_records {
                deep |= too_deep(&rec.attributes)
                    || rec
                        .body
                        .as_ref()
                        .is_some_and(|b| crate::otlp::max_depth(b) > MAX_VALUE_DEPTH);
            }
            count += sl.log_records.len();
            scopes.push((scope, sl.schema_url.as_str(), sl.log_records.as_slice()));
        }
        if deep {
            return Err(Fatal::Undecodable);
        }
        groups.push(Group {
            resource,
            resource_schema_url: &rl.schema_url,
            scopes,
        });
    }
    if count > options.limits.max_records {
        return Err(refusal(data, options, Some(count)));
    }
    select(
        groups,
        options,
        &envelope(pipeline, received_ns),
        data.len() as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::{ArrayValue, KeyValueList, ResourceSpans, ScopeSpans, Status};

    fn kv(key: &str, value: Option<V>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value }),
            key_strindex: 0,
        }
    }

    fn s(text: &str) -> Option<V> {
        Some(V::StringValue(text.into()))
    }

    fn options() -> Options {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Options {
            audit_attribute: "audit.action".into(),
            limits: Limits {
                max_attributes: 128,
                max_value_bytes: 65536,
                max_resource_bytes: 65536,
                max_records: 100,
                max_sealed_ratio: 16,
                min_sealed_budget: 1 << 20,
            },
            conventions: Conventions {
                field_sources: [
                    keys(&["enduser.id", "user.id"]),
                    keys(&["enduser.role"]),
                    keys(&["client.address"]),
                    keys(&["audit.action"]),
                    keys(&["audit.target"]),
                    keys(&["audit.resource_type"]),
                    keys(&["audit.result"]),
                ],
                status_result: vec![(1, "success".into()), (2, "failure".into())],
                required: vec![0, 6],
                producer_id: "audit.producer.id".into(),
                producer_seq: "audit.producer.seq".into(),
                service: "service.name".into(),
            },
            redactor: None,
            max_reasons: 5,
        }
    }

    /// The columns derived at sealing equal those derived from the parsed sealed bytes
    /// (the verify path), whatever the values hold.
    #[test]
    fn columns_at_sealing_are_columns_at_verify() {
        let nested = Some(V::KvlistValue(KeyValueList {
            values: vec![
                kv("z", Some(V::DoubleValue(-0.0))),
                kv("\u{1f600}", Some(V::BytesValue(vec![0, 255]))),
                kv(
                    "\u{ff61}",
                    Some(V::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(V::IntValue(i64::MIN)),
                            },
                            AnyValue { value: None },
                            AnyValue {
                                value: Some(V::BoolValue(true)),
                            },
                        ],
                    })),
                ),
            ],
        }));
        let span = Span {
            trace_id: (0..16).collect(),
            span_id: (0..8).collect(),
            name: "n\"\u{1}é".into(),
            start_time_unix_nano: 1_764_288_000_000_000_000,
            attributes: vec![
                kv("audit.action", nested.clone()),
                kv("enduser.id", Some(V::DoubleValue(f64::NAN))),
                kv("audit.producer.seq", s("0042")),
                kv("audit.producer.id", None),
                kv("\u{ff61}", s("x\ny")),
                kv("\u{1f600}", Some(V::IntValue(7))),
            ],
            status: Some(Status {
                message: String::new(),
                code: 2,
            }),
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", nested), kv("b", s("1"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![span],
                    schema_url: String::new(),
                }],
                schema_url: "u".into(),
            }],
        };
        let data = request.encode_to_vec();
        let out = prepare_spans(&data, &options(), "otlp", 5).unwrap();
        assert_eq!(out.records.len(), 1);
        let rec = &out.records[0];
        let envelope: serde_json::Value = serde_json::from_str(&rec.sealed).unwrap();
        let at_verify = columns::derive(&envelope, &options().conventions).unwrap();
        let mut at_sealing = rec.columns.clone();
        at_sealing.service.clone_from(&out.part_columns[0].service);
        at_sealing.resource.clone_from(&out.part_columns[0].flat);
        assert_eq!(at_verify, at_sealing);
        assert_eq!(rec.columns.producer_seq, Some(42));
        assert_eq!(rec.columns.fields[6].as_deref(), Some("failure"));
        let body = &out.parts[0].body;
        assert_eq!(
            &rec.sealed[rec.resource_at..rec.resource_at + body.len()],
            body
        );
    }
}
