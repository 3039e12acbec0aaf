//! End to end: a Python client generated from `proto/` with grpcio-tools (the SDK path)
//! calls the URL shortener through the gateway of the real `meshwork up`, with a token from
//! `meshwork token`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::Mesh;

#[test]
fn generated_python_client_calls_through_the_gateway() {
    let gen_dir = tempfile::tempdir().unwrap();
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let status = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto_root)
        .arg(format!("--python_out={}", gen_dir.path().display()))
        .arg(format!("--grpc_python_out={}", gen_dir.path().display()))
        .args(["meshwork/urlshortener/v1/urlshortener.proto", "google/api/annotations.proto", "google/api/http.proto"])
        .status()
        .expect("python3 -m grpc_tools.protoc (installed by scripts/install-deps.sh)");
    assert!(status.success(), "generating the Python SDK failed");

    let data = tempfile::tempdir().unwrap();
    let mesh = Mesh::up(data.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sdk_client.py");
    let token = support::token(data.path(), "py-user", &[]);
    let out =
        Command::new("python3").arg(script).arg(gen_dir.path()).arg(mesh.addr.to_string()).arg(token).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python client failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["long_url"], "https://python.example.com/sdk");
    assert_eq!(seen["code"].as_str().map(str::len), Some(7));
    assert_eq!(seen["owner"], "py-user");
    assert_eq!(seen["total_clicks"], 1);
    assert_eq!(seen["anonymous_stats"], "UNAUTHENTICATED");
    assert_eq!(seen["referrers"][0], "py.example.net");
    assert_eq!(seen["bad"]["code"], "INVALID_ARGUMENT");
    assert!(seen["bad"]["details"].as_str().unwrap_or_default().starts_with("long_url:"), "{seen}");
    assert_eq!(seen["missing"]["code"], "NOT_FOUND");
    assert_eq!(seen["missing"]["state"], "unknown");
    assert!(mesh.terminate(Duration::from_secs(30)).success());
}
