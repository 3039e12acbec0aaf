//! gRPC-Web at the edges of a gRPC call, and CORS for it.
//!
//! A gRPC-Web call (`content-type: application/grpc-web[+proto]`, or the base64 variant
//! `application/grpc-web-text[+proto]`) takes the same path through the gateway as a native gRPC
//! call; only its edges are translated (gRPC's `PROTOCOL-WEB.md`): the upstream gets
//! `application/grpc[+proto]` and `te: trailers` (a text request body is base64-decoded on the way),
//! the response gets the request's gRPC-Web content type back, and the upstream's HTTP/2 trailers
//! become a final body frame (flag byte 0x80, then `name:value\r\n` lines), which is the only way a
//! browser, or any HTTP/1.1 client, can see them. A text response is base64-encoded chunk by
//! chunk, each chunk padded (the spec allows padding inside the stream). Trailers-only answers
//! keep `grpc-status` in the headers and have an empty body, as Envoy sends them and as the
//! grpc-web JS client expects.
//!
//! Cross-origin browser pages need CORS: [`Cors`] answers preflight `OPTIONS` requests and adds
//! `Access-Control-Allow-Origin` (the request's origin, echoed when allowed, with `Vary: Origin`)
//! and `Access-Control-Expose-Headers` to gRPC-Web answers. Native gRPC calls pay nothing for any
//! of this: they are recognised first, and no gRPC-Web state exists for them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};
use pingora_http::ResponseHeader;
use tonic::Code;

use crate::config::CorsConfig;
use crate::grpc_errors::{grpc_message_value, grpc_status_value};

/// Flag byte of a gRPC-Web trailer frame (uncompressed).
const TRAILER_FLAG: u8 = 0x80;

/// Request headers a browser may always send on a gRPC-Web call.
const ALLOW_HEADERS: &[&str] = &[
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "authorization",
    "keep-alive",
    "x-accept-content-transfer-encoding",
    "x-accept-response-streaming",
    // W3C trace context, so that a page's own span is the parent of the call's trace.
    "traceparent",
    "tracestate",
];

/// Response headers (and trailers-only "trailers") a page may always read.
const EXPOSE_HEADERS: &[&str] = &["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// How the call's messages travel between the browser and the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebMode {
    /// `application/grpc-web[+proto]`: the same bytes as gRPC.
    Binary,
    /// `application/grpc-web-text[+proto]`: base64 in both directions.
    Text,
}

/// Classifies a request `content-type` (case-insensitively): gRPC-Web binary, gRPC-Web text, or
/// neither. Returns the mode and the rest after the prefix (`+proto`, `;charset=..`, or empty).
pub fn web_mode(content_type: &[u8]) -> Option<(WebMode, &[u8])> {
    const WEB: &[u8] = b"application/grpc-web";
    if content_type.len() < WEB.len() || !content_type[..WEB.len()].eq_ignore_ascii_case(WEB) {
        return None;
    }
    let rest = &content_type[WEB.len()..];
    let (mode, rest) = match rest.get(..5) {
        Some(text) if text.eq_ignore_ascii_case(b"-text") => (WebMode::Text, &rest[5..]),
        _ => (WebMode::Binary, rest),
    };
    match rest.first() {
        None | Some(b'+') | Some(b';') => Some((mode, rest)),
        Some(_) => None,
    }
}

/// The state of one gRPC-Web call.
#[derive(Debug)]
pub struct WebCall {
    /// Binary or text.
    pub mode: WebMode,
    /// `application/grpc<suffix>`, for the upstream request.
    pub upstream_content_type: HeaderValue,
    /// `application/grpc-web[-text]<suffix>`, for the response.
    pub response_content_type: HeaderValue,
    /// The request's `Origin` when CORS allows it (echoed in `Access-Control-Allow-Origin`).
    pub allowed_origin: Option<HeaderValue>,
    /// The text request body was not valid base64 (the call ends INVALID_ARGUMENT).
    pub invalid_request: bool,
    /// Base64 characters of a text request body that do not yet make a whole 4-character group.
    pending: Vec<u8>,
}

impl WebCall {
    /// Starts a call of `mode`; `suffix` is what followed the gRPC-Web content-type prefix.
    pub fn new(mode: WebMode, suffix: &[u8], allowed_origin: Option<HeaderValue>) -> Self {
        let suffix = String::from_utf8_lossy(suffix).to_ascii_lowercase();
        let web = match mode {
            WebMode::Binary => "application/grpc-web",
            WebMode::Text => "application/grpc-web-text",
        };
        // The suffix came from a valid header value, lower-cased: still a valid value.
        let value = |s: String| HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("application/grpc"));
        Self {
            mode,
            upstream_content_type: value(format!("application/grpc{suffix}")),
            response_content_type: value(format!("{web}{suffix}")),
            allowed_origin,
            invalid_request: false,
            pending: Vec::new(),
        }
    }

    /// Decodes the next piece of a text request body (pieces need not align with base64 groups;
    /// padding may appear after any group). With `end`, a partial group left over is an error.
    pub fn decode_request(&mut self, chunk: &[u8], end: bool) -> Result<Bytes, InvalidBase64> {
        let mut input = std::mem::take(&mut self.pending);
        input.extend(chunk.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        let whole = input.len() - input.len() % 4;
        let mut out = BytesMut::with_capacity(whole / 4 * 3);
        let mut start = 0;
        for group in (0..whole).step_by(4) {
            // A padded group ends a base64 run; decode each run on its own.
            if input[group + 3] == b'=' || group + 4 == whole {
                let run = &input[start..group + 4];
                let decoded = STANDARD.decode(run).map_err(|_| InvalidBase64)?;
                out.extend_from_slice(&decoded);
                start = group + 4;
            }
        }
        self.pending = input.split_off(whole);
        if end && !self.pending.is_empty() {
            return Err(InvalidBase64);
        }
        Ok(out.freeze())
    }

    /// Encodes a response piece for the downstream (base64 in text mode).
    pub fn encode_response(&self, bytes: &[u8]) -> Bytes {
        match self.mode {
            WebMode::Binary => Bytes::copy_from_slice(bytes),
            WebMode::Text => Bytes::from(STANDARD.encode(bytes)),
        }
    }

    /// The final body frame carrying `trailers`, encoded for the downstream.
    pub fn trailer_frame(&self, trailers: &HeaderMap) -> Bytes {
        let frame = trailer_frame(trailers);
        match self.mode {
            WebMode::Binary => frame,
            WebMode::Text => Bytes::from(STANDARD.encode(&frame)),
        }
    }
}

/// A text request body that is not valid base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase64;

/// Encodes trailers as a gRPC-Web trailer frame: 0x80, a 4-byte big-endian length, then one
/// `name:value\r\n` line per entry (names are lower-case in a `HeaderMap`).
pub fn trailer_frame(trailers: &HeaderMap) -> Bytes {
    let len: usize = trailers.iter().map(|(k, v)| k.as_str().len() + v.len() + 3).sum();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(TRAILER_FLAG);
    // Trailers are bounded by the HTTP/2 header list limits, far below 4 GiB.
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    for (name, value) in trailers {
        buf.put_slice(name.as_str().as_bytes());
        buf.put_u8(b':');
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
    buf.freeze()
}

/// CORS for gRPC-Web: which origins may call, and the header values of the answers (built once).
#[derive(Debug)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<HeaderValue>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
    allow_credentials: bool,
}

impl Cors {
    /// Builds the CORS policy from a validated configuration.
    pub fn new(config: &CorsConfig) -> Self {
        let list = |base: &[&str], extra: &[String]| {
            let mut all: Vec<&str> = base.to_vec();
            all.extend(extra.iter().map(String::as_str).filter(|h| !base.contains(h)));
            // Validated names joined by ", " are a valid header value.
            HeaderValue::from_str(&all.join(", ")).unwrap_or(HeaderValue::from_static(""))
        };
        Self {
            any_origin: config.allowed_origins.iter().any(|o| o == "*"),
            origins: config.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect(),
            allow_methods: HeaderValue::from_static("POST, OPTIONS"),
            allow_headers: list(ALLOW_HEADERS, &config.allow_headers),
            expose_headers: list(EXPOSE_HEADERS, &config.expose_headers),
            max_age: HeaderValue::from(config.max_age_seconds),
            allow_credentials: config.allow_credentials,
        }
    }

    /// Returns the request's `Origin` when it may call the gateway, else `None`.
    pub fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        (self.any_origin || self.origins.iter().any(|o| o == origin)).then(|| origin.clone())
    }

    /// Adds the headers of an actual (non-preflight) answer for an allowed origin.
    pub fn apply(&self, resp: &mut ResponseHeader, origin: &HeaderValue) -> pingora_core::Result<()> {
        resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())?;
        resp.append_header(header::VARY, HeaderValue::from_static("Origin"))?;
        resp.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, self.expose_headers.clone())?;
        if self.allow_credentials {
            resp.insert_header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"))?;
        }
        Ok(())
    }

    /// The headers of a preflight answer for an allowed origin.
    pub fn preflight(&self, origin: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = vec![
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
            (header::VARY, HeaderValue::from_static("Origin")),
            (header::ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone()),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone()),
            (header::ACCESS_CONTROL_EXPOSE_HEADERS, self.expose_headers.clone()),
            (header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()),
        ];
        if self.allow_credentials {
            headers.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true")));
        }
        headers
    }
}

/// A trailers-only gRPC-Web answer made by the gateway: HTTP 200, the call's gRPC-Web content
/// type, `grpc-status` and `grpc-message` in the headers, an empty body (`content-length: 0`), and
/// the CORS headers when the origin is allowed.
pub fn trailers_only(
    call: &WebCall,
    cors: Option<&Cors>,
    code: Code,
    message: &str,
) -> pingora_core::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(8))?;
    resp.insert_header(header::CONTENT_TYPE, call.response_content_type.clone())?;
    resp.insert_header("grpc-status", grpc_status_value(code))?;
    resp.insert_header("grpc-message", grpc_message_value(message))?;
    resp.insert_header(header::CONTENT_LENGTH, HeaderValue::from_static("0"))?;
    if let (Some(cors), Some(origin)) = (cors, &call.allowed_origin) {
        cors.apply(&mut resp, origin)?;
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_classified() {
        assert_eq!(web_mode(b"application/grpc-web"), Some((WebMode::Binary, &b""[..])));
        assert_eq!(web_mode(b"application/grpc-web+proto"), Some((WebMode::Binary, &b"+proto"[..])));
        assert_eq!(web_mode(b"application/grpc-web-text"), Some((WebMode::Text, &b""[..])));
        assert_eq!(web_mode(b"Application/gRPC-Web-Text+proto"), Some((WebMode::Text, &b"+proto"[..])));
        assert_eq!(web_mode(b"application/grpc-web;charset=utf-8"), Some((WebMode::Binary, &b";charset=utf-8"[..])));
        assert_eq!(web_mode(b"application/grpc"), None);
        assert_eq!(web_mode(b"application/grpc+proto"), None);
        assert_eq!(web_mode(b"application/grpc-webx"), None);
        assert_eq!(web_mode(b"application/grpc-web-textual"), None);
        assert_eq!(web_mode(b""), None);
    }

    #[test]
    fn content_types_are_translated() {
        let call = WebCall::new(WebMode::Text, b"+PROTO", None);
        assert_eq!(call.upstream_content_type, "application/grpc+proto");
        assert_eq!(call.response_content_type, "application/grpc-web-text+proto");
        let call = WebCall::new(WebMode::Binary, b"", None);
        assert_eq!(call.upstream_content_type, "application/grpc");
        assert_eq!(call.response_content_type, "application/grpc-web");
    }

    #[test]
    fn base64_request_in_odd_chunks() {
        let body: Vec<u8> = (0u8..=200).collect();
        let text = STANDARD.encode(&body);
        for size in [1, 2, 3, 5, 7, 13, 1000] {
            let mut call = WebCall::new(WebMode::Text, b"", None);
            let mut out = Vec::new();
            let chunks: Vec<&[u8]> = text.as_bytes().chunks(size).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                out.extend_from_slice(&call.decode_request(chunk, i + 1 == chunks.len()).unwrap());
            }
            assert_eq!(out, body, "chunks of {size}");
        }
    }

    #[test]
    fn base64_request_with_inner_padding() {
        // Two separately padded runs, as a client that flushes per message may send.
        let text = format!("{}{}", STANDARD.encode(b"ab"), STANDARD.encode(b"cde"));
        let mut call = WebCall::new(WebMode::Text, b"", None);
        assert_eq!(&call.decode_request(text.as_bytes(), true).unwrap()[..], b"abcde");
    }

    #[test]
    fn invalid_base64_is_rejected() {
        let mut call = WebCall::new(WebMode::Text, b"", None);
        assert_eq!(call.decode_request(b"AA*A", false), Err(InvalidBase64));
        let mut call = WebCall::new(WebMode::Text, b"", None);
        assert_eq!(call.decode_request(b"AAAAA", false).unwrap().len(), 3);
        assert_eq!(call.decode_request(b"", true), Err(InvalidBase64), "a partial group at the end");
        let mut call = WebCall::new(WebMode::Text, b"", None);
        assert_eq!(call.decode_request(b"A===", true), Err(InvalidBase64));
    }

    #[test]
    fn trailer_frame_layout() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("5"));
        trailers.insert("grpc-message", HeaderValue::from_static("no such code"));
        trailers.insert("meshwork-link-state", HeaderValue::from_static("expired"));
        let frame = trailer_frame(&trailers);
        assert_eq!(frame[0], 0x80);
        let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 5);
        assert_eq!(
            std::str::from_utf8(&frame[5..]).unwrap(),
            "grpc-status:5\r\ngrpc-message:no such code\r\nmeshwork-link-state:expired\r\n"
        );
        let text = WebCall::new(WebMode::Text, b"", None).trailer_frame(&trailers);
        assert_eq!(STANDARD.decode(&text).unwrap(), frame);
    }

    #[test]
    fn cors_allows_listed_origins_only() {
        let config = CorsConfig {
            allowed_origins: vec!["https://app.example".into()],
            allow_headers: vec!["x-client-id".into(), "content-type".into()],
            expose_headers: vec!["meshwork-link-state".into()],
            ..CorsConfig::default()
        };
        let cors = Cors::new(&config);
        let good = HeaderValue::from_static("https://app.example");
        assert_eq!(cors.allow(Some(&good)), Some(good.clone()));
        assert_eq!(cors.allow(Some(&HeaderValue::from_static("https://evil.example"))), None);
        assert_eq!(cors.allow(None), None);
        let preflight = cors.preflight(&good);
        let get = |name: HeaderName| preflight.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_str().unwrap());
        assert_eq!(get(header::ACCESS_CONTROL_ALLOW_METHODS), Some("POST, OPTIONS"));
        let allow = get(header::ACCESS_CONTROL_ALLOW_HEADERS).unwrap();
        assert!(allow.contains("x-grpc-web") && allow.ends_with("x-client-id"), "{allow}");
        assert!(allow.contains("traceparent") && allow.contains("tracestate"), "{allow}");
        assert_eq!(allow.matches("content-type").count(), 1, "{allow}");
        assert_eq!(
            get(header::ACCESS_CONTROL_EXPOSE_HEADERS),
            Some("grpc-status, grpc-message, grpc-status-details-bin, meshwork-link-state")
        );
        let any = Cors::new(&CorsConfig { allowed_origins: vec!["*".into()], ..CorsConfig::default() });
        let origin = HeaderValue::from_static("http://127.0.0.1:3000");
        assert_eq!(any.allow(Some(&origin)), Some(origin));
    }

    #[test]
    fn gateway_answer_is_trailers_only_with_cors() {
        let cors = Cors::new(&CorsConfig { allowed_origins: vec!["*".into()], ..CorsConfig::default() });
        let call = WebCall::new(WebMode::Text, b"+proto", Some(HeaderValue::from_static("http://a.example")));
        let resp = trailers_only(&call, Some(&cors), Code::Unimplemented, "unknown service x.Y").unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.headers["content-type"], "application/grpc-web-text+proto");
        assert_eq!(resp.headers["grpc-status"], "12");
        assert_eq!(resp.headers["content-length"], "0");
        assert_eq!(resp.headers["access-control-allow-origin"], "http://a.example");
        assert_eq!(resp.headers["vary"], "Origin");
    }
}
