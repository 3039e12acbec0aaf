//! Who calls: the gateway verifies a caller's credential once and hands the services a verified
//! [`Identity`] in one metadata entry, `meshwork-identity`.
//!
//! Credentials are JSON Web Tokens, checked as Envoy's `jwt_authn` filter checks them (compact
//! JWS signed with ES256, RS256 or EdDSA by a key of a JWKS file; `iss`, `aud`, `exp`, `nbf` with
//! a clock-skew leeway; see [`jwt`]), or API keys (`mwk_...`, stored only as SHA-256 hashes; see
//! [`apikey`]). [`DevKeys`] is the local development issuer that `meshwork up` and
//! `meshwork token` use: a P-256 key under `<data-dir>/identity/` and its `jwks.json`.
//!
//! All cryptography is `ring`'s, the library the workspace already compiles in for rustls (and
//! Pingora and tonic). `jsonwebtoken` was weighed and not taken: its 10+ releases need a crypto
//! backend of their own (`aws_lc_rs`, a C build of aws-lc beside ring, or `rust_crypto`, a second
//! crypto stack with the RustCrypto `rsa` crate), 9.x (on ring) no longer gets fixes, and its
//! validation reads the system clock and reports `alg: none` as a generic parse error, so the
//! header checks, the claims checks and the clock would have been ours anyway; what is left,
//! one signature check per algorithm, is a call into ring.
//!
//! Who a TLS endpoint is lives here too: [`TlsIdentity`] (see [`tls`]), a certificate chain, its
//! key and optionally a client CA, read from PEM files and checked once for every TLS user of
//! the mesh.

#![forbid(unsafe_code)]

pub mod apikey;
pub mod dev;
pub mod identity;
pub mod jwks;
pub mod jwt;
pub mod tls;

pub use apikey::{API_KEY_PREFIX, ApiKeyEntry, ApiKeyError, ApiKeyFile, ApiKeyFileError, ApiKeys, generate, hash_key};
pub use dev::{DEV_AUDIENCE, DEV_ISSUER, DevKeyError, DevKeys, parse_ttl};
pub use identity::{IDENTITY_HEADER, Identity, IdentityError, Method};
pub use jwks::{Algorithm, Jwks, JwksError};
pub use jwt::{DEFAULT_LEEWAY, JwtConfig, JwtError, JwtVerifier};
pub use tls::{PemError, TlsFile, TlsFileError, TlsIdentity, TlsIdentityError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as unpadded base64url (RFC 7515 section 2).
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url; padding and the standard alphabet are refused, as RFC 7515 asks.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Checks a role name: 1 to 64 characters of letters, digits, `_`, `-`, `.` and `:`.
pub fn check_role(role: &str) -> Result<(), &'static str> {
    if role.is_empty() || role.len() > MAX_ROLE_LEN {
        return Err("a role must have 1 to 64 characters");
    }
    if !role.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')) {
        return Err("a role may contain only letters, digits, '_', '-', '.' and ':'");
    }
    Ok(())
}

/// Checks a subject: 1 to 256 bytes of printable text (no control characters).
pub fn check_subject(subject: &str) -> Result<(), &'static str> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
        return Err("a subject must have 1 to 256 bytes");
    }
    if subject.chars().any(char::is_control) {
        return Err("a subject may not contain control characters");
    }
    Ok(())
}

/// Longest subject, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;
/// Longest role name, in bytes.
pub const MAX_ROLE_LEN: usize = 64;
/// Most roles one identity carries.
pub const MAX_ROLES: usize = 32;

/// Checks a list of roles (see [`check_role`], at most [`MAX_ROLES`]).
pub fn check_roles(roles: &[String]) -> Result<(), String> {
    if roles.len() > MAX_ROLES {
        return Err(format!("at most {MAX_ROLES} roles, not {}", roles.len()));
    }
    for role in roles {
        check_role(role).map_err(|why| format!("role \"{}\": {why}", role.escape_debug()))?;
    }
    Ok(())
}
