//! What a service tells the rest of the mesh about itself: its [`ServiceSpec`]. Each service
//! crate exports one `spec()`; the binary keeps the one table of them (`src/services.rs`), and
//! everything that lists services is generated from that table: `meshwork serve <name>`,
//! `meshwork up`, `--help`, the gateway's default routes (with the idempotent methods the
//! gateway may retry) and its HTTP routes. Adding a service is a crate, a `.proto` and one line
//! in that table.

use crate::server::{HostedService, ServiceContext};

/// How the gateway answers an HTTP request by calling one unary method and turning a field of
/// its answer into a redirect (`GET /{code}` -> `302 Location: <field>`): the URL shortener's
/// short links. JSON routes need no spec: they come from `google.api.http` annotations in the
/// service's `.proto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRoute {
    /// Path template with one `{field}` segment, e.g. `/{code}`: the segment fills that field of
    /// the request.
    pub path: &'static str,
    /// A regular expression the segment must match whole, or the gateway answers 404 without a
    /// call (keeps `/favicon.ico` away from the service).
    pub param_pattern: Option<&'static str>,
    /// The unary method called, `package.Service/Method`.
    pub method: &'static str,
    /// The field of the answer that becomes the `Location` header.
    pub location_field: &'static str,
    /// Request fields filled from request headers: (header, field), e.g. the `Referer` host.
    pub header_fields: &'static [(&'static str, &'static str)],
    /// Request fields set on a `HEAD` request: (field, value), e.g. not counting a click.
    pub head_fields: &'static [(&'static str, &'static str)],
    /// A NOT_FOUND whose metadata key has one of these values answers 410 Gone instead of 404:
    /// (metadata key, values).
    pub gone_when: Option<(&'static str, &'static [&'static str])>,
}

/// An HTTP route a service asks the gateway for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpRoute {
    /// See [`RedirectRoute`].
    Redirect(RedirectRoute),
}

/// One service of the mesh, as the binary's table lists it.
#[derive(Clone)]
pub struct ServiceSpec {
    /// Short name, as on the command line (`urlshortener`); also the gateway pool's name.
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Fully qualified gRPC service names it answers, from tonic's `NamedService::NAME`.
    pub grpc_services: Vec<&'static str>,
    /// Builds the service on a context (starting its background tasks).
    pub hosted: fn(&ServiceContext) -> HostedService,
    /// HTTP routes the gateway serves for it.
    pub http_routes: Vec<HttpRoute>,
    /// Methods (names like `Resolve`) that are safe to send twice, so the gateway may retry an
    /// UNAVAILABLE answer on another replica. Every method taking a `request_id` qualifies.
    pub idempotent_methods: Vec<&'static str>,
}

impl std::fmt::Debug for ServiceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSpec")
            .field("name", &self.name)
            .field("grpc_services", &self.grpc_services)
            .field("http_routes", &self.http_routes)
            .field("idempotent_methods", &self.idempotent_methods)
            .finish_non_exhaustive()
    }
}

/// Returns the full gRPC service name of a tonic server type (`NamedService::NAME`).
pub fn grpc_name<S: tonic::server::NamedService>() -> &'static str {
    S::NAME
}
