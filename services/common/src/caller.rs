//! Who calls a handler: the identity the gateway verified (JWT or API key) and put in the
//! `meshwork-identity` metadata entry, read with [`Caller::from_request`] or
//! [`Caller::required`]. Ownership and roles follow from it: a missing caller is
//! UNAUTHENTICATED, a caller without the right is PERMISSION_DENIED (DESIGN.md, "Identity").
//!
//! A service trusts that entry only from the gateway. [`TrustedIdentityLayer`], in the server
//! builder's layer stack, removes it from every call whose peer is neither on loopback (the
//! gateway of `meshwork up`) nor authenticated with a client certificate (mutual TLS, the
//! gateway of a multi-machine mesh); such a caller is then anonymous.

use std::net::SocketAddr;
use std::task::{Context, Poll};

use meshwork_identity::{IDENTITY_HEADER, Identity};
use tonic::Status;
use tonic::metadata::MetadataMap;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The role that may act on anything ([`Caller::is_admin`]).
pub const ADMIN_ROLE: &str = "admin";

/// A caller the gateway has verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Who calls: the token's `sub` or the API key's subject.
    pub subject: String,
    /// The caller's roles.
    pub roles: Vec<String>,
}

impl From<Identity> for Caller {
    fn from(identity: Identity) -> Self {
        Self { subject: identity.subject, roles: identity.roles }
    }
}

impl Caller {
    /// The caller of `request`: None when the call carries no identity (an anonymous call, or
    /// one from an untrusted peer); UNAUTHENTICATED when the identity is unreadable or given
    /// more than once.
    pub fn from_request<T>(request: &tonic::Request<T>) -> Result<Option<Caller>, Status> {
        Self::from_metadata(request.metadata())
    }

    /// [`Caller::from_request`] on the metadata alone.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Option<Caller>, Status> {
        let mut values = metadata.get_all(IDENTITY_HEADER).iter();
        let Some(value) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err(Status::unauthenticated("meshwork-identity is given more than once"));
        }
        match Identity::decode(value.as_bytes()) {
            Ok(identity) => Ok(Some(identity.into())),
            Err(e) => Err(Status::unauthenticated(e.to_string())),
        }
    }

    /// The caller of `request`; UNAUTHENTICATED when there is none.
    pub fn required<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
        Self::from_request(request)?.ok_or_else(|| {
            Status::unauthenticated(
                "this call needs credentials: send authorization: Bearer <token> or x-api-key through the gateway",
            )
        })
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the caller holds the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.has_role(ADMIN_ROLE)
    }

    /// Succeeds when the caller is `owner` or holds `role`; PERMISSION_DENIED otherwise.
    pub fn require_subject_or_role(&self, owner: &str, role: &str) -> Result<(), Status> {
        if self.subject == owner || self.has_role(role) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "only the owner or a caller with role \"{role}\" may do this; \"{}\" is neither",
            self.subject.escape_debug()
        )))
    }
}

/// Whether the peer of a call (from the request's extensions, as tonic's server records it) may
/// speak for its callers: a loopback address, or a TLS client that presented a certificate the
/// server verified. Unknown peers are not trusted.
pub fn trusted_peer(extensions: &http::Extensions) -> bool {
    let loopback = |addr: Option<SocketAddr>| addr.is_some_and(|a| a.ip().to_canonical().is_loopback());
    if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
        return tls.peer_certs().is_some_and(|certs| !certs.is_empty()) || loopback(tls.get_ref().remote_addr());
    }
    extensions.get::<TcpConnectInfo>().is_some_and(|tcp| loopback(tcp.remote_addr()))
}

/// A tower layer that removes `meshwork-identity` from calls of untrusted peers (see
/// [`trusted_peer`]). Put it in the server's layer stack, so that every service gets it.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrustedIdentityLayer;

impl<S> tower::Layer<S> for TrustedIdentityLayer {
    type Service = TrustedIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrustedIdentity { inner }
    }
}

/// The service of [`TrustedIdentityLayer`].
#[derive(Clone, Debug)]
pub struct TrustedIdentity<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TrustedIdentity<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if request.headers().contains_key(IDENTITY_HEADER) && !trusted_peer(request.extensions()) {
            tracing::debug!("meshwork-identity from an untrusted peer dropped");
            request.headers_mut().remove(IDENTITY_HEADER);
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use meshwork_identity::Method;
    use tonic::Code;
    use tower::{Layer, Service, ServiceExt};

    use super::*;

    fn request_with(values: &[&str]) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        for value in values {
            request.metadata_mut().append(IDENTITY_HEADER, value.parse().unwrap());
        }
        request
    }

    fn alice() -> String {
        Identity::new("alice", vec!["editor".into()], Method::Jwt).encode()
    }

    #[test]
    fn reads_the_caller() {
        let caller = Caller::from_request(&request_with(&[&alice()])).unwrap().unwrap();
        assert_eq!(caller, Caller { subject: "alice".into(), roles: vec!["editor".into()] });
        assert_eq!(Caller::required(&request_with(&[&alice()])).unwrap(), caller);
        assert_eq!(Caller::from_request(&request_with(&[])).unwrap(), None);
    }

    #[test]
    fn missing_or_malformed_is_unauthenticated() {
        assert_eq!(Caller::required(&request_with(&[])).unwrap_err().code(), Code::Unauthenticated);
        let err = Caller::from_request(&request_with(&["not-an-identity!"])).unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        let twice = Caller::from_request(&request_with(&[&alice(), &alice()])).unwrap_err();
        assert_eq!(twice.code(), Code::Unauthenticated);
        assert!(twice.message().contains("more than once"));
    }

    #[test]
    fn roles_and_ownership() {
        let alice = Caller { subject: "alice".into(), roles: vec!["editor".into()] };
        let admin = Caller { subject: "root".into(), roles: vec![ADMIN_ROLE.into()] };
        assert!(alice.has_role("editor") && !alice.has_role("admin") && !alice.is_admin());
        assert!(admin.is_admin());
        assert!(alice.require_subject_or_role("alice", ADMIN_ROLE).is_ok());
        assert!(admin.require_subject_or_role("alice", ADMIN_ROLE).is_ok());
        let denied = alice.require_subject_or_role("bob", ADMIN_ROLE).unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.message().contains("\"admin\""), "{}", denied.message());
    }

    fn tcp(remote: &str) -> TcpConnectInfo {
        TcpConnectInfo { local_addr: None, remote_addr: Some(remote.parse().unwrap()) }
    }

    /// What the inner service sees of the identity header, for a request from `peer`.
    async fn seen(peer: Option<TcpConnectInfo>) -> Option<String> {
        let inner = tower::service_fn(|request: http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(
                request.headers().get(IDENTITY_HEADER).map(|v| v.to_str().unwrap_or("").to_string()),
            )
        });
        let mut service = TrustedIdentityLayer.layer(inner);
        let mut request = http::Request::new(());
        request.headers_mut().append(IDENTITY_HEADER, alice().parse().unwrap());
        request.headers_mut().append(IDENTITY_HEADER, "second".parse().unwrap());
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        service.ready().await.unwrap().call(request).await.unwrap()
    }

    #[tokio::test]
    async fn only_trusted_peers_may_speak_for_callers() {
        assert_eq!(seen(Some(tcp("127.0.0.1:5000"))).await, Some(alice()));
        assert_eq!(seen(Some(tcp("[::1]:5000"))).await, Some(alice()));
        assert_eq!(seen(Some(tcp("[::ffff:127.0.0.1]:5000"))).await, Some(alice()));
        assert_eq!(seen(Some(tcp("10.0.0.7:5000"))).await, None);
        assert_eq!(seen(Some(tcp("[2001:db8::1]:5000"))).await, None);
        // Unknown peer (no connection info): not trusted.
        assert_eq!(seen(None).await, None);
    }
}
