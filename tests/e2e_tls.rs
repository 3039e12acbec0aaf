//! End to end with TLS, all real processes: `meshwork serve urlshortener` with TLS that requires
//! client certificates, `meshwork gateway` in front of it with a TLS listener and mutual TLS to
//! the pool, and the real grpcurl (`-cacert`) calling through the gateway. Certificates are made
//! in the test (rcgen). `meshwork up --tls-cert/--tls-key` serves the gateway over TLS. Bad
//! certificate files stop the commands before they bind anything. `meshwork traces --tls-cert
//! --tls-key` takes a service's exports over TLS.

use meshwork_test_support::certs;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use support::{Mesh, free_addr, json_field};

const SVC: &str = "meshwork.urlshortener.v1.UrlShortener";

/// Runs grpcurl over TLS trusting `ca` (plus `extra` flags) and returns (success, stdout, stderr).
fn grpcurl_tls(addr: SocketAddr, ca: &Path, extra: &[&str], rest: &[&str]) -> (bool, String, String) {
    let ca = ca.display().to_string();
    support::grpcurl_over(&["-cacert", &ca], addr, extra, rest)
}

#[test]
fn grpcurl_over_tls_through_the_gateway_to_an_mtls_replica() {
    let pki = certs::pki();
    let (service_addr, gateway_addr) = (free_addr(), free_addr());
    let s = service_addr.to_string();
    let public = format!("https://{gateway_addr}");
    let path = |p: &Path| p.to_str().expect("utf-8 temp path").to_string();
    let (ca, server_cert, server_key) = (path(&pki.ca), path(&pki.server_cert), path(&pki.server_key));
    let service = Mesh::start(
        &[
            "serve",
            "urlshortener",
            "--listen",
            &s,
            "--store",
            "memory:",
            "--public-url",
            &public,
            "--tls-cert",
            &server_cert,
            "--tls-key",
            &server_key,
            "--tls-client-ca",
            &ca,
        ],
        service_addr,
        "meshwork serving urlshortener",
    );

    // The replica itself: mutual TLS only.
    let client = ["-cert", pki.client_cert.to_str().unwrap(), "-key", pki.client_key.to_str().unwrap()];
    let (ok, out, err) = grpcurl_tls(service_addr, &pki.ca, &client, &["grpc.health.v1.Health/Check"]);
    assert!(ok && out.contains("SERVING"), "direct mTLS health: {err}\n{out}");
    // (grpcurl keeps redialling a refused handshake until its connect timeout.)
    let no_cert = ["-connect-timeout", "3"];
    let (ok, _, _) = grpcurl_tls(service_addr, &pki.ca, &no_cert, &["grpc.health.v1.Health/Check"]);
    assert!(!ok, "a client without a certificate must be refused");

    let config = pki.write(
        "gateway.toml",
        &format!(
            "listen = \"{gateway_addr}\"\n\n[health_check]\ninterval_ms = 500\n\n\
             [tls]\ncert = \"{server_cert}\"\nkey = \"{server_key}\"\n\n\
             [pools.urlshortener]\nendpoints = [\"{service_addr}\"]\n\n\
             [pools.urlshortener.tls]\nca = \"{ca}\"\ncert = \"{}\"\nkey = \"{}\"\n\n\
             [[routes]]\nservice = \"{SVC}\"\npool = \"urlshortener\"\n",
            path(&pki.client_cert),
            path(&pki.client_key),
        ),
    );
    let gateway = Mesh::start(
        &["gateway", "--config", &path(&config)],
        gateway_addr,
        &format!("meshwork gateway ready on {gateway_addr} (grpc tls + https)"),
    );

    // grpcurl verifies the gateway against the CA (the certificate names 127.0.0.1) and uses
    // the gateway's merged reflection to encode the call.
    let body = r#"{"long_url":"https://example.com/tls?q=1","ttl_seconds":0}"#;
    let (ok, out, err) = grpcurl_tls(gateway_addr, &pki.ca, &["-d", body], &[&format!("{SVC}/Shorten")]);
    assert!(ok, "Shorten through the TLS gateway failed: {err}");
    let code = json_field(&out, "code").expect("code in Shorten reply");
    assert_eq!(code.len(), 7, "{out}");
    assert_eq!(json_field(&out, "shortUrl"), Some(format!("{public}/{code}")));
    let (ok, out, err) =
        grpcurl_tls(gateway_addr, &pki.ca, &["-d", &format!("{{\"code\":\"{code}\"}}")], &[&format!("{SVC}/Resolve")]);
    assert!(ok, "Resolve failed: {err}");
    assert_eq!(json_field(&out, "longUrl").as_deref(), Some("https://example.com/tls?q=1"));

    // Without the CA, grpcurl does not trust the gateway.
    let other_ca = pki.write("other-ca.pem", &certs::unrelated_ca_pem());
    let (ok, _, err) = grpcurl_tls(gateway_addr, &other_ca, &[], &["list"]);
    assert!(!ok, "a client trusting another CA must fail");
    assert!(err.contains("certificate"), "{err}");

    assert!(gateway.terminate(std::time::Duration::from_secs(20)).success());
    assert!(service.terminate(std::time::Duration::from_secs(20)).success());
}

#[test]
fn meshwork_up_with_a_tls_gateway_listener() {
    let pki = certs::pki();
    let data = tempfile::tempdir().unwrap();
    let (addr, admin) = (free_addr(), free_addr());
    let (a, m) = (addr.to_string(), admin.to_string());
    let up = Mesh::start(
        &[
            "up",
            "--listen",
            &a,
            "--admin-listen",
            &m,
            "--data-dir",
            data.path().to_str().unwrap(),
            "--no-traces",
            "--loki-listen",
            &free_addr().to_string(),
            "--tls-cert",
            pki.server_cert.to_str().unwrap(),
            "--tls-key",
            pki.server_key.to_str().unwrap(),
        ],
        addr,
        "(grpc tls + https)",
    );
    let body = r#"{"long_url":"https://example.com/up","ttl_seconds":0}"#;
    let (ok, out, err) = grpcurl_tls(addr, &pki.ca, &["-d", body], &[&format!("{SVC}/Shorten")]);
    assert!(ok, "Shorten through meshwork up over TLS failed: {err}");
    let code = json_field(&out, "code").expect("code in Shorten reply");
    assert_eq!(json_field(&out, "shortUrl"), Some(format!("https://{addr}/{code}")));
    assert!(up.terminate(std::time::Duration::from_secs(30)).success());
}

/// Runs `meshwork <args>` that must fail at validation; returns (exit code, stderr).
fn fails(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshwork")).args(args).output().expect("run meshwork");
    assert!(!out.status.success(), "meshwork {args:?} succeeded");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_certificate_files_fail_before_anything_is_bound() {
    let pki = certs::pki();
    let addr = free_addr();
    let a = addr.to_string();
    let missing = pki.dir().join("missing.pem");
    let garbage = pki.write("garbage.pem", "not a certificate\n");
    let (missing, garbage) = (missing.to_str().unwrap(), garbage.to_str().unwrap());
    let (cert, key, ca) =
        (pki.server_cert.to_str().unwrap(), pki.server_key.to_str().unwrap(), pki.ca.to_str().unwrap());
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "urlshortener", "--listen", &a, "--store", "memory:"];
        args.extend_from_slice(extra);
        fails(&args)
    };

    let (code, err) = serve(&["--tls-cert", missing, "--tls-key", key]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("meshwork: --tls-cert {missing}: cannot read: No such file")), "{err}");

    let (_, err) = serve(&["--tls-cert", garbage, "--tls-key", key]);
    assert!(err.contains(&format!("--tls-cert {garbage}: no PEM certificate")), "{err}");
    let (_, err) = serve(&["--tls-cert", cert, "--tls-key", pki.client_key.to_str().unwrap()]);
    assert!(err.contains("the key does not belong to the certificate"), "{err}");
    let (_, err) = serve(&["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", garbage]);
    assert!(err.contains(&format!("--tls-client-ca {garbage}: no PEM certificate")), "{err}");
    let (_, err) = serve(&["--tls-cert", cert]);
    assert!(err.contains("--tls-key"), "{err}");
    // So does `meshwork traces` for its OTLP receivers.
    let (code, err) = fails(&["traces", "--otlp-grpc", &a, "--tls-cert", garbage, "--tls-key", key]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("--tls-cert {garbage}: no PEM certificate")), "{err}");

    // The gateway names the config field and the file.
    let config = pki.write(
        "bad-gateway.toml",
        &format!(
            "listen = \"{addr}\"\n[tls]\ncert = \"{missing}\"\nkey = \"{key}\"\n\
             [pools.p]\nendpoints = [\"127.0.0.1:1\"]\n[pools.p.tls]\nca = \"{ca}\"\n"
        ),
    );
    let (code, err) = fails(&["gateway", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("tls.cert = \"{missing}\": cannot read")), "{err}");

    // Nothing was bound.
    drop(std::net::TcpListener::bind(addr).expect("the port is still free"));
}

/// Runs `meshwork serve urlshortener` on a free port with `env` set, which must exit with an
/// error within 20 s (it is killed, and the test fails, if it serves instead); returns its stderr.
fn serve_fails_with_env(env: &[(&str, &str)]) -> String {
    use std::io::Read as _;
    let addr = free_addr().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshwork"))
        .args(["serve", "urlshortener", "--listen", &addr, "--store", "memory:"])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run meshwork");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for meshwork") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("meshwork serve with {env:?} is still running: it should have refused to start");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().expect("piped stderr").read_to_string(&mut stderr).expect("read stderr");
    assert!(!status.success(), "meshwork serve with {env:?} succeeded");
    stderr
}

#[test]
fn bad_exporter_tls_variables_stop_the_process_naming_the_variable() {
    let pki = certs::pki();
    let garbage = pki.write("garbage.pem", "not a certificate\n");
    let (garbage, ca) = (garbage.to_str().unwrap(), pki.ca.to_str().unwrap());
    let https = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://localhost:4317");

    let err = serve_fails_with_env(&[https, ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", garbage)]);
    assert!(err.contains(&format!("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE={garbage:?}: no PEM certificate")), "{err}");
    let err = serve_fails_with_env(&[
        https,
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", pki.client_cert.to_str().unwrap()),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.server_key.to_str().unwrap()),
    ]);
    assert!(err.contains("OTEL_EXPORTER_OTLP_CLIENT_KEY="), "{err}");
    assert!(err.contains("the key does not belong to the client certificate"), "{err}");
    // A CA for a plaintext endpoint is a mistake, not something to ignore.
    let err = serve_fails_with_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
    ]);
    assert!(err.contains("need an https:// endpoint"), "{err}");
}

/// `meshwork traces --tls-cert --tls-key` takes a service's exports over TLS: the service trusts
/// it through `OTEL_EXPORTER_OTLP_CERTIFICATE`, and the call's trace shows in the query API.
#[test]
fn a_service_exports_to_meshwork_traces_over_tls() {
    let pki = certs::pki();
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http, ui) = (free_addr(), free_addr(), free_addr());
    let (g, h, u, d) = (grpc.to_string(), http.to_string(), ui.to_string(), dir.path().display().to_string());
    let (cert, key) = (pki.server_cert.to_str().unwrap(), pki.server_key.to_str().unwrap());
    let args = [
        "traces",
        "--otlp-grpc",
        &g,
        "--otlp-http",
        &h,
        "--trace-ui",
        &u,
        "--data-dir",
        &d,
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    let traces = Mesh::start(&args, ui, "meshwork traces ready");

    let addr = free_addr();
    let a = addr.to_string();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("https://localhost:{}", grpc.port())),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.ca.display().to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ];
    let serve = Mesh::start_with_env(
        &["serve", "urlshortener", "--listen", &a, "--store", "memory:"],
        addr,
        "meshwork serving",
        &env,
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("traceparent: 00-{trace_id}-00f067aa0ba902b7-01");
    let shorten = format!("{SVC}/Shorten");
    let (ok, out, err) = support::grpcurl(
        addr,
        &["-H", &traceparent, "-d", r#"{"long_url":"https://example.com/over-tls"}"#],
        &[&shorten],
    );
    assert!(ok, "{out}{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, _, body) = support::http_get(ui, &format!("/api/traces/{trace_id}"), &[]);
        if status == 200 && body.contains(&format!("\"operationName\":\"{shorten}\"")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the trace never arrived over TLS: {status} {body}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(serve.terminate(std::time::Duration::from_secs(30)).success());
    assert!(traces.terminate(std::time::Duration::from_secs(30)).success());
}
