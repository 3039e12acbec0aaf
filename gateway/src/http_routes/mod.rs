//! HTTP routes on the gateway's port: gRPC-JSON transcoding from `google.api.http` annotations
//! and redirect routes, both answered by a unary gRPC call that the gateway makes itself.
//!
//! The gateway knows no service's domain: everything comes from protobuf descriptors (given as
//! encoded `FileDescriptorSet`s through the configuration, read with `prost-reflect`) and from
//! `[[http_routes]]`. A transcoded request becomes a request message (JSON body, path variables,
//! query parameters), goes to the pool that `[[routes]]` gives the service (replica choice,
//! retries, deadline, metrics and trace spans as for a proxied call; see `upstream.rs`), and its
//! answer goes back as JSON; errors answer grpc-gateway's `{"code", "message", "details"}`
//! with its HTTP status for the code. A redirect route answers `302 Found` with a field of the
//! answer as `Location`, or the status its table gives for the failure.
//!
//! Why the gateway makes the call itself rather than rewriting the request inside Pingora's
//! filters: the HTTP status of a transcoded answer depends on the gRPC status, which arrives
//! in trailers, after Pingora has sent the response header; and Pingora drops trailers towards
//! HTTP/1.1 clients. Making the call (over per-replica tonic channels, with the pools' own
//! selection and outlier state) costs a second set of upstream connections and a copy of the
//! body, and keeps both edges simple and exact.

mod config;
mod json;
pub(crate) mod template;
pub(crate) mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use meshwork_telemetry::propagation::TraceInterceptor;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use prost::Message as _;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, Value};
use tonic::Code;
use tracing::Instrument;

pub use config::{DescriptorSet, HttpRouteConfig, RedirectRouteConfig, StatusRuleConfig, TranscodeRouteConfig};
use json::{BodySpec, JsonOptions};
use template::PathTemplate;
use upstream::{UnaryCall, Upstream};

use crate::config::{GatewayConfig, RouteConfig};
use crate::metrics::Metrics;
use crate::routing::Router;
use crate::trace;
use meshwork_telemetry::grpc_timeout::parse_grpc_timeout;

/// The protobuf descriptors the gateway was given: their encoded sets (for reflection, which
/// serves the files as they came, options included) and one merged pool.
#[derive(Debug, Clone, Default)]
pub(crate) struct Descriptors {
    encoded: Vec<Bytes>,
    pool: DescriptorPool,
}

impl Descriptors {
    /// Reads and merges `sets` (files read now); a file that several sets hold is taken once.
    pub fn load(sets: &[DescriptorSet]) -> Result<Self, String> {
        let mut descriptors = Descriptors::default();
        for set in sets {
            let bytes = match set {
                DescriptorSet::Encoded(bytes) => bytes.clone(),
                DescriptorSet::File(path) => Bytes::from(
                    std::fs::read(path).map_err(|e| format!("descriptor_sets: cannot read {}: {e}", path.display()))?,
                ),
            };
            let name = match set {
                DescriptorSet::File(path) => path.display().to_string(),
                DescriptorSet::Encoded(_) => "a descriptor set given in code".to_string(),
            };
            descriptors
                .pool
                .decode_file_descriptor_set(bytes.clone())
                .map_err(|e| format!("descriptor_sets: {name} is not a usable FileDescriptorSet: {e}"))?;
            descriptors.encoded.push(bytes);
        }
        Ok(descriptors)
    }

    /// The encoded sets, as given.
    pub fn encoded(&self) -> &[Bytes] {
        &self.encoded
    }

    /// Every described service, by full name.
    pub fn services(&self) -> Vec<String> {
        self.pool.services().map(|s| s.full_name().to_string()).collect()
    }
}

/// Whether `routes` send calls of `service`/`method` somewhere (the router's matching: the
/// method, the service, or a package prefix on whole segments; header-matched routes count).
pub(crate) fn is_routed(routes: &[RouteConfig], service: &str, method: &str) -> bool {
    routes.iter().any(|r| {
        let name = r.service.as_str();
        name == service
            || name.split_once('/') == Some((service, method))
            || (!name.contains('/') && service.strip_prefix(name).is_some_and(|rest| rest.starts_with('.')))
    })
}

/// Whether a service name is selected by a transcode route's `services`.
fn selects(patterns: &[String], service: &str) -> bool {
    patterns
        .iter()
        .any(|p| p == "*" || p == service || service.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('.')))
}

/// One HTTP binding of a method (a `google.api.http` rule or one of its additional bindings).
#[derive(Debug)]
pub(crate) struct Binding {
    http_method: Method,
    template: PathTemplate,
    /// The field path of each template variable.
    vars: Vec<Vec<FieldDescriptor>>,
    target: Target,
    body: BodySpec,
    response_body: Option<FieldDescriptor>,
    json: JsonOptions,
}

/// The gRPC method a route calls.
#[derive(Debug)]
struct Target {
    /// `/package.Service/Method`.
    path: String,
    service: String,
    method: String,
    input: MessageDescriptor,
    output: MessageDescriptor,
}

impl Target {
    fn find(pool: &DescriptorPool, full: &str) -> Result<Self, String> {
        let Some((service, method)) = full.split_once('/') else {
            return Err(format!("method \"{full}\" must be package.Service/Method"));
        };
        let Some(svc) = pool.get_service_by_name(service) else {
            return Err(format!("method \"{full}\": service {service} is not in the descriptor sets"));
        };
        let Some(m) = svc.methods().find(|m| m.name() == method) else {
            return Err(format!("method \"{full}\": {service} has no method {method}"));
        };
        if m.is_client_streaming() || m.is_server_streaming() {
            return Err(format!("method \"{full}\" streams; HTTP routes call unary methods only"));
        }
        Ok(Target {
            path: format!("/{service}/{method}"),
            service: service.to_string(),
            method: method.to_string(),
            input: m.input(),
            output: m.output(),
        })
    }
}

/// A status rule of a redirect route.
#[derive(Debug)]
struct StatusRule {
    code: Code,
    metadata: Option<(String, Vec<String>)>,
    http: u16,
    body: Option<String>,
}

/// What every path variable of a redirect route must look like: a character class and a
/// length range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParamPattern {
    ranges: Vec<(char, char)>,
    min: usize,
    max: usize,
}

impl ParamPattern {
    /// Parses `[A-Za-z0-9_-]{1,64}`, `[a-z]{3}` or `[a-z]+`.
    fn parse(text: &str) -> Option<Self> {
        let inner = text.strip_prefix('[')?;
        let close = inner.find(']')?;
        let (class, count) = (&inner[..close], &inner[close + 1..]);
        let chars: Vec<char> = class.chars().collect();
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                if chars[i] > chars[i + 2] {
                    return None;
                }
                ranges.push((chars[i], chars[i + 2]));
                i += 3;
            } else {
                ranges.push((chars[i], chars[i]));
                i += 1;
            }
        }
        if ranges.is_empty() {
            return None;
        }
        let (min, max) = if count == "+" {
            (1, usize::MAX)
        } else {
            let count = count.strip_prefix('{')?.strip_suffix('}')?;
            match count.split_once(',') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let n = count.trim().parse().ok()?;
                    (n, n)
                }
            }
        };
        (min >= 1 && min <= max).then_some(ParamPattern { ranges, min, max })
    }

    fn matches(&self, value: &str) -> bool {
        let n = value.chars().count();
        n >= self.min && n <= self.max && value.chars().all(|c| self.ranges.iter().any(|(a, b)| (*a..=*b).contains(&c)))
    }
}

/// Where a request field comes from in a redirect route's request headers.
#[derive(Debug)]
struct HeaderField {
    header: HeaderName,
    field: Vec<FieldDescriptor>,
    /// `referer` / `origin`: only the URL's host.
    host_only: bool,
}

/// A compiled redirect route.
#[derive(Debug)]
pub(crate) struct Redirect {
    template: PathTemplate,
    vars: Vec<Vec<FieldDescriptor>>,
    pattern: Option<ParamPattern>,
    target: Target,
    location: Vec<FieldDescriptor>,
    header_fields: Vec<HeaderField>,
    head_fields: Vec<(Vec<FieldDescriptor>, String)>,
    rules: Vec<StatusRule>,
    timeout: Duration,
}

/// Every HTTP route, compiled against the descriptors.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    bindings: Vec<Binding>,
    redirects: Vec<Redirect>,
    pool: DescriptorPool,
}

/// What a request path and method select.
pub(crate) enum Lookup<'a> {
    /// A transcoded binding, with the decoded values of its variables.
    Transcode(&'a Binding, Vec<String>),
    /// A redirect route, with the decoded values of its variables.
    Redirect(&'a Redirect, Vec<String>),
    /// The path is a route's but not for this method: the `Allow` header value.
    WrongMethod(String),
    /// No route has this path.
    None,
}

fn split_path(path: &str) -> Vec<String> {
    path.split('.').map(str::to_string).collect()
}

fn template_vars(
    template: &PathTemplate,
    input: &MessageDescriptor,
    what: &str,
) -> Result<Vec<Vec<FieldDescriptor>>, String> {
    template
        .variables()
        .iter()
        .map(|v| {
            let path = json::field_path(input, &v.field_path).map_err(|e| format!("{what}: {e}"))?;
            match path.last() {
                Some(leaf) if leaf.is_list() || leaf.is_map() => {
                    Err(format!("{what}: {} is repeated and cannot be a path variable", json::path_name(&path)))
                }
                _ => Ok(path),
            }
        })
        .collect()
}

impl RouteTable {
    /// Compiles `config.http_routes` against `descriptors`; `routes` says which services have
    /// somewhere to go. Names the first problem.
    pub fn compile(config: &GatewayConfig, descriptors: &Descriptors) -> Result<Self, String> {
        let pool = &descriptors.pool;
        let mut table = RouteTable { pool: pool.clone(), ..RouteTable::default() };
        for (i, route) in config.http_routes.iter().enumerate() {
            match route {
                HttpRouteConfig::Transcode(t) => table.add_transcode(config, pool, i, t)?,
                HttpRouteConfig::Redirect(r) => table.add_redirect(config, pool, i, r)?,
            }
        }
        // Most specific template first; the sort is stable, so equal ones keep their order.
        table.bindings.sort_by_key(|b| b.template.specificity());
        Ok(table)
    }

    fn add_transcode(
        &mut self,
        config: &GatewayConfig,
        pool: &DescriptorPool,
        index: usize,
        route: &TranscodeRouteConfig,
    ) -> Result<(), String> {
        let at = format!("http_routes[{index}] (transcode)");
        if route.services.is_empty() {
            return Err(format!("{at}: services is empty"));
        }
        for pattern in &route.services {
            let known =
                pattern == "*" || pool.services().any(|s| selects(std::slice::from_ref(pattern), s.full_name()));
            if !known {
                return Err(format!("{at}: no described service matches \"{pattern}\" (see descriptor_sets)"));
            }
        }
        let json = JsonOptions { emit_defaults: route.emit_defaults, proto_field_names: route.proto_field_names };
        let Some(extension) = pool.get_extension_by_name("google.api.http") else {
            return Err(format!(
                "{at}: the descriptor sets lack google/api/annotations.proto (compile with --include_imports)"
            ));
        };
        for service in pool.services() {
            if !selects(&route.services, service.full_name()) {
                continue;
            }
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let full = format!("{}/{}", service.full_name(), method.name());
                if !is_routed(&config.routes, service.full_name(), method.name()) {
                    // A service named outright must be routed; prefixes and "*" take the routed
                    // ones only.
                    if route.services.iter().any(|p| p == service.full_name()) {
                        return Err(format!("{at}: {full} has no [[routes]] entry to send its calls to"));
                    }
                    continue;
                }
                if method.is_client_streaming() || method.is_server_streaming() {
                    tracing::debug!(method = %full, "streaming method not transcoded");
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&extension).into_owned() else { continue };
                let mut rules = vec![rule.clone()];
                if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").map(|v| v.into_owned()) {
                    rules.extend(more.into_iter().filter_map(|v| match v {
                        Value::Message(m) => Some(m),
                        _ => None,
                    }));
                }
                for rule in rules {
                    let binding = Self::binding(pool, &full, &rule, json.clone())
                        .map_err(|e| format!("{at}: {full}: google.api.http: {e}"))?;
                    self.bindings.push(binding);
                }
            }
        }
        Ok(())
    }

    fn binding(
        pool: &DescriptorPool,
        full: &str,
        rule: &prost_reflect::DynamicMessage,
        json: JsonOptions,
    ) -> Result<Binding, String> {
        let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let mut pattern = None;
        for (field, method) in [
            ("get", Method::GET),
            ("put", Method::PUT),
            ("post", Method::POST),
            ("delete", Method::DELETE),
            ("patch", Method::PATCH),
        ] {
            if rule.has_field_by_name(field) {
                pattern = Some((method, text(field)));
            }
        }
        if pattern.is_none()
            && let Some(Value::Message(custom)) = rule.get_field_by_name("custom").as_deref()
        {
            let kind = match custom.get_field_by_name("kind").as_deref() {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            let path = match custom.get_field_by_name("path").as_deref() {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            let method = Method::from_bytes(kind.as_bytes()).map_err(|_| format!("custom kind \"{kind}\""))?;
            pattern = Some((method, path));
        }
        let Some((http_method, path)) = pattern else { return Err("no HTTP method and path".into()) };
        let target = Target::find(pool, full)?;
        let template = PathTemplate::parse(&path).map_err(|e| e.to_string())?;
        let vars = template_vars(&template, &target.input, &path)?;
        let body = match text("body").as_str() {
            "" => BodySpec::None,
            "*" => BodySpec::All,
            name => match target.input.get_field_by_name(name) {
                Some(field) => BodySpec::Field(field),
                None => return Err(format!("body \"{name}\" is not a field of {}", target.input.full_name())),
            },
        };
        let response_body =
            match text("response_body").as_str() {
                "" => None,
                name => Some(target.output.get_field_by_name(name).ok_or_else(|| {
                    format!("response_body \"{name}\" is not a field of {}", target.output.full_name())
                })?),
            };
        Ok(Binding { http_method, template, vars, target, body, response_body, json })
    }

    fn add_redirect(
        &mut self,
        config: &GatewayConfig,
        pool: &DescriptorPool,
        index: usize,
        route: &RedirectRouteConfig,
    ) -> Result<(), String> {
        let at = format!("http_routes[{index}] (redirect {})", route.path);
        let target = Target::find(pool, &route.method).map_err(|e| format!("{at}: {e}"))?;
        if !is_routed(&config.routes, &target.service, &target.method) {
            return Err(format!("{at}: {} has no [[routes]] entry to send its calls to", route.method));
        }
        let template = PathTemplate::parse(&route.path).map_err(|e| format!("{at}: {e}"))?;
        let vars = template_vars(&template, &target.input, &at)?;
        let pattern = match &route.param_pattern {
            None => None,
            Some(text) => Some(ParamPattern::parse(text).ok_or_else(|| {
                format!(
                    "{at}: param_pattern \"{text}\" must be a character class and a count, like [A-Za-z0-9_-]{{1,64}}"
                )
            })?),
        };
        let location = json::field_path(&target.output, &split_path(&route.location_field))
            .map_err(|e| format!("{at}: location_field: {e}"))?;
        if location.last().is_none_or(|f| f.kind() != Kind::String || f.is_list()) {
            return Err(format!("{at}: location_field {} is not a string field", route.location_field));
        }
        let mut header_fields = Vec::new();
        for (header, field) in &route.header_fields {
            let name = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("{at}: header_fields: \"{header}\" is not a header name"))?;
            let field = json::field_path(&target.input, &split_path(field))
                .map_err(|e| format!("{at}: header_fields.{header}: {e}"))?;
            let host_only = name == header::REFERER || name == header::ORIGIN;
            header_fields.push(HeaderField { header: name, field, host_only });
        }
        let mut head_fields = Vec::new();
        for (field, value) in &route.head_fields {
            let path = json::field_path(&target.input, &split_path(field))
                .map_err(|e| format!("{at}: head_fields.{field}: {e}"))?;
            json::message_from_params(&target.input, &[(path.clone(), vec![value.clone()])])
                .map_err(|e| format!("{at}: head_fields.{field}: {e}"))?;
            head_fields.push((path, value.clone()));
        }
        let mut rules = Vec::new();
        for rule in &route.status {
            let code = json::parse_code(&rule.grpc)
                .ok_or_else(|| format!("{at}: status: \"{}\" is not a gRPC code (NOT_FOUND or 5)", rule.grpc))?;
            if !(300..=599).contains(&rule.http) {
                return Err(format!("{at}: status: http = {} must be between 300 and 599", rule.http));
            }
            let metadata = match &rule.metadata {
                Some(key) => {
                    if tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(key.as_bytes()).is_err() {
                        return Err(format!("{at}: status: metadata \"{key}\" is not a metadata key"));
                    }
                    if rule.values.is_empty() {
                        return Err(format!("{at}: status: metadata \"{key}\" needs values"));
                    }
                    Some((key.clone(), rule.values.clone()))
                }
                None if !rule.values.is_empty() => return Err(format!("{at}: status: values need a metadata key")),
                None => None,
            };
            rules.push(StatusRule { code, metadata, http: rule.http, body: rule.body.clone() });
        }
        if !(1..=600_000).contains(&route.timeout_ms) {
            return Err(format!("{at}: timeout_ms = {}: must be between 1 and 600000", route.timeout_ms));
        }
        self.redirects.push(Redirect {
            template,
            vars,
            pattern,
            target,
            location,
            header_fields,
            head_fields,
            rules,
            timeout: Duration::from_millis(route.timeout_ms),
        });
        Ok(())
    }

    /// Whether there is no route at all.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty() && self.redirects.is_empty()
    }

    /// Finds the route of a request.
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        let effective = if method == Method::HEAD { &Method::GET } else { method };
        let mut allow: Vec<&str> = Vec::new();
        for binding in &self.bindings {
            if let Some(values) = binding.template.matches(path) {
                if binding.http_method == *effective {
                    return Lookup::Transcode(binding, values);
                }
                allow.push(binding.http_method.as_str());
            }
        }
        for redirect in &self.redirects {
            if let Some(values) = redirect.template.matches(path)
                && redirect.pattern.as_ref().is_none_or(|p| values.iter().all(|v| p.matches(v)))
            {
                if *effective == Method::GET {
                    return Lookup::Redirect(redirect, values);
                }
                allow.push("GET");
            }
        }
        if allow.is_empty() {
            return Lookup::None;
        }
        if allow.contains(&"GET") {
            allow.push("HEAD");
        }
        allow.sort_unstable();
        allow.dedup();
        Lookup::WrongMethod(allow.join(", "))
    }
}

/// Request headers that are HTTP's, not the call's: they do not become metadata.
const NOT_METADATA: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "content-type",
    "content-length",
    "content-encoding",
    "accept",
    "accept-encoding",
    "accept-language",
    "user-agent",
    "cookie",
    "origin",
    "referer",
    "traceparent",
    "tracestate",
];

/// The metadata of a transcoded call: the request's headers but HTTP's own; `grpc-metadata-K`
/// becomes `K` (grpc-gateway's convention); other `grpc-` headers are reserved.
fn forwarded_metadata(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let key = name.as_str();
        if let Some(stripped) = key.strip_prefix("grpc-metadata-") {
            if let Ok(name) = HeaderName::from_bytes(stripped.as_bytes()) {
                out.append(name, value.clone());
            }
        } else if !key.starts_with("grpc-") && !NOT_METADATA.contains(&key) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The host of a URL-valued header (`https://news.example/a?b` -> `news.example`), empty when
/// there is none.
fn url_host(value: &HeaderValue) -> String {
    value
        .to_str()
        .ok()
        .and_then(|s| s.parse::<http::Uri>().ok())
        .and_then(|uri| uri.host().map(|h| h.to_ascii_lowercase()))
        .unwrap_or_default()
}

/// Parses a query string into (key, values) in first-seen order; `+` is a space.
fn query_pairs(query: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut pairs: Vec<(String, Vec<String>)> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let decode = |s: &str| {
            template::percent_decode(&s.replace('+', " "))
                .ok_or_else(|| format!("query parameter \"{part}\" is not valid percent-encoded UTF-8"))
        };
        let (key, value) = (decode(key)?, decode(value)?);
        match pairs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value),
            None => pairs.push((key, vec![value])),
        }
    }
    Ok(pairs)
}

/// The running HTTP routes: the table, and what calls need.
pub(crate) struct HttpRoutes {
    table: RouteTable,
    router: Arc<Router>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    propagate_unsampled: bool,
    max_body_bytes: usize,
}

/// An answer to write: status, content type, body, extra headers.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Answer {
    fn json(status: u16, body: Vec<u8>) -> Self {
        Self { status, content_type: "application/json", body: Bytes::from(body), headers: Vec::new() }
    }

    fn error(status: &tonic::Status, pool: Option<&DescriptorPool>) -> Self {
        Self::json(json::http_status_for_code(status.code()), json::status_json(status, pool))
    }

    fn text(status: u16, text: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(format!("{text}\n")),
            headers: Vec::new(),
        }
    }
}

impl HttpRoutes {
    /// The routes of `table`, calling through `upstream`.
    pub fn new(
        table: RouteTable,
        router: Arc<Router>,
        upstream: Upstream,
        metrics: Arc<Metrics>,
        propagate_unsampled: bool,
        max_body_bytes: usize,
    ) -> Self {
        Self { table, router, upstream, metrics, propagate_unsampled, max_body_bytes }
    }

    /// Finds the route of a request.
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        self.table.lookup(method, path)
    }

    /// Answers a transcoded request.
    pub async fn transcode(
        &self,
        session: &mut Session,
        binding: &Binding,
        values: Vec<String>,
    ) -> pingora_core::Result<()> {
        let answer = self.transcode_answer(session, binding, values).await;
        write(session, answer).await
    }

    async fn transcode_answer(&self, session: &mut Session, binding: &Binding, values: Vec<String>) -> Answer {
        let started = Instant::now();
        let target = &binding.target;
        let stats = self.metrics.method(&target.path, &target.service, &target.method);
        let headers = session.req_header().headers.clone();
        let query = session.req_header().uri.query().unwrap_or("").to_string();
        let body = match read_body(session, self.max_body_bytes).await {
            Ok(body) => body,
            Err(answer) => return answer,
        };
        let request = match self.request_message(binding, values, &query, &body) {
            Ok(request) => request,
            Err(message) => {
                stats.record(Code::InvalidArgument as u16, started.elapsed());
                return Answer::error(&tonic::Status::invalid_argument(message), None);
            }
        };
        let Some(route) = self.router.lookup(&target.service, &target.method, &headers).cloned() else {
            let status = tonic::Status::unimplemented(format!("unknown service {}: no route for it", target.service));
            return Answer::error(&status, None);
        };
        // The route's authentication rule applies as to a proxied call (`[auth]`).
        if !crate::authn::admits(&route, &headers) {
            let status = crate::authn::missing_credentials(&self.metrics);
            stats.record(status.code() as u16, started.elapsed());
            return Answer::error(&status, None);
        }
        let client_timeout = headers.get("grpc-timeout").and_then(|v| parse_grpc_timeout(v.as_bytes()));
        let timeout = match (client_timeout, route.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut call_trace =
            trace::server_span(&headers, &target.path, &target.service, &target.method, self.propagate_unsampled);
        let mut client_span = trace::CallSpan::default();
        let call = UnaryCall {
            route: &route,
            path: &target.path,
            method: &target.method,
            message: Bytes::from(request.encode_to_vec()),
            metadata: forwarded_metadata(&headers),
            deadline: timeout.map(|t| started + t),
            hash: None,
        };
        let result = {
            let (call_trace, client_span, headers) = (&call_trace, &mut client_span, &headers);
            let mut decorate = move |addr, attempt, metadata: &mut HeaderMap| {
                *client_span = trace::client_span(call_trace, &target.path, addr, attempt);
                trace::inject_metadata(call_trace, client_span, headers, metadata);
            };
            self.upstream.unary(call, &mut decorate).await
        };
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        stats.record(code as u16, started.elapsed());
        trace::record_status(&mut client_span, code as u16);
        if let Some(server_span) = call_trace.server_mut() {
            trace::record_status(server_span, code as u16);
        }
        match result {
            Ok(answer) => {
                match json::answer_json(&target.output, &answer.message, binding.response_body.as_ref(), &binding.json)
                {
                    Ok(body) => {
                        let mut out = Answer::json(200, body);
                        out.headers = response_metadata(&answer.metadata);
                        out
                    }
                    Err(message) => Answer::error(&tonic::Status::internal(message), None),
                }
            }
            Err(status) => {
                let mut out = Answer::error(&status, Some(&self.table.pool));
                out.headers = response_metadata(status.metadata());
                out
            }
        }
    }

    fn request_message(
        &self,
        binding: &Binding,
        values: Vec<String>,
        query: &str,
        body: &[u8],
    ) -> Result<prost_reflect::DynamicMessage, String> {
        let input = &binding.target.input;
        let mut params: Vec<(Vec<FieldDescriptor>, Vec<String>)> =
            binding.vars.iter().cloned().zip(values.into_iter().map(|v| vec![v])).collect();
        if !matches!(binding.body, BodySpec::All) {
            for (key, values) in query_pairs(query)? {
                let path = json::field_path(input, &split_path(&key)).map_err(|_| {
                    format!("unknown query parameter \"{key}\" (no such field in {})", input.full_name())
                })?;
                let bound_by_path = binding.vars.iter().any(|v| v.starts_with(&path) || path.starts_with(v));
                let in_body = matches!(&binding.body, BodySpec::Field(f) if path.first() == Some(f));
                if bound_by_path || in_body {
                    continue;
                }
                params.push((path, values));
            }
        }
        let params = json::message_from_params(input, &params)?;
        json::request_message(input, &binding.body, body, params)
    }

    /// Answers a redirect request.
    pub async fn redirect(
        &self,
        session: &mut Session,
        route: &Redirect,
        values: Vec<String>,
    ) -> pingora_core::Result<()> {
        let started = Instant::now();
        let target = &route.target;
        let req = session.req_header();
        let head = req.method == Method::HEAD;
        let path = req.uri.path().to_string();
        let headers = req.headers.clone();
        let stats = self.metrics.method(&target.path, &target.service, &target.method);
        let mut params: Vec<(Vec<FieldDescriptor>, Vec<String>)> =
            route.vars.iter().cloned().zip(values.into_iter().map(|v| vec![v])).collect();
        for field in &route.header_fields {
            let Some(value) = headers.get(&field.header) else { continue };
            let text = if field.host_only { url_host(value) } else { value.to_str().unwrap_or("").to_string() };
            if !text.is_empty() {
                params.push((field.field.clone(), vec![text]));
            }
        }
        if head {
            params.extend(route.head_fields.iter().map(|(f, v)| (f.clone(), vec![v.clone()])));
        }
        let request = match json::message_from_params(&target.input, &params) {
            Ok(request) => request,
            Err(message) => {
                stats.record(Code::InvalidArgument as u16, started.elapsed());
                return write(session, Answer::text(400, &format!("Bad Request: {message}"))).await;
            }
        };
        let Some(call_route) = self.router.lookup(&target.service, &target.method, &headers).cloned() else {
            return write(session, Answer::text(503, "Service Unavailable: no route for the redirect")).await;
        };
        if !crate::authn::admits(&call_route, &headers) {
            let status = crate::authn::missing_credentials(&self.metrics);
            stats.record(status.code() as u16, started.elapsed());
            return write(session, Answer::text(401, &format!("Unauthorized: {}", status.message()))).await;
        }
        let timeout = call_route.timeout.map_or(route.timeout, |t| t.min(route.timeout));
        let span = trace::redirect_span(&headers, &route.template.to_string(), &path, self.propagate_unsampled);
        let call = UnaryCall {
            route: &call_route,
            path: &target.path,
            method: &target.method,
            message: Bytes::from(request.encode_to_vec()),
            metadata: HeaderMap::new(),
            deadline: Some(started + timeout),
            hash: None,
        };
        // The call runs in the redirect's span; its context (or the caller's unsampled one) goes
        // with every attempt, as a service's own outgoing calls carry it.
        let mut decorate = |_, _, metadata: &mut HeaderMap| {
            let request = tonic::Request::from_parts(
                tonic::metadata::MetadataMap::from_headers(std::mem::take(metadata)),
                Default::default(),
                (),
            );
            if let Ok(request) = tonic::service::Interceptor::call(&mut TraceInterceptor, request) {
                *metadata = request.into_parts().0.into_headers();
            }
        };
        let result = self.upstream.unary(call, &mut decorate).instrument(span.clone()).await;
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        stats.record(code as u16, started.elapsed());
        let answer = match result {
            Ok(answer) => {
                let location = json::string_field(&target.output, &answer.message, &route.location)
                    .filter(|l| !l.is_empty())
                    .and_then(|l| HeaderValue::from_str(&l).ok().map(|v| (l, v)));
                match location {
                    Some((text, value)) => {
                        let mut out = Answer::text(302, &format!("Found: {text}"));
                        out.headers.push((header::LOCATION, value));
                        out
                    }
                    None => Answer::text(502, "Bad Gateway: the answer has no usable location"),
                }
            }
            Err(status) => {
                let rule = route.rules.iter().find(|rule| {
                    rule.code == status.code()
                        && rule.metadata.as_ref().is_none_or(|(key, values)| {
                            status
                                .metadata()
                                .get(key.as_str())
                                .and_then(|v| v.to_str().ok())
                                .is_some_and(|v| values.iter().any(|x| x == v))
                        })
                });
                let http = rule.map_or_else(|| json::http_status_for_code(status.code()), |r| r.http);
                let reason =
                    http::StatusCode::from_u16(http).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
                let body = match rule.and_then(|r| r.body.clone()) {
                    Some(body) => body,
                    None if status.message().is_empty() => reason.to_string(),
                    None => format!("{reason}: {}", status.message()),
                };
                Answer::text(http, &body)
            }
        };
        if !span.is_disabled() {
            span.record("http.response.status_code", i64::from(answer.status));
        }
        tracing::debug!(path, status = answer.status, elapsed_us = started.elapsed().as_micros() as u64, "redirect");
        write(session, answer).await
    }

    /// Answers a request whose path no route has: a JSON `NOT_FOUND` status for clients that
    /// speak JSON, else `None` (the caller answers its plain 404).
    pub fn not_found_json(headers: &HeaderMap, method: &Method, path: &str) -> Option<(u16, Vec<u8>)> {
        let wants_json = [header::ACCEPT, header::CONTENT_TYPE]
            .iter()
            .any(|h| headers.get(h).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json")));
        wants_json.then(|| {
            let status = tonic::Status::not_found(format!("no HTTP route for {method} {path}"));
            (404, json::status_json(&status, None))
        })
    }
}

/// Response metadata as headers: `grpc-metadata-<key>` for every ASCII key that is not the
/// protocol's own (grpc-gateway's convention).
fn response_metadata(metadata: &tonic::metadata::MetadataMap) -> Vec<(HeaderName, HeaderValue)> {
    let headers = metadata.clone().into_headers();
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !n.starts_with("grpc-")
                && !n.ends_with("-bin")
                && !NOT_METADATA.contains(&n)
                && n != "date"
                && n != "server"
        })
        .filter_map(|(name, value)| {
            Some((HeaderName::from_bytes(format!("grpc-metadata-{name}").as_bytes()).ok()?, value.clone()))
        })
        .collect()
}

/// Reads the whole request body, at most `limit` bytes (else a 413 answer).
async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, Answer> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    let status = tonic::Status::resource_exhausted(format!("request body above {limit} bytes"));
                    let mut answer = Answer::error(&status, None);
                    answer.status = 413;
                    return Err(answer);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                let status = tonic::Status::invalid_argument(format!("cannot read the request body: {e}"));
                return Err(Answer::error(&status, None));
            }
        }
    }
}

/// Writes an answer (no body for HEAD).
async fn write(session: &mut Session, answer: Answer) -> pingora_core::Result<()> {
    let mut resp = ResponseHeader::build(answer.status, Some(4 + answer.headers.len()))?;
    resp.insert_header(header::CONTENT_TYPE, answer.content_type)?;
    resp.insert_header(header::CONTENT_LENGTH, answer.body.len())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    for (name, value) in answer.headers {
        resp.append_header(name, value)?;
    }
    let head = session.req_header().method == Method::HEAD;
    session.write_response_header(Box::new(resp), head).await?;
    if !head {
        session.write_response_body(Some(answer.body), true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_patterns() {
        let p = ParamPattern::parse("[A-Za-z0-9_-]{1,64}").unwrap();
        assert!(p.matches("abc123") && p.matches("a_b-C"));
        assert!(!p.matches("favicon.ico") && !p.matches("") && !p.matches(&"x".repeat(65)));
        assert!(p.matches(&"x".repeat(64)));
        let plus = ParamPattern::parse("[a-z]+").unwrap();
        assert!(plus.matches("abc") && !plus.matches("ABC"));
        assert_eq!(ParamPattern::parse("[a-z]{3}").map(|p| (p.min, p.max)), Some((3, 3)));
        for bad in ["a-z", "[]{1,2}", "[z-a]+", "[a-z]{0,2}", "[a-z]{3,2}", "[a-z]*", "[a-z"] {
            assert!(ParamPattern::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn no_query_or_pattern_panics() {
        fn prop(text: String) -> bool {
            let _ = query_pairs(&text);
            if let Some(p) = ParamPattern::parse(&text) {
                let _ = p.matches(&text);
            }
            true
        }
        quickcheck::QuickCheck::new().tests(2000).quickcheck(prop as fn(String) -> bool);
        for text in ["[", "[]", "[-]+", "[a-]{1}", "[a-z]{,}", "[a-z]{99999999999999999999}", "&&=&", "%", "a=%"] {
            prop(text.to_string());
        }
    }

    #[test]
    fn query_strings() {
        let pairs = query_pairs("days=7&top_referrers=3&tag=a&tag=b+c&x=%2F").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("days".to_string(), vec!["7".to_string()]),
                ("top_referrers".to_string(), vec!["3".to_string()]),
                ("tag".to_string(), vec!["a".to_string(), "b c".to_string()]),
                ("x".to_string(), vec!["/".to_string()]),
            ]
        );
        assert!(query_pairs("a=%zz").is_err());
        assert_eq!(query_pairs("").unwrap(), vec![]);
    }

    #[test]
    fn metadata_forwarding() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.insert("grpc-metadata-x-tenant", HeaderValue::from_static("7"));
        headers.insert("grpc-timeout", HeaderValue::from_static("1S"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        let out = forwarded_metadata(&headers);
        assert_eq!(out.get("authorization").unwrap(), "Bearer t");
        assert_eq!(out.get("x-tenant").unwrap(), "7");
        assert_eq!(out.get("x-request-id").unwrap(), "r1");
        assert!(out.get("grpc-timeout").is_none() && out.get("content-type").is_none());
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host(&HeaderValue::from_static("https://News.Example/a?b=c")), "news.example");
        assert_eq!(url_host(&HeaderValue::from_static("not a url")), "");
    }

    #[test]
    fn routed_services() {
        let routes = vec![RouteConfig::new("meshwork.urlshortener.v1", "p"), RouteConfig::new("a.B/Get", "p")];
        assert!(is_routed(&routes, "meshwork.urlshortener.v1.UrlShortener", "Shorten"));
        assert!(is_routed(&routes, "a.B", "Get"));
        assert!(!is_routed(&routes, "a.B", "Put"));
        assert!(!is_routed(&routes, "meshwork.urlshortener.v10.X", "Y"));
    }
}
