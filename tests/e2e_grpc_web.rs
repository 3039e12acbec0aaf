//! End to end: a real browser calls the mesh with gRPC-Web. Headless Chromium loads a page from
//! another origin (a tiny HTTP server of the test's own, on another port); the page's script calls
//! the URL shortener of the real `meshwork up` through the gateway with `fetch()`, hand-framing
//! the protobuf requests (Shorten in binary gRPC-Web, Resolve in base64 text mode, Resolve of an
//! unknown code for a trailers-only NOT_FOUND, an unknown service for a gateway-made error) and writes what it decoded into the DOM, which the test
//! reads with `--dump-dom`. The browser only lets the page read the answers when the gateway's
//! CORS headers allow it, so this proves CORS as well as the framing. A second test checks that
//! a gRPC-Web call is traced and counted by grpc-status exactly like a native one.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use support::{Mesh, grpcurl, http_get, json_field};

const SVC: &str = "meshwork.urlshortener.v1.UrlShortener";
const LONG_URL: &str = "https://example.com/from-the-browser?via=grpc-web";

/// The page: plain JavaScript, no library, so every byte on the wire is the test's own.
fn page(gateway: SocketAddr) -> String {
    let script = r#"
const GATEWAY = "http://__GATEWAY__";
const SVC = "meshwork.urlshortener.v1.UrlShortener";
const enc = new TextEncoder(), dec = new TextDecoder();

function varint(n) { const out = []; while (n > 127) { out.push((n & 127) | 128); n >>>= 7; } out.push(n); return out; }
function stringField(tag, s) { const b = enc.encode(s); return [(tag << 3) | 2, ...varint(b.length), ...b]; }
function frame(bytes) {
  const f = new Uint8Array(5 + bytes.length);
  new DataView(f.buffer).setUint32(1, bytes.length);
  f.set(bytes, 5);
  return f;
}
// The length-delimited fields of a protobuf message (varint fields skipped).
function fields(msg) {
  const out = {};
  let i = 0;
  const readVarint = () => { let n = 0, shift = 0, b; do { b = msg[i++]; n |= (b & 127) << shift; shift += 7; } while (b & 128); return n; };
  while (i < msg.length) {
    const key = readVarint(), tag = key >> 3, type = key & 7;
    if (type === 0) { readVarint(); continue; }
    if (type !== 2) throw new Error("unexpected wire type " + type);
    const len = readVarint();
    out[tag] = msg.subarray(i, i + len);
    i += len;
  }
  return out;
}
function parseFrames(buf) {
  const messages = [], trailers = {};
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let i = 0;
  while (i < buf.length) {
    const flag = buf[i], len = view.getUint32(i + 1), payload = buf.subarray(i + 5, i + 5 + len);
    if (flag & 0x80) {
      for (const line of dec.decode(payload).split("\r\n")) {
        const colon = line.indexOf(":");
        if (colon > 0) trailers[line.slice(0, colon)] = line.slice(colon + 1);
      }
    } else {
      messages.push(payload);
    }
    i += 5 + len;
  }
  return { messages, trailers };
}
const toBase64 = (bytes) => btoa(String.fromCharCode(...bytes));
function fromBase64(text) {
  // Padding may follow any 4-character group: decode group by group.
  const out = [];
  for (let i = 0; i < text.length; i += 4) for (const c of atob(text.slice(i, i + 4))) out.push(c.charCodeAt(0));
  return new Uint8Array(out);
}
async function call(path, request, text) {
  const body = frame(Uint8Array.from(request));
  const response = await fetch(GATEWAY + path, {
    method: "POST",
    headers: {
      "content-type": text ? "application/grpc-web-text" : "application/grpc-web+proto",
      "x-grpc-web": "1",
      "x-user-agent": "meshwork-e2e",
      "grpc-timeout": "10S",
    },
    body: text ? toBase64(body) : body,
  });
  const bytes = text ? fromBase64(await response.text()) : new Uint8Array(await response.arrayBuffer());
  const { messages, trailers } = parseFrames(bytes);
  // Trailers-only answers carry the status in (CORS-exposed) headers.
  const status = trailers["grpc-status"] ?? response.headers.get("grpc-status");
  const message = trailers["grpc-message"] ?? response.headers.get("grpc-message");
  const linkState = response.headers.get("meshwork-link-state");
  return { status, message, messages, linkState, contentType: response.headers.get("content-type") };
}
(async () => {
  const out = document.getElementById("out");
  try {
    const shorten = await call("/" + SVC + "/Shorten", stringField(1, "__LONG_URL__"), false);
    const code = dec.decode(fields(shorten.messages[0])[1]);
    // ResolveRequest { code, skip_click: true }
    const resolve = await call("/" + SVC + "/Resolve", [...stringField(1, code), 0x18, 1], true);
    const longUrl = dec.decode(fields(resolve.messages[0])[1]);
    const missing = await call("/" + SVC + "/Resolve", [...stringField(1, "nosuchcode7"), 0x18, 1], true);
    const unknown = await call("/meshwork.nope.v1.Nope/Do", [], false);
    out.textContent = [
      "shorten-status=" + shorten.status, "shorten-type=" + shorten.contentType, "code=" + code,
      "resolve-status=" + resolve.status, "resolve-type=" + resolve.contentType, "long-url=" + longUrl,
      "missing-status=" + missing.status, "missing-state=" + missing.linkState,
      "unknown-status=" + unknown.status, "unknown-message=" + decodeURIComponent(unknown.message),
    ].join("\n");
    out.dataset.done = "true";
  } catch (e) {
    out.textContent = "error: " + e;
    out.dataset.done = "error";
  }
})();
"#
    .replace("__GATEWAY__", &gateway.to_string())
    .replace("__LONG_URL__", LONG_URL);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>gRPC-Web through meshwork</title></head>\
         <body><pre id=\"out\">pending</pre><script>{script}</script></body></html>"
    )
}

/// Serves `html` at `/` (404 elsewhere) on a fresh port, from a background thread.
fn serve_page(html: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let root = request.starts_with(b"GET / ");
            let (status, body) = if root { ("200 OK", html.as_str()) } else { ("404 Not Found", "not found") };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    addr
}

#[test]
fn a_browser_page_from_another_origin_calls_the_mesh_with_grpc_web() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = Mesh::up(dir.path());
    let page_addr = serve_page(page(mesh.addr));
    assert_ne!(page_addr.port(), mesh.addr.port(), "the page comes from another origin");

    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=10000", "--dump-dom"])
        .arg(format!("http://{page_addr}/"))
        .output()
        .expect("chromium (installed by scripts/install-deps.sh)");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("data-done=\"true\""),
        "the page did not finish its calls:\n{dom}\nchromium stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value = |key: &str| {
        dom.lines()
            .find_map(|l| l.split_once(&format!("{key}=")).map(|(_, v)| v.trim_end_matches("</pre>").to_string()))
            .unwrap_or_else(|| panic!("no {key} in the page:\n{dom}"))
    };
    assert_eq!(value("shorten-status"), "0", "{dom}");
    assert_eq!(value("shorten-type"), "application/grpc-web+proto");
    assert_eq!(value("resolve-status"), "0", "{dom}");
    assert_eq!(value("resolve-type"), "application/grpc-web-text");
    // The HTML dump escapes '&'.
    assert_eq!(value("long-url").replace("&amp;", "&"), LONG_URL, "{dom}");
    // NOT_FOUND is trailers-only: status and link state are headers the page may read (exposed).
    assert_eq!(value("missing-status"), "5", "{dom}");
    assert_eq!(value("missing-state"), "unknown", "{dom}");
    assert_eq!(value("unknown-status"), "12", "{dom}");
    assert!(value("unknown-message").contains("meshwork.nope.v1.Nope"), "{dom}");

    // The code the browser got is a real one: a native gRPC client resolves it too.
    let code = value("code");
    assert!(!code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{code}");
    let request = format!("{{\"code\":\"{code}\",\"skip_click\":true}}");
    let (ok, out, err) = grpcurl(mesh.addr, &["-d", &request], &[&format!("{SVC}/Resolve")]);
    assert!(ok, "{err}");
    assert_eq!(json_field(&out, "longUrl").as_deref(), Some(LONG_URL), "{out}");
    assert!(mesh.terminate(Duration::from_secs(30)).success());
}

/// One gRPC-Web text call over raw HTTP/1.1; returns the raw response.
fn web_text_call(addr: SocketAddr, path: &str, message: &[u8], extra: &[(&str, &str)]) -> String {
    use base64::Engine;
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    let body = base64::engine::general_purpose::STANDARD.encode(&frame);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/grpc-web-text\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    stream.write_all(format!("{head}\r\n{body}").as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
}

#[test]
fn grpc_web_calls_are_traced_and_counted_like_native_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (mesh, ui) = Mesh::up_with_traces(dir.path());
    let trace_id = "6e0c63257de34c92bf9efcd03927272e";
    let caller_span = "00f067aa0ba902b8";
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    // Shorten{long_url}
    let url = b"https://example.com/traced-web";
    let mut message = vec![0x0a, url.len() as u8];
    message.extend_from_slice(url);
    let reply = web_text_call(mesh.addr, &format!("/{SVC}/Shorten"), &message, &[("traceparent", &traceparent)]);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Resolve{code: "nosuchcode9"}: NOT_FOUND.
    let mut message = vec![0x0a, 11];
    message.extend_from_slice(b"nosuchcode9");
    let reply = web_text_call(mesh.addr, &format!("/{SVC}/Resolve"), &message, &[]);
    assert!(reply.to_ascii_lowercase().contains("grpc-status: 5"), "{reply}");

    // The trace: gateway SERVER (child of the caller), gateway CLIENT, service SERVER.
    let op = format!("{SVC}/Shorten");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let trace = loop {
        let (status, _, body) = http_get(ui, &format!("/api/traces/{trace_id}"), &[]);
        let trace: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let named = trace["data"][0]["spans"]
            .as_array()
            .map_or(0, |s| s.iter().filter(|s| s["operationName"] == op.as_str()).count());
        if status == 200 && named >= 3 {
            break trace["data"][0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "trace never arrived: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let spans = trace["spans"].as_array().unwrap();
    let tag = |span: &serde_json::Value, key: &str| {
        span["tags"].as_array().unwrap().iter().find(|t| t["key"] == key).map(|t| t["value"].clone())
    };
    let gateway_server = spans
        .iter()
        .find(|s| {
            trace["processes"][s["processID"].as_str().unwrap()]["serviceName"] == "gateway"
                && tag(s, "span.kind") == Some(serde_json::Value::from("server"))
        })
        .unwrap_or_else(|| panic!("no gateway server span in {trace}"));
    assert_eq!(gateway_server["references"][0]["spanID"], caller_span);
    assert_eq!(tag(gateway_server, "rpc.grpc.status_code"), Some(serde_json::Value::from(0)));
    assert!(
        spans.iter().any(|s| trace["processes"][s["processID"].as_str().unwrap()]["serviceName"] == "urlshortener"),
        "the service span is in the same trace: {trace}"
    );

    // Metrics by grpc-status, from the trailer frame (0) and from a trailers-only answer (5).
    let (_, _, metrics) = http_get(mesh.admin.unwrap(), "/metrics", &[]);
    for (method, status) in [("Shorten", "0"), ("Resolve", "5")] {
        let line =
            format!("meshwork_gateway_calls_total{{service=\"{SVC}\",method=\"{method}\",grpc_status=\"{status}\"}} 1");
        assert!(metrics.lines().any(|l| l == line), "no {line} in\n{metrics}");
    }
    assert!(mesh.terminate(Duration::from_secs(30)).success());
}
