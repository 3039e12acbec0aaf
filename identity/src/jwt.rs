//! JSON Web Token verification, with the rules of Envoy's `jwt_authn` filter.
//!
//! A token is a compact JWS (`header.payload.signature`, unpadded base64url). Its header names
//! the algorithm: ES256, RS256 or EdDSA; `none` and the shared-secret HS* algorithms are
//! refused outright, and so are unknown `crit` extensions. The key comes from the JWKS: the one
//! whose `kid` the header names (its kind must match `alg`), or, without a `kid`, every key of
//! the algorithm's kind in turn. Then the claims: `iss` must be the configured issuer, `aud` (a
//! string or an array) must contain a configured audience, `exp` is required, and with `nbf` it
//! is checked against the caller's clock with a leeway for clock skew (60 s by default); `sub`
//! becomes the subject and `roles` (an array of strings, or one space-separated string) the
//! roles. Each refusal is a distinct [`JwtError`] with a reason fit to show the caller.
//!
//! The current time is an argument, so that tests of expiry need no sleeping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::identity::{Identity, Method};
use crate::jwks::{Algorithm, Jwks};
use crate::{MAX_ROLES, b64url_decode, check_role, check_subject};

/// Clock skew allowed by default when checking `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Longest token accepted, in bytes (Envoy's header limit is 60 KiB; real tokens are far
/// smaller, and a limit keeps hostile input from costing base64 and JSON work).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// What a token must say to be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtConfig {
    /// The only accepted `iss`.
    pub issuer: String,
    /// Accepted audiences: the token's `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// Clock skew allowed for `exp` and `nbf`.
    pub leeway: Duration,
}

impl JwtConfig {
    /// A configuration for `issuer` and `audiences` with the default leeway.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self { issuer: issuer.into(), audiences, leeway: DEFAULT_LEEWAY }
    }
}

/// Why a token was refused. The messages are safe to show the caller: they name what is wrong,
/// never a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// The token is not a well-formed compact JWS, or a claim has the wrong type.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The header says `alg: none` (an unsigned token).
    #[error("JWT with alg \"none\" (unsigned) is refused")]
    AlgNone,
    /// The algorithm is a shared-secret one (HS256...) or not supported.
    #[error("JWT algorithm \"{0}\" is not accepted (ES256, RS256 or EdDSA)")]
    AlgNotAllowed(String),
    /// The header's `kid` names no key of the JWKS.
    #[error("JWT key id \"{0}\" is not in the JWKS")]
    UnknownKid(String),
    /// The algorithm does not fit the key (an ES256 token for an RSA key, or no key of its kind).
    #[error("JWT algorithm {alg} does not match {detail}")]
    AlgMismatch {
        /// The token's algorithm.
        alg: &'static str,
        /// The key(s) it was checked against.
        detail: String,
    },
    /// No key of the JWKS verifies the signature.
    #[error("JWT signature does not verify")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("JWT expired {ago} s ago (exp {exp}, leeway {leeway} s)")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// Seconds since then.
        ago: i64,
        /// The leeway in seconds.
        leeway: u64,
    },
    /// `nbf` is in the future (beyond the leeway).
    #[error("JWT not valid for another {wait} s (nbf {nbf}, leeway {leeway} s)")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// Seconds until then.
        wait: i64,
        /// The leeway in seconds.
        leeway: u64,
    },
    /// `iss` is not the configured issuer.
    #[error("JWT issuer {0} is not accepted")]
    WrongIssuer(String),
    /// `aud` contains none of the configured audiences.
    #[error("JWT audience {0} is not accepted")]
    WrongAudience(String),
    /// A required claim is missing.
    #[error("JWT has no \"{0}\" claim")]
    MissingClaim(&'static str),
}

impl JwtError {
    /// A short, stable name of the reason, for metrics labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "malformed",
            JwtError::AlgNone => "alg_none",
            JwtError::AlgNotAllowed(_) => "alg_not_allowed",
            JwtError::UnknownKid(_) => "unknown_kid",
            JwtError::AlgMismatch { .. } => "alg_mismatch",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired { .. } => "expired",
            JwtError::NotYetValid { .. } => "not_yet_valid",
            JwtError::WrongIssuer(_) => "wrong_issuer",
            JwtError::WrongAudience(_) => "wrong_audience",
            JwtError::MissingClaim(_) => "missing_claim",
        }
    }
}

/// Verifies tokens against a JWKS and a [`JwtConfig`].
#[derive(Clone, Debug)]
pub struct JwtVerifier {
    jwks: Jwks,
    config: JwtConfig,
}

fn malformed(what: impl Into<String>) -> JwtError {
    JwtError::Malformed(what.into())
}

/// Shows a claim value in an error message, shortened.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 80 {
        return text;
    }
    let cut = (0..=77).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}...", &text[..cut])
}

impl JwtVerifier {
    /// A verifier of tokens signed by keys of `jwks` that satisfy `config`.
    pub fn new(jwks: Jwks, config: JwtConfig) -> Self {
        Self { jwks, config }
    }

    /// The configuration.
    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// Verifies `token` at time `now` and returns the caller's identity.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, JwtError> {
        self.verify_until(token, now).map(|(identity, _)| identity)
    }

    /// Verifies `token` at time `now` and returns the caller's identity and the last instant
    /// at which the token is still accepted (`exp` plus the leeway), for callers that cache
    /// verified tokens.
    pub fn verify_until(&self, token: &str, now: SystemTime) -> Result<(Identity, SystemTime), JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed(format!("longer than {MAX_TOKEN_LEN} bytes")));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            let dots = token.matches('.').count();
            return Err(malformed(if dots == 4 {
                "encrypted tokens (JWE, five parts) are not supported".to_string()
            } else {
                format!("a compact JWS has three dot-separated parts, this has {}", dots + 1)
            }));
        };
        let header = decode_object(header_b64, "header")?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            Some(_) => return Err(malformed("header \"alg\" is not a string")),
            None => return Err(malformed("header has no \"alg\"")),
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(JwtError::AlgNone);
        }
        let Some(algorithm) = Algorithm::from_name(alg) else {
            return Err(JwtError::AlgNotAllowed(alg.chars().take(20).collect()));
        };
        if header.contains_key("crit") {
            return Err(malformed("header has \"crit\" extensions, none of which are supported"));
        }
        let kid = match header.get("kid") {
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(malformed("header \"kid\" is not a string")),
            None => None,
        };
        let signature = b64url_decode(sig_b64).ok_or_else(|| malformed("signature is not unpadded base64url"))?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        self.check_signature(algorithm, kid, signed, &signature)?;

        let claims = decode_object(payload_b64, "payload")?;
        self.check_claims(&claims, now)
    }

    fn check_signature(
        &self,
        algorithm: Algorithm,
        kid: Option<&str>,
        signed: &[u8],
        signature: &[u8],
    ) -> Result<(), JwtError> {
        let keys = self.jwks.keys();
        let candidates: Vec<_> = match kid {
            Some(kid) => {
                let named: Vec<_> = keys.iter().filter(|k| k.kid() == Some(kid)).collect();
                if named.is_empty() {
                    return Err(JwtError::UnknownKid(kid.chars().take(64).collect()));
                }
                let fitting: Vec<_> = named.iter().copied().filter(|k| k.algorithm() == algorithm).collect();
                if fitting.is_empty() {
                    return Err(JwtError::AlgMismatch {
                        alg: algorithm.name(),
                        detail: format!("the {} key \"{}\"", named[0].kind(), kid.escape_debug()),
                    });
                }
                fitting
            }
            None => {
                let fitting: Vec<_> = keys.iter().filter(|k| k.algorithm() == algorithm).collect();
                if fitting.is_empty() {
                    return Err(JwtError::AlgMismatch {
                        alg: algorithm.name(),
                        detail: "any key of the JWKS".to_string(),
                    });
                }
                fitting
            }
        };
        if candidates.iter().any(|key| key.verify(signed, signature)) { Ok(()) } else { Err(JwtError::BadSignature) }
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: SystemTime) -> Result<(Identity, SystemTime), JwtError> {
        let now = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(_) => 0,
        };
        let leeway = self.config.leeway.as_secs();
        let leeway_i = i64::try_from(leeway).unwrap_or(i64::MAX);
        let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
        if now > exp.saturating_add(leeway_i) {
            return Err(JwtError::Expired { exp, ago: now.saturating_sub(exp), leeway });
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && now.saturating_add(leeway_i) < nbf
        {
            return Err(JwtError::NotYetValid { nbf, wait: nbf.saturating_sub(now), leeway });
        }
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.config.issuer => {}
            Some(other) => return Err(JwtError::WrongIssuer(shown(other))),
            None => return Err(JwtError::MissingClaim("iss")),
        }
        let accepted = |aud: &Value| matches!(aud, Value::String(a) if self.config.audiences.contains(a));
        match claims.get("aud") {
            Some(aud @ Value::String(_)) if accepted(aud) => {}
            Some(Value::Array(list)) if list.iter().any(accepted) => {}
            Some(other) => return Err(JwtError::WrongAudience(shown(other))),
            None => return Err(JwtError::MissingClaim("aud")),
        }
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) => {
                check_subject(sub).map_err(|why| malformed(format!("\"sub\": {why}")))?;
                sub.clone()
            }
            Some(_) => return Err(malformed("\"sub\" is not a string")),
            None => return Err(JwtError::MissingClaim("sub")),
        };
        let roles = roles(claims.get("roles"))?;
        // exp is after now - leeway here, so exp + leeway is after the epoch.
        let until = UNIX_EPOCH + Duration::from_secs(u64::try_from(exp.saturating_add(leeway_i)).unwrap_or(0));
        Ok((Identity { subject, roles, method: Method::Jwt }, until))
    }
}

/// Decodes a base64url JSON object (the header or the payload).
fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = b64url_decode(part).ok_or_else(|| malformed(format!("{what} is not unpadded base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(malformed(format!("{what} is not a JSON object"))),
        Err(e) => Err(malformed(format!("{what} is not JSON: {e}"))),
    }
}

/// A NumericDate claim: seconds since the epoch, fractions cut off. Anything but a number (a
/// string "1700000000" included) is refused rather than guessed at.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                // Saturates at the ends of the i64 range.
                Ok(Some(f.floor() as i64))
            } else {
                Err(malformed(format!("\"{name}\" is out of range")))
            }
        }
        Some(_) => Err(malformed(format!("\"{name}\" is not a number"))),
    }
}

/// The `roles` claim: an array of role names, or one space-separated string; none when absent.
fn roles(claim: Option<&Value>) -> Result<Vec<String>, JwtError> {
    let names: Vec<String> = match claim {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(text)) => text.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(role) => Ok(role.clone()),
                _ => Err(malformed("\"roles\" holds a value that is not a string")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(malformed("\"roles\" is not an array of strings")),
    };
    if names.len() > MAX_ROLES {
        return Err(malformed(format!("more than {MAX_ROLES} roles")));
    }
    for role in &names {
        check_role(role).map_err(|why| malformed(format!("role \"{}\": {why}", role.escape_debug())))?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    use super::*;
    use crate::b64url;

    const RSA_PEM: &str = include_str!("testdata/rsa-2048.pk8.pem");
    /// 2026-12-01T00:00:00Z.
    const NOW: u64 = 1_796_083_200;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap()
    }

    /// A signing key of one of the three kinds and its JWK.
    enum TestKey {
        Es(EcdsaKeyPair),
        Rs(RsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    impl TestKey {
        fn es256() -> Self {
            let rng = SystemRandom::new();
            let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let key =
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
            TestKey::Es(key)
        }

        fn rs256() -> Self {
            TestKey::Rs(RsaKeyPair::from_pkcs8(&pem_der(RSA_PEM)).unwrap())
        }

        fn eddsa() -> Self {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            TestKey::Ed(Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap())
        }

        fn alg(&self) -> &'static str {
            match self {
                TestKey::Es(_) => "ES256",
                TestKey::Rs(_) => "RS256",
                TestKey::Ed(_) => "EdDSA",
            }
        }

        fn jwk(&self, kid: &str) -> Value {
            match self {
                TestKey::Es(k) => {
                    let point = k.public_key().as_ref();
                    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64url(&point[1..33]), "y": b64url(&point[33..])})
                }
                TestKey::Rs(k) => {
                    let public = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                    json!({
                        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                        "n": b64url(&public.n), "e": b64url(&public.e),
                    })
                }
                TestKey::Ed(k) => {
                    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(k.public_key().as_ref())})
                }
            }
        }

        fn sign(&self, message: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match self {
                TestKey::Es(k) => k.sign(&rng, message).unwrap().as_ref().to_vec(),
                TestKey::Rs(k) => {
                    let mut sig = vec![0; k.public().modulus_len()];
                    k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig).unwrap();
                    sig
                }
                TestKey::Ed(k) => k.sign(message).as_ref().to_vec(),
            }
        }

        /// A token with `header` (alg filled in unless given) and `claims`.
        fn token(&self, header: Value, claims: &Value) -> String {
            let mut header = header.as_object().cloned().unwrap_or_default();
            header.entry("alg").or_insert_with(|| json!(self.alg()));
            let signed = format!(
                "{}.{}",
                b64url(&serde_json::to_vec(&header).unwrap()),
                b64url(&serde_json::to_vec(claims).unwrap())
            );
            let sig = self.sign(signed.as_bytes());
            format!("{signed}.{}", b64url(&sig))
        }
    }

    fn claims() -> Value {
        json!({"iss": "https://issuer.example", "aud": "meshwork", "sub": "alice", "exp": NOW + 3600,
               "nbf": NOW - 10, "roles": ["admin", "reader"]})
    }

    fn verifier(keys: &[(&TestKey, &str)]) -> JwtVerifier {
        let jwks = json!({"keys": keys.iter().map(|(k, kid)| k.jwk(kid)).collect::<Vec<_>>()});
        let jwks = Jwks::from_json(&jwks.to_string()).unwrap();
        JwtVerifier::new(jwks, JwtConfig::new("https://issuer.example", vec!["meshwork".into(), "other".into()]))
    }

    #[test]
    fn good_tokens_of_each_algorithm_verify() {
        let (es, rs, ed) = (TestKey::es256(), TestKey::rs256(), TestKey::eddsa());
        let v = verifier(&[(&es, "es"), (&rs, "rs"), (&ed, "ed")]);
        for (key, kid) in [(&es, "es"), (&rs, "rs"), (&ed, "ed")] {
            let token = key.token(json!({"kid": kid, "typ": "JWT"}), &claims());
            let id = v.verify(&token, at(NOW)).unwrap_or_else(|e| panic!("{}: {e}", key.alg()));
            assert_eq!(id, Identity::new("alice", vec!["admin".into(), "reader".into()], Method::Jwt));
            let (_, until) = v.verify_until(&token, at(NOW)).unwrap();
            assert_eq!(until, at(NOW + 3600 + 60), "exp plus the leeway");
            // Without a kid, every key of the algorithm's kind is tried.
            let token = key.token(json!({}), &claims());
            assert!(v.verify(&token, at(NOW)).is_ok(), "{} without kid", key.alg());
        }
    }

    #[test]
    fn claims_forms_that_are_accepted() {
        let es = TestKey::es256();
        let v = verifier(&[(&es, "k")]);
        let mut c = claims();
        c["aud"] = json!(["x", "other"]);
        c["roles"] = json!("admin  reader");
        c["exp"] = json!((NOW + 10) as f64 + 0.5);
        c.as_object_mut().unwrap().remove("nbf");
        let id = v.verify(&es.token(json!({"kid": "k"}), &c), at(NOW)).unwrap();
        assert_eq!(id.roles, vec!["admin", "reader"]);
        c.as_object_mut().unwrap().remove("roles");
        assert!(v.verify(&es.token(json!({"kid": "k"}), &c), at(NOW)).unwrap().roles.is_empty());
        // Within the leeway on both ends.
        let mut c = claims();
        c["exp"] = json!(NOW - 59);
        c["nbf"] = json!(NOW + 59);
        assert!(v.verify(&es.token(json!({"kid": "k"}), &c), at(NOW)).is_ok());
    }

    fn refusal(v: &JwtVerifier, token: &str) -> JwtError {
        v.verify(token, at(NOW)).expect_err("token should be refused")
    }

    #[test]
    fn each_refusal_has_its_own_reason() {
        let (es, rs, ed) = (TestKey::es256(), TestKey::rs256(), TestKey::eddsa());
        let v = verifier(&[(&es, "es"), (&rs, "rs")]);
        let kid = |k: &str| json!({"kid": k});
        let with = |name: &str, value: Value| {
            let mut c = claims();
            c[name] = value;
            c
        };

        let expired = refusal(&v, &es.token(kid("es"), &with("exp", json!(NOW - 61))));
        assert!(matches!(expired, JwtError::Expired { ago: 61, .. }), "{expired}");
        assert_eq!(expired.reason(), "expired");

        let early = refusal(&v, &es.token(kid("es"), &with("nbf", json!(NOW + 61))));
        assert!(matches!(early, JwtError::NotYetValid { wait: 61, .. }), "{early}");

        // Signed by a key that is not in the JWKS, under a kid that is.
        let other = TestKey::es256();
        assert_eq!(refusal(&v, &other.token(kid("es"), &claims())), JwtError::BadSignature);
        // A valid token whose payload was changed.
        let token = es.token(kid("es"), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64url(with("sub", json!("mallory")).to_string().as_bytes());
        assert_eq!(refusal(&v, &format!("{}.{forged}.{}", parts[0], parts[2])), JwtError::BadSignature);

        let aud = refusal(&v, &es.token(kid("es"), &with("aud", json!("someone-else"))));
        assert_eq!(aud, JwtError::WrongAudience("\"someone-else\"".into()));
        let aud = refusal(&v, &es.token(kid("es"), &with("aud", json!(["a", "b"]))));
        assert_eq!(aud.reason(), "wrong_audience");

        let iss = refusal(&v, &es.token(kid("es"), &with("iss", json!("https://evil.example"))));
        assert_eq!(iss, JwtError::WrongIssuer("\"https://evil.example\"".into()));

        assert_eq!(refusal(&v, &es.token(kid("nope"), &claims())), JwtError::UnknownKid("nope".into()));

        // alg none: a token with no signature at all.
        let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64url(claims().to_string().as_bytes());
        assert_eq!(refusal(&v, &format!("{header}.{payload}.")), JwtError::AlgNone);
        let header = b64url(br#"{"alg":"NONE"}"#);
        assert_eq!(refusal(&v, &format!("{header}.{payload}.")), JwtError::AlgNone);

        // HS256 "signed" with the public key as the secret: the classic confusion attack.
        let header = b64url(br#"{"alg":"HS256","kid":"rs"}"#);
        assert_eq!(refusal(&v, &format!("{header}.{payload}.AAAA")), JwtError::AlgNotAllowed("HS256".into()));

        // An ES256 header pointing at the RSA key; an EdDSA token where no OKP key exists.
        let mismatch = refusal(&v, &es.token(kid("rs"), &claims()));
        assert!(matches!(mismatch, JwtError::AlgMismatch { alg: "ES256", .. }), "{mismatch}");
        assert_eq!(mismatch.to_string(), "JWT algorithm ES256 does not match the RSA key \"rs\"");
        assert_eq!(refusal(&v, &ed.token(json!({}), &claims())).reason(), "alg_mismatch");
        // An RS256 header on an ES256 signature, kid of the RSA key.
        let header = b64url(br#"{"alg":"RS256","kid":"rs"}"#);
        let signed = format!("{header}.{payload}");
        let sig = b64url(&es.sign(signed.as_bytes()));
        assert_eq!(refusal(&v, &format!("{signed}.{sig}")), JwtError::BadSignature);

        let missing = |name: &str| {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(name);
            refusal(&v, &es.token(kid("es"), &c))
        };
        assert_eq!(missing("exp"), JwtError::MissingClaim("exp"));
        assert_eq!(missing("iss"), JwtError::MissingClaim("iss"));
        assert_eq!(missing("aud"), JwtError::MissingClaim("aud"));
        assert_eq!(missing("sub"), JwtError::MissingClaim("sub"));
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        let es = TestKey::es256();
        let v = verifier(&[(&es, "es")]);
        let good = es.token(json!({"kid": "es"}), &claims());
        let parts: Vec<&str> = good.split('.').collect();
        let payload = b64url(claims().to_string().as_bytes());
        let cases = [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c.d.e".into(),
            format!("{good}.x"),
            format!("!!.{}.{}", parts[1], parts[2]),
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            format!("{}.{}.", b64url(b"[1]"), parts[1]),
            format!("{}.{payload}.", b64url(br#"{"alg":5}"#)),
            format!("{}.{payload}.", b64url(br#"{"typ":"JWT"}"#)),
            format!("{}.{payload}.", b64url(br#"{"alg":"ES256","crit":["exp"]}"#)),
            format!("{}.{payload}.", b64url(br#"{"alg":"ES256","kid":7}"#)),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for token in &cases {
            let err = refusal(&v, token);
            assert_eq!(err.reason(), "malformed", "{token:.60}: {err}");
        }
        let typed = |name: &str, value: Value| {
            let mut c = claims();
            c[name] = value;
            refusal(&v, &es.token(json!({"kid": "es"}), &c)).reason()
        };
        assert_eq!(typed("exp", json!("9999999999")), "malformed");
        assert_eq!(typed("nbf", json!(true)), "malformed");
        assert_eq!(typed("sub", json!(42)), "malformed");
        assert_eq!(typed("sub", json!("")), "malformed");
        assert_eq!(typed("roles", json!([1])), "malformed");
        assert_eq!(typed("roles", json!(["bad role!"])), "malformed");
        assert_eq!(typed("iss", json!(["https://issuer.example"])), "wrong_issuer");
    }

    static FIXTURE: std::sync::OnceLock<(JwtVerifier, String)> = std::sync::OnceLock::new();

    fn fixture() -> &'static (JwtVerifier, String) {
        FIXTURE.get_or_init(|| {
            let es = TestKey::es256();
            let token = es.token(json!({"kid": "es"}), &claims());
            (verifier(&[(&es, "es")]), token)
        })
    }

    #[test]
    fn arbitrary_input_never_panics() {
        fn prop(text: String, cut: usize, junk: String) -> bool {
            let (v, good) = fixture();
            let mut mutated = good.clone();
            mutated.truncate(cut % (good.len() + 1));
            mutated.push_str(&junk);
            v.verify(&text, at(NOW)).is_err() && (mutated == *good || v.verify(&mutated, at(NOW)).is_err())
        }
        let (v, good) = fixture();
        assert!(v.verify(good, at(NOW)).is_ok());
        quickcheck::QuickCheck::new().tests(2000).quickcheck(prop as fn(String, usize, String) -> bool);
    }
}
