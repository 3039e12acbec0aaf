//! End to end: the real `meshwork up` binary, called through its gateway by real outside
//! clients (grpcurl 1.8.6, raw HTTP/1.1), then stopped with SIGTERM and restarted on the same
//! data directory.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Mesh, grpcurl, header, http_get, http_request, json_field, token};

const SVC: &str = "meshwork.urlshortener.v1.UrlShortener";

#[test]
fn grpcurl_and_http_through_the_gateway_and_a_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = Mesh::up(dir.path());
    let addr = mesh.addr;

    // Reflection through the gateway: the whole mesh in one list.
    let (ok, out, err) = grpcurl(addr, &[], &["list"]);
    assert!(ok, "grpcurl list failed: {err}");
    for service in [SVC, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"] {
        assert!(out.lines().any(|l| l.trim() == service), "{service} missing from list:\n{out}");
    }
    let (ok, out, err) = grpcurl(addr, &[], &["describe", SVC]);
    assert!(ok, "describe failed: {err}");
    for rpc in ["rpc Shorten", "rpc Resolve", "rpc GetStats", "rpc Delete"] {
        assert!(out.contains(rpc), "{rpc} missing from describe:\n{out}");
    }
    let (ok, out, err) = grpcurl(addr, &[], &["describe", "meshwork.urlshortener.v1.ShortenRequest"]);
    assert!(ok && out.contains("long_url"), "message describe failed: {err}\n{out}");

    // The echo service (the smallest example of a service: a crate, a .proto, one line in the
    // service table) is hosted, listed, described and routed like every other.
    assert!(out_has_line(&grpcurl(addr, &[], &["list"]).1, "meshwork.echo.v1.Echo"));
    let (ok, out, err) =
        grpcurl(addr, &["-H", "x-probe: e2e", "-d", r#"{"message":"hello mesh"}"#], &["meshwork.echo.v1.Echo/Echo"]);
    assert!(ok, "Echo failed: {err}");
    assert_eq!(json_field(&out, "message").as_deref(), Some("hello mesh"), "{out}");
    assert!(out.contains("\"x-probe\": \"e2e\""), "the echo lacks the metadata it got: {out}");
    let (ok, _, err) = grpcurl(addr, &["-d", r#"{"count":0}"#], &["meshwork.echo.v1.Echo/EchoStream"]);
    assert!(!ok && err.contains("InvalidArgument") && err.contains("count"), "{err}");

    // Health through the gateway.
    let (ok, out, err) =
        grpcurl(addr, &["-d", &format!("{{\"service\":\"{SVC}\"}}")], &["grpc.health.v1.Health/Check"]);
    assert!(ok && out.contains("SERVING"), "health: {err}\n{out}");

    // Shorten (as alice, with a token from `meshwork token`), Resolve, GetStats round trip.
    let alice = format!("authorization: Bearer {}", token(dir.path(), "alice", &[]));
    let body = r#"{"long_url":"https://example.com/e2e?q=1","ttl_seconds":0}"#;
    let (ok, out, err) = grpcurl(addr, &["-H", &alice, "-d", body], &[&format!("{SVC}/Shorten")]);
    assert!(ok, "Shorten failed: {err}");
    let code = json_field(&out, "code").expect("code in Shorten reply");
    assert_eq!(code.len(), 7);
    let short_url = json_field(&out, "shortUrl").expect("shortUrl");
    assert_eq!(short_url, format!("http://{addr}/{code}"));
    for _ in 0..3 {
        let (ok, out, err) = grpcurl(addr, &["-d", &format!("{{\"code\":\"{code}\"}}")], &[&format!("{SVC}/Resolve")]);
        assert!(ok, "Resolve failed: {err}");
        assert_eq!(json_field(&out, "longUrl").as_deref(), Some("https://example.com/e2e?q=1"));
    }
    // Two more clicks through HTTP redirects.
    for _ in 0..2 {
        let (status, headers, _) = http_get(addr, &format!("/{code}"), &[("Referer", "https://news.example.org/x")]);
        assert_eq!(status, 302);
        assert_eq!(header(&headers, "location"), Some("https://example.com/e2e?q=1"));
    }
    let stats_of = |code: &str| format!("{{\"code\":\"{code}\"}}");
    let (ok, out, err) = grpcurl(addr, &["-H", &alice, "-d", &stats_of(&code)], &[&format!("{SVC}/GetStats")]);
    assert!(ok, "GetStats failed: {err}");
    assert_eq!(json_field(&out, "totalClicks").as_deref(), Some("5"), "{out}");
    assert!(out.contains("news.example.org"), "{out}");

    // Errors are real gRPC statuses through the gateway.
    let (ok, _, err) = grpcurl(addr, &["-d", r#"{"long_url":"javascript:alert(1)"}"#], &[&format!("{SVC}/Shorten")]);
    assert!(!ok && err.contains("InvalidArgument") && err.contains("long_url"), "{err}");
    let (ok, _, err) = grpcurl(addr, &["-d", r#"{"code":"nosuch9"}"#], &[&format!("{SVC}/Resolve")]);
    assert!(!ok && err.contains("NotFound"), "{err}");
    let (status, _, _) = http_get(addr, "/nosuch9", &[]);
    assert_eq!(status, 404);

    // Identity: who may delete. No token: UNAUTHENTICATED; someone else: PERMISSION_DENIED; a
    // forged identity header is stripped by the gateway; a token of another issuer is refused;
    // an admin may.
    let (ok, out, err) = grpcurl(
        addr,
        &["-H", &alice, "-d", r#"{"long_url":"https://example.com/mine","custom_alias":"alices"}"#],
        &[&format!("{SVC}/Shorten")],
    );
    assert!(ok, "{err}");
    assert_eq!(json_field(&out, "code").as_deref(), Some("alices"));
    let delete = format!("{SVC}/Delete");
    let (ok, _, err) = grpcurl(addr, &["-d", r#"{"code":"alices"}"#], &[&delete]);
    assert!(!ok && err.contains("Unauthenticated"), "{err}");
    let bob = format!("authorization: Bearer {}", token(dir.path(), "bob", &[]));
    let (ok, _, err) = grpcurl(addr, &["-H", &bob, "-d", r#"{"code":"alices"}"#], &[&delete]);
    assert!(!ok && err.contains("PermissionDenied"), "{err}");
    let forged = "meshwork-identity: eyJ2IjoxLCJzdWIiOiJhbGljZSIsInJvbGVzIjpbImFkbWluIl0sIm1ldGhvZCI6Imp3dCJ9";
    let (ok, _, err) = grpcurl(addr, &["-H", forged, "-d", r#"{"code":"alices"}"#], &[&delete]);
    assert!(!ok && err.contains("Unauthenticated"), "a client-sent identity went through: {err}");
    let other_dir = tempfile::tempdir().unwrap();
    let stranger = format!("authorization: Bearer {}", token(other_dir.path(), "alice", &["admin"]));
    let (ok, _, err) = grpcurl(addr, &["-H", &stranger, "-d", r#"{"code":"alices"}"#], &[&delete]);
    assert!(!ok && err.contains("Unauthenticated"), "a token of another key went through: {err}");
    let admin = format!("authorization: Bearer {}", token(dir.path(), "root", &["admin"]));
    let (ok, _, err) = grpcurl(addr, &["-H", &admin, "-d", r#"{"code":"alices"}"#], &[&delete]);
    assert!(ok, "the admin could not delete: {err}");
    let (status, _, _) = http_get(addr, "/alices", &[]);
    assert_eq!(status, 410);

    // JSON over HTTP from the google.api.http annotations (gRPC-JSON transcoding).
    let json = [("content-type", "application/json")];
    let (status, _, body) = http_request(
        addr,
        "POST",
        "/v1/links",
        &json,
        r#"{"long_url":"https://example.com/json","custom_alias":"viajson"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["code"], "viajson", "{body}");
    assert_eq!(created["link"]["longUrl"], "https://example.com/json", "{body}");
    let (status, _, body) = http_get(addr, "/v1/links/viajson", &[]);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = http_request(addr, "POST", "/v1/links", &json, r#"{"long_url":"javascript:x"}"#);
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], 3, "{body}");
    assert!(error["message"].as_str().unwrap_or_default().starts_with("long_url:"), "{body}");
    let (status, _, body) = http_get(addr, "/v1/links/nosuch9", &[]);
    assert_eq!((status, serde_json::from_str::<serde_json::Value>(&body).unwrap()["code"].clone()), (404, 5.into()));

    // An expiring link answers 410 once expired.
    let (ok, out, err) = grpcurl(
        addr,
        &["-d", r#"{"long_url":"https://example.com/short-lived","ttl_seconds":1}"#],
        &[&format!("{SVC}/Shorten")],
    );
    assert!(ok, "{err}");
    let expiring = json_field(&out, "code").unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    let (status, _, _) = http_get(addr, &format!("/{expiring}"), &[]);
    assert_eq!(status, 410);

    // SIGTERM drains, flushes and exits 0.
    let status = mesh.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");

    // A restart on the same data dir keeps the code and the click count.
    let mesh = Mesh::up(dir.path());
    let addr = mesh.addr;
    let alice = format!("authorization: Bearer {}", token(dir.path(), "alice", &[]));
    let (ok, out, err) =
        grpcurl(addr, &["-H", &alice, "-d", &format!("{{\"code\":\"{code}\"}}")], &[&format!("{SVC}/GetStats")]);
    assert!(ok, "GetStats after restart failed: {err}");
    assert_eq!(json_field(&out, "totalClicks").as_deref(), Some("5"), "{out}");
    let (status, headers, _) = http_get(addr, &format!("/{code}"), &[]);
    assert_eq!(status, 302);
    assert_eq!(header(&headers, "location"), Some("https://example.com/e2e?q=1"));
    assert!(mesh.terminate(Duration::from_secs(30)).success());
}

fn out_has_line(out: &str, line: &str) -> bool {
    out.lines().any(|l| l.trim() == line)
}

#[test]
fn serve_help_lists_every_service_of_the_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_meshwork")).args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for name in ["urlshortener", "echo"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(name)), "{name} missing from serve --help:\n{help}");
    }
}

#[test]
fn bad_flags_fail_with_one_clear_line_before_binding() {
    let bin = env!("CARGO_BIN_EXE_meshwork");
    let cases: &[(&[&str], &str)] = &[
        (&["up", "--store", "redis://x"], "store url \"redis://x\""),
        (&["up", "--store", "etcd://nohostport"], "is not host:port"),
        (&["up", "--public-url", "ftp://x"], "--public-url"),
        (&["serve", "nosuch", "--listen", "127.0.0.1:0", "--store", "memory:"], "unknown service \"nosuch\""),
        (&["gateway", "--config", "/nonexistent/gw.toml"], "/nonexistent/gw.toml"),
        (&["up", "--trace-sampling", "1.5"], "--trace-sampling 1.5: must be a number from 0 to 1"),
        (
            &["serve", "urlshortener", "--listen", "127.0.0.1:0", "--store", "memory:", "--trace-sampling=-0.1"],
            "--trace-sampling",
        ),
        (&["up", "--otlp-endpoint", "http://nohostport"], "--otlp-endpoint \"http://nohostport\""),
        (&["traces", "--data-dir", "/etc/hostname"], "exists and is not a directory"),
    ];
    for (args, needle) in cases {
        let out = Command::new(bin).args(*args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: more than one line: {err}");
    }
    // A taken gateway port is refused before anything starts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args(["up", "--listen", &addr, "--data-dir", dir.path().to_str().unwrap()])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot bind"));
    assert!(!dir.path().join("store").exists(), "the store was opened although the port was taken");
}
