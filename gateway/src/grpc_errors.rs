//! gRPC-shaped error answers and small plain-text HTTP answers.
//!
//! gRPC clients never get an HTML error page from the gateway: a failure is an HTTP 200 with
//! `content-type: application/grpc` and a `grpc-status` / `grpc-message` pair. Before any
//! response byte went out this is a trailers-only response (one HEADERS frame that ends the
//! stream); after the upstream's headers went out it is a trailers frame.

use bytes::Bytes;
use http::HeaderMap;
use http::header::HeaderValue;
use pingora_http::ResponseHeader;
use tonic::Code;

/// Whether a request `content-type` is native gRPC (`application/grpc`, `application/grpc+proto`,
/// `application/grpc;...`); gRPC-Web (`application/grpc-web...`) is not.
pub fn is_grpc_content_type(content_type: &[u8]) -> bool {
    match content_type.strip_prefix(b"application/grpc") {
        Some(rest) => rest.is_empty() || rest[0] == b'+' || rest[0] == b';',
        None => false,
    }
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 spec requires (bytes outside
/// 0x20..=0x7E and `%` itself).
pub fn encode_grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `grpc-status` value of `code`.
pub fn grpc_status_value(code: Code) -> HeaderValue {
    HeaderValue::from(code as i32)
}

/// The `grpc-message` value of `message` (percent-encoded).
pub fn grpc_message_value(message: &str) -> HeaderValue {
    // After percent-encoding only visible ASCII and spaces remain, which is always a valid value.
    HeaderValue::from_str(&encode_grpc_message(message)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A trailers-only gRPC response header: HTTP 200, `content-type: application/grpc`,
/// `grpc-status: code`, `grpc-message: message`. With `http1` a `content-length: 0` is added so
/// that HTTP/1.1 clients see the end of the response.
pub fn trailers_only(code: Code, message: &str, http1: bool) -> pingora_core::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"))?;
    resp.insert_header("grpc-status", grpc_status_value(code))?;
    resp.insert_header("grpc-message", grpc_message_value(message))?;
    if http1 {
        resp.insert_header(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"))?;
    }
    Ok(resp)
}

/// A gRPC trailers block with `grpc-status` and `grpc-message`.
pub fn trailers(code: Code, message: &str) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(2);
    map.insert("grpc-status", grpc_status_value(code));
    map.insert("grpc-message", grpc_message_value(message));
    map
}

/// The gRPC code a client derives from a non-200 HTTP status (gRPC's
/// `http-grpc-status-mapping.md`).
pub fn grpc_code_for_http_status(status: u16) -> Code {
    match status {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// A small `text/plain` response: header (with content-length) and body.
pub fn text_response(status: u16, body: &str) -> pingora_core::Result<(ResponseHeader, Bytes)> {
    let body = Bytes::from(format!("{body}\n"));
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))?;
    resp.insert_header(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()))?;
    resp.insert_header(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"))?;
    Ok((resp, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(is_grpc_content_type(b"application/grpc;charset=utf-8"));
        assert!(!is_grpc_content_type(b"application/grpc-web"));
        assert!(!is_grpc_content_type(b"application/grpc-web-text+proto"));
        assert!(!is_grpc_content_type(b"text/html"));
        assert!(!is_grpc_content_type(b""));
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_grpc_message("unknown service a.B"), "unknown service a.B");
        assert_eq!(encode_grpc_message("100% é\n"), "100%25 %C3%A9%0A");
    }

    #[test]
    fn trailers_only_header_shape() {
        let resp = trailers_only(Code::Unimplemented, "unknown service x.Y", true).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.headers["content-type"], "application/grpc");
        assert_eq!(resp.headers["grpc-status"], "12");
        assert_eq!(resp.headers["grpc-message"], "unknown service x.Y");
        assert_eq!(resp.headers["content-length"], "0");
        let resp = trailers_only(Code::Unavailable, "down", false).unwrap();
        assert_eq!(resp.headers["grpc-status"], "14");
        assert!(resp.headers.get("content-length").is_none());
    }

    #[test]
    fn http_status_mapping() {
        assert_eq!(grpc_code_for_http_status(502), Code::Unavailable);
        assert_eq!(grpc_code_for_http_status(404), Code::Unimplemented);
        assert_eq!(grpc_code_for_http_status(500), Code::Unknown);
    }
}
