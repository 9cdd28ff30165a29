//! The OTLP v1 messages otaudit reads, decoded with prost.
//!
//! Only the messages and fields `otaudit.otlp.convert` reads are declared, with the
//! field numbers of opentelemetry-proto (checked against the serialized descriptors of
//! the `opentelemetry-proto` Python package). Every string field of these messages is
//! declared, so invalid UTF-8 fails the decode exactly where upb fails it.
//!
//! Where prost and upb differ:
//! - a known field sent with another wire type is an error for prost and an unknown field
//!   for upb; prost errors therefore never word a DecodeError themselves: the caller runs
//!   the Python reference (upb) on the request, which raises or accepts it;
//! - unknown fields are dropped by prost and kept by upb, so upb's `ByteSize` (the
//!   attribute, resource and scope limits) counts them and prost's `encoded_len` does
//!   not. A request whose bytes are not exactly the canonical encoding of what prost
//!   decoded (`encoded_len` of the request differs from its length: unknown fields, a
//!   field sent twice, a default value or varint written longer than needed) is
//!   therefore left to the reference too; for every other request each message's
//!   `encoded_len` is upb's `ByteSize`. SDKs and the Collector send canonical encodings;
//!   a request that is not costs the Python path's time, never a different answer;
//! - nesting: both refuse messages nested more than 100 deep; [`max_depth`] lets the
//!   caller hand deeply nested requests to the reference anyway.

#![allow(clippy::doc_markdown)]

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExportLogsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub trace_state: String,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
    #[prost(string, tag = "5")]
    pub name: String,
    /// SpanKind (an open enum: any int32 is kept).
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "10")]
    pub dropped_attributes_count: u32,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
    #[prost(uint32, tag = "12")]
    pub dropped_events_count: u32,
    #[prost(message, repeated, tag = "13")]
    pub links: Vec<Link>,
    #[prost(uint32, tag = "14")]
    pub dropped_links_count: u32,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Link {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub trace_state: String,
    #[prost(message, repeated, tag = "4")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "5")]
    pub dropped_attributes_count: u32,
    #[prost(fixed32, tag = "6")]
    pub flags: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    /// StatusCode (an open enum).
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct LogRecord {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    /// SeverityNumber (an open enum).
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    #[prost(string, tag = "3")]
    pub severity_text: String,
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "7")]
    pub dropped_attributes_count: u32,
    #[prost(fixed32, tag = "8")]
    pub flags: u32,
    #[prost(bytes = "vec", tag = "9")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "12")]
    pub event_name: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
    #[prost(message, repeated, tag = "3")]
    pub entity_refs: Vec<EntityRef>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EntityRef {
    #[prost(string, tag = "1")]
    pub schema_url: String,
    #[prost(string, tag = "2")]
    pub r#type: String,
    #[prost(string, repeated, tag = "3")]
    pub id_keys: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub description_keys: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
    /// The profiles signal's string table index (otaudit does not read it; it counts in
    /// the size of the attribute list).
    #[prost(int32, tag = "3")]
    pub key_strindex: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    /// The `value` oneof; `string_value_strindex` (8) is a member: set last, it unsets the
    /// others and encodes as null, as in the reference.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
        #[prost(int32, tag = "8")]
        StringValueStrindex(i32),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// The unset value (`kv.value` of a KeyValue without one).
pub static NULL_VALUE: AnyValue = AnyValue { value: None };

impl KeyValue {
    /// The value, or the unset value.
    pub fn any(&self) -> &AnyValue {
        self.value.as_ref().unwrap_or(&NULL_VALUE)
    }
}

/// The deepest nesting of arrays and kvlists in a value (0 for a scalar).
pub fn max_depth(value: &AnyValue) -> usize {
    use any_value::Value as V;
    match &value.value {
        Some(V::ArrayValue(a)) => 1 + a.values.iter().map(max_depth).max().unwrap_or(0),
        Some(V::KvlistValue(l)) => {
            1 + l
                .values
                .iter()
                .map(|kv| max_depth(kv.any()))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

const LEN: u128 = 2;

/// A varint of at most 10 bytes, exactly (up to 70 bits), as Python reads it.
fn varint(data: &[u8], at: &mut usize, end: usize) -> Option<u128> {
    let mut value = 0u128;
    let mut shift = 0;
    loop {
        if *at >= end || shift > 63 {
            return None;
        }
        let byte = data[*at];
        *at += 1;
        value |= u128::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
        shift += 7;
    }
}

/// Why a walk stopped early.
enum Stop {
    /// The bytes are not protobuf.
    Malformed,
    /// The count passed the limit.
    Over,
}

/// Call `each` with the (start, end) of each length-delimited field `number` in
/// `data[at..end]`, in order, as `otaudit.otlp.wirecount._fields` yields them (bytes that
/// are not protobuf stop the walk where they are met).
fn fields(
    data: &[u8],
    mut at: usize,
    end: usize,
    number: u128,
    each: &mut dyn FnMut(usize, usize) -> Result<(), Stop>,
) -> Result<(), Stop> {
    while at < end {
        let tag = varint(data, &mut at, end).ok_or(Stop::Malformed)?;
        match tag & 7 {
            0 => {
                varint(data, &mut at, end).ok_or(Stop::Malformed)?;
            }
            1 => at += 8,
            5 => at += 4,
            LEN => {
                let size = varint(data, &mut at, end).ok_or(Stop::Malformed)?;
                let stop = usize::try_from(size)
                    .ok()
                    .and_then(|s| at.checked_add(s))
                    .ok_or(Stop::Malformed)?;
                if stop <= end && tag >> 3 == number {
                    each(at, stop)?;
                }
                at = stop;
            }
            _ => return Err(Stop::Malformed),
        }
        if at > end {
            return Err(Stop::Malformed);
        }
    }
    Ok(())
}

/// `otaudit.otlp.wirecount.records_over`: the number of records of a protobuf export
/// request if it is more than `limit` (counted to `limit + 1`), else None; None too for
/// bytes that are not a well-formed request.
pub fn records_over(data: &[u8], limit: usize) -> Option<usize> {
    let mut total = 0usize;
    let walk = fields(data, 0, data.len(), 1, &mut |start, end| {
        fields(data, start, end, 2, &mut |s_start, s_end| {
            fields(data, s_start, s_end, 2, &mut |_, _| {
                total += 1;
                if total > limit {
                    Err(Stop::Over)
                } else {
                    Ok(())
                }
            })
        })
    });
    match walk {
        Err(Stop::Over) => Some(total),
        _ => None,
    }
}
