//! The OTLP exporter and the collector's OTLP receivers over TLS. The exporter talks to the
//! collector's real OTLP/gRPC receiver, started with a TLS identity (as `meshwork traces
//! --tls-cert --tls-key [--tls-client-ca]` starts it): an `https://` endpoint is trusted through
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`, a collector that asks for client certificates gets the
//! `..._CLIENT_CERTIFICATE` and `..._CLIENT_KEY` pair, and an exporter without them fails its
//! export. The OTLP/HTTP receiver takes exports over TLS too, and plaintext not at all. The
//! variables are read by `TelemetryConfig::from_vars`, whose errors name the variable and the file.

use meshwork_test_support::certs;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use meshwork_collector::store::{StoreLimits, TraceStore};
use meshwork_collector::{Collector, CollectorConfig};
use meshwork_identity::tls::TlsIdentity;
use meshwork_telemetry::export::otlp::OtlpExporter;
use meshwork_telemetry::telemetry::{TelemetryConfig, TelemetryError};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts a collector whose OTLP receivers take TLS with the test PKI's server certificate
/// (asking for client certificates signed by its CA when `mutual`).
async fn tls_collector(pki: &certs::Pki, mutual: bool) -> Collector {
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let config = CollectorConfig {
        otlp_grpc: local,
        otlp_http: local,
        query: local,
        limits: StoreLimits::default(),
        tls: Some(
            TlsIdentity::from_pem(
                pki.server_cert_pem.clone().into_bytes(),
                pki.server_key_pem.clone().into_bytes(),
                mutual.then(|| pki.ca_pem.clone().into_bytes()),
            )
            .unwrap(),
        ),
        extra_grpc: None,
        extra_http: None,
    };
    Collector::start(config, None).await.unwrap()
}

/// Posts an OTLP/JSON export of one span to the OTLP/HTTP receiver on `port` over TLS, trusting
/// the test CA (with the client certificate when `client_cert`); returns the response's status
/// line, or the error.
async fn post_json_over_tls(pki: &certs::Pki, port: u16, client_cert: bool) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = if client_cert {
        let chain = CertificateDer::pem_slice_iter(pki.client_cert_pem.as_bytes()).map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_slice(pki.client_key_pem.as_bytes()).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls =
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.map_err(|e| e.to_string())?;
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"https-json"}}]},
        "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "name":"over-https","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"2000"}]}]}]}"#;
    let request = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    Ok(response.lines().next().unwrap_or_default().to_string())
}

fn span(name: &'static str) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(0x00f0_67aa_0ba9_02b7),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: Cow::Borrowed(name),
        start_time: SystemTime::now() - Duration::from_millis(3),
        end_time: SystemTime::now(),
        attributes: vec![KeyValue::new("rpc.system", "grpc")],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("meshwork").build(),
    }
}

/// The telemetry configuration of an exporter to `endpoint` with these variables set.
fn config(endpoint: &str, vars: &[(&str, String)]) -> Result<TelemetryConfig, TelemetryError> {
    let mut env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into());
    TelemetryConfig::from_vars("tls-test", None, |name| env.get(name).cloned())
}

/// Exports one span named `name` with the exporter the variables configure; `Ok` when the
/// collector took it.
async fn export(endpoint: &str, vars: &[(&str, String)], name: &'static str) -> Result<(), String> {
    let config = config(endpoint, vars).map_err(|e| e.to_string())?;
    let mut exporter = OtlpExporter::new(endpoint, Duration::from_millis(1500), &config.exporter)?;
    exporter.set_resource(&Resource::builder().with_service_name("tls-test").build());
    exporter.export(vec![span(name)]).await.map_err(|e| e.to_string())
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_reach_a_tls_collector_that_the_certificate_variables_make_trusted() {
    let pki = certs::pki();
    let collector = tls_collector(&pki, false).await;
    let traces: &TraceStore = &collector.store;
    let endpoint = format!("https://localhost:{}", collector.otlp_grpc.port());
    let ca = [("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca))];

    export(&endpoint, &ca, "trusted").await.unwrap();
    assert_eq!(traces.span_count(), 1);
    assert_eq!(traces.services(), vec!["tls-test".to_string()]);

    // The traces-only variable wins over the one for every signal.
    let other = pki.write("other-ca.pem", &certs::unrelated_ca_pem());
    let both =
        [("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&other)), ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path(&pki.ca))];
    export(&endpoint, &both, "traces-variable").await.unwrap();
    assert_eq!(traces.span_count(), 2);

    // Neither the system's roots nor an unrelated CA (which replaces them) vouch for the test
    // server: nothing arrives.
    let started = Instant::now();
    let error = export(&endpoint, &[], "untrusted").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(error.contains("OTLP export failed"), "{error}");
    let error = export(&endpoint, &[("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&other))], "unrelated").await.unwrap_err();
    assert!(error.contains("OTLP export failed"), "{error}");
    assert_eq!(traces.span_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_asking_for_client_certificates_takes_exports_only_with_one() {
    let pki = certs::pki();
    let collector = tls_collector(&pki, true).await;
    let traces: &TraceStore = &collector.store;
    let endpoint = format!("https://localhost:{}", collector.otlp_grpc.port());
    let ca = ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(&pki.ca));

    assert!(export(&endpoint, std::slice::from_ref(&ca), "no-client-cert").await.is_err());
    assert_eq!(traces.span_count(), 0);

    let mutual = [
        ca,
        ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", path(&pki.client_cert)),
        ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", path(&pki.client_key)),
    ];
    export(&endpoint, &mutual, "mutual").await.unwrap();
    assert_eq!(traces.span_count(), 1);

    // The OTLP/HTTP receiver asks for one too.
    let port = collector.otlp_http.port();
    let refused = post_json_over_tls(&pki, port, false).await;
    assert!(!refused.as_deref().is_ok_and(|status| status.contains(" 200 ")), "{refused:?}");
    assert_eq!(post_json_over_tls(&pki, port, true).await.unwrap(), "HTTP/1.1 200 OK");
    assert_eq!(traces.span_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otlp_http_receiver_takes_exports_over_tls_and_no_plaintext() {
    let pki = certs::pki();
    let collector = tls_collector(&pki, false).await;
    let port = collector.otlp_http.port();
    assert_eq!(post_json_over_tls(&pki, port, false).await.unwrap(), "HTTP/1.1 200 OK");
    assert_eq!(collector.store.services(), vec!["https-json".to_string()]);

    // Plaintext HTTP gets no answer an exporter could take for success.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{answer:?}");
    // A host that opens connections and never finishes a handshake holds up nobody else: it
    // gets 16 handshakes at once, its further connections are closed at once, and a client on
    // another address is served meanwhile.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        stalled.push(socket.connect(([127, 0, 0, 1], port).into()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut closed = 0;
    for connection in &mut stalled {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(100), connection.read(&mut byte)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 4, "the connections over the address's 16 handshakes are closed, the others wait");
    let served = tokio::time::timeout(Duration::from_secs(2), post_json_over_tls(&pki, port, false)).await;
    assert_eq!(served.expect("served while the others stall").unwrap(), "HTTP/1.1 200 OK");
    assert_eq!(collector.store.span_count(), 2);
    collector.shutdown().await.unwrap();
}

/// The error of a configuration, which must be a bad variable: (variable, reason).
fn bad(endpoint: &str, vars: &[(&str, String)]) -> (&'static str, String) {
    match config(endpoint, vars) {
        Err(TelemetryError::BadVariable { variable, reason, .. }) => (variable, reason),
        other => panic!("expected a bad variable, got {other:?}"),
    }
}

#[test]
fn bad_tls_settings_name_their_variable_and_say_what_is_wrong() {
    let pki = certs::pki();
    let https = "https://localhost:4317";
    let garbage = pki.write("garbage.pem", "not a certificate\n");
    let missing = pki.dir().join("missing.pem");
    let ca = |p: &std::path::Path| ("OTEL_EXPORTER_OTLP_CERTIFICATE", path(p));

    let good = config(https, &[ca(&pki.ca)]).unwrap();
    assert_eq!(good.exporter.tls.ca_pem.as_deref(), Some(pki.ca_pem.as_bytes()));
    assert!(good.exporter.tls.identity.is_none());
    let mutual = [
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", path(&pki.client_cert)),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&pki.client_key)),
    ];
    let with_identity = config(https, &mutual).unwrap();
    assert!(with_identity.exporter.tls.identity.is_some());
    // The key is never printed: the settings show only what is set.
    assert_eq!(format!("{:?}", with_identity.exporter.tls), "ExporterTls { ca: false, client_identity: true }");

    // TLS files with a plaintext endpoint (from a variable or a flag) stop the exporter.
    let plain = config("http://localhost:4317", &[ca(&pki.ca)]).unwrap();
    let error = OtlpExporter::new("http://localhost:4317", Duration::from_secs(1), &plain.exporter).unwrap_err();
    assert!(error.contains("need an https:// endpoint"), "{error}");
    let (variable, reason) = bad(https, &[ca(&missing)]);
    assert_eq!(variable, "OTEL_EXPORTER_OTLP_CERTIFICATE");
    assert!(reason.starts_with("cannot read"), "{reason}");
    assert_eq!(
        bad(https, &[ca(&garbage)]),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into())
    );
    let (variable, reason) = bad(https, &[("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", path(&pki.client_cert))]);
    assert_eq!(variable, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE");
    assert!(reason.contains("go together"), "{reason}");
    let (variable, reason) = bad(https, &[("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", path(&pki.client_key))]);
    assert_eq!(variable, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY");
    assert!(reason.contains("go together"), "{reason}");
    let mismatched = [
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", path(&pki.client_cert)),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&pki.server_key)),
    ];
    assert_eq!(
        bad(https, &mismatched),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "the key does not belong to the client certificate".into())
    );
    let (variable, reason) = bad(https, &[mutual[0].clone(), ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path(&garbage))]);
    assert_eq!(variable, "OTEL_EXPORTER_OTLP_CLIENT_KEY");
    assert!(reason.contains("no PEM private key"), "{reason}");

    // A PEM block that is not a certificate rustls can trust.
    let not_ca = pki.write("not-ca.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let (variable, reason) = bad(https, &[ca(&not_ca)]);
    assert_eq!(variable, "OTEL_EXPORTER_OTLP_CERTIFICATE");
    assert!(reason.starts_with("certificate 1 is not a usable CA certificate"), "{reason}");

    // The TLS files go with an endpoint the user chose: with the SDK disabled, or with only the
    // default endpoint (`meshwork up`'s embedded collector), they are not read.
    let env: HashMap<&str, String> = [ca(&missing), ("OTEL_SDK_DISABLED", "true".into())].into_iter().collect();
    let off = TelemetryConfig::from_vars("tls-test", None, |name| env.get(name).cloned()).unwrap();
    assert!(off.otlp_endpoint.is_none());
    let env: HashMap<&str, String> = [ca(&missing)].into_iter().collect();
    let embedded = "http://127.0.0.1:4317".to_string();
    let up = TelemetryConfig::from_vars("tls-test", Some(embedded.clone()), |name| env.get(name).cloned()).unwrap();
    assert_eq!((up.otlp_endpoint, up.exporter.tls), (Some(embedded), Default::default()));
}
