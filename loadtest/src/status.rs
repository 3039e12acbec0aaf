//! gRPC status codes as ghz names them in `statusCodeDistribution` (Go's `codes.Code`
//! strings: `OK`, `Canceled`, `NotFound`, ...), the HTTP-status-to-code mapping of the gRPC
//! spec for responses that are not gRPC, and decoding of `grpc-message`.

/// Number of gRPC status codes (0..=16).
pub const CODES: usize = 17;

/// Go's names of the gRPC status codes, indexed by code.
const NAMES: [&str; CODES] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// `OK`.
pub const OK: u8 = 0;
/// `Canceled`.
pub const CANCELED: u8 = 1;
/// `Unknown`.
pub const UNKNOWN: u8 = 2;
/// `DeadlineExceeded`.
pub const DEADLINE_EXCEEDED: u8 = 4;
/// `Unimplemented`.
pub const UNIMPLEMENTED: u8 = 12;
/// `Internal`.
pub const INTERNAL: u8 = 13;
/// `Unavailable`.
pub const UNAVAILABLE: u8 = 14;

/// Returns Go's name of `code` (`Unknown` for codes outside 0..=16).
pub fn name(code: u8) -> &'static str {
    NAMES.get(usize::from(code)).copied().unwrap_or("Unknown")
}

/// Parses a `grpc-status` value; anything unparsable or out of range is `Unknown`.
pub fn parse(value: &[u8]) -> u8 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok())
        .filter(|c| usize::from(*c) < CODES)
        .unwrap_or(UNKNOWN)
}

/// Maps the HTTP status of a response without `grpc-status` to a gRPC code (gRPC's
/// "HTTP to gRPC status code mapping").
pub fn from_http(status: u16) -> u8 {
    match status {
        400 => INTERNAL,
        401 => 16,
        403 => 7,
        404 => UNIMPLEMENTED,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// Decodes a percent-encoded `grpc-message`.
pub fn decode_message(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Returns the error text ghz puts in `errorDistribution` (grpc-go's status error string).
pub fn error_text(code: u8, message: &str) -> String {
    format!("rpc error: code = {} desc = {}", name(code), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_go() {
        assert_eq!(name(0), "OK");
        assert_eq!(name(1), "Canceled");
        assert_eq!(name(5), "NotFound");
        assert_eq!(name(14), "Unavailable");
        assert_eq!(name(99), "Unknown");
    }

    #[test]
    fn parses_and_decodes() {
        assert_eq!(parse(b"5"), 5);
        assert_eq!(parse(b"x"), UNKNOWN);
        assert_eq!(parse(b"17"), UNKNOWN);
        assert_eq!(decode_message(b"code%20not%20found"), "code not found");
        assert_eq!(decode_message(b"100%"), "100%");
        assert_eq!(from_http(503), UNAVAILABLE);
    }
}
