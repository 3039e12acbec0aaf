//! Shared pieces of the end-to-end tests: free ports, the real `meshwork` binary as a child
//! process (ready when it prints its ready line, SIGTERM on drop), grpcurl and raw HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Returns a loopback address nothing listens on (outside the ephemeral range, see
/// [`meshwork_storage::testing::free_port`]).
pub fn free_addr() -> SocketAddr {
    meshwork_storage::testing::free_addr()
}

/// Returns the value of the Prometheus sample in `metrics` whose line starts with `prefix`.
pub fn metric_sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// A running `meshwork` child process.
pub struct Mesh {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin port (`/metrics`), when started by [`Mesh::up`].
    pub admin: Option<SocketAddr>,
    /// The log store's Loki HTTP port, when started by [`Mesh::up`].
    pub loki: Option<SocketAddr>,
    lines: mpsc::Receiver<String>,
}

impl Mesh {
    /// Starts `meshwork <args>` and waits (up to 60 s) for a stdout line containing `ready_marker`.
    pub fn start(args: &[&str], addr: SocketAddr, ready_marker: &str) -> Mesh {
        Mesh::start_with_env(args, addr, ready_marker, &[])
    }

    /// [`Mesh::start`] with extra environment variables for the child.
    pub fn start_with_env(args: &[&str], addr: SocketAddr, ready_marker: &str, env: &[(&str, String)]) -> Mesh {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshwork"))
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn meshwork");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mesh = Mesh { child, addr, admin: None, loki: None, lines };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match mesh.lines.recv_timeout(left) {
                Ok(line) if line.contains(ready_marker) => return mesh,
                Ok(_) => continue,
                Err(_) => panic!("meshwork {args:?} did not print {ready_marker:?} within 60 s"),
            }
        }
    }

    /// Starts `meshwork up` on a fresh port with `data_dir` (trace backend on fresh ports too).
    pub fn up(data_dir: &Path) -> Mesh {
        Mesh::up_with_traces(data_dir).0
    }

    /// Starts `meshwork up` and returns it with the address of its trace query API.
    pub fn up_with_traces(data_dir: &Path) -> (Mesh, SocketAddr) {
        Mesh::up_with_args(data_dir, &[])
    }

    /// [`Mesh::up_with_traces`] with more flags (`--store`, `--payment-failure-rate`...).
    pub fn up_with_args(data_dir: &Path, extra: &[&str]) -> (Mesh, SocketAddr) {
        let (addr, ui, admin) = (free_addr(), free_addr(), free_addr());
        let (a, u, g, h) = (addr.to_string(), ui.to_string(), free_addr().to_string(), free_addr().to_string());
        let m = admin.to_string();
        let loki_addr = free_addr();
        let loki = loki_addr.to_string();
        let d = data_dir.to_str().expect("utf-8 temp path");
        let args = [
            "up",
            "--listen",
            &a,
            "--data-dir",
            d,
            "--admin-listen",
            &m,
            "--loki-listen",
            &loki,
            "--trace-ui",
            &u,
            "--otlp-grpc",
            &g,
            "--otlp-http",
            &h,
        ];
        let args: Vec<&str> = args.iter().chain(extra).copied().collect();
        let mut mesh = Mesh::start(&args, addr, "meshwork ready");
        mesh.admin = Some(admin);
        mesh.loki = Some(loki_addr);
        (mesh, ui)
    }

    /// Sends SIGTERM and returns the exit status (fails the test after `timeout`).
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        signal(&self.child, "TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "meshwork did not exit within {timeout:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends a signal (`TERM`, `INT`, `KILL`) to a child.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().expect("run kill");
    assert!(status.success());
}

/// Runs `grpcurl -plaintext <flags> <addr> <rest>` and returns (success, stdout, stderr).
pub fn grpcurl(addr: SocketAddr, flags: &[&str], rest: &[&str]) -> (bool, String, String) {
    grpcurl_over(&["-plaintext"], addr, flags, rest)
}

/// Runs `grpcurl <transport> <flags> <addr> <rest>` (transport: `-plaintext`, or `-cacert F`
/// and the like) and returns (success, stdout, stderr).
pub fn grpcurl_over(transport: &[&str], addr: SocketAddr, flags: &[&str], rest: &[&str]) -> (bool, String, String) {
    let out = Command::new("grpcurl")
        .args(transport)
        .args(["-max-time", "20"])
        .args(flags)
        .arg(addr.to_string())
        .args(rest)
        .output()
        .expect("run grpcurl (installed by scripts/install-deps.sh)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends one HTTP/1.1 GET and returns (status code, headers lower-cased, body).
pub fn http_get(addr: SocketAddr, path: &str, extra_headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String) {
    http_request(addr, "GET", path, extra_headers, "")
}

/// Sends one HTTP/1.1 request with `body` (none when empty) and returns (status code, headers
/// lower-cased, body, de-chunked).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra_headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if header(&headers, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, headers, body)
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

/// Returns the value of header `name` (lower-case).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Extracts a string field from grpcurl's JSON output.
pub fn json_field(json: &str, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    match &v[field] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Returns a development token for `sub` with `roles`, from `meshwork token` on `data_dir`
/// (the key the `meshwork up` on that data dir trusts).
pub fn token(data_dir: &Path, sub: &str, roles: &[&str]) -> String {
    let mut args = vec!["token".to_string(), "--sub".into(), sub.into(), "--data-dir".into()];
    args.push(data_dir.to_string_lossy().into_owned());
    for role in roles {
        args.extend(["--role".to_string(), role.to_string()]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_meshwork")).args(&args).output().expect("run meshwork token");
    assert!(out.status.success(), "meshwork token failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("token is text").trim().to_string()
}

/// One trace as the built-in Jaeger-compatible API returns it (`/api/traces/<id>`), with the
/// questions the end-to-end tests ask of it.
pub struct Trace(pub serde_json::Value);

impl Trace {
    /// Polls the trace API at `ui` (up to 20 s) until trace `trace_id` holds spans of every
    /// service in `wanted` and its spans form one tree under the caller's span `caller_span`
    /// (spans arrive in separate export batches, a child sometimes before its parent). Fails
    /// naming the spans that still hang outside the tree at the deadline.
    pub async fn wait_for(ui: SocketAddr, trace_id: &str, wanted: &[&str], caller_span: &str) -> Trace {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _, body) = http_get(ui, &format!("/api/traces/{trace_id}"), &[]);
            let body: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
            let trace = Trace(body["data"][0].clone());
            let services = trace.services();
            let missing: Vec<&&str> = wanted.iter().filter(|w| !services.iter().any(|s| s == *w)).collect();
            let outside = trace.outside_the_tree(caller_span);
            if status == 200 && missing.is_empty() && outside.is_empty() {
                return trace;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id}: services missing {missing:?} (have {services:?}); spans outside the tree: {outside:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The spans (operation, service, parent id) whose parent is neither in the trace nor the
    /// caller's span `caller_span`.
    pub fn outside_the_tree(&self, caller_span: &str) -> Vec<(String, String, String)> {
        let ids: Vec<&str> = self.spans().iter().filter_map(|s| s["spanID"].as_str()).collect();
        self.spans()
            .iter()
            .filter_map(|span| {
                let parent = Trace::parent_of(span).unwrap_or_default();
                (!ids.contains(&parent.as_str()) && parent != caller_span).then(|| {
                    (span["operationName"].as_str().unwrap_or_default().to_string(), self.service_of(span), parent)
                })
            })
            .collect()
    }

    /// The names of the services with spans in the trace.
    pub fn services(&self) -> Vec<String> {
        self.0["processes"]
            .as_object()
            .map(|p| p.values().filter_map(|p| p["serviceName"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    pub fn spans(&self) -> &[serde_json::Value] {
        self.0["spans"].as_array().map(Vec::as_slice).unwrap_or_default()
    }

    /// The service that recorded `span`.
    pub fn service_of(&self, span: &serde_json::Value) -> String {
        let process = span["processID"].as_str().unwrap_or_default();
        self.0["processes"][process]["serviceName"].as_str().unwrap_or_default().to_string()
    }

    fn parent_of(span: &serde_json::Value) -> Option<String> {
        span["references"][0]["spanID"].as_str().map(String::from)
    }

    /// The span of `service` whose operation ends with `/<method>`.
    pub fn span(&self, service: &str, method: &str) -> &serde_json::Value {
        let suffix = format!("/{method}");
        self.spans()
            .iter()
            .find(|s| {
                self.service_of(s) == service && s["operationName"].as_str().is_some_and(|o| o.ends_with(&suffix))
            })
            .unwrap_or_else(|| panic!("no {service} span of {method}"))
    }

    /// Asserts that a span of `service` descends from `ancestor`.
    pub fn assert_under(&self, service: &str, ancestor: &serde_json::Value) {
        let by_id: std::collections::BTreeMap<&str, &serde_json::Value> =
            self.spans().iter().filter_map(|s| Some((s["spanID"].as_str()?, s))).collect();
        let found = self.spans().iter().filter(|s| self.service_of(s) == service).any(|span| {
            let mut at = span;
            while let Some(parent) = Trace::parent_of(at).and_then(|p| by_id.get(p.as_str()).copied()) {
                if parent["spanID"] == ancestor["spanID"] {
                    return true;
                }
                at = parent;
            }
            false
        });
        assert!(found, "no {service} span under {}", ancestor["operationName"]);
    }
}
