//! The OTLP exporter over TLS, against the collector's real OTLP/gRPC receiver served by tonic
//! with rustls: an `https://` endpoint is trusted through `OTEL_EXPORTER_OTLP_CERTIFICATE`, a
//! collector that asks for client certificates gets the `..._CLIENT_CERTIFICATE` and
//! `..._CLIENT_KEY` pair, and an exporter without them fails its export. The variables are read
//! by `TelemetryConfig::from_vars`, whose errors name the variable and the file.

#[path = "../../proxy/tests/support/certs.rs"]
mod certs;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use meshwork_observability::collector::otlp::{OtlpGrpc, Sink};
use meshwork_observability::collector::store::{StoreLimits, TraceStore};
use meshwork_observability::export::otlp::OtlpExporter;
use meshwork_observability::telemetry::{TelemetryConfig, TelemetryError};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Serves the collector's OTLP/gRPC receiver over TLS with the test PKI's server certificate
/// (asking for client certificates signed by its CA when `mutual`); returns its port and store.
async fn tls_collector(pki: &certs::Pki, mutual: bool) -> (u16, Arc<TraceStore>) {
    let traces = Arc::new(TraceStore::new(StoreLimits::default()));
    let sink = Arc::new(Sink { traces: traces.clone(), persister: None });
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(&pki.server_cert_pem, &pki.server_key_pem));
    if mutual {
        tls = tls.client_ca_root(Certificate::from_pem(&pki.ca_pem));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(OtlpGrpc { sink })
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    (port, traces)
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
    let (port, traces) = tls_collector(&pki, false).await;
    let endpoint = format!("https://localhost:{port}");
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
    let (port, traces) = tls_collector(&pki, true).await;
    let endpoint = format!("https://localhost:{port}");
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
