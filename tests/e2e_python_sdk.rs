//! End to end: Python clients generated from `proto/` with grpcio-tools (the SDK path) call
//! through the gateway of the real `meshwork up`: the URL shortener with a token from
//! `meshwork token`, and the shop's whole journey from search to a returned order.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::Mesh;

#[test]
fn generated_python_client_calls_through_the_gateway() {
    let gen_dir = generate_python(&[
        "meshwork/urlshortener/v1/urlshortener.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
    ]);
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

/// Generates the Python stubs of `protos` (paths under `proto/`) into a fresh directory.
fn generate_python(protos: &[&str]) -> tempfile::TempDir {
    let gen_dir = tempfile::tempdir().unwrap();
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let status = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto_root)
        .arg(format!("--python_out={}", gen_dir.path().display()))
        .arg(format!("--grpc_python_out={}", gen_dir.path().display()))
        .args(protos)
        .status()
        .expect("python3 -m grpc_tools.protoc (installed by scripts/install-deps.sh)");
    assert!(status.success(), "generating the Python SDK failed");
    gen_dir
}

/// The shop's journey with a generated client: products, stock, search, cart, checkout, then
/// the order's whole life to RETURNED; stock and payment end where they should.
#[test]
fn generated_python_client_shops_from_search_to_return() {
    let gen_dir = generate_python(&[
        "meshwork/catalog/v1/catalog.proto",
        "meshwork/inventory/v1/inventory.proto",
        "meshwork/orders/v1/orders.proto",
        "meshwork/payments/v1/payments.proto",
    ]);
    let data = tempfile::tempdir().unwrap();
    let mesh = Mesh::up(data.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/commerce_journey.py");
    let out =
        Command::new("python3").arg(script).arg(gen_dir.path()).arg(mesh.addr.to_string()).arg("J1").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python journey failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["found"], serde_json::json!(["BEANS-J1", "GRINDER-J1"]), "{seen}");
    assert_eq!(seen["cart_subtotal"], 8900 + 2 * 1850);
    assert_eq!(seen["checkout_state"], "CHECKOUT_STATE_COMPLETED", "{seen}");
    assert_eq!(seen["total"], 8900 + 2 * 1850);
    // Sold: on hand down by two, nothing left reserved.
    assert_eq!(seen["beans_after_order"], serde_json::json!([8, 0]));
    let states = [
        "ORDER_STATE_CONFIRMED",
        "ORDER_STATE_PACKED",
        "ORDER_STATE_SHIPPED",
        "ORDER_STATE_DELIVERED",
        "ORDER_STATE_RETURN_REQUESTED",
        "ORDER_STATE_RETURNED",
    ];
    assert_eq!(seen["states"], serde_json::json!(states));
    assert_eq!(seen["illegal"]["code"], "FAILED_PRECONDITION");
    let details = seen["illegal"]["details"].as_str().unwrap_or_default();
    assert!(details.contains("RETURNED"), "the error names the current state: {details}");
    // Returned: the whole payment refunded, every unit back on the shelf.
    assert_eq!(seen["payment"], serde_json::json!(["PAYMENT_STATUS_REFUNDED", 12600, 12600]));
    assert_eq!(seen["stock_end"]["GRINDER-J1"], serde_json::json!([10, 0, 10]));
    assert_eq!(seen["stock_end"]["BEANS-J1"], serde_json::json!([10, 0, 10]));
    let history: Vec<&str> = seen["history"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(history.first(), Some(&"ORDER_EVENT_TYPE_ORDER_CREATED"));
    assert!(
        history.contains(&"ORDER_EVENT_TYPE_REFUNDED") && history.contains(&"ORDER_EVENT_TYPE_RESTOCKED"),
        "{history:?}"
    );
    assert!(mesh.terminate(Duration::from_secs(30)).success());
}
