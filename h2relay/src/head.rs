//! Request heads: checked once (RFC 9113 §8.2-8.3), the fields the relay needs pulled out, the
//! rest kept as (name, value) bytes and re-encoded for the upstream connection.

use bytes::Bytes;

use crate::hpack::HeaderList;
use crate::relay::Route;

/// A decoded request head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// The downstream stream id.
    pub stream_id: u32,
    pub method: Bytes,
    pub scheme: Bytes,
    pub authority: Bytes,
    pub path: Bytes,
    pub content_type: Option<Bytes>,
    pub grpc_timeout: Option<Bytes>,
    pub te: Option<Bytes>,
    /// Every other regular header, in order.
    pub headers: HeaderList,
    /// Whether the HEADERS frame ended the stream (no request body).
    pub end_stream: bool,
}

impl RequestHead {
    /// The first value of a regular header.
    pub fn header(&self, name: &[u8]) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Whether the request is gRPC (`content-type: application/grpc` or `application/grpc+...`).
    pub fn is_grpc(&self) -> bool {
        self.content_type.as_ref().is_some_and(|ct| {
            ct.starts_with(b"application/grpc") && matches!(ct.get(16), None | Some(b'+') | Some(b';'))
        })
    }
}

/// Why a request head is malformed (answered with RST_STREAM(PROTOCOL_ERROR)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Headers that HTTP/2 forbids (RFC 9113 §8.2.2).
fn connection_specific(name: &[u8]) -> bool {
    matches!(name, b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade")
}

/// Bytes allowed in a field name after its first (RFC 9110 token characters, lowercase).
const NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        c += 1;
    }
    t
};

/// Checks a field name (lowercase token characters) and value (no NUL, CR, LF; no
/// leading or trailing whitespace).
pub fn valid_field(name: &[u8], value: &[u8]) -> bool {
    let name_ok = match name.split_first() {
        None => false,
        Some((&first, rest)) => {
            (first == b':' || NAME[usize::from(first)]) && rest.iter().all(|&c| NAME[usize::from(c)])
        }
    };
    let value_ok = !value.iter().any(|&c| c == 0 || c == b'\r' || c == b'\n')
        && !value.first().is_some_and(|&c| c == b' ' || c == b'\t')
        && !value.last().is_some_and(|&c| c == b' ' || c == b'\t');
    name_ok && value_ok
}

/// Builds a request head from a decoded list.
pub fn parse_request(stream_id: u32, fields: HeaderList, end_stream: bool) -> Result<RequestHead, Malformed> {
    let mut head = RequestHead { stream_id, end_stream, ..RequestHead::default() };
    let (mut method, mut scheme, mut path, mut authority) = (None, None, None, None);
    let mut regular = false;
    head.headers.reserve(fields.len());
    for (name, value) in fields {
        if !valid_field(&name, &value) {
            return Err(Malformed("invalid field name or value"));
        }
        if name.first() == Some(&b':') {
            if regular {
                return Err(Malformed("pseudo-header after a regular header"));
            }
            let slot = match &name[..] {
                b":method" => &mut method,
                b":scheme" => &mut scheme,
                b":path" => &mut path,
                b":authority" => &mut authority,
                _ => return Err(Malformed("unknown pseudo-header")),
            };
            if slot.replace(value).is_some() {
                return Err(Malformed("repeated pseudo-header"));
            }
            continue;
        }
        regular = true;
        match &name[..] {
            n if connection_specific(n) => return Err(Malformed("connection-specific header")),
            b"te" => {
                if &value[..] != b"trailers" {
                    return Err(Malformed("te other than trailers"));
                }
                head.te = Some(value);
            }
            b"content-type" if head.content_type.is_none() => head.content_type = Some(value),
            b"grpc-timeout" if head.grpc_timeout.is_none() => head.grpc_timeout = Some(value),
            b"host" if authority.is_none() => authority = Some(value),
            _ => head.headers.push((name, value)),
        }
    }
    head.method = method.ok_or(Malformed("no :method"))?;
    if &head.method[..] == b"CONNECT" {
        return Err(Malformed("CONNECT is not relayed"));
    }
    head.scheme = scheme.ok_or(Malformed("no :scheme"))?;
    head.path = path.filter(|p| !p.is_empty()).ok_or(Malformed("no :path"))?;
    head.authority = authority.unwrap_or_default();
    Ok(head)
}

/// The upstream request's header list: pseudo-headers, the fields the relay pulled out, then
/// the rest with the route's edits applied.
pub fn upstream_fields(head: &RequestHead, route: &Route, scheme: &Bytes) -> HeaderList {
    let mut out = HeaderList::with_capacity(head.headers.len() + 8 + route.add_headers.len());
    out.push((Bytes::from_static(b":method"), head.method.clone()));
    out.push((Bytes::from_static(b":scheme"), scheme.clone()));
    out.push((Bytes::from_static(b":path"), head.path.clone()));
    let authority = route.authority.as_ref().unwrap_or(&head.authority);
    if !authority.is_empty() {
        out.push((Bytes::from_static(b":authority"), authority.clone()));
    }
    let removed = |name: &[u8]| route.remove_headers.iter().any(|r| r == name);
    let pulled = [("content-type", &head.content_type), ("te", &head.te), ("grpc-timeout", &head.grpc_timeout)];
    for (name, value) in pulled {
        if let Some(v) = value
            && !removed(name.as_bytes())
        {
            out.push((Bytes::from_static(name.as_bytes()), v.clone()));
        }
    }
    out.extend(head.headers.iter().filter(|(n, _)| !removed(n)).cloned());
    out.extend(route.add_headers.iter().cloned());
    out
}

/// Checks a response head or trailers from an upstream before it is re-encoded downstream:
/// drops connection-specific headers, refuses invalid fields.
pub fn sanitize_response(fields: &mut HeaderList) -> Result<(), Malformed> {
    if fields.iter().any(|(n, v)| !valid_field(n, v)) {
        return Err(Malformed("invalid response field"));
    }
    fields.retain(|(n, _)| !connection_specific(n));
    Ok(())
}

/// A trailers-only gRPC response (status 200, grpc-status, grpc-message).
pub fn trailers_only(grpc_status: u32, message: &str) -> HeaderList {
    let mut out = vec![
        (Bytes::from_static(b":status"), Bytes::from_static(b"200")),
        (Bytes::from_static(b"content-type"), Bytes::from_static(b"application/grpc")),
        (Bytes::from_static(b"grpc-status"), Bytes::from(grpc_status.to_string())),
    ];
    if !message.is_empty() {
        out.push((Bytes::from_static(b"grpc-message"), percent_encode(message)));
    }
    out
}

/// Percent-encodes a grpc-message (gRPC HTTP/2 protocol: bytes outside 0x20-0x7E and `%`).
pub fn percent_encode(message: &str) -> Bytes {
    let mut out = Vec::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> HeaderList {
        list.iter().map(|(n, v)| (Bytes::copy_from_slice(n.as_bytes()), Bytes::copy_from_slice(v.as_bytes()))).collect()
    }

    #[test]
    fn parses_a_grpc_request() {
        let head = parse_request(
            1,
            fields(&[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/a.B/C"),
                (":authority", "x:1"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-timeout", "5S"),
                ("x-user", "u"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(head.path, "/a.B/C");
        assert_eq!(head.grpc_timeout.as_deref(), Some(&b"5S"[..]));
        assert!(head.is_grpc());
        assert_eq!(head.header(b"x-user").unwrap(), "u");
        assert_eq!(head.headers.len(), 1);
    }

    #[test]
    fn refuses_malformed_heads() {
        let base = [(":method", "POST"), (":scheme", "http"), (":path", "/p")];
        let with = |extra: &[(&str, &str)]| {
            let mut f = fields(&base);
            f.extend(fields(extra));
            parse_request(1, f, true)
        };
        assert!(with(&[]).is_ok());
        assert!(with(&[("connection", "close")]).is_err());
        assert!(with(&[("te", "gzip")]).is_err());
        assert!(with(&[("X-Upper", "1")]).is_err());
        assert!(with(&[("x-a", "bad\r\nvalue")]).is_err());
        assert!(with(&[("x-a", "1"), (":path", "/q")]).is_err());
        assert!(with(&[(":method", "GET")]).is_err());
        assert!(with(&[(":foo", "1")]).is_err());
        assert!(parse_request(1, fields(&[(":method", "POST"), (":scheme", "http")]), true).is_err());
    }

    #[test]
    fn encodes_grpc_messages() {
        assert_eq!(percent_encode("no upstream: 100%"), "no upstream: 100%25");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
