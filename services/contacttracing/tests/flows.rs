//! The key server over real gRPC on every backend: an exported batch parses as GAEN's
//! TemporaryExposureKeyExport and verifies with the served public key; a reused code, a forged
//! certificate, a tampered HMAC and keys over 14 days old are each refused and change nothing;
//! retries replay, the per-device limit holds; keys leave the exports and the store after 14
//! days; area counts hide cells under 10.

mod support;

use meshwork_contacttracing::certificate::{self, Claims};
use meshwork_gaen::export::{self as gx, ReportType};
use meshwork_proto::pb::contacttracing::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use support::*;
use tonic::Code;

on_every_backend!(
    an_export_parses_and_its_signature_verifies,
    refused_uploads_change_nothing,
    retries_replay_and_devices_are_rate_limited,
    keys_leave_exports_and_store_after_14_days,
    area_counts_hide_cells_under_ten,
);

async fn an_export_parses_and_its_signature_verifies(backend: Backend) {
    let svc = start(backend.store.clone()).await;
    let mut c = svc.client.clone();
    let keys = daily_keys(svc.interval(), 13);
    let today = svc.interval() - svc.interval() % 144;
    let todays = tek(rand::random(), today);
    let onset_ms = START_MS - 3 * DAY_MS;
    let mut all = keys.clone();
    all.push(todays.clone());
    let answer = upload(&mut c, &all, "tdr1vzz", Some(onset_ms), &uid("dev")).await;
    assert_eq!(answer.inserted_exposures, 14);
    assert!(answer.revision_token.starts_with("rv_"));

    // The window is open: nothing listed, GetExport refuses.
    let listed = c.list_exports(pb::ListExportsRequest::default()).await.unwrap().into_inner().exports;
    assert!(listed.is_empty(), "{listed:?}");
    let window = (START_MS / 1000 / 3600 * 3600).to_string();
    assert_status(
        c.get_export(pb::GetExportRequest { export_id: window.clone() }).await,
        Code::FailedPrecondition,
        &["still open"],
    );
    svc.clock.advance(3_600_000);
    let listed = c.list_exports(pb::ListExportsRequest::default()).await.unwrap().into_inner().exports;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].export_id, window);
    let export = c.get_export(pb::GetExportRequest { export_id: window.clone() }).await.unwrap().into_inner();
    assert_eq!(export.key_count, 13, "today's key, still in use, waits");

    // The archive: export.bin with its header parses as TemporaryExposureKeyExport, and
    // export.sig verifies with the public key GetSigningKey serves.
    let signing = c.get_signing_key(pb::GetSigningKeyRequest {}).await.unwrap().into_inner();
    assert_eq!(signing.signature_algorithm, "1.2.840.10045.4.3.2");
    let public = gx::verifying_key_from_pem(&signing.export_public_key_pem).unwrap();
    let (bin, sig) = gx::read_archive(&export.archive).unwrap();
    assert_eq!(&bin[..16], b"EK Export v1    ");
    gx::verify_bin(&bin, &sig, &public).unwrap();
    let info = sig.signatures[0].signature_info.clone().unwrap();
    assert_eq!(info.verification_key_id.as_deref(), Some(signing.verification_key_id.as_str()));
    let parsed = gx::decode_bin(&bin).unwrap();
    assert_eq!(parsed.region.as_deref(), Some("IN"));
    assert_eq!((parsed.batch_num, parsed.batch_size), (Some(1), Some(1)));
    assert_eq!(parsed.start_timestamp, Some(window.parse().unwrap()));
    assert_eq!(parsed.end_timestamp, Some(window.parse::<u64>().unwrap() + 3600));
    let mut want: Vec<Vec<u8>> = keys.iter().map(|k| k.key_data.clone()).collect();
    want.sort();
    let got: Vec<Vec<u8>> = parsed.keys.iter().map(|k| k.key_data.clone().unwrap()).collect();
    assert_eq!(got, want, "every key, sorted by key bytes");
    let onset_day = (onset_ms / DAY_MS) as i32;
    for k in &parsed.keys {
        assert_eq!(k.report_type, Some(ReportType::ConfirmedTest as i32));
        assert_eq!(k.rolling_period(), 144);
        let day = k.rolling_start_interval_number.unwrap() / 144;
        assert_eq!(k.days_since_onset_of_symptoms, Some((day - onset_day).clamp(-14, 14)));
    }
    // Another key does not verify it; the same window answers the same bytes.
    assert!(gx::verify_bin(&bin, &sig, gx::generate_signing_key().verifying_key()).is_err());
    let again = c.get_export(pb::GetExportRequest { export_id: window }).await.unwrap().into_inner();
    assert_eq!(again.archive, export.archive, "deterministic: sorted keys, RFC 6979 signature");
    // A later `since` lists nothing.
    let since = Some(meshwork_common::fields::timestamp(svc.clock_ms()));
    let later = c.list_exports(pb::ListExportsRequest { since, page_size: 0 }).await.unwrap();
    assert!(later.into_inner().exports.is_empty());
    // Today's key is exported in the window 2 hours after its end (tomorrow 02:00-03:00).
    let embargo_window = (today as i64 + 144) * 600 + 2 * 3600;
    svc.clock.advance((embargo_window + 3600) * 1000 - svc.clock_ms());
    let later = c.list_exports(pb::ListExportsRequest { since, page_size: 0 }).await.unwrap().into_inner().exports;
    assert_eq!(later.iter().map(|e| e.export_id.clone()).collect::<Vec<_>>(), vec![embargo_window.to_string()]);
    let export = c.get_export(pb::GetExportRequest { export_id: embargo_window.to_string() }).await.unwrap();
    let parsed = gx::open_archive(&export.into_inner().archive, Some(&public)).unwrap();
    assert_eq!(parsed.keys.len(), 1);
    assert_eq!(parsed.keys[0].key_data, Some(todays.key_data));
}

async fn refused_uploads_change_nothing(backend: Backend) {
    let svc = start(backend.store.clone()).await;
    let mut c = svc.client.clone();
    let keys = daily_keys(svc.interval(), 10);
    let hmac_key: [u8; 32] = rand::random();
    let code = issue(&mut c, "tdr1v", None).await;
    let first_certificate = certify(&mut c, &code, &hmac_key, &keys).await;
    let device = uid("dev");
    c.publish_keys(publish(&keys, &first_certificate, &hmac_key, &device)).await.unwrap();
    let before = svc.dump().await;

    // A reused code.
    assert_status(
        c.verify_code(pb::VerifyCodeRequest { code: code.clone() }).await,
        Code::FailedPrecondition,
        &["code", "used already"],
    );
    assert_eq!(svc.dump().await, before, "a reused code changes nothing");

    // A forged certificate: right claims, signed by another key.
    let other_keys = daily_keys(svc.interval(), 3);
    let now_s = svc.clock_ms() / 1000;
    let claims = Claims {
        iss: certificate::ISSUER.into(),
        aud: certificate::AUDIENCE.into(),
        iat: now_s,
        exp: now_s + 600,
        jti: uid("cd_forged"),
        tekhmac: hmac_of(&hmac_key, &other_keys),
        report_type: "confirmed".into(),
        symptom_onset_interval: 0,
        area: "tdr1v".into(),
    };
    let forged = certificate::sign(&claims, &gx::generate_signing_key());
    assert_status(
        c.publish_keys(publish(&other_keys, &forged, &hmac_key, &uid("dev"))).await,
        Code::PermissionDenied,
        &["certificate", "signature"],
    );
    assert_eq!(svc.dump().await, before, "a forged certificate changes nothing");

    // A tampered HMAC: a certificate over some keys, an upload of others, or another HMAC key.
    let code = issue(&mut c, "tdr1v", None).await;
    let fresh = daily_keys(svc.interval(), 5);
    let certificate = certify(&mut c, &code, &hmac_key, &fresh).await;
    let before = svc.dump().await;
    let mut tampered = fresh.clone();
    tampered[2].key_data[0] ^= 1;
    assert_status(
        c.publish_keys(publish(&tampered, &certificate, &hmac_key, &uid("dev"))).await,
        Code::PermissionDenied,
        &["tekhmac"],
    );
    let mut risk = fresh.clone();
    risk[0].transmission_risk = 7;
    assert_status(
        c.publish_keys(publish(&risk, &certificate, &hmac_key, &uid("dev"))).await,
        Code::PermissionDenied,
        &["tekhmac"],
    );
    assert_status(
        c.publish_keys(publish(&fresh, &certificate, &[9u8; 32], &uid("dev"))).await,
        Code::PermissionDenied,
        &["tekhmac"],
    );
    // The certificate of the first upload, reused for other keys, is refused too.
    assert_status(
        c.publish_keys(publish(&fresh, &first_certificate, &hmac_key, &device)).await,
        Code::PermissionDenied,
        &["tekhmac"],
    );
    assert_eq!(svc.dump().await, before, "a tampered HMAC changes nothing");

    // Keys over 14 days old, under a valid certificate.
    let code = issue(&mut c, "tdr1v", None).await;
    let mut old = daily_keys(svc.interval(), 3);
    let today = svc.interval() - svc.interval() % 144;
    old.push(tek(rand::random(), today - 15 * 144));
    let certificate = certify(&mut c, &code, &hmac_key, &old).await;
    let before = svc.dump().await;
    assert_status(
        c.publish_keys(publish(&old, &certificate, &hmac_key, &uid("dev"))).await,
        Code::InvalidArgument,
        &["keys[3].rolling_start_interval_number", "14 days"],
    );
    // A key from the future under the same certificate's HMAC is refused the same way.
    let mut future = old[..3].to_vec();
    future.push(tek(rand::random(), svc.interval() + 200));
    assert_status(
        c.publish_keys(publish(&future, &certificate, &hmac_key, &uid("dev"))).await,
        Code::InvalidArgument,
        &["keys[3].rolling_start_interval_number", "future"],
    );
    assert_eq!(svc.dump().await, before, "old keys change nothing");

    // An expired certificate (they live 15 minutes).
    let code = issue(&mut c, "tdr1v", None).await;
    let late = daily_keys(svc.interval(), 2);
    let certificate = certify(&mut c, &code, &hmac_key, &late).await;
    svc.clock.advance(16 * 60 * 1000);
    let before = svc.dump().await;
    assert_status(
        c.publish_keys(publish(&late, &certificate, &hmac_key, &uid("dev"))).await,
        Code::PermissionDenied,
        &["certificate", "expired"],
    );
    assert_eq!(svc.dump().await, before, "an expired certificate changes nothing");
}

async fn retries_replay_and_devices_are_rate_limited(backend: Backend) {
    let svc = start(backend.store.clone()).await;
    let mut c = svc.client.clone();
    let device = uid("dev");
    let keys = daily_keys(svc.interval(), 7);
    let hmac_key: [u8; 16] = rand::random();
    let code = issue(&mut c, "tdr1v", None).await;
    let certificate = certify(&mut c, &code, &hmac_key, &keys).await;
    let req = publish(&keys, &certificate, &hmac_key, &device);
    let first = c.publish_keys(req.clone()).await.unwrap().into_inner();
    let before = svc.dump().await;
    // The same upload again, plain or with its revision token, in another key order: the
    // first answer, nothing new stored, no count against the device.
    assert_eq!(c.publish_keys(req.clone()).await.unwrap().into_inner(), first);
    let mut reordered = req.clone();
    reordered.keys.reverse();
    reordered.revision_token = first.revision_token.clone();
    assert_eq!(c.publish_keys(reordered).await.unwrap().into_inner(), first);
    assert_eq!(svc.dump().await, before);
    let wrong = pb::PublishKeysRequest { revision_token: format!("rv_{}", "a".repeat(24)), ..req.clone() };
    assert_status(c.publish_keys(wrong).await, Code::FailedPrecondition, &["revision_token"]);
    // Two more uploads of this device are allowed today, the fourth is refused.
    for _ in 0..2 {
        upload(&mut c, &daily_keys(svc.interval(), 2), "tdr1v", None, &device).await;
    }
    let code = issue(&mut c, "tdr1v", None).await;
    let more = daily_keys(svc.interval(), 2);
    let certificate = certify(&mut c, &code, &hmac_key, &more).await;
    let before = svc.dump().await;
    assert_status(
        c.publish_keys(publish(&more, &certificate, &hmac_key, &device)).await,
        Code::ResourceExhausted,
        &["device_id", "limit is 3"],
    );
    assert_eq!(svc.dump().await, before, "a refused upload changes nothing");
    // Another device may upload with that certificate; the next day the device may again.
    c.publish_keys(publish(&more, &certificate, &hmac_key, &uid("dev"))).await.unwrap();
    svc.clock.advance(DAY_MS);
    upload(&mut c, &daily_keys(svc.interval(), 2), "tdr1v", None, &device).await;

    // GetCertificate: the same token and HMAC answer the same certificate; another HMAC is
    // refused; IssueCode's request_id replays.
    let code = issue(&mut c, "tdr1v", None).await;
    let token = c.verify_code(pb::VerifyCodeRequest { code }).await.unwrap().into_inner().token;
    let hmac = hmac_of(&hmac_key, &more);
    let cert = |ekey_hmac: &str| pb::GetCertificateRequest { token: token.clone(), ekey_hmac: ekey_hmac.into() };
    let one = c.get_certificate(cert(&hmac)).await.unwrap().into_inner();
    assert_eq!(c.get_certificate(cert(&hmac)).await.unwrap().into_inner(), one);
    let other = hmac_of(&[1u8; 16], &more);
    assert_status(c.get_certificate(cert(&other)).await, Code::FailedPrecondition, &["token", "used already"]);
    let req = pb::IssueCodeRequest {
        request_id: uid("rid"),
        test_type: pb::TestType::Likely as i32,
        symptom_onset_time: None,
        geohash: "tdr1v".into(),
    };
    let a = c.issue_code(ha(req.clone())).await.unwrap().into_inner();
    assert_eq!(c.issue_code(ha(req)).await.unwrap().into_inner(), a);
    // Codes expire after an hour.
    svc.clock.advance(3_600_000);
    assert_status(c.verify_code(pb::VerifyCodeRequest { code: a.code }).await, Code::FailedPrecondition, &["expired"]);
}

async fn keys_leave_exports_and_store_after_14_days(backend: Backend) {
    let svc = start(backend.store.clone()).await;
    let mut c = svc.client.clone();
    let keys = daily_keys(svc.interval(), 14);
    upload(&mut c, &keys, "tdr1v", None, &uid("dev")).await;
    let window = (START_MS / 1000 / 3600 * 3600).to_string();
    svc.clock.advance(3_600_000);
    let count = |c: &mut pb::contact_tracing_client::ContactTracingClient<tonic::transport::Channel>| {
        let mut c = c.clone();
        let window = window.clone();
        async move { c.get_export(pb::GetExportRequest { export_id: window }).await.unwrap().into_inner().key_count }
    };
    assert_eq!(count(&mut c).await, 14);
    // The oldest key ends 13 days before today's start: 14 days after its end it is gone from
    // new exports, the others stay.
    svc.clock.advance(2 * DAY_MS);
    let expected = count(&mut c).await;
    assert!(expected < 14, "{expected}");
    assert_eq!(svc.service.sweep_once().await.unwrap(), 14 - expected as usize);
    let stored_keys = |dump: &[(Vec<u8>, Vec<u8>)]| {
        dump.iter().filter(|(k, _)| k.starts_with(format!("{}/key/", svc.root).as_bytes())).count()
    };
    assert_eq!(stored_keys(&svc.dump().await), expected as usize, "expired keys are deleted from the store");
    // 15 days on: every key is gone, from exports, listings and the store.
    svc.clock.advance(15 * DAY_MS);
    assert_eq!(count(&mut c).await, 0);
    assert!(c.list_exports(pb::ListExportsRequest::default()).await.unwrap().into_inner().exports.is_empty());
    while svc.service.sweep_once().await.unwrap() > 0 {}
    let dump = svc.dump().await;
    assert_eq!(stored_keys(&dump), 0);
    assert!(!dump.iter().any(|(k, _)| k.starts_with(format!("{}/expiry/", svc.root).as_bytes())));
    assert!(!dump.iter().any(|(k, _)| k.starts_with(format!("{}/window/", svc.root).as_bytes())));
}

async fn area_counts_hide_cells_under_ten(backend: Backend) {
    let svc = start(backend.store.clone()).await;
    let mut c = svc.client.clone();
    // Cells of their own per run: the root is unique, so any cell names do.
    for i in 0..10 {
        upload(&mut c, &daily_keys(svc.interval(), 1), &format!("tdr1v{i}"), None, &uid("dev")).await;
    }
    for _ in 0..9 {
        upload(&mut c, &daily_keys(svc.interval(), 1), "tdr1w", None, &uid("dev")).await;
    }
    upload(&mut c, &daily_keys(svc.interval(), 1), "u4pru", None, &uid("dev")).await;
    let reader = c.clone();
    let counts = |prefix: &str| {
        let mut c = reader.clone();
        let req = pb::AreaCountsRequest { geohash_prefix: prefix.into() };
        async move { c.area_counts(req).await.unwrap().into_inner().cells }
    };
    let cells = counts("tdr").await;
    assert_eq!(cells, vec![pb::AreaCount { geohash: "tdr1v".into(), reports: 10 }], "tdr1w has 9: suppressed");
    assert_eq!(counts("tdr1v").await.len(), 1);
    assert!(counts("tdr1w").await.is_empty());
    assert!(counts("u").await.is_empty());
    // One more report in tdr1w shows it; 14 days later both are gone.
    upload(&mut c, &daily_keys(svc.interval(), 1), "tdr1w", None, &uid("dev")).await;
    assert_eq!(counts("tdr1").await.len(), 2);
    svc.clock.advance(14 * DAY_MS);
    assert!(counts("tdr1").await.is_empty());
}
