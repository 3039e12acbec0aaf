//! The bad-input catalogue of every RPC, on every backend: each malformed request is refused
//! with the code and the field it names, and the store under the service's root is unchanged
//! afterwards.

mod support;

use meshwork_common::fields::timestamp;
use meshwork_proto::pb::contacttracing::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use support::*;
use tonic::{Code, Request};

on_every_backend!(every_rpc_names_the_bad_field_and_changes_nothing);

fn issue_req(f: impl FnOnce(&mut pb::IssueCodeRequest)) -> pb::IssueCodeRequest {
    let mut req = pb::IssueCodeRequest {
        request_id: uid("rid"),
        test_type: pb::TestType::Confirmed as i32,
        symptom_onset_time: None,
        geohash: "tdr1v".into(),
    };
    f(&mut req);
    req
}

async fn every_rpc_names_the_bad_field_and_changes_nothing(backend: Backend) {
    let svc = start(backend.store.clone()).await;
    let mut c = svc.client.clone();
    // A real upload first, so that the store is not empty and the signing keys exist.
    let keys = daily_keys(svc.interval(), 3);
    upload(&mut c, &keys, "tdr1v", None, &uid("dev")).await;
    let before = svc.dump().await;
    let now = svc.clock_ms();

    // IssueCode: who calls, then each field.
    let anonymous = c.issue_code(Request::new(issue_req(|_| {}))).await;
    assert_status(anonymous, Code::Unauthenticated, &["health-authority"]);
    let viewer = c.issue_code(by("someone", &["viewer"], issue_req(|_| {}))).await;
    assert_status(viewer, Code::PermissionDenied, &["health_authority"]);
    let cases: Vec<(pb::IssueCodeRequest, &str)> = vec![
        (issue_req(|r| r.request_id.clear()), "request_id"),
        (issue_req(|r| r.test_type = 0), "test_type"),
        (issue_req(|r| r.test_type = pb::TestType::Negative as i32), "test_type"),
        (issue_req(|r| r.test_type = 99), "test_type"),
        (issue_req(|r| r.symptom_onset_time = Some(timestamp(now + DAY_MS))), "symptom_onset_time"),
        (issue_req(|r| r.symptom_onset_time = Some(timestamp(now - 20 * DAY_MS))), "symptom_onset_time"),
        (
            issue_req(|r| r.symptom_onset_time = Some(prost_types::Timestamp { seconds: 1, nanos: -1 })),
            "symptom_onset_time",
        ),
        (issue_req(|r| r.geohash.clear()), "geohash"),
        (issue_req(|r| r.geohash = "tdr1".into()), "geohash"),
        (issue_req(|r| r.geohash = "tdr1a".into()), "geohash"),
        (issue_req(|r| r.geohash = "tdr1vtdr1vtdr".into()), "geohash"),
    ];
    for (req, field) in cases {
        assert_status(c.issue_code(ha(req)).await, Code::InvalidArgument, &[field]);
    }

    // VerifyCode.
    for code in ["", "1234567", "123456789", "abcdefgh", "1234 678"] {
        let req = pb::VerifyCodeRequest { code: code.into() };
        assert_status(c.verify_code(req).await, Code::InvalidArgument, &["code"]);
    }
    // Eight digits that no one issued (a live code would have to collide with 10^8 choices).
    let unknown = c.verify_code(pb::VerifyCodeRequest { code: "00000000".into() }).await;
    assert!(matches!(unknown.unwrap_err().code(), Code::NotFound), "an unknown code is NOT_FOUND");

    // GetCertificate.
    let good_hmac = hmac_of(&[1; 32], &keys);
    let token = format!("vt_{}", "A".repeat(32));
    let cert = |token: &str, hmac: &str| pb::GetCertificateRequest { token: token.into(), ekey_hmac: hmac.into() };
    for (req, field) in [
        (cert("", &good_hmac), "token"),
        (cert("vt_short", &good_hmac), "token"),
        (cert(&format!("xx_{}", "A".repeat(32)), &good_hmac), "token"),
        (cert(&token, ""), "ekey_hmac"),
        (cert(&token, "not base64!"), "ekey_hmac"),
        (cert(&token, "AAAAAAAAAAAAAAAAAAAAAA=="), "ekey_hmac"),
    ] {
        assert_status(c.get_certificate(req).await, Code::InvalidArgument, &[field]);
    }
    assert_status(c.get_certificate(cert(&token, &good_hmac)).await, Code::NotFound, &["token"]);

    // PublishKeys.
    let base = publish(&keys, "x.y.z", &[1; 32], &uid("dev"));
    let with = |f: &dyn Fn(&mut pb::PublishKeysRequest)| {
        let mut req = base.clone();
        f(&mut req);
        req
    };
    let today = svc.interval() - svc.interval() % 144;
    let cases: Vec<(pb::PublishKeysRequest, &str)> = vec![
        (with(&|r| r.keys.clear()), "keys"),
        (with(&|r| r.keys = (0..31).map(|i| tek([i as u8; 16], today - i * 144)).collect()), "keys"),
        (with(&|r| r.keys[0].key_data = vec![1; 15]), "keys[0].key_data"),
        (with(&|r| r.keys[1].key_data = vec![1; 17]), "keys[1].key_data"),
        (with(&|r| r.keys[0].rolling_start_interval_number = -1), "keys[0].rolling_start_interval_number"),
        (with(&|r| r.keys[2].rolling_period = 145), "keys[2].rolling_period"),
        (with(&|r| r.keys[2].rolling_period = -1), "keys[2].rolling_period"),
        (with(&|r| r.keys[0].transmission_risk = 9), "keys[0].transmission_risk"),
        (with(&|r| r.keys[0].transmission_risk = -1), "keys[0].transmission_risk"),
        (with(&|r| r.keys[0].rolling_start_interval_number = today + 300), "keys[0].rolling_start_interval_number"),
        (
            with(&|r| r.keys[1].rolling_start_interval_number = today - 20 * 144),
            "keys[1].rolling_start_interval_number",
        ),
        (with(&|r| r.keys[1].rolling_start_interval_number = today - 144 + 10), "overlaps"),
        (with(&|r| r.certificate.clear()), "certificate"),
        (with(&|r| r.hmac_key = vec![1; 8]), "hmac_key"),
        (with(&|r| r.hmac_key = vec![1; 65]), "hmac_key"),
        (with(&|r| r.symptom_onset_interval = -1), "symptom_onset_interval"),
        (with(&|r| r.symptom_onset_interval = today + 500), "symptom_onset_interval"),
        (with(&|r| r.symptom_onset_interval = today - 30 * 144), "symptom_onset_interval"),
        (with(&|r| r.revision_token = "rv_x".into()), "revision_token"),
        (with(&|r| r.device_id.clear()), "device_id"),
        (with(&|r| r.device_id = "a\nb".into()), "device_id"),
        (with(&|r| r.device_id = "d".repeat(129)), "device_id"),
    ];
    for (req, field) in cases {
        assert_status(c.publish_keys(req).await, Code::InvalidArgument, &[field]);
    }
    // Well-formed fields, but a certificate that is not one.
    assert_status(c.publish_keys(base.clone()).await, Code::PermissionDenied, &["certificate"]);

    // ListExports, GetExport, AreaCounts.
    for (req, field) in [
        (pb::ListExportsRequest { since: None, page_size: -1 }, "page_size"),
        (pb::ListExportsRequest { since: None, page_size: 501 }, "page_size"),
        (
            pb::ListExportsRequest {
                since: Some(prost_types::Timestamp { seconds: 0, nanos: 2_000_000_000 }),
                page_size: 0,
            },
            "since",
        ),
    ] {
        assert_status(c.list_exports(req).await, Code::InvalidArgument, &[field]);
    }
    for id in ["", "abc", "7201", "-3600", "+3600", "36000000000000000000000"] {
        let req = pb::GetExportRequest { export_id: id.into() };
        assert_status(c.get_export(req).await, Code::InvalidArgument, &["export_id"]);
    }
    let empty_window = (now / 1000 / 3600 * 3600 - 5 * 3600).to_string();
    assert_status(c.get_export(pb::GetExportRequest { export_id: empty_window }).await, Code::NotFound, &["export"]);
    for prefix in ["", "tdr1v1", "a", "TDR", "tdr-"] {
        let req = pb::AreaCountsRequest { geohash_prefix: prefix.into() };
        assert_status(c.area_counts(req).await, Code::InvalidArgument, &["geohash_prefix"]);
    }

    assert_eq!(svc.dump().await, before, "no refused call changed anything");
}
