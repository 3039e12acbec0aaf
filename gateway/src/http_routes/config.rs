//! The configuration of the gateway's HTTP routes (`[[http_routes]]`) and of the protobuf
//! descriptors it reads them from (`descriptor_sets`).
//!
//! ```toml
//! descriptor_sets = ["meshwork.bin"]    # encoded FileDescriptorSets (protoc --include_imports -o)
//!
//! [[http_routes]]                      # JSON over HTTP from google.api.http annotations
//! kind = "transcode"
//! services = ["meshwork.urlshortener.v1.UrlShortener"]   # or package prefixes, or "*"
//!
//! [[http_routes]]                      # GET /{code} -> unary call -> 302 Location
//! kind = "redirect"
//! path = "/{code}"
//! method = "meshwork.urlshortener.v1.UrlShortener/Resolve"
//! location_field = "long_url"
//! param_pattern = "[A-Za-z0-9_-]{1,64}"
//! header_fields = { referer = "referrer" }
//! head_fields = { skip_click = "true" }
//! [[http_routes.status]]
//! grpc = "NOT_FOUND"
//! metadata = "meshwork-link-state"
//! values = ["expired", "deleted"]
//! http = 410
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// An encoded `google.protobuf.FileDescriptorSet`: a file (TOML: its path, relative to the
/// configuration file when read with `GatewayConfig::from_file`), or bytes given in code.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum DescriptorSet {
    /// A file holding the encoded set (`protoc --include_imports --descriptor_set_out=FILE`).
    File(PathBuf),
    /// The encoded set itself, e.g. a crate's `FILE_DESCRIPTOR_SET` (not expressible in TOML).
    #[serde(skip)]
    Encoded(Bytes),
}

impl From<&'static [u8]> for DescriptorSet {
    fn from(bytes: &'static [u8]) -> Self {
        DescriptorSet::Encoded(Bytes::from_static(bytes))
    }
}

impl From<Bytes> for DescriptorSet {
    fn from(bytes: Bytes) -> Self {
        DescriptorSet::Encoded(bytes)
    }
}

impl From<PathBuf> for DescriptorSet {
    fn from(path: PathBuf) -> Self {
        DescriptorSet::File(path)
    }
}

/// One HTTP route of the gateway (`[[http_routes]]`), chosen by `kind`.
///
/// Requests are matched in this order: the gateway's own pages (`/`, `/healthz`), then every
/// transcoded binding (the most specific template first: literal segments before variables),
/// then redirect routes in configuration order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HttpRouteConfig {
    /// gRPC-JSON transcoding of every method with a `google.api.http` annotation.
    Transcode(TranscodeRouteConfig),
    /// A unary call whose answer becomes a `302 Found` redirect.
    Redirect(RedirectRouteConfig),
}

/// gRPC-JSON transcoding (`kind = "transcode"`): each `google.api.http` binding of the listed
/// services' methods (`get`/`put`/`post`/`delete`/`patch`/`custom`, `body`, `response_body`,
/// `additional_bindings`) answers HTTP with a unary call to the service's pool, JSON in and out
/// (the proto3 JSON mapping). Errors answer `{"code": N, "message": "...", "details": []}` with
/// grpc-gateway's HTTP status for the code.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TranscodeRouteConfig {
    /// Full service names (`meshwork.urlshortener.v1.UrlShortener`), package prefixes
    /// (`meshwork`) matched on whole segments, or `"*"` for every described service. A service
    /// named outright needs a `[[routes]]` entry (that is where its calls go); prefixes and
    /// `"*"` take the routed services only.
    pub services: Vec<String>,
    /// Writes fields that hold their default value (`0`, `""`, `false`, `[]`) into JSON
    /// answers, as grpc-gateway does (Envoy does not by default). Default true.
    #[serde(default = "default_true")]
    pub emit_defaults: bool,
    /// Writes JSON answers with the `.proto` field names (`long_url`) instead of lowerCamelCase
    /// (`longUrl`). Requests accept both. Default false.
    #[serde(default)]
    pub proto_field_names: bool,
}

impl TranscodeRouteConfig {
    /// Transcoding of `services` with every default.
    pub fn new<S: Into<String>>(services: impl IntoIterator<Item = S>) -> Self {
        Self { services: services.into_iter().map(Into::into).collect(), emit_defaults: true, proto_field_names: false }
    }
}

/// A redirect route (`kind = "redirect"`): `GET` (or `HEAD`) on `path` calls `method` with the
/// path's variables (and the configured header and HEAD fields) set in the request, and answers
/// `302 Found` with `Location` from `location_field` of the answer. A failed call answers the
/// first matching `status` rule, else grpc-gateway's HTTP status for its code, with a short
/// text body.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedirectRouteConfig {
    /// Path template, e.g. `/{code}` (the syntax of `google.api.http`).
    pub path: String,
    /// The unary method called, `package.Service/Method`. Its service needs a `[[routes]]`
    /// entry.
    pub method: String,
    /// The field of the answer (a dotted path) whose string becomes the `Location` header.
    pub location_field: String,
    /// What every path variable must look like: one character class and a length,
    /// `[A-Za-z0-9_-]{1,64}` (or `+` for 1 or more). A path that does not fit is not this
    /// route's (404). Default: anything of one or more characters.
    #[serde(default)]
    pub param_pattern: Option<String>,
    /// Request fields filled from request headers: header name -> field path. For `referer`
    /// and `origin` the field gets the URL's host only (the path and query of the page a
    /// visitor came from are not the gateway's to pass on). Default none.
    #[serde(default)]
    pub header_fields: BTreeMap<String, String>,
    /// Request fields set on `HEAD` requests: field path -> value (as in a query parameter),
    /// e.g. `{ skip_click = "true" }` so that link checkers are not counted. Default none.
    #[serde(default)]
    pub head_fields: BTreeMap<String, String>,
    /// gRPC status -> HTTP status rules, first match wins; codes without a rule answer
    /// grpc-gateway's mapping (NOT_FOUND 404, INVALID_ARGUMENT 400, UNAVAILABLE 503, ...).
    #[serde(default)]
    pub status: Vec<StatusRuleConfig>,
    /// Longest time the call may take, in milliseconds (504 after). Default 5000.
    #[serde(default = "default_redirect_timeout_ms")]
    pub timeout_ms: u64,
}

impl RedirectRouteConfig {
    /// A redirect from `path` through `method` to `location_field`, with every default.
    pub fn new(path: impl Into<String>, method: impl Into<String>, location_field: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            method: method.into(),
            location_field: location_field.into(),
            param_pattern: None,
            header_fields: BTreeMap::new(),
            head_fields: BTreeMap::new(),
            status: Vec::new(),
            timeout_ms: default_redirect_timeout_ms(),
        }
    }
}

/// A rule of a redirect route's status table (`[[http_routes.status]]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatusRuleConfig {
    /// The gRPC code, by name (`NOT_FOUND`) or number (`5`).
    pub grpc: String,
    /// Optional: the rule applies only when the answer's metadata (headers or trailers) has
    /// this key with one of `values`.
    #[serde(default)]
    pub metadata: Option<String>,
    /// The values of `metadata` that select the rule.
    #[serde(default)]
    pub values: Vec<String>,
    /// The HTTP status answered (400-599).
    pub http: u16,
    /// The text body; default: the status's reason and the gRPC message.
    #[serde(default)]
    pub body: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_redirect_timeout_ms() -> u64 {
    5000
}
