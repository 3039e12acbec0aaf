//! Authentication at the gateway (`[auth]`): who calls, verified once at the edge and handed to
//! the services as one metadata entry, `meshwork-identity` (see `meshwork-identity`).
//!
//! ```toml
//! [auth]
//! jwks = "identity/jwks.json"        # RFC 7517 key set; tokens: ES256, RS256 or EdDSA
//! issuer = "meshwork-dev"            # the only accepted `iss` (required with jwks)
//! audiences = ["meshwork"]           # `aud` must contain one of these (required with jwks)
//! api_keys = "api-keys.toml"         # optional: hashed API keys ([[keys]] hash, subject, roles)
//! leeway_seconds = 60                # clock skew allowed on exp / nbf (default 60)
//! forward_credentials = false        # pass authorization / x-api-key on to the services
//!
//! [[routes]]
//! service = "meshwork.urlshortener.v1.UrlShortener"
//! pool = "urlshortener"
//! allow_anonymous = true             # callers without credentials may call this route
//! ```
//!
//! Every request, first thing: a `meshwork-identity` sent by the client is removed (always, with
//! or without `[auth]`: only the gateway may say who calls). With `[auth]`, the credential is read
//! from `authorization: Bearer <jwt>` (or `Bearer mwk_...`) or `x-api-key: mwk_...`; a credential
//! that is present but bad refuses the call, even on an anonymous route (UNAUTHENTICATED with the
//! reason in `grpc-message`, or HTTP 401 with `WWW-Authenticate` for plain HTTP); a good one
//! puts the verified identity on the request, for the upstream. Whether a call without
//! credentials may go on is the route's `allow_anonymous`; the gateway's own health and
//! reflection services are always open. Refusals are counted by reason
//! (`meshwork_gateway_auth_refused_total`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderValue};
use meshwork_identity::{ApiKeyError, ApiKeys, IDENTITY_HEADER, Identity, Jwks, JwtConfig, JwtError, JwtVerifier};
use pingora_http::RequestHeader;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::metrics::Metrics;
use crate::routing::Route;

/// The header of API keys.
pub const API_KEY_HEADER: &str = "x-api-key";

/// `[auth]`: how callers prove who they are.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// JWKS file (RFC 7517) with the keys that sign accepted tokens. None: no token is accepted.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// The only accepted `iss` of tokens; required with `jwks`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted audiences: a token's `aud` must contain one; required (non-empty) with `jwks`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// API key file (TOML, or JSON when it ends in `.json`) of hashed keys. None: no API key is
    /// accepted.
    #[serde(default)]
    pub api_keys: Option<PathBuf>,
    /// Clock skew allowed when checking `exp` and `nbf`, in seconds. Default 60.
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
    /// Whether the verified credential (`authorization`, `x-api-key`) also goes on to the
    /// services. Default false, as in Envoy's `jwt_authn`: services read `meshwork-identity`.
    #[serde(default)]
    pub forward_credentials: bool,
}

fn default_leeway_seconds() -> u64 {
    meshwork_identity::DEFAULT_LEEWAY.as_secs()
}

impl AuthConfig {
    /// Tokens signed by a key of `jwks` for `issuer` and one of `audiences`, no API keys,
    /// default leeway.
    pub fn jwt(jwks: impl Into<PathBuf>, issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            jwks: Some(jwks.into()),
            issuer: Some(issuer.into()),
            audiences,
            api_keys: None,
            leeway_seconds: default_leeway_seconds(),
            forward_credentials: false,
        }
    }

    /// Development tokens: those `meshwork token` mints with the key whose JWKS is `jwks`
    /// (issuer `meshwork-dev`, audience `meshwork`).
    pub fn dev(jwks: impl Into<PathBuf>) -> Self {
        Self::jwt(jwks, meshwork_identity::DEV_ISSUER, vec![meshwork_identity::DEV_AUDIENCE.to_string()])
    }

    /// Checks `[auth]`: reads and checks its files as the gateway does at start; errors
    /// name `auth.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Authn::load(self).map(drop)
    }
}

/// Why a call was refused, as counted in the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No credential on a route that needs one.
    Missing,
    /// `authorization` with a scheme other than Bearer, or several credentials at once.
    BadHeader,
    /// A kind of credential this gateway is not configured for.
    NotAccepted,
    /// A token refused by the verifier.
    Jwt(&'static str),
    /// An API key refused.
    ApiKey(&'static str),
}

/// Every reason label, in the order of [`Reason::index`].
pub(crate) const REASONS: [&str; 16] = [
    "missing",
    "bad_header",
    "not_accepted",
    "malformed",
    "alg_none",
    "alg_not_allowed",
    "unknown_kid",
    "alg_mismatch",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "missing_claim",
    "malformed_api_key",
    "unknown_api_key",
];

impl Reason {
    /// The reason's label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::BadHeader => "bad_header",
            Reason::NotAccepted => "not_accepted",
            Reason::Jwt(r) | Reason::ApiKey(r) => r,
        }
    }

    /// The position of the label in [`REASONS`].
    pub fn index(self) -> usize {
        let label = self.label();
        // Every label of JwtError::reason and ApiKeyError::reason is listed (a unit test checks).
        REASONS.iter().position(|r| *r == label).unwrap_or(0)
    }
}

/// A refused call: why, and what to tell the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }

    /// The refusal of a call without credentials to a route that needs them.
    pub fn missing() -> Self {
        Self::new(Reason::Missing, "credentials required: send authorization: Bearer <token> or x-api-key: <key>")
    }

    /// The `WWW-Authenticate` value of an HTTP 401 for this refusal (RFC 6750 section 3).
    pub fn www_authenticate(&self) -> HeaderValue {
        if self.reason == Reason::Missing {
            return HeaderValue::from_static("Bearer realm=\"meshwork\"");
        }
        let description: String =
            self.message.chars().filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\').collect();
        HeaderValue::from_str(&format!(
            "Bearer realm=\"meshwork\", error=\"invalid_token\", error_description=\"{description}\""
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"meshwork\", error=\"invalid_token\""))
    }
}

/// What the credential check found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No credential: the route decides.
    Anonymous,
    /// A good credential; the identity is on the request.
    Verified(Identity),
    /// A credential was present and is bad: the call is refused whatever the route.
    Refused(Refusal),
}

/// Verified tokens kept, so that a client's repeated calls skip the signature check (an ES256
/// verification costs about 60 µs, twice the gateway's whole work on a call).
const TOKEN_CACHE_ENTRIES: usize = 4096;

/// A verified token: its identity, the encoded header, and until when it is accepted.
#[derive(Debug)]
struct Cached {
    identity: Identity,
    header: HeaderValue,
    until: SystemTime,
}

/// Recently verified tokens by their SHA-256. Entries live no longer than the token (`exp`
/// plus the leeway); the JWKS never changes while the gateway runs, so a token verified once
/// stays good until then. When full, expired entries go; if none has, everything goes.
#[derive(Debug, Default)]
struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], Cached>>,
}

impl TokenCache {
    fn key(token: &str) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    fn get(&self, key: &[u8; 32], now: SystemTime) -> Option<(Identity, HeaderValue)> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let cached = entries.get(key).filter(|c| now <= c.until)?;
        Some((cached.identity.clone(), cached.header.clone()))
    }

    fn insert(&self, key: [u8; 32], cached: Cached, now: SystemTime) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= TOKEN_CACHE_ENTRIES {
            entries.retain(|_, c| now <= c.until);
            if entries.len() >= TOKEN_CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, cached);
    }
}

/// The loaded `[auth]`: verifiers ready for requests.
#[derive(Debug)]
pub(crate) struct Authn {
    jwt: Option<JwtVerifier>,
    api_keys: Option<ApiKeys>,
    forward_credentials: bool,
    tokens: TokenCache,
}

impl Authn {
    /// Reads and checks every file of `config`; errors name the field and the file.
    pub fn load(config: &AuthConfig) -> Result<Self, ConfigError> {
        let invalid = |msg: String| ConfigError::Invalid(msg);
        if config.jwks.is_none() && config.api_keys.is_none() {
            return Err(invalid("auth: give jwks (tokens), api_keys, or both".into()));
        }
        if config.leeway_seconds > 3600 {
            return Err(invalid(format!("auth.leeway_seconds = {}: at most 3600", config.leeway_seconds)));
        }
        let jwt = match &config.jwks {
            Some(path) => {
                let jwks = Jwks::from_file(path).map_err(|e| match e {
                    // The read error already names the file.
                    meshwork_identity::JwksError::Read { .. } | meshwork_identity::JwksError::TooLarge { .. } => {
                        invalid(format!("auth.jwks: {e}"))
                    }
                    e => invalid(format!("auth.jwks {}: {e}", path.display())),
                })?;
                let Some(issuer) = config.issuer.as_ref().filter(|i| !i.is_empty()) else {
                    return Err(invalid("auth.issuer is required with auth.jwks".into()));
                };
                if config.audiences.is_empty() || config.audiences.iter().any(String::is_empty) {
                    return Err(invalid("auth.audiences: give at least one audience, none empty".into()));
                }
                let mut jwt_config = JwtConfig::new(issuer.clone(), config.audiences.clone());
                jwt_config.leeway = Duration::from_secs(config.leeway_seconds);
                Some(JwtVerifier::new(jwks, jwt_config))
            }
            None => {
                if config.issuer.is_some() || !config.audiences.is_empty() {
                    return Err(invalid("auth.issuer and auth.audiences need auth.jwks".into()));
                }
                None
            }
        };
        let api_keys = match &config.api_keys {
            Some(path) => Some(ApiKeys::from_file(path).map_err(|e| match e {
                meshwork_identity::ApiKeyFileError::Read { .. }
                | meshwork_identity::ApiKeyFileError::TooLarge { .. } => invalid(format!("auth.api_keys: {e}")),
                e => invalid(format!("auth.api_keys {}: {e}", path.display())),
            })?),
            None => None,
        };
        Ok(Self { jwt, api_keys, forward_credentials: config.forward_credentials, tokens: TokenCache::default() })
    }

    /// Checks the request's credential at `now` and rewrites its headers: the client's
    /// `meshwork-identity` is gone already (see [`strip_identity`]); a verified identity is put
    /// in its place, and the credential is removed unless `forward_credentials`.
    pub fn authenticate(&self, req: &mut RequestHeader, now: SystemTime) -> Verdict {
        let (verdict, encoded) = self.check(&req.headers, now);
        if let Verdict::Verified(_) = &verdict {
            if let Some(value) = encoded {
                let _ = req.insert_header(IDENTITY_HEADER, value);
            }
            if !self.forward_credentials {
                req.remove_header(&header::AUTHORIZATION);
                req.remove_header(API_KEY_HEADER);
            }
        }
        verdict
    }

    /// Whether a verified call keeps its credential headers on the way upstream.
    pub fn forwards_credentials(&self) -> bool {
        self.forward_credentials
    }

    /// The verdict on the credential in `headers`, with the encoded identity when verified
    /// (the fast path's check: it edits its request headers itself).
    pub fn check_headers(&self, headers: &HeaderMap, now: SystemTime) -> (Verdict, Option<HeaderValue>) {
        self.check(headers, now)
    }

    /// The verdict on the credential in `headers`, with the encoded identity when verified.
    fn check(&self, headers: &HeaderMap, now: SystemTime) -> (Verdict, Option<HeaderValue>) {
        match self.credential(headers) {
            Ok(None) => (Verdict::Anonymous, None),
            Ok(Some(credential)) => match self.verify(credential, now) {
                Ok((identity, header)) => (Verdict::Verified(identity), Some(header)),
                Err(refusal) => (Verdict::Refused(refusal), None),
            },
            Err(refusal) => (Verdict::Refused(refusal), None),
        }
    }

    /// Verifies a credential (a JWT or an API key) and encodes the identity.
    fn verify(&self, credential: &str, now: SystemTime) -> Result<(Identity, HeaderValue), Refusal> {
        let encode = |identity: &Identity| {
            // base64url is always a valid header value.
            HeaderValue::from_str(&identity.encode())
                .map_err(|_| Refusal::new(Reason::Jwt("malformed"), "the identity cannot be encoded"))
        };
        if credential.starts_with(meshwork_identity::API_KEY_PREFIX) {
            let Some(keys) = &self.api_keys else {
                return Err(Refusal::new(Reason::NotAccepted, "API keys are not accepted by this gateway"));
            };
            let identity = keys.verify(credential).map_err(|e| api_key_refusal(&e))?;
            let header = encode(&identity)?;
            return Ok((identity, header));
        }
        let Some(jwt) = &self.jwt else {
            return Err(Refusal::new(Reason::NotAccepted, "tokens are not accepted by this gateway"));
        };
        let key = TokenCache::key(credential);
        if let Some(hit) = self.tokens.get(&key, now) {
            return Ok(hit);
        }
        let (identity, until) = jwt.verify_until(credential, now).map_err(|e| jwt_refusal(&e))?;
        let header = encode(&identity)?;
        self.tokens.insert(key, Cached { identity: identity.clone(), header: header.clone(), until }, now);
        Ok((identity, header))
    }

    /// The credential in `headers`: None when there is none, a refusal when the headers are
    /// ambiguous or not of the accepted forms.
    fn credential<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, Refusal> {
        let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
        let mut api_key = headers.get_all(API_KEY_HEADER).iter();
        match (authorization.next(), api_key.next()) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => {
                Err(Refusal::new(Reason::BadHeader, "send one credential: authorization or x-api-key, not both"))
            }
            _ if authorization.next().is_some() || api_key.next().is_some() => {
                Err(Refusal::new(Reason::BadHeader, "send one credential header, not several"))
            }
            (Some(value), None) => bearer(value.as_bytes()).map(Some).ok_or_else(|| {
                Refusal::new(Reason::BadHeader, "authorization must be \"Bearer <token>\" (a JWT or an API key)")
            }),
            (None, Some(value)) => match std::str::from_utf8(value.as_bytes()) {
                Ok(key) if key.trim().starts_with(meshwork_identity::API_KEY_PREFIX) => Ok(Some(key.trim())),
                _ => Err(api_key_refusal(&ApiKeyError::Malformed)),
            },
        }
    }
}

fn jwt_refusal(e: &JwtError) -> Refusal {
    Refusal::new(Reason::Jwt(e.reason()), e.to_string())
}

fn api_key_refusal(e: &ApiKeyError) -> Refusal {
    Refusal::new(Reason::ApiKey(e.reason()), e.to_string())
}

/// The token of an `authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Removes every `meshwork-identity` the client sent: only the gateway may say who calls.
pub(crate) fn strip_identity(req: &mut RequestHeader) {
    if req.headers.contains_key(IDENTITY_HEADER) {
        req.remove_header(IDENTITY_HEADER);
    }
}

/// For HTTP routes that call a gRPC route themselves (JSON transcoding): whether the request
/// may go on to `route`. Sound because the client's own `meshwork-identity` was removed first
/// thing in `request_filter`, so one on the request now was put there by the gateway; and
/// without `[auth]` every route allows anonymous callers (see `crate::server`).
pub(crate) fn admits(route: &Route, headers: &HeaderMap) -> bool {
    route.allow_anonymous || headers.contains_key(IDENTITY_HEADER)
}

/// Counts a call refused for want of credentials and returns the status to answer it with
/// (HTTP routes map it to 401).
pub(crate) fn missing_credentials(metrics: &Metrics) -> tonic::Status {
    let refusal = Refusal::missing();
    metrics.auth_refused[refusal.reason.index()].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tonic::Status::unauthenticated(refusal.message)
}

/// Whether calls to the gRPC `service` need no credentials whatever the configuration: the
/// gateway's own health and reflection.
pub(crate) fn always_anonymous(service: &str) -> bool {
    crate::config::BUILTIN_SERVICES.contains(&service)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use meshwork_identity::{DevKeys, Method};

    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/a.B/C", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        keys: DevKeys,
        api_key: String,
        authn: Authn,
    }

    fn fixture(forward_credentials: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::load_or_create(dir.path()).unwrap();
        let (api_key, entry) = meshwork_identity::generate("ci-bot", &["deployer".into()]).unwrap();
        let key_file = dir.path().join("keys.toml");
        let text = toml::to_string(&meshwork_identity::ApiKeyFile { keys: vec![entry] }).unwrap();
        std::fs::File::create(&key_file).unwrap().write_all(text.as_bytes()).unwrap();
        let config = AuthConfig { api_keys: Some(key_file), forward_credentials, ..AuthConfig::dev(keys.jwks_path()) };
        let authn = Authn::load(&config).unwrap();
        Fixture { _dir: dir, keys, api_key, authn }
    }

    #[test]
    fn every_reason_has_a_label() {
        for reason in [
            "malformed",
            "alg_none",
            "alg_not_allowed",
            "unknown_kid",
            "alg_mismatch",
            "bad_signature",
            "expired",
            "not_yet_valid",
            "wrong_issuer",
            "wrong_audience",
            "missing_claim",
        ] {
            assert_eq!(REASONS[Reason::Jwt(reason).index()], reason);
        }
        for e in [ApiKeyError::Malformed, ApiKeyError::Unknown] {
            assert_eq!(REASONS[Reason::ApiKey(e.reason()).index()], e.reason());
        }
        assert_eq!(REASONS[Reason::Missing.index()], "missing");
    }

    #[test]
    fn verdicts_and_header_rewriting() {
        let f = fixture(false);
        let token = f.keys.mint("alice", &["admin".into()], Duration::from_secs(60)).unwrap();
        let now = SystemTime::now();

        let mut req = request(&[("authorization", &format!("Bearer {token}"))]);
        let verdict = f.authn.authenticate(&mut req, now);
        assert_eq!(verdict, Verdict::Verified(Identity::new("alice", vec!["admin".into()], Method::Jwt)));
        let sent = Identity::decode(req.headers[IDENTITY_HEADER].as_bytes()).unwrap();
        assert_eq!(sent.subject, "alice");
        assert!(req.headers.get("authorization").is_none(), "the token is not forwarded");

        let mut req = request(&[("x-api-key", &f.api_key)]);
        assert!(matches!(f.authn.authenticate(&mut req, now), Verdict::Verified(id) if id.subject == "ci-bot"));
        let mut req = request(&[("authorization", &format!("bearer {}", f.api_key))]);
        assert!(matches!(f.authn.authenticate(&mut req, now), Verdict::Verified(id) if id.method == Method::ApiKey));

        assert_eq!(f.authn.authenticate(&mut request(&[]), now), Verdict::Anonymous);

        let refused = |headers: &[(&str, &str)]| match f.authn.authenticate(&mut request(headers), now) {
            Verdict::Refused(r) => r.reason.label(),
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(&[("authorization", "Basic YTpi")]), "bad_header");
        assert_eq!(refused(&[("authorization", "Bearer")]), "bad_header");
        assert_eq!(refused(&[("authorization", "Bearer x.y.z"), ("x-api-key", "mwk_a")]), "bad_header");
        assert_eq!(refused(&[("x-api-key", "mwk_a"), ("x-api-key", "mwk_b")]), "bad_header");
        assert_eq!(refused(&[("x-api-key", "nope")]), "malformed_api_key");
        assert_eq!(refused(&[("x-api-key", "mwk_0123456789")]), "unknown_api_key");
        assert_eq!(refused(&[("authorization", "Bearer not-a-jwt")]), "malformed");
        let expired = f.keys.mint_at("alice", &[], Duration::from_secs(60), now - Duration::from_secs(3600)).unwrap();
        assert_eq!(refused(&[("authorization", &format!("Bearer {expired}"))]), "expired");
        let mut req = request(&[("authorization", &format!("Bearer {expired}"))]);
        f.authn.authenticate(&mut req, now);
        assert!(req.headers.get(IDENTITY_HEADER).is_none());
    }

    #[test]
    fn verified_tokens_are_cached_until_they_expire() {
        let f = fixture(false);
        let now = SystemTime::now();
        let token = f.keys.mint_at("alice", &[], Duration::from_secs(60), now).unwrap();
        let header = format!("Bearer {token}");
        for _ in 0..3 {
            let verdict = f.authn.authenticate(&mut request(&[("authorization", &header)]), now);
            assert!(matches!(verdict, Verdict::Verified(id) if id.subject == "alice"));
        }
        assert_eq!(f.authn.tokens.entries.lock().unwrap().len(), 1);
        // Still accepted at exp + leeway, from the cache; refused one second later.
        let last = now + Duration::from_secs(120);
        assert!(matches!(
            f.authn.authenticate(&mut request(&[("authorization", &header)]), last),
            Verdict::Verified(_)
        ));
        let mut req = request(&[("authorization", &header)]);
        match f.authn.authenticate(&mut req, last + Duration::from_secs(1)) {
            Verdict::Refused(r) => assert_eq!(r.reason.label(), "expired"),
            other => panic!("{other:?}"),
        }
        assert!(req.headers.get(IDENTITY_HEADER).is_none());
        // A full cache makes room.
        let cache = TokenCache::default();
        for i in 0..TOKEN_CACHE_ENTRIES + 10 {
            let identity = Identity::new(format!("s{i}"), vec![], Method::Jwt);
            let cached = Cached { identity, header: HeaderValue::from_static("x"), until: now };
            cache.insert(TokenCache::key(&i.to_string()), cached, now);
        }
        assert!(cache.entries.lock().unwrap().len() <= TOKEN_CACHE_ENTRIES);
        assert!(cache.get(&TokenCache::key(&(TOKEN_CACHE_ENTRIES + 9).to_string()), now).is_some());
        assert!(
            cache.get(&TokenCache::key(&(TOKEN_CACHE_ENTRIES + 9).to_string()), now + Duration::from_secs(1)).is_none()
        );
    }

    #[test]
    fn credentials_are_forwarded_when_asked() {
        let f = fixture(true);
        let mut req = request(&[("x-api-key", &f.api_key)]);
        assert!(matches!(f.authn.authenticate(&mut req, SystemTime::now()), Verdict::Verified(_)));
        assert_eq!(req.headers["x-api-key"], f.api_key.as_str());
    }

    #[test]
    fn client_identity_is_stripped() {
        let mut req = request(&[(IDENTITY_HEADER, "forged"), (IDENTITY_HEADER, "twice"), ("x-other", "1")]);
        strip_identity(&mut req);
        assert!(req.headers.get(IDENTITY_HEADER).is_none());
        assert_eq!(req.headers["x-other"], "1");
    }

    #[test]
    fn config_errors_name_the_field_and_the_file() {
        let err = |config: AuthConfig| Authn::load(&config).unwrap_err().to_string();
        let msg = err(AuthConfig::dev("/nonexistent/jwks.json"));
        assert!(msg.contains("auth.jwks") && msg.contains("/nonexistent/jwks.json"), "{msg}");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("jwks.json");
        std::fs::write(&bad, "{}").unwrap();
        let msg = err(AuthConfig::dev(&bad));
        assert!(msg.contains("auth.jwks") && msg.contains("jwks.json") && msg.contains("keys"), "{msg}");
        let keys = DevKeys::load_or_create(dir.path()).unwrap();
        let msg = err(AuthConfig { issuer: None, ..AuthConfig::dev(keys.jwks_path()) });
        assert!(msg.contains("auth.issuer"), "{msg}");
        let msg = err(AuthConfig { audiences: vec![], ..AuthConfig::dev(keys.jwks_path()) });
        assert!(msg.contains("auth.audiences"), "{msg}");
        let msg =
            err(AuthConfig { api_keys: Some("/nonexistent/keys.toml".into()), ..AuthConfig::dev(keys.jwks_path()) });
        assert!(msg.contains("auth.api_keys") && msg.contains("/nonexistent/keys.toml"), "{msg}");
        let msg = err(AuthConfig { jwks: None, ..AuthConfig::dev(keys.jwks_path()) });
        assert!(msg.contains("give jwks (tokens), api_keys, or both"), "{msg}");
        let msg = err(AuthConfig { leeway_seconds: 7200, ..AuthConfig::dev(keys.jwks_path()) });
        assert!(msg.contains("leeway_seconds"), "{msg}");
    }

    #[test]
    fn auth_table_and_route_flag_parse() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DevKeys::load_or_create(dir.path()).unwrap();
        let text = format!(
            "listen = \"127.0.0.1:8080\"\n[auth]\njwks = {:?}\nissuer = \"meshwork-dev\"\naudiences = [\"meshwork\"]\n\
             [pools.p]\nendpoints = [\"127.0.0.1:1\"]\n[[routes]]\nservice = \"a.B\"\npool = \"p\"\n\
             allow_anonymous = true\n",
            keys.jwks_path()
        );
        let config = crate::GatewayConfig::from_toml_str(&text).unwrap();
        assert_eq!(config.auth, Some(AuthConfig::dev(keys.jwks_path())));
        assert!(config.routes[0].allow_anonymous);
        config.validate().unwrap();
        let typo = text.replace("issuer =", "isuer =");
        let msg = crate::GatewayConfig::from_toml_str(&typo).unwrap_err().to_string();
        assert!(msg.contains("unknown field `isuer`"), "{msg}");
    }

    #[test]
    fn refusal_headers() {
        assert_eq!(Refusal::missing().www_authenticate(), "Bearer realm=\"meshwork\"");
        let r = Refusal::new(Reason::Jwt("expired"), "JWT expired 5 s ago \"x\"\n");
        assert_eq!(
            r.www_authenticate(),
            "Bearer realm=\"meshwork\", error=\"invalid_token\", error_description=\"JWT expired 5 s ago x\""
        );
    }
}
