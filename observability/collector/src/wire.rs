//! Reads an OTLP trace export in its protobuf wire format without decoding it into structs.
//!
//! `ExportTraceServiceRequest` and `TracesData` share one wire format. [`index`] walks it once:
//! it checks everything prost's decoder would check (varints, lengths, wire types of the known
//! fields, UTF-8 of every string, nesting depth), so that an export it accepts decodes, and it
//! picks out of each span what the store searches on. The spans themselves stay encoded, as
//! slices of the export; the store decodes one only when a query returns or inspects it.
//! Decoding every span into opentelemetry-proto structs (a `String` per attribute key and
//! value) was more than half of the collector's CPU (see `docs/benchmarks/tracing.md`).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::store::{any_value_string, attribute};
use meshwork_telemetry::grpc::SERVICE_ATTRIBUTE;

/// Deepest nesting of messages accepted, as prost's decoder.
const MAX_DEPTH: u32 = 100;

/// Why an export is malformed: what was wrong, and in which message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    message: &'static str,
    reason: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.message, self.reason)
    }
}

impl std::error::Error for WireError {}

/// One export, indexed: its resources, each with its spans.
#[derive(Debug, Default)]
pub struct Index {
    pub resources: Vec<ResourceIndex>,
}

impl Index {
    /// Returns the number of spans.
    pub fn span_count(&self) -> usize {
        self.resources.iter().map(|r| r.spans.len()).sum()
    }
}

/// The process that reported some spans.
#[derive(Debug, PartialEq)]
pub struct Process {
    /// Its `service.name` (`unknown_service` when it has none).
    pub service: String,
    pub attributes: Arc<[KeyValue]>,
}

/// One `ResourceSpans` of an export.
#[derive(Debug)]
pub struct ResourceIndex {
    pub process: Arc<Process>,
    pub spans: Vec<SpanIndex>,
}

/// What the store keeps of one span: its encoding and the fields it searches on.
#[derive(Debug)]
pub struct SpanIndex {
    /// The span's own encoding (a `Span` message), a slice of the export.
    pub encoded: Bytes,
    /// `None` when the span's trace id is not 16 bytes long.
    pub trace_id: Option<[u8; 16]>,
    /// `None` when the span's id is not 8 bytes long.
    pub span_id: Option<[u8; 8]>,
    /// `None` when the span has no parent (or a parent id that is not 8 bytes long, which names
    /// no span).
    pub parent_span_id: Option<[u8; 8]>,
    pub kind: i32,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Status code ERROR.
    pub error: bool,
    /// Where the name is in `encoded`.
    name: (u32, u32),
    /// The span's first `meshwork.service` attribute, as a string.
    service: Option<Text>,
}

/// A string of a span: in its encoding (checked UTF-8), or made from a value of another type.
#[derive(Debug)]
enum Text {
    Encoded(u32, u32),
    Owned(Box<str>),
}

impl SpanIndex {
    fn text(&self, (start, end): (u32, u32)) -> &str {
        std::str::from_utf8(&self.encoded[start as usize..end as usize]).unwrap_or_default()
    }

    /// Returns the span's name.
    pub fn name(&self) -> &str {
        self.text(self.name)
    }

    /// Returns the span's `meshwork.service` attribute.
    pub fn service(&self) -> Option<&str> {
        match self.service.as_ref()? {
            Text::Encoded(start, end) => Some(self.text((*start, *end))),
            Text::Owned(s) => Some(s),
        }
    }

    /// Returns the span's first attribute named `key`, as the store shows values
    /// ([`any_value_string`]). Read from the encoding (checked when it was indexed): only that
    /// attribute is decoded, which is what lets a tag search test every stored span.
    pub fn attribute(&self, key: &str) -> Option<String> {
        let buf = self.encoded.as_ref();
        let mut r = Reader::new(buf, 0, buf.len(), "Span");
        while let Some((field, wire)) = r.key().ok()? {
            if field != 9 {
                r.skip(field, wire, 0).ok()?;
                continue;
            }
            let (start, end) = r.len_field(wire).ok()?;
            if attribute_key(buf, (start, end))? == key.as_bytes() {
                let kv = KeyValue::decode(&buf[start..end]).ok()?;
                return Some(any_value_string(&kv.value));
            }
        }
        None
    }
}

/// Returns the key of a checked `KeyValue` (the last one, as prost decodes a repeated field;
/// empty when it has none).
fn attribute_key(buf: &[u8], (start, end): (usize, usize)) -> Option<&[u8]> {
    let mut r = Reader::new(buf, start, end, "KeyValue");
    let mut key: &[u8] = &[];
    while let Some((field, wire)) = r.key().ok()? {
        if field == 1 {
            let (s, e) = r.len_field(wire).ok()?;
            key = &buf[s..e];
        } else {
            r.skip(field, wire, 0).ok()?;
        }
    }
    Some(key)
}

/// Indexes an encoded `ExportTraceServiceRequest` (or `TracesData`). Fails, naming the message
/// and the reason, wherever prost's decoder would fail.
pub fn index(export: &Bytes) -> Result<Index, WireError> {
    let mut out = Index::default();
    let mut r = Reader::new(export, 0, export.len(), "ExportTraceServiceRequest");
    while let Some((field, wire)) = r.key()? {
        match field {
            1 => {
                let range = r.len_field(wire)?;
                out.resources.push(resource_spans(export, range, 1)?);
            }
            _ => r.skip(field, wire, 0)?,
        }
    }
    compact(&mut out, export.len());
    Ok(out)
}

/// Copies the spans of an export that are less than half of it out of it (an export mostly
/// made of unknown fields, or of resource attributes, which are decoded apart): the store keeps
/// spans for hours, and a slice would keep the whole export in memory with it.
fn compact(index: &mut Index, export_len: usize) {
    let spans = || index.resources.iter().flat_map(|r| &r.spans);
    let kept: usize = spans().map(|s| s.encoded.len()).sum();
    if kept * 2 >= export_len {
        return;
    }
    let mut copy = bytes::BytesMut::with_capacity(kept);
    for span in spans() {
        copy.extend_from_slice(&span.encoded);
    }
    let copy = copy.freeze();
    let mut at = 0;
    for span in index.resources.iter_mut().flat_map(|r| &mut r.spans) {
        let len = span.encoded.len();
        span.encoded = copy.slice(at..at + len);
        at += len;
    }
}

fn resource_spans(buf: &Bytes, (start, end): (usize, usize), depth: u32) -> Result<ResourceIndex, WireError> {
    let mut r = Reader::new(buf, start, end, "ResourceSpans");
    r.enter(depth)?;
    let mut resource: Option<Resource> = None;
    let mut spans = Vec::new();
    while let Some((field, wire)) = r.key()? {
        match field {
            1 => {
                let (s, e) = r.len_field(wire)?;
                // Checked at its depth in the export (prost would give it a fresh budget), then
                // decoded with prost, once per resource, merged as prost merges a repeated field.
                check(buf, (s, e), depth + 1, &RESOURCE)?;
                resource
                    .get_or_insert_with(Resource::default)
                    .merge(&buf[s..e])
                    .map_err(|_| WireError { message: "Resource", reason: "malformed" })?;
            }
            2 => {
                let range = r.len_field(wire)?;
                scope_spans(buf, range, depth + 1, &mut spans)?;
            }
            3 => r.string_field(wire)?,
            _ => r.skip(field, wire, depth)?,
        }
    }
    let attributes: Arc<[KeyValue]> = resource.map(|r| r.attributes).unwrap_or_default().into();
    // An empty name is no name: both show as OpenTelemetry's default, `unknown_service`.
    let service = attribute(&attributes, "service.name")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown_service".to_string());
    Ok(ResourceIndex { process: Arc::new(Process { service, attributes }), spans })
}

fn scope_spans(
    buf: &Bytes,
    (start, end): (usize, usize),
    depth: u32,
    spans: &mut Vec<SpanIndex>,
) -> Result<(), WireError> {
    let mut r = Reader::new(buf, start, end, "ScopeSpans");
    r.enter(depth)?;
    while let Some((field, wire)) = r.key()? {
        match field {
            1 => {
                let range = r.len_field(wire)?;
                check(buf, range, depth + 1, &SCOPE)?;
            }
            2 => {
                let range = r.len_field(wire)?;
                spans.push(span(buf, range, depth + 1)?);
            }
            3 => r.string_field(wire)?,
            _ => r.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

fn span(buf: &Bytes, (start, end): (usize, usize), depth: u32) -> Result<SpanIndex, WireError> {
    let mut r = Reader::new(buf, start, end, "Span");
    r.enter(depth)?;
    // Offsets within the span's encoding (an export is at most 32 MiB).
    let local = |(s, e): (usize, usize)| ((s - start) as u32, (e - start) as u32);
    let mut out = SpanIndex {
        encoded: buf.slice(start..end),
        trace_id: None,
        span_id: None,
        parent_span_id: None,
        kind: 0,
        start_ns: 0,
        end_ns: 0,
        error: false,
        name: (0, 0),
        service: None,
    };
    while let Some((field, wire)) = r.key()? {
        match field {
            1 => {
                let (s, e) = r.len_field(wire)?;
                out.trace_id = buf[s..e].try_into().ok();
            }
            2 => {
                let (s, e) = r.len_field(wire)?;
                out.span_id = buf[s..e].try_into().ok();
            }
            3 => r.string_field(wire)?,
            4 => {
                let (s, e) = r.len_field(wire)?;
                out.parent_span_id = buf[s..e].try_into().ok();
            }
            5 => {
                let range = r.len_field(wire)?;
                r.utf8(range)?;
                out.name = local(range);
            }
            6 => out.kind = r.varint_field(wire)? as i32,
            7 => out.start_ns = r.fixed64_field(wire)?,
            8 => out.end_ns = r.fixed64_field(wire)?,
            9 => {
                let range = r.len_field(wire)?;
                if key_value(buf, range, depth + 1)? && out.service.is_none() {
                    out.service = Some(match string_value(buf, range) {
                        Some(value) => Text::Encoded(local(value).0, local(value).1),
                        None => {
                            // Not a plain string: shown as the store shows any value.
                            let kv = KeyValue::decode(&buf[range.0..range.1])
                                .map_err(|_| WireError { message: "KeyValue", reason: "malformed" })?;
                            Text::Owned(any_value_string(&kv.value).into())
                        }
                    });
                }
            }
            11 => {
                let range = r.len_field(wire)?;
                check(buf, range, depth + 1, &EVENT)?;
            }
            13 => {
                let range = r.len_field(wire)?;
                check(buf, range, depth + 1, &LINK)?;
            }
            15 => {
                let range = r.len_field(wire)?;
                if let Some(code) = status_code(buf, range, depth + 1)? {
                    out.error = code == 2;
                }
            }
            10 | 12 | 14 => {
                r.varint_field(wire)?;
            }
            16 => {
                r.fixed32_field(wire)?;
            }
            _ => r.skip(field, wire, depth)?,
        }
    }
    Ok(out)
}

/// Checks a `KeyValue`; returns whether its key is `meshwork.service`.
fn key_value(buf: &Bytes, (start, end): (usize, usize), depth: u32) -> Result<bool, WireError> {
    let mut r = Reader::new(buf, start, end, "KeyValue");
    r.enter(depth)?;
    let mut key = (0, 0);
    while let Some((field, wire)) = r.key()? {
        match field {
            1 => {
                key = r.len_field(wire)?;
                r.utf8(key)?;
            }
            2 => {
                let range = r.len_field(wire)?;
                check(buf, range, depth + 1, &ANY_VALUE)?;
            }
            3 => {
                r.varint_field(wire)?;
            }
            _ => r.skip(field, wire, depth)?,
        }
    }
    Ok(&buf[key.0..key.1] == SERVICE_ATTRIBUTE.as_bytes())
}

/// Returns where the string is in a checked `KeyValue` made of its key, then a value holding
/// one string and nothing else (what every SDK sends); `None` for any other shape.
fn string_value(buf: &Bytes, (start, end): (usize, usize)) -> Option<(usize, usize)> {
    let mut r = Reader::new(buf, start, end, "KeyValue");
    let mut value = None;
    let mut seen = 0;
    while let Some((field, wire)) = r.key().ok()? {
        seen += 1;
        match field {
            1 => {
                r.len_field(wire).ok()?;
            }
            2 => {
                let (s, e) = r.len_field(wire).ok()?;
                let mut inner = Reader::new(buf, s, e, "AnyValue");
                let (1, LEN) = inner.key().ok()?? else { return None };
                value = Some(inner.len_field(LEN).ok()?);
                inner.key().ok()?.is_none().then_some(())?;
            }
            _ => return None,
        }
    }
    value.filter(|_| seen == 2)
}

/// Checks a `Status`; returns its code, if it has one.
fn status_code(buf: &Bytes, (start, end): (usize, usize), depth: u32) -> Result<Option<i32>, WireError> {
    let mut r = Reader::new(buf, start, end, "Status");
    r.enter(depth)?;
    let mut code = None;
    while let Some((field, wire)) = r.key()? {
        match field {
            2 => r.string_field(wire)?,
            3 => code = Some(r.varint_field(wire)? as i32),
            _ => r.skip(field, wire, depth)?,
        }
    }
    Ok(code)
}

/// The type of a known field, for [`check`].
#[derive(Clone, Copy)]
enum Field {
    String,
    Bytes,
    Varint,
    Fixed64,
    Fixed32,
    Message(&'static Schema),
}

/// A message's known fields.
struct Schema {
    name: &'static str,
    fields: &'static [(u32, Field)],
}

static KEY_VALUE: Schema =
    Schema { name: "KeyValue", fields: &[(1, Field::String), (2, Field::Message(&ANY_VALUE)), (3, Field::Varint)] };
static ANY_VALUE: Schema = Schema {
    name: "AnyValue",
    fields: &[
        (1, Field::String),
        (2, Field::Varint),
        (3, Field::Varint),
        (4, Field::Fixed64),
        (5, Field::Message(&ARRAY_VALUE)),
        (6, Field::Message(&KEY_VALUE_LIST)),
        (7, Field::Bytes),
        (8, Field::Varint),
    ],
};
static ARRAY_VALUE: Schema = Schema { name: "ArrayValue", fields: &[(1, Field::Message(&ANY_VALUE))] };
static KEY_VALUE_LIST: Schema = Schema { name: "KeyValueList", fields: &[(1, Field::Message(&KEY_VALUE))] };
static RESOURCE: Schema = Schema {
    name: "Resource",
    fields: &[(1, Field::Message(&KEY_VALUE)), (2, Field::Varint), (3, Field::Message(&ENTITY_REF))],
};
static ENTITY_REF: Schema = Schema {
    name: "EntityRef",
    fields: &[(1, Field::String), (2, Field::String), (3, Field::String), (4, Field::String)],
};
static SCOPE: Schema = Schema {
    name: "InstrumentationScope",
    fields: &[(1, Field::String), (2, Field::String), (3, Field::Message(&KEY_VALUE)), (4, Field::Varint)],
};
static EVENT: Schema = Schema {
    name: "Span.Event",
    fields: &[(1, Field::Fixed64), (2, Field::String), (3, Field::Message(&KEY_VALUE)), (4, Field::Varint)],
};
static LINK: Schema = Schema {
    name: "Span.Link",
    fields: &[
        (1, Field::Bytes),
        (2, Field::Bytes),
        (3, Field::String),
        (4, Field::Message(&KEY_VALUE)),
        (5, Field::Varint),
        (6, Field::Fixed32),
    ],
};

/// Checks that `buf[start..end]` is a well-formed message of `schema`.
fn check(buf: &Bytes, (start, end): (usize, usize), depth: u32, schema: &Schema) -> Result<(), WireError> {
    let mut r = Reader::new(buf, start, end, schema.name);
    r.enter(depth)?;
    while let Some((field, wire)) = r.key()? {
        match schema.fields.iter().find(|(n, _)| *n == field).map(|(_, f)| *f) {
            Some(Field::String) => r.string_field(wire)?,
            Some(Field::Bytes) => {
                r.len_field(wire)?;
            }
            Some(Field::Varint) => {
                r.varint_field(wire)?;
            }
            Some(Field::Fixed64) => {
                r.fixed64_field(wire)?;
            }
            Some(Field::Fixed32) => {
                r.fixed32_field(wire)?;
            }
            Some(Field::Message(inner)) => {
                let range = r.len_field(wire)?;
                check(buf, range, depth + 1, inner)?;
            }
            None => r.skip(field, wire, depth)?,
        }
    }
    Ok(())
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// A cursor over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], start: usize, end: usize, message: &'static str) -> Self {
        // Cut at the message's end, so that one bounds check covers both.
        Reader { buf: &buf[..end], pos: start, end, message }
    }

    fn error(&self, reason: &'static str) -> WireError {
        WireError { message: self.message, reason }
    }

    /// Checks the depth of a message about to be read (the export is at 0; prost reads
    /// messages down to 100).
    fn enter(&self, depth: u32) -> Result<(), WireError> {
        if depth > MAX_DEPTH { Err(self.error("nested too deeply")) } else { Ok(()) }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Most varints (keys, lengths, small numbers) are one byte.
        match self.buf.get(self.pos) {
            Some(&byte) if byte < 0x80 => {
                self.pos += 1;
                Ok(u64::from(byte))
            }
            _ => self.long_varint(),
        }
    }

    fn long_varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.error("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(self.error("varint longer than 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 64 bits"))
    }

    /// Returns the next field's number and wire type, or `None` at the end of the message.
    fn key(&mut self) -> Result<Option<(u32, u8)>, WireError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| self.error("field key out of range"))?;
        let wire = (key & 7) as u8;
        if wire > FIXED32 {
            return Err(self.error("unknown wire type"));
        }
        let field = key >> 3;
        if field == 0 {
            return Err(self.error("field number 0"));
        }
        Ok(Some((field, wire)))
    }

    fn expect(&self, wire: u8, want: u8) -> Result<(), WireError> {
        if wire == want { Ok(()) } else { Err(self.error("a known field has the wrong wire type")) }
    }

    fn advance(&mut self, n: usize) -> Result<(usize, usize), WireError> {
        let start = self.pos;
        match start.checked_add(n) {
            Some(end) if end <= self.end => {
                self.pos = end;
                Ok((start, end))
            }
            _ => Err(self.error("a field runs past the end of its message")),
        }
    }

    fn len_field(&mut self, wire: u8) -> Result<(usize, usize), WireError> {
        self.expect(wire, LEN)?;
        let len = self.varint()?;
        self.advance(usize::try_from(len).unwrap_or(usize::MAX))
    }

    fn utf8(&self, (start, end): (usize, usize)) -> Result<(), WireError> {
        let bytes = &self.buf[start..end];
        // ASCII (most strings) is checked a word at a time.
        if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
            Ok(())
        } else {
            Err(self.error("a string is not UTF-8"))
        }
    }

    fn string_field(&mut self, wire: u8) -> Result<(), WireError> {
        let range = self.len_field(wire)?;
        self.utf8(range)
    }

    fn varint_field(&mut self, wire: u8) -> Result<u64, WireError> {
        self.expect(wire, VARINT)?;
        self.varint()
    }

    fn fixed64_field(&mut self, wire: u8) -> Result<u64, WireError> {
        self.expect(wire, FIXED64)?;
        let (s, _) = self.advance(8)?;
        Ok(u64::from_le_bytes(self.buf[s..s + 8].try_into().unwrap_or_default()))
    }

    fn fixed32_field(&mut self, wire: u8) -> Result<u32, WireError> {
        self.expect(wire, FIXED32)?;
        let (s, _) = self.advance(4)?;
        Ok(u32::from_le_bytes(self.buf[s..s + 4].try_into().unwrap_or_default()))
    }

    /// Skips an unknown field, as prost does (groups included).
    fn skip(&mut self, field: u32, wire: u8, depth: u32) -> Result<(), WireError> {
        // prost checks its recursion budget before skipping anything: none is left in a message
        // at the deepest level (or a group nested down to it).
        if depth >= MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match wire {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => {
                self.advance(8)?;
            }
            LEN => {
                self.len_field(wire)?;
            }
            FIXED32 => {
                self.advance(4)?;
            }
            START_GROUP => loop {
                let Some((inner, inner_wire)) = self.key()? else {
                    return Err(self.error("a group has no end"));
                };
                if inner_wire == END_GROUP {
                    if inner != field {
                        return Err(self.error("a group ends with another group's tag"));
                    }
                    break;
                }
                self.skip(inner, inner_wire, depth + 1)?;
            },
            _ => return Err(self.error("an end-group tag outside a group")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValueList, any_value::Value,
    };
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    fn string(s: &str) -> Value {
        Value::StringValue(s.into())
    }

    /// Spans of every shape the wire allows: every attribute type, nested values, events,
    /// links, status, flags, a non-string `meshwork.service`, ids of the wrong length.
    fn export() -> ExportTraceServiceRequest {
        let nested = Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue { value: Some(Value::IntValue(-3)) },
                AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: vec![
                            kv("inner", Value::BytesValue(vec![0, 255])),
                            kv("empty", Value::BoolValue(false)),
                        ],
                    })),
                },
            ],
        });
        let full = Span {
            trace_id: vec![7; 16],
            span_id: vec![1; 8],
            trace_state: "vendor=x".into(),
            parent_span_id: vec![9; 8],
            flags: 0x301,
            name: "meshwork.urlshortener.v1.UrlShortener/Shorten".into(),
            kind: 2,
            start_time_unix_nano: 1_795_860_000_000_000_123,
            end_time_unix_nano: 1_795_860_000_000_900_000,
            attributes: vec![
                kv("rpc.system", string("grpc")),
                kv(SERVICE_ATTRIBUTE, string("urlshortener")),
                kv(SERVICE_ATTRIBUTE, string("a second one is not the service")),
                kv("rpc.grpc.status_code", Value::IntValue(0)),
                kv("ratio", Value::DoubleValue(0.25)),
                kv("nested", nested),
                kv("ünïcode ✓", string("ünïcode ✓")),
                // The profiles signal's dictionary references, which traces do not use.
                KeyValue { key_strindex: 3, ..kv("", Value::StringValueStrindex(4)) },
            ],
            dropped_attributes_count: 2,
            events: vec![Event {
                time_unix_nano: 5,
                name: "exception".into(),
                attributes: vec![kv("exception.message", string("boom"))],
                dropped_attributes_count: 1,
            }],
            dropped_events_count: 3,
            links: vec![Link {
                trace_id: vec![2; 16],
                span_id: vec![3; 8],
                trace_state: "a=b".into(),
                attributes: vec![kv("l", Value::BoolValue(true))],
                dropped_attributes_count: 4,
                flags: 1,
            }],
            dropped_links_count: 5,
            status: Some(Status { message: "failed".into(), code: 2 }),
        };
        let plain = Span {
            trace_id: vec![8; 16],
            span_id: vec![2; 8],
            name: "storage.get".into(),
            kind: 1,
            attributes: vec![kv(SERVICE_ATTRIBUTE, Value::IntValue(42))],
            status: Some(Status { message: String::new(), code: 1 }),
            ..Default::default()
        };
        let malformed_ids = Span { trace_id: vec![1; 3], span_id: vec![], name: String::new(), ..Default::default() };
        let resource = Resource {
            attributes: vec![kv("service.name", string("gateway")), kv("host.name", string("h"))],
            dropped_attributes_count: 1,
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(resource),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "meshwork".into(),
                                version: "1".into(),
                                attributes: vec![kv("s", string("t"))],
                                dropped_attributes_count: 0,
                            }),
                            spans: vec![full, plain],
                            schema_url: "https://opentelemetry.io/schemas/1.0".into(),
                        },
                        ScopeSpans { spans: vec![malformed_ids], ..Default::default() },
                    ],
                    schema_url: String::new(),
                },
                ResourceSpans::default(),
            ],
        }
    }

    /// Checks that `index` holds what prost decodes of the same export, span by span.
    fn assert_matches(index: &Index, request: &ExportTraceServiceRequest) {
        assert_eq!(index.resources.len(), request.resource_spans.len());
        for (resource, sent) in index.resources.iter().zip(&request.resource_spans) {
            let attributes = sent.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default();
            assert_eq!(resource.process.attributes[..], attributes[..]);
            let spans: Vec<&Span> = sent.scope_spans.iter().flat_map(|s| &s.spans).collect();
            assert_eq!(resource.spans.len(), spans.len());
            for (got, want) in resource.spans.iter().zip(spans) {
                assert_eq!(&Span::decode(got.encoded.as_ref()).unwrap(), want);
                assert_eq!(got.trace_id.as_ref().map(|i| &i[..]), Some(&want.trace_id[..]).filter(|i| i.len() == 16));
                assert_eq!(got.span_id.as_ref().map(|i| &i[..]), Some(&want.span_id[..]).filter(|i| i.len() == 8));
                assert_eq!(
                    got.parent_span_id.as_ref().map(|i| &i[..]),
                    Some(&want.parent_span_id[..]).filter(|i| i.len() == 8)
                );
                assert_eq!(got.name(), want.name);
                assert_eq!(got.kind, want.kind);
                assert_eq!((got.start_ns, got.end_ns), (want.start_time_unix_nano, want.end_time_unix_nano));
                assert_eq!(got.error, want.status.as_ref().is_some_and(|s| s.code == 2));
                assert_eq!(got.service().map(str::to_string), attribute(&want.attributes, SERVICE_ATTRIBUTE));
                for key in want.attributes.iter().map(|kv| kv.key.as_str()).chain(["absent", ""]) {
                    assert_eq!(got.attribute(key), attribute(&want.attributes, key), "attribute {key:?}");
                }
            }
        }
    }

    #[test]
    fn the_index_holds_what_prost_decodes() {
        let request = export();
        let encoded = Bytes::from(request.encode_to_vec());
        let index = index(&encoded).unwrap();
        assert_eq!(index.resources.len(), 2);
        assert_eq!(index.span_count(), 3);
        let process = &index.resources[0].process;
        assert_eq!(process.service, "gateway");
        assert_eq!(process.attributes[..], request.resource_spans[0].resource.as_ref().unwrap().attributes[..]);
        assert_eq!(index.resources[1].process.service, "unknown_service");
        assert_matches(&index, &request);
        // A resource that names its service "" is shown as one that names none.
        let mut unnamed = request.clone();
        unnamed.resource_spans[0].resource.as_mut().unwrap().attributes[0] = kv("service.name", string(""));
        let encoded = Bytes::from(unnamed.encode_to_vec());
        assert_eq!(super::index(&encoded).unwrap().resources[0].process.service, "unknown_service");
        assert_eq!(index.resources[0].spans[0].service(), Some("urlshortener"));
        assert_eq!(index.resources[0].spans[1].service(), Some("42"));
        assert_eq!(index.resources[0].spans[2].trace_id, None);
    }

    /// Accepts exactly what prost accepts: `index` against prost's decoder on every truncation of
    /// an export and on corruptions of each of its bytes.
    #[test]
    fn malformed_exports_fail_exactly_where_prost_fails() {
        let encoded = export().encode_to_vec();
        let agree = |bytes: Vec<u8>, what: &str| {
            let bytes = Bytes::from(bytes);
            let ours = index(&bytes);
            let prost = ExportTraceServiceRequest::decode(bytes.as_ref());
            assert_eq!(ours.is_ok(), prost.is_ok(), "{what}: ours {ours:?}, prost {prost:?}");
            // What is accepted holds what prost decodes (duplicated fields included).
            if let (Ok(ours), Ok(prost)) = (&ours, &prost) {
                assert_matches(ours, prost);
            }
            ours.is_ok()
        };
        assert!(agree(encoded.clone(), "whole"));
        let mut rejected = 0;
        for len in 0..encoded.len() {
            rejected += usize::from(!agree(encoded[..len].to_vec(), &format!("first {len} bytes")));
        }
        for at in 0..encoded.len() {
            for mask in [0x01, 0x02, 0x04, 0x07, 0x08, 0x10, 0x18, 0x80, 0xc0, 0xff] {
                let mut bytes = encoded.clone();
                bytes[at] ^= mask;
                rejected += usize::from(!agree(bytes, &format!("byte {at} ^ {mask:#x}")));
            }
        }
        // The cases are not all trivially accepted.
        assert!(rejected > encoded.len(), "only {rejected} rejected");
    }

    /// A field: key (`tag` with wire type LEN) and length-prefixed `body`.
    fn len_field(tag: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    /// An `AnyValue` nested `arrays` ArrayValues deep, then once in a KeyValueList when `list`,
    /// around an int value; with an unknown field in the innermost message when `unknown`.
    fn nested_value(arrays: usize, list: bool, unknown: bool) -> Vec<u8> {
        let mut value = vec![0x18, 0x01]; // int_value = 1
        if unknown {
            value.extend_from_slice(&[0xf8, 0x07, 0x00]); // field 127, varint 0
        }
        if list {
            let kv = [len_field(1, b"k"), len_field(2, &value)].concat();
            value = len_field(6, &len_field(1, &kv));
        }
        for _ in 0..arrays {
            value = len_field(5, &len_field(1, &value));
        }
        value
    }

    /// Nesting at prost's recursion limit, in a span's and in a resource's attributes: accepted
    /// exactly where prost accepts it.
    #[test]
    fn nesting_is_accepted_down_to_prosts_limit_and_no_further() {
        let (mut accepted, mut rejected) = (0, 0);
        for arrays in 43..=50 {
            for list in [false, true] {
                for unknown in [false, true] {
                    let attribute = [len_field(1, b"d"), len_field(2, &nested_value(arrays, list, unknown))].concat();
                    let span = [len_field(1, &[7; 16]), len_field(2, &[1; 8]), len_field(9, &attribute)].concat();
                    let in_span = len_field(1, &len_field(2, &len_field(2, &span)));
                    let resource = len_field(1, &len_field(1, &attribute));
                    let in_resource = len_field(1, &[resource, len_field(2, &len_field(2, &span[..28]))].concat());
                    for export in [in_span, in_resource] {
                        let export = Bytes::from(export);
                        let prost = ExportTraceServiceRequest::decode(export.as_ref());
                        let ours = index(&export);
                        assert_eq!(ours.is_ok(), prost.is_ok(), "{arrays} {list} {unknown}: {ours:?} {prost:?}");
                        if ours.is_ok() { accepted += 1 } else { rejected += 1 }
                    }
                }
            }
        }
        assert!(accepted > 10 && rejected > 10, "{accepted} accepted, {rejected} rejected");
    }

    #[test]
    fn spans_of_a_mostly_unknown_export_are_copied_out_of_it() {
        let mut request = export();
        let plain = Bytes::from(request.encode_to_vec());
        let index_of = |bytes: &Bytes| index(bytes).unwrap();
        let shares = |index: &Index, bytes: &Bytes| {
            let range = bytes.as_ptr_range();
            index.resources[0].spans.iter().all(|s| range.contains(&s.encoded.as_ptr()))
        };
        // Spans are most of an ordinary export: kept as slices of it.
        assert!(shares(&index_of(&plain), &plain));
        // A large unknown field (number 99) after them: the spans are copied, unchanged.
        let mut padded = plain.to_vec();
        padded.extend(len_field(99, &vec![0; 64 * 1024]));
        let padded = Bytes::from(padded);
        let index = index_of(&padded);
        assert!(!shares(&index, &padded));
        let spans: Vec<Span> = request.resource_spans.remove(0).scope_spans.into_iter().flat_map(|s| s.spans).collect();
        for (got, want) in index.resources[0].spans.iter().zip(&spans) {
            assert_eq!(&Span::decode(got.encoded.as_ref()).unwrap(), want);
            assert_eq!(got.name(), want.name);
        }
    }

    #[test]
    fn errors_name_the_message_and_the_reason() {
        let mut bad = export();
        bad.resource_spans[0].scope_spans[0].spans[0].attributes[0].value =
            Some(AnyValue { value: Some(Value::StringValue("x".into())) });
        let mut encoded = bad.encode_to_vec();
        // Make the one-byte string "x" invalid UTF-8.
        let at = encoded.windows(2).position(|w| w == [1, b'x']).unwrap();
        encoded[at + 1] = 0xff;
        let err = index(&encoded.into()).unwrap_err();
        assert_eq!(err.to_string(), "AnyValue: a string is not UTF-8");

        // Values nested deeper than prost decodes.
        let mut value = AnyValue { value: Some(Value::IntValue(1)) };
        for _ in 0..120 {
            value = AnyValue { value: Some(Value::ArrayValue(ArrayValue { values: vec![value] })) };
        }
        let mut deep = export();
        deep.resource_spans[0].scope_spans[0].spans[0].attributes.push(KeyValue {
            key: "d".into(),
            value: Some(value),
            ..Default::default()
        });
        let encoded = Bytes::from(deep.encode_to_vec());
        assert!(ExportTraceServiceRequest::decode(encoded.as_ref()).is_err());
        assert!(index(&encoded).unwrap_err().to_string().ends_with("nested too deeply"));
    }
}
