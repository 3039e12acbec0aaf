//! `TrustedIdentityLayer` in a real tonic server: the connection info that tonic records is
//! visible to the layer, so a loopback peer's `meshwork-identity` reaches the handlers.

use std::sync::{Arc, Mutex};

use meshwork_common::{Caller, TrustedIdentityLayer};
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn loopback_peers_keep_the_identity() {
    let seen: Arc<Mutex<Vec<Option<Caller>>>> = Arc::default();
    let record = {
        let seen = seen.clone();
        move |request: http::Request<tonic::body::Body>| {
            let (parts, body) = request.into_parts();
            let metadata = tonic::metadata::MetadataMap::from_headers(parts.headers.clone());
            seen.lock().unwrap().push(Caller::from_metadata(&metadata).unwrap());
            http::Request::from_parts(parts, body)
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = tonic::transport::Server::builder()
        .layer(TrustedIdentityLayer)
        .layer(tower::ServiceBuilder::new().map_request(record))
        .add_service(health)
        .serve_with_incoming(TcpListenerStream::new(listener));
    let server = tokio::spawn(server);

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    let identity = Identity::new("alice", vec!["admin".into()], Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().unwrap());
    client.check(request).await.unwrap();
    client.check(HealthCheckRequest { service: String::new() }).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec![Some(Caller { subject: "alice".into(), roles: vec!["admin".into()] }), None]);
    server.abort();
}
