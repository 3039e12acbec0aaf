//! The proto toolchain and the client SDKs generated from `proto/`:
//! - `scripts/check-protos.sh` (buf lint, format and breaking against the committed `proto/`)
//!   passes, and `buf breaking` really fails on a renumbered field in a temporary copy;
//! - the checked-in SDKs are what `scripts/gen-sdks.sh` generates (the drift test), and a new
//!   `.proto` shows up in them with no other edit;
//! - the Python SDK, installed into a fresh venv with one `pip install ./sdk/python`, calls
//!   every service of the real `meshwork up` through the gateway: a happy path, an error with
//!   its code, and the server stream where the service has one;
//! - the TypeScript SDK, installed with npm into a temporary project, does the same under
//!   `node --test` over gRPC, and, bundled for the browser, calls the mesh with gRPC-Web from a
//!   page of another origin in headless Chromium;
//! - the warehouse's journey (receive, put away, waves from checkout, a short pick, pack, ship,
//!   a cycle count) with the Python SDK through `meshwork up`, on the embedded store and on the
//!   3-member etcd cluster, inventory agreeing at every step.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{Mesh, grpcurl};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Returns buf as `scripts/check-protos.sh` finds it: `$BUF`, the pinned npm install of
/// `scripts/install-deps.sh`, else `buf` on the PATH.
fn buf() -> PathBuf {
    if let Some(path) = std::env::var_os("BUF") {
        return path.into();
    }
    let cached =
        Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cache/meshwork/buf/node_modules/.bin/buf");
    if cached.exists() { cached } else { PathBuf::from("buf") }
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("{command:?}: {e} (see scripts/install-deps.sh)"))
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Copies the files of `from` into `to`, keeping the layout, but not what `keep` refuses.
fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if !keep(&path) {
            continue;
        }
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target, keep);
        } else {
            std::fs::create_dir_all(to).unwrap();
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Keeps the `.proto` files, `buf.yaml` and the folders that hold them.
fn protos_only(path: &Path) -> bool {
    (path.is_dir() && !path.ends_with("src"))
        || path.extension().is_some_and(|e| e == "proto")
        || path.ends_with("buf.yaml")
}

/// Keeps an SDK's sources, not what pip or npm leave beside them.
fn sdk_sources(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    !(name == "build" || name == "node_modules" || name == "__pycache__" || name.ends_with(".egg-info"))
}

#[test]
fn buf_lint_format_and_breaking_pass() {
    let out = run(Command::new(root().join("scripts/check-protos.sh")).current_dir(root()));
    assert!(out.status.success(), "scripts/check-protos.sh failed:\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("protos: lint, format and breaking passed"));
}

#[test]
fn buf_breaking_fails_on_a_renumbered_field() {
    let original = root().join("proto");
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&original, copy.path(), &protos_only);
    let breaking = |dir: &Path| run(Command::new(buf()).arg("breaking").arg(dir).arg("--against").arg(&original));

    // The untouched copy is compatible with the original: the failure below is the edit's.
    let same = breaking(copy.path());
    assert!(same.status.success(), "an identical copy must pass: {}", text(&same));

    // EchoRequest.message moves from field 1 to field 15: the same name on another number.
    let echo = copy.path().join("meshwork/echo/v1/echo.proto");
    let source = std::fs::read_to_string(&echo).unwrap();
    let start = source.find("message EchoRequest {").expect("echo.proto has EchoRequest");
    let at = start + source[start..].find("string message = 1;").expect("EchoRequest.message is field 1");
    let edited = format!("{}string message = 15;{}", &source[..at], &source[at + "string message = 1;".len()..]);
    std::fs::write(&echo, edited).unwrap();

    let out = breaking(copy.path());
    let report = text(&out);
    assert!(!out.status.success(), "buf breaking passed a renumbered field:\n{report}");
    assert!(report.contains("meshwork/echo/v1/echo.proto"), "{report}");
    assert!(report.contains("\"1\"") && report.contains("EchoRequest"), "the report names the field: {report}");
}

#[test]
fn checked_in_sdks_are_what_proto_generates() {
    let out = run(Command::new(root().join("scripts/gen-sdks.sh")).arg("--check"));
    assert!(out.status.success(), "the SDKs drifted from proto/ (run scripts/gen-sdks.sh):\n{}", text(&out));
}

/// A throwaway service in a temporary copy of `proto/` shows up in the generated SDK: its
/// module, its client on `meshwork.connect()` and its name in `meshwork.SERVICES`.
#[test]
fn a_new_proto_shows_up_in_the_sdks_with_no_other_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let (proto, sdk) = (tmp.path().join("proto"), tmp.path().join("sdk"));
    copy_tree(&root().join("proto"), &proto, &protos_only);
    copy_tree(&root().join("sdk"), &sdk, &sdk_sources);
    std::fs::create_dir_all(proto.join("meshwork/throwaway/v1")).unwrap();
    std::fs::write(
        proto.join("meshwork/throwaway/v1/throwaway.proto"),
        "syntax = \"proto3\";\n\npackage meshwork.throwaway.v1;\n\n\
         service ThrowawayService {\n  rpc Ping(PingRequest) returns (PingResponse);\n}\n\n\
         message PingRequest {\n  string text = 1;\n}\n\nmessage PingResponse {\n  string text = 1;\n}\n",
    )
    .unwrap();
    let out = run(Command::new(root().join("scripts/gen-sdks.sh")).arg("--proto").arg(&proto).arg("--out").arg(&sdk));
    assert!(out.status.success(), "gen-sdks failed:\n{}", text(&out));

    let python = sdk.join("python");
    for file in ["throwaway_pb2.py", "throwaway_pb2.pyi", "throwaway_pb2_grpc.py", "throwaway_pb2_grpc.pyi"] {
        assert!(python.join("meshwork/throwaway/v1").join(file).exists(), "no {file}");
    }
    let venv = tmp.path().join("venv");
    install_python_sdk(&venv, &python);
    let script = "import meshwork\n\
                  from meshwork.throwaway.v1 import throwaway_pb2 as pb\n\
                  clients = meshwork.connect('127.0.0.1:9')\n\
                  print(type(clients.throwaway_service).__name__, 'meshwork.throwaway.v1.ThrowawayService' in meshwork.SERVICES, pb.PingRequest(text='x').text)\n";
    let out = run(Command::new(venv.join("bin/python")).arg("-c").arg(script).current_dir(tmp.path()));
    assert!(out.status.success(), "the new service is not in the Python SDK:\n{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ThrowawayServiceStub True x");

    let ts = sdk.join("typescript/gen");
    let module = std::fs::read_to_string(ts.join("meshwork/throwaway/v1/throwaway_pb.js")).expect("no throwaway_pb.js");
    assert!(module.contains("ThrowawayService"), "{module}");
    assert!(ts.join("meshwork/throwaway/v1/throwaway_pb.d.ts").exists());
    let clients = std::fs::read_to_string(ts.join("clients.js")).unwrap();
    assert!(clients.contains("throwawayService: createClient(ThrowawayService, transport)"), "{clients}");
    assert!(clients.contains("\"meshwork.throwaway.v1.ThrowawayService\""), "{clients}");
    let types = std::fs::read_to_string(ts.join("clients.d.ts")).unwrap();
    assert!(types.contains("throwawayService: Client<typeof ThrowawayService>;"), "{types}");
}

/// Makes a fresh venv at `venv` and installs the Python SDK at `sdk` with one `pip install`.
fn install_python_sdk(venv: &Path, sdk: &Path) {
    // --system-site-packages: grpcio and protobuf already on the machine are reused, offline.
    let out = run(Command::new("python3").args(["-m", "venv", "--system-site-packages"]).arg(venv));
    assert!(out.status.success(), "python3 -m venv: {}", text(&out));
    let out =
        run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "--disable-pip-version-check"]).arg(sdk));
    assert!(out.status.success(), "pip install {}: {}", sdk.display(), text(&out));
}

/// The services the gateway routes, as `grpcurl list` shows them (gRPC's own left out).
fn landed_services(mesh: &Mesh) -> BTreeSet<String> {
    let (ok, out, err) = grpcurl(mesh.addr, &[], &["list"]);
    assert!(ok, "grpcurl list: {err}");
    out.lines().map(str::trim).filter(|s| s.starts_with("meshwork.")).map(String::from).collect()
}

#[test]
fn python_sdk_from_one_pip_install_calls_every_service_through_the_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    install_python_sdk(&venv, &root().join("sdk/python"));

    let data = tempfile::tempdir().unwrap();
    let mesh = Mesh::up(data.path());
    let suffix = "PY1";
    let token = support::token(data.path(), &format!("sdk-user-{suffix}"), &["admin"]);
    let out = run(Command::new(venv.join("bin/python"))
        .arg(root().join("tests/python/sdk_every_service.py"))
        .arg(mesh.addr.to_string())
        .arg(&token)
        .arg(suffix)
        .current_dir(tmp.path()));
    assert!(out.status.success(), "the SDK client failed:\n{}", text(&out));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(
        all["module"].as_str().unwrap_or_default().starts_with(venv.to_str().unwrap()),
        "meshwork must come from the venv's install: {}",
        all["module"]
    );

    // Every landed service is in the SDK and was called.
    let landed = landed_services(&mesh);
    let in_sdk: BTreeSet<String> =
        all["services"].as_array().unwrap().iter().filter_map(|s| s.as_str().map(String::from)).collect();
    assert_eq!(landed, in_sdk, "the gateway's services and the SDK's differ");
    let seen = &all["seen"];
    let called: BTreeSet<String> = seen.as_object().unwrap().keys().cloned().collect();
    assert_eq!(landed, called, "a landed service was not called through the SDK");

    let expect = |service: &str, key: &str, want: serde_json::Value| {
        let got = &seen[service];
        assert_eq!(got[key], want, "{service} {key}: {got:#}");
    };
    use serde_json::json;
    let echo = "meshwork.echo.v1.Echo";
    expect(echo, "ok", json!("hi"));
    // connect(traceparent=...) and connect(timeout=...) reach the service.
    // The gateway's span is the caller's span's child: the trace id is the caller's.
    let traceparent = seen[echo]["traceparent"].as_str().unwrap_or_default();
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{traceparent}");
    expect(echo, "has_deadline", json!(true));
    expect(echo, "error", json!("NOT_FOUND"));
    expect(echo, "deadline", json!("DEADLINE_EXCEEDED"));
    expect(echo, "stream", json!([1, 2, 3]));
    let urls = "meshwork.urlshortener.v1.UrlShortener";
    expect(urls, "ok", json!(format!("https://sdk.example.com/{suffix}")));
    expect(urls, "owner", json!(format!("sdk-user-{suffix}")));
    expect(urls, "error", json!("NOT_FOUND"));
    expect("meshwork.catalog.v1.Catalog", "ok", json!("SDK mug"));
    expect("meshwork.catalog.v1.Catalog", "error", json!("NOT_FOUND"));
    let inventory = "meshwork.inventory.v1.Inventory";
    expect(inventory, "ok", json!(5));
    expect(inventory, "error", json!("FAILED_PRECONDITION"));
    expect(inventory, "stream", json!([format!("SDK-{suffix}")]));
    expect("meshwork.catalog.v1.Carts", "ok", json!(1));
    expect("meshwork.catalog.v1.Carts", "error", json!("INVALID_ARGUMENT"));
    expect("meshwork.catalog.v1.Checkout", "ok", json!("CHECKOUT_STATE_COMPLETED"));
    expect("meshwork.catalog.v1.Checkout", "error", json!("INVALID_ARGUMENT"));
    let orders = "meshwork.orders.v1.Orders";
    expect(orders, "ok", json!("ORDER_STATE_CONFIRMED"));
    expect(orders, "error", json!("INVALID_ARGUMENT"));
    expect(orders, "stream", json!(["ORDER_EVENT_TYPE_ORDER_CREATED"]));
    expect("meshwork.payments.v1.Payments", "ok", json!("PAYMENT_STATUS_AUTHORIZED"));
    expect("meshwork.payments.v1.Payments", "error", json!("INVALID_ARGUMENT"));
    expect("meshwork.ratings.v1.Ratings", "ok", json!(5));
    expect("meshwork.ratings.v1.Ratings", "error", json!("INVALID_ARGUMENT"));
    expect("meshwork.recommendation.v1.Recommendations", "ok", json!("TrendingResponse"));
    expect("meshwork.recommendation.v1.Recommendations", "error", json!("INVALID_ARGUMENT"));
    expect("meshwork.parking.v1.Parking", "ok", json!(1));
    expect("meshwork.parking.v1.Parking", "error", json!("NOT_FOUND"));
    expect("meshwork.library.v1.Library", "ok", json!("9780262033848"));
    expect("meshwork.library.v1.Library", "error", json!("INVALID_ARGUMENT"));
    let meetings = "meshwork.meetings.v1.Meetings";
    expect(meetings, "ok", json!("SDK standup"));
    expect(meetings, "error", json!("NOT_FOUND"));
    expect(meetings, "stream", json!(["EVENT_TYPE_JOINED"]));
    let apps = "meshwork.appstore.v1.AppStore";
    expect(apps, "ok", json!(format!("com.sdk.app{}", suffix.to_lowercase())));
    expect(apps, "error", json!("NOT_FOUND"));
    let tracing = "meshwork.contacttracing.v1.ContactTracing";
    expect(tracing, "ok", json!(8));
    expect(tracing, "error", json!("INVALID_ARGUMENT"));
    let timeline = "meshwork.timeline.v1.Timeline";
    expect(timeline, "ok", json!("SDK post"));
    expect(timeline, "error", json!("INVALID_ARGUMENT"));
    expect(timeline, "stream", json!(["SDK post"]));
    let waste = "meshwork.waste.v1.Waste";
    expect(waste, "ok", json!([format!("sdk-bin-{}", suffix.to_lowercase())]));
    expect(waste, "error", json!("NOT_FOUND"));
    expect(waste, "stream", json!(["ROUTE_EVENT_TYPE_STARTED"]));
    let logging = "meshwork.logging.v1.Logging";
    expect(logging, "ok", json!(1));
    expect(logging, "error", json!("INVALID_ARGUMENT"));
    expect(logging, "stream", json!(["hello sdk"]));
    let warehouse = "meshwork.warehouse.v1.Warehouse";
    expect(warehouse, "ok", json!(format!("sdk-wh-{}", suffix.to_lowercase())));
    expect(warehouse, "error", json!("INVALID_ARGUMENT"));

    assert!(mesh.terminate(Duration::from_secs(30)).success());
}

/// Serves `html` at `/` (404 elsewhere) on a fresh port, from a background thread; the body of
/// each `POST /report` comes out of the returned channel.
fn serve_page(html: String) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (reports, received) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            let head_end = loop {
                if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(at + 4);
                }
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            };
            let (status, body) = if request.starts_with(b"GET / ") {
                ("200 OK", html.as_str())
            } else if let (true, Some(head_end)) = (request.starts_with(b"POST /report "), head_end) {
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let end = request.len().min(head_end + length);
                let _ = reports.send(String::from_utf8_lossy(&request[head_end..end]).into_owned());
                ("200 OK", "")
            } else {
                ("404 Not Found", "not found")
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
        }
    });
    (addr, received)
}

#[test]
fn typescript_sdk_from_npm_calls_every_service_over_grpc_and_from_a_browser_over_grpc_web() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    std::fs::write(dir.join("package.json"), "{\"private\": true, \"type\": \"module\"}\n").unwrap();
    // --install-links: a real copy, as from the registry, not a symlink into the repository.
    let out = run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--install-links"])
        .arg(root().join("sdk/typescript"))
        .arg("esbuild@0.28.2")
        .current_dir(dir));
    assert!(out.status.success(), "npm install ./sdk/typescript: {}", text(&out));
    for file in ["every_service.test.mjs", "browser_entry.js"] {
        std::fs::copy(root().join("tests/sdk_ts").join(file), dir.join(file)).unwrap();
    }

    let data = tempfile::tempdir().unwrap();
    let mesh = Mesh::up(data.path());
    let suffix = "TS1";
    let token = support::token(data.path(), &format!("sdk-user-{suffix}"), &["admin"]);

    // The SDK knows every landed service (the suite then calls every one the SDK knows).
    let out = run(Command::new("node")
        .args(["--input-type=module", "-e"])
        .arg("import { SERVICES } from '@meshwork/sdk'; console.log(JSON.stringify(SERVICES));")
        .current_dir(dir));
    assert!(out.status.success(), "{}", text(&out));
    let in_sdk: BTreeSet<String> = serde_json::from_slice(&out.stdout).expect("a JSON list");
    assert_eq!(landed_services(&mesh), in_sdk, "the gateway's services and the TypeScript SDK's differ");

    let out = run(Command::new("node")
        .args(["--test", "every_service.test.mjs"])
        .env("GATEWAY", format!("http://{}", mesh.addr))
        .env("TOKEN", &token)
        .env("SUFFIX", suffix)
        .current_dir(dir));
    let report = text(&out);
    assert!(out.status.success(), "node --test failed:\n{report}");
    assert!(report.contains("# pass 8") && report.contains("# fail 0"), "{report}");

    // The browser: the same package bundled, a page from another origin, gRPC-Web to the gateway.
    let out = run(Command::new(dir.join("node_modules/.bin/esbuild"))
        .args(["browser_entry.js", "--bundle", "--format=iife", "--outfile=bundle.js", "--log-level=warning"])
        .current_dir(dir));
    assert!(out.status.success(), "esbuild: {}", text(&out));
    let bundle = std::fs::read_to_string(dir.join("bundle.js")).unwrap();
    let (page, reports) = serve_page(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"></head><body><pre id=\"out\">pending</pre>\
         <script>window.GATEWAY = \"http://{}\";</script><script>{bundle}</script></body></html>",
        mesh.addr
    ));
    assert_ne!(page.port(), mesh.addr.port(), "the page comes from another origin");
    let profile = tempfile::tempdir().unwrap();
    // Chromium stays up on the page until killed; the page posts what it saw back to its own
    // server, and the test waits for that in real time (a loaded CI machine can be slow).
    let mut chromium = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{page}/"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(profile.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("chromium: {e} (see scripts/install-deps.sh)"));
    let report = reports.recv_timeout(Duration::from_secs(90));
    let _ = chromium.kill();
    let _ = chromium.wait();
    let report = report.unwrap_or_else(|_| {
        let said = std::fs::read_to_string(profile.path().join("stderr.log")).unwrap_or_default();
        panic!("the page did not report within 90 s; chromium said:\n{said}")
    });
    let (state, seen) = report.split_once('\n').unwrap_or((report.as_str(), ""));
    assert_eq!(state, "true", "the page ended with: {report}");
    let seen: Vec<&str> = seen.lines().collect();
    let want = [
        "echo=from the browser",
        "deadline=true",
        "resolved=https://example.com/ts-web",
        "missing=NotFound",
        "state=unknown",
        "stream=1,2,3",
    ];
    assert_eq!(seen, want, "what the page saw");

    assert!(mesh.terminate(Duration::from_secs(30)).success());
}

#[test]
fn warehouse_journey_with_the_python_sdk_on_embedded_and_etcd() {
    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    install_python_sdk(&venv, &root().join("sdk/python"));
    let etcd = meshwork_storage::testing::EtcdCluster::shared().store_url().to_string();
    for (suffix, store) in [("WHE", None), ("WHD", Some(etcd.as_str()))] {
        let data = tempfile::tempdir().unwrap();
        let mut args = vec!["--no-traces"];
        if let Some(url) = store {
            args.extend(["--store", url]);
        }
        let (mesh, _) = Mesh::up_with_args(data.path(), &args);
        let token = support::token(data.path(), &format!("wh-admin-{suffix}"), &["admin"]);
        let out = run(Command::new(venv.join("bin/python"))
            .arg(root().join("tests/python/warehouse_journey.py"))
            .arg(mesh.addr.to_string())
            .arg(&token)
            .arg(suffix)
            .current_dir(tmp.path()));
        assert!(out.status.success(), "the warehouse journey ({suffix}) failed:\n{}", text(&out));
        let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(seen["count_difference"], -1, "{seen}");
        assert!(seen["steps"].as_array().unwrap().len() >= 10, "{seen}");
        assert!(mesh.terminate(Duration::from_secs(30)).success());
    }
}
