//! What the contact-tracing suites share: the service on a real TestServer over a real store,
//! with a key root of its own per case (the etcd cluster is shared) and a manual clock; the
//! device side of the verification flow (keys, HMAC, code -> token -> certificate -> upload);
//! and a dump of the service's keys, to prove that a refused call changed nothing.

// Each suite compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

use std::sync::Arc;

use meshwork_common::{ManualClock, ServiceContext};
use meshwork_contacttracing::{Config, hosted_with};
use meshwork_gaen::verification::{HmacKey, tek_hmac_base64};
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::contacttracing::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, scan_all};
use meshwork_test_support::{TestServer, backends, context_with_clock};
use pb::contact_tracing_client::ContactTracingClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// 2026-12-07 09:05 UTC: the clock of every case at start.
pub const START_MS: i64 = 1_796_634_300_000;
/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
/// Milliseconds in an interval.
pub const INTERVAL_MS: i64 = 600_000;

/// One service on a loopback port.
pub struct Svc {
    pub client: ContactTracingClient<Channel>,
    pub server: TestServer,
    pub store: DynStore,
    pub clock: ManualClock,
    pub root: String,
    pub service: Arc<meshwork_contacttracing::ContactTracing>,
}

/// Starts the service on `store` under a root of its own, the clock at [`START_MS`].
pub async fn start(store: DynStore) -> Svc {
    start_with(store, Config::default()).await
}

/// [`start`] with `config` (its root replaced by a unique one).
pub async fn start_with(store: DynStore, config: Config) -> Svc {
    let clock = ManualClock::new(START_MS);
    let root = backends::unique("ct");
    let config = Config { root: root.clone(), ..config };
    let ctx: ServiceContext = context_with_clock(store.clone(), Arc::new(clock.clone()));
    let service =
        Arc::new(meshwork_contacttracing::ContactTracing::new(store.clone(), ctx.clock.clone(), config.clone()));
    let server = TestServer::start(vec![hosted_with(&ctx, config)]).await;
    Svc { client: ContactTracingClient::new(server.channel.clone()), server, store, clock, root, service }
}

impl Svc {
    /// Every key and value under the case's root.
    pub async fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let prefix = format!("{}/", self.root).into_bytes();
        scan_all(&self.store, KeyRange::prefix(prefix), Direction::Forward)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    /// The current ENIntervalNumber.
    pub fn interval(&self) -> i32 {
        (self.clock_ms() / INTERVAL_MS) as i32
    }

    /// The clock, Unix ms.
    pub fn clock_ms(&self) -> i64 {
        use meshwork_common::Clock;
        self.clock.now_ms()
    }
}

/// `message` sent by a health-authority user, as the gateway forwards a verified API key.
pub fn ha<T>(message: T) -> Request<T> {
    by("ha-officer", &["health_authority"], message)
}

/// `message` sent as `subject` with `roles`.
pub fn by<T>(subject: &str, roles: &[&str], message: T) -> Request<T> {
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::ApiKey);
    let mut request = Request::new(message);
    request.metadata_mut().insert(IDENTITY_HEADER, identity.encode().parse().unwrap());
    request
}

/// Returns an id no other test of this run uses.
pub fn uid(name: &str) -> String {
    backends::unique(name)
}

/// A key of the device: `key_data`, starting at `start`, 144 intervals, risk 0.
pub fn tek(key_data: [u8; 16], start: i32) -> pb::ExposureKey {
    pb::ExposureKey {
        key_data: key_data.to_vec(),
        rolling_start_interval_number: start,
        rolling_period: 144,
        transmission_risk: 0,
    }
}

/// `days` daily keys ending with yesterday's (ended, so exported at once), random bytes.
pub fn daily_keys(now_interval: i32, days: i32) -> Vec<pb::ExposureKey> {
    let today = now_interval - now_interval % 144;
    (1..=days).map(|d| tek(rand::random(), today - d * 144)).collect()
}

/// The base64 HMAC of `keys` under `hmac_key` (the GAEN verification protocol's).
pub fn hmac_of(hmac_key: &[u8], keys: &[pb::ExposureKey]) -> String {
    let keys: Vec<HmacKey<'_>> = keys
        .iter()
        .map(|k| HmacKey {
            key_data: &k.key_data,
            rolling_start_interval_number: i64::from(k.rolling_start_interval_number),
            rolling_period: i64::from(if k.rolling_period == 0 { 144 } else { k.rolling_period }),
            transmission_risk: i64::from(k.transmission_risk),
        })
        .collect();
    tek_hmac_base64(hmac_key, &keys)
}

/// IssueCode as the health authority for a confirmed test in `geohash`, onset optional.
pub async fn issue(c: &mut ContactTracingClient<Channel>, geohash: &str, onset_ms: Option<i64>) -> String {
    let req = pb::IssueCodeRequest {
        request_id: uid("rid"),
        test_type: pb::TestType::Confirmed as i32,
        symptom_onset_time: onset_ms.map(meshwork_common::fields::timestamp),
        geohash: geohash.into(),
    };
    c.issue_code(ha(req)).await.unwrap().into_inner().code
}

/// Code -> token -> certificate over `keys` under `hmac_key`.
pub async fn certify(
    c: &mut ContactTracingClient<Channel>,
    code: &str,
    hmac_key: &[u8],
    keys: &[pb::ExposureKey],
) -> String {
    let token = c.verify_code(pb::VerifyCodeRequest { code: code.into() }).await.unwrap().into_inner().token;
    let req = pb::GetCertificateRequest { token, ekey_hmac: hmac_of(hmac_key, keys) };
    c.get_certificate(req).await.unwrap().into_inner().certificate
}

/// The PublishKeys request of `keys` with `certificate`.
pub fn publish(keys: &[pb::ExposureKey], certificate: &str, hmac_key: &[u8], device: &str) -> pb::PublishKeysRequest {
    pb::PublishKeysRequest {
        keys: keys.to_vec(),
        certificate: certificate.into(),
        hmac_key: hmac_key.to_vec(),
        symptom_onset_interval: 0,
        revision_token: String::new(),
        device_id: device.into(),
    }
}

/// The whole flow for one positive device: issue, verify, certify, publish.
pub async fn upload(
    c: &mut ContactTracingClient<Channel>,
    keys: &[pb::ExposureKey],
    geohash: &str,
    onset_ms: Option<i64>,
    device: &str,
) -> pb::PublishKeysResponse {
    let code = issue(c, geohash, onset_ms).await;
    let hmac_key: [u8; 32] = rand::random();
    let certificate = certify(c, &code, &hmac_key, keys).await;
    c.publish_keys(publish(keys, &certificate, &hmac_key, device)).await.unwrap().into_inner()
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
