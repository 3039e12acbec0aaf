//! JSON Web Key Sets (RFC 7517): the public keys that tokens may be signed with.
//!
//! Keys of the supported kinds are kept: `EC` on `P-256` (ES256), `RSA` of 2048 to 8192 bits
//! (RS256) and `OKP` on `Ed25519` (EdDSA). Keys marked for encryption (`"use": "enc"`), keys of
//! other kinds or curves (symmetric `oct` keys among them: shared-secret algorithms are never
//! accepted) and keys whose `alg` names another algorithm are skipped, as Envoy skips them; a
//! key of a supported kind whose members are broken is an error, and so is a set with no usable
//! key, so that a bad file is found when it is loaded, not at the first call.

use std::path::Path;

use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;

use crate::b64url_decode;

/// Largest JWKS file read, in bytes.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;

/// A signature algorithm that tokens may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// EdDSA with Ed25519.
    EdDsa,
}

impl Algorithm {
    /// The algorithm of a JOSE `alg` name, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Algorithm::Es256),
            "RS256" => Some(Algorithm::Rs256),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Rs256 => "RS256",
            Algorithm::EdDsa => "EdDSA",
        }
    }
}

/// A public key of a supported kind.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PublicKey {
    /// An uncompressed P-256 point (`04 || x || y`).
    P256(Vec<u8>),
    /// RSA modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
}

impl PublicKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::P256(_) => Algorithm::Es256,
            PublicKey::Rsa { .. } => Algorithm::Rs256,
            PublicKey::Ed25519(_) => Algorithm::EdDsa,
        }
    }

    fn kty(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "EC P-256",
            PublicKey::Rsa { .. } => "RSA",
            PublicKey::Ed25519(_) => "OKP Ed25519",
        }
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(message, sig).is_ok()
            }
            PublicKey::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            PublicKey::Ed25519(key) => UnparsedPublicKey::new(&signature::ED25519, key).verify(message, sig).is_ok(),
        }
    }
}

/// One usable key of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    kid: Option<String>,
    key: PublicKey,
}

impl Jwk {
    /// The key's id (`kid`), if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm tokens signed with this key use.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// Whether `sig` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        self.key.verify(message, sig)
    }

    /// The key's type as people read it (`EC P-256`, `RSA`, `OKP Ed25519`).
    pub fn kind(&self) -> &'static str {
        self.key.kty()
    }
}

/// Why a JWKS could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is larger than 1 MiB.
    #[error("{path} is larger than 1 MiB: not a JWKS")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The text is not a JWKS object (`{"keys": [...]}`).
    #[error("not a JWKS (a JSON object with \"keys\"): {0}")]
    Json(String),
    /// A key of a supported kind is broken.
    #[error("key {index}{kid}: {reason}")]
    Key {
        /// Position of the key in `keys`, from 0.
        index: usize,
        /// ` ("kid")`, or empty.
        kid: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No key of the set can verify ES256, RS256 or EdDSA signatures.
    #[error("no usable signing key (EC P-256, RSA of 2048+ bits or OKP Ed25519) in the JWKS")]
    NoKeys,
}

/// The JSON form of one key: every member optional, checked by hand so that unknown kinds are
/// skipped rather than refused.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// A set of verification keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS document, keeping its usable keys (see the module docs).
    pub fn from_json(text: &str) -> Result<Self, JwksError> {
        let raw: RawJwks = serde_json::from_str(text).map_err(|e| JwksError::Json(e.to_string()))?;
        let mut keys = Vec::with_capacity(raw.keys.len());
        for (index, value) in raw.keys.into_iter().enumerate() {
            let key_error = |kid: &Option<String>, reason: String| JwksError::Key {
                index,
                kid: kid.as_ref().map(|k| format!(" (\"{}\")", k.escape_debug())).unwrap_or_default(),
                reason,
            };
            let raw: RawJwk = serde_json::from_value(value).map_err(|e| key_error(&None, format!("not a JWK: {e}")))?;
            match parse_key(&raw) {
                Ok(Some(key)) => keys.push(Jwk { kid: raw.kid, key }),
                Ok(None) => {}
                Err(reason) => return Err(key_error(&raw.kid, reason)),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        Ok(Self { keys })
    }

    /// Reads and parses a JWKS file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, JwksError> {
        let path = path.as_ref();
        let shown = || path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| JwksError::Read { path: shown(), source })?;
        if meta.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge { path: shown() });
        }
        let text = std::fs::read_to_string(path).map_err(|source| JwksError::Read { path: shown(), source })?;
        Self::from_json(&text)
    }

    /// The usable keys, in file order.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// How many usable keys the set has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key (never true for a parsed set).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Reads a key of a supported kind; `Ok(None)` for keys that are skipped.
fn parse_key(raw: &RawJwk) -> Result<Option<PublicKey>, String> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let member = |name: &str, value: &Option<String>| -> Result<Vec<u8>, String> {
        let text = value.as_deref().ok_or_else(|| format!("\"{name}\" is missing"))?;
        b64url_decode(text).ok_or_else(|| format!("\"{name}\" is not unpadded base64url"))
    };
    let key = match (raw.kty.as_deref(), raw.crv.as_deref()) {
        (Some("EC"), Some("P-256")) => {
            let (x, y) = (member("x", &raw.x)?, member("y", &raw.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err("\"x\" and \"y\" of a P-256 key must be 32 bytes each".into());
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::P256(point)
        }
        (Some("RSA"), _) => {
            let n = strip_zeros(member("n", &raw.n)?);
            let e = strip_zeros(member("e", &raw.e)?);
            if !(256..=1024).contains(&n.len()) {
                return Err(format!("RSA modulus of {} bits: must be 2048 to 8192 bits", n.len() * 8));
            }
            if e.is_empty() || e.len() > 4 || e.last().is_some_and(|b| b % 2 == 0) {
                return Err("RSA exponent \"e\" must be odd and at most 32 bits".into());
            }
            PublicKey::Rsa { n, e }
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x = member("x", &raw.x)?;
            if x.len() != 32 {
                return Err("\"x\" of an Ed25519 key must be 32 bytes".into());
            }
            PublicKey::Ed25519(x)
        }
        (None, _) => return Err("\"kty\" is missing".into()),
        // Other curves (P-384, X25519...), symmetric keys and unknown kinds.
        _ => return Ok(None),
    };
    match raw.alg.as_deref() {
        // A key restricted to another algorithm (RS512, ES384...) is not for us.
        Some(alg) if Algorithm::from_name(alg) != Some(key.algorithm()) => Ok(None),
        _ => Ok(Some(key)),
    }
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn ec(kid: &str, extra: &str) -> String {
        format!(r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"{P256_X}","y":"{P256_Y}"{extra}}}"#)
    }

    #[test]
    fn keeps_supported_keys_and_skips_others() {
        let text = format!(
            r#"{{"keys":[{},{},{},{{"kty":"oct","k":"c2VjcmV0"}},{{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}},
               {{"kty":"OKP","crv":"X25519","x":"AA"}}]}}"#,
            ec("a", ""),
            ec("enc", r#","use":"enc""#),
            ec("es384", r#","alg":"ES384""#),
        );
        let jwks = Jwks::from_json(&text).unwrap();
        assert_eq!(jwks.len(), 1);
        assert_eq!(jwks.keys()[0].kid(), Some("a"));
        assert_eq!(jwks.keys()[0].algorithm(), Algorithm::Es256);
    }

    #[test]
    fn refuses_broken_keys_and_empty_sets() {
        let short = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"AAAA","y":"AAAA"}]}"#;
        let err = Jwks::from_json(short).unwrap_err().to_string();
        assert!(err.contains("key 0 (\"k\")") && err.contains("32 bytes"), "{err}");
        let small_rsa = r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#;
        assert!(Jwks::from_json(small_rsa).unwrap_err().to_string().contains("2048 to 8192 bits"));
        let padded = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{}="}}]}}"#, "A".repeat(43));
        assert!(Jwks::from_json(&padded).unwrap_err().to_string().contains("base64url"));
        assert!(matches!(Jwks::from_json(r#"{"keys":[]}"#), Err(JwksError::NoKeys)));
        assert!(matches!(Jwks::from_json(r#"{"keys":[{"kty":"oct","k":"AA"}]}"#), Err(JwksError::NoKeys)));
        assert!(matches!(Jwks::from_json("[]"), Err(JwksError::Json(_))));
        assert!(matches!(Jwks::from_json(r#"{"keys":[{"crv":"P-256"}]}"#), Err(JwksError::Key { .. })));
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Jwks::from_file("/nonexistent/jwks.json").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/jwks.json"), "{err}");
    }
}
