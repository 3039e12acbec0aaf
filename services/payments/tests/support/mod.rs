//! What the payments suites share: a service on a real TestServer over a real store, request
//! builders, identities as the gateway forwards them, and a dump of the service's keys to
//! prove that a rejected call changed nothing.

// Each suite compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

use meshwork_common::Settings;
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::payments::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, scan_all};
use meshwork_test_support::{TestServer, backends, context};
use pb::payments_client::PaymentsClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// One payments replica on a loopback port, with a client.
pub struct Svc {
    pub client: PaymentsClient<Channel>,
    pub server: TestServer,
    pub store: DynStore,
}

/// Starts the service on `store` with default settings.
pub async fn start(store: DynStore) -> Svc {
    start_with(store, Settings::default()).await
}

/// Starts the service on `store` with `settings` (`payments.failure_rate`...).
pub async fn start_with(store: DynStore, settings: Settings) -> Svc {
    let ctx = meshwork_common::ServiceContext { settings, ..context(store.clone()) };
    let server = TestServer::hosting(meshwork_payments::hosted, &ctx).await;
    Svc { client: PaymentsClient::new(server.channel.clone()), server, store }
}

/// Returns an id no other test of this run uses (etcd is shared).
pub fn uid(name: &str) -> String {
    backends::unique(name)
}

/// Returns an Authorize request with `tok_ok` in USD.
pub fn authorize(request_id: &str, order_id: &str, user_id: &str, amount_minor: i64) -> pb::AuthorizeRequest {
    pb::AuthorizeRequest {
        request_id: request_id.into(),
        order_id: order_id.into(),
        user_id: user_id.into(),
        amount_minor,
        currency: "USD".into(),
        payment_token: "tok_ok".into(),
    }
}

pub fn capture(request_id: &str, payment_id: &str, amount_minor: i64) -> pb::CaptureRequest {
    pb::CaptureRequest { request_id: request_id.into(), payment_id: payment_id.into(), amount_minor }
}

pub fn void(request_id: &str, payment_id: &str) -> pb::VoidRequest {
    pb::VoidRequest { request_id: request_id.into(), payment_id: payment_id.into() }
}

pub fn refund(request_id: &str, payment_id: &str, amount_minor: i64) -> pb::RefundRequest {
    pb::RefundRequest {
        request_id: request_id.into(),
        payment_id: payment_id.into(),
        amount_minor,
        reason: "test".into(),
    }
}

pub fn list(order_id: &str, page_size: i32, page_token: &str) -> pb::ListPaymentsRequest {
    pb::ListPaymentsRequest { order_id: order_id.into(), page_size, page_token: page_token.into() }
}

/// Returns `message` sent as `subject` with `roles`, as the gateway forwards a verified caller.
pub fn by<T>(subject: &str, roles: &[&str], message: T) -> Request<T> {
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt);
    let mut request = Request::new(message);
    request.metadata_mut().insert(IDENTITY_HEADER, identity.encode().parse().unwrap());
    request
}

/// Authorizes `amount_minor` for a fresh order of `user` and returns the payment.
pub async fn authorized(client: &mut PaymentsClient<Channel>, user: &str, amount_minor: i64) -> pb::Payment {
    let req = authorize(&uid("auth"), &uid("order"), user, amount_minor);
    client.authorize(req).await.unwrap().into_inner().payment.unwrap()
}

/// Returns every payment of `order_id` (every payment when empty), following the pages.
pub async fn list_all(client: &mut PaymentsClient<Channel>, order_id: &str) -> Vec<pb::Payment> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client.list_payments(list(order_id, 100, &token)).await.unwrap().into_inner();
        out.extend(page.payments);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Returns every key and value the payments service keeps on `store`.
pub async fn dump(store: &DynStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    scan_all(store, KeyRange::prefix(b"payments/".to_vec()), Direction::Forward)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect()
}

/// Asserts that `result` failed with `code` and a message containing every one of `words`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, words: &[&str]) {
    let status = result.expect_err("expected the call to fail");
    assert_eq!(status.code(), code, "{status:?}");
    for word in words {
        assert!(status.message().contains(word), "{:?} lacks {word:?}", status.message());
    }
}
