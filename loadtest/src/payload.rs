//! Request bodies and metadata from `-d`/`-m`: JSON (optionally a template) turned into a
//! length-prefixed protobuf message through the method's input descriptor. Data without
//! per-request template actions is encoded once and the same `Bytes` is sent every time; a
//! JSON array sends its elements in turn (ghz's behaviour for unary calls).

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use rand::Rng;

use crate::Error;
use crate::template::{CallData, MethodNames, Template};

/// Encodes `message` as one gRPC message frame (no compression).
pub fn frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    // Encoding into a buffer with enough capacity cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// Parses JSON `text` into a message of type `desc`.
pub fn from_json(desc: &MessageDescriptor, text: &str) -> Result<DynamicMessage, Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let msg = DynamicMessage::deserialize(desc.clone(), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| Error::Data { message: desc.full_name().to_string(), reason: e.to_string() })?;
    Ok(msg)
}

/// Encodes rendered JSON `text` (an object, or an array of objects) into frames.
fn encode_all(desc: &MessageDescriptor, text: &str) -> Result<Vec<Bytes>, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(vec![frame(&DynamicMessage::new(desc.clone()))]);
    }
    if text.starts_with('[') {
        let items: Vec<serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| Error::Data { message: desc.full_name().to_string(), reason: e.to_string() })?;
        if items.is_empty() {
            return Err(Error::Data { message: desc.full_name().to_string(), reason: "empty array".into() });
        }
        return items.iter().map(|v| from_json(desc, &v.to_string()).map(|m| frame(&m))).collect();
    }
    Ok(vec![frame(&from_json(desc, text)?)])
}

#[derive(Debug, Clone)]
enum Body {
    Fixed(Vec<Bytes>),
    PerRequest(Template),
}

/// The bodies of one call: fixed (encoded once) or rendered per request.
#[derive(Debug, Clone)]
pub struct Payload {
    body: Body,
    desc: MessageDescriptor,
    names: MethodNames,
}

impl Payload {
    /// Prepares `data` (JSON, possibly templated) for requests of type `desc`; a fixed body is
    /// encoded now and a templated one is rendered once to check it.
    pub fn new(desc: MessageDescriptor, names: MethodNames, data: &str) -> Result<Payload, Error> {
        let template = Template::parse(data)?;
        let mut rng = rand::rng();
        let mut text = String::new();
        template.render(&names, CallData { request_number: 0, worker_id: 0, key: Some("key") }, &mut rng, &mut text);
        let encoded = encode_all(&desc, &text)?;
        let body = if template.is_per_request() { Body::PerRequest(template) } else { Body::Fixed(encoded) };
        Ok(Payload { body, desc, names })
    }

    /// Returns true when every request carries the same pre-encoded body.
    pub fn is_fixed(&self) -> bool {
        matches!(self.body, Body::Fixed(_))
    }

    /// Returns true when the data refers to the scenario key (`{{.Key}}`).
    pub fn uses_key(&self) -> bool {
        matches!(&self.body, Body::PerRequest(t) if t.uses_key())
    }

    /// Returns the framed body of one request.
    pub fn body(&self, call: CallData<'_>, rng: &mut impl Rng, scratch: &mut String) -> Result<Bytes, Error> {
        match &self.body {
            Body::Fixed(frames) => Ok(frames[(call.request_number % frames.len() as u64) as usize].clone()),
            Body::PerRequest(t) => {
                scratch.clear();
                t.render(&self.names, call, rng, scratch);
                let mut frames = encode_all(&self.desc, scratch)?;
                let i = (call.request_number % frames.len() as u64) as usize;
                Ok(frames.swap_remove(i))
            }
        }
    }
}

/// Call metadata from `-m` (a JSON object of strings, possibly templated).
#[derive(Debug, Clone)]
pub enum Metadata {
    /// The same headers on every request.
    Fixed(HeaderMap),
    /// Headers rendered per request.
    PerRequest(Template, MethodNames),
}

impl Metadata {
    /// Parses `-m`; `None` means no metadata.
    pub fn new(raw: Option<&str>, names: MethodNames) -> Result<Metadata, Error> {
        let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
            return Ok(Metadata::Fixed(HeaderMap::new()));
        };
        let template = Template::parse(raw)?;
        let mut text = String::new();
        template.render(
            &names,
            CallData { request_number: 0, worker_id: 0, key: Some("key") },
            &mut rand::rng(),
            &mut text,
        );
        let fixed = headers(&text)?;
        Ok(if template.is_per_request() { Metadata::PerRequest(template, names) } else { Metadata::Fixed(fixed) })
    }

    /// Returns the headers of one request.
    pub fn headers(
        &self,
        call: CallData<'_>,
        rng: &mut impl Rng,
        scratch: &mut String,
    ) -> Result<Option<HeaderMap>, Error> {
        match self {
            Metadata::Fixed(h) if h.is_empty() => Ok(None),
            Metadata::Fixed(h) => Ok(Some(h.clone())),
            Metadata::PerRequest(t, names) => {
                scratch.clear();
                t.render(names, call, rng, scratch);
                headers(scratch).map(Some)
            }
        }
    }

    /// Returns the fixed headers, if the metadata is the same for every request.
    pub fn fixed(&self) -> Option<&HeaderMap> {
        match self {
            Metadata::Fixed(h) => Some(h),
            Metadata::PerRequest(..) => None,
        }
    }
}

fn headers(text: &str) -> Result<HeaderMap, Error> {
    let bad = |reason: String| Error::Config(format!("-m metadata: {reason}"));
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut out = HeaderMap::new();
    for (k, v) in map {
        let value = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(|e| bad(format!("{k:?}: {e}")))?;
        let value = HeaderValue::from_str(&value).map_err(|e| bad(format!("{k:?}: {e}")))?;
        out.append(name, value);
    }
    Ok(out)
}
