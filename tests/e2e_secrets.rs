//! End to end: the secrets `meshwork up` keeps in its data directory are its owner's alone.
//! The development signing key (`identity/dev-signing-key.pem`) is 0600 in a 0700 folder; the
//! URL shortener's code secret lives in the embedded store, whose files fjall creates with the
//! process umask, so the store's directory is 0700 (as are the trace store's and the log
//! store's); a data directory that `meshwork up` creates is 0700 too. The first start runs
//! under umask 000, where any file or folder created without an explicit mode would be open to
//! everyone (`jwks.json`, the public half of the key, must still be 0644: the gateway trusts
//! it); the second start finds everything loosened by hand and must tighten it back.
//! `meshwork up` writes no TLS key: it only reads the `--tls-cert`/`--tls-key` files it is
//! given.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{Mesh, free_addr, grpcurl, json_field, signal, token};

const SVC: &str = "meshwork.urlshortener.v1.UrlShortener";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Every secret-holding path under `data` and the mode it must have.
fn private_paths(data: &Path) -> Vec<(std::path::PathBuf, u32)> {
    vec![
        (data.join("identity"), 0o700),
        (data.join("identity").join("dev-signing-key.pem"), 0o600),
        (data.join("store"), 0o700),
        (data.join("traces"), 0o700),
        // The log store's own database (log lines may carry anything).
        (data.join("logs"), 0o700),
    ]
}

fn assert_private(data: &Path, when: &str) {
    for (path, want) in private_paths(data) {
        assert_eq!(mode(&path), want, "{when}: {} is {:o}, want {want:o}", path.display(), mode(&path));
    }
    // The public half, beside the key, is writable by its owner only: the gateway trusts it.
    let jwks = data.join("identity").join("jwks.json");
    assert_eq!(mode(&jwks), 0o644, "{when}: {} is {:o}", jwks.display(), mode(&jwks));
    // Nothing else sits directly in the data directory: a new secret file there would have to
    // be added to the list above (and made private).
    let mut names: Vec<String> =
        fs::read_dir(data).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["identity", "logs", "store", "traces"], "{when}: unexpected entries in the data directory");
}

/// `meshwork up` started through `sh` under umask 000 (the test process's own umask is shared
/// by every test thread, so it is not changed here).
struct UmaskZeroMesh {
    child: Child,
}

impl UmaskZeroMesh {
    fn up(data: &Path) -> (UmaskZeroMesh, std::net::SocketAddr) {
        let addr = free_addr();
        let [admin, ui, grpc, http] = [free_addr(), free_addr(), free_addr(), free_addr()].map(|a| a.to_string());
        let mut child = Command::new("sh")
            .args(["-c", r#"umask 000 && exec "$0" "$@""#, env!("CARGO_BIN_EXE_meshwork"), "up"])
            .args(["--listen", &addr.to_string(), "--data-dir", data.to_str().unwrap(), "--admin-listen", &admin])
            .args(["--trace-ui", &ui, "--otlp-grpc", &grpc, "--otlp-http", &http])
            .args(["--loki-listen", &free_addr().to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sh");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mesh = UmaskZeroMesh { child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("meshwork ready") => return (mesh, addr),
                Ok(_) => continue,
                Err(_) => panic!("meshwork up (umask 000) was not ready within 60 s"),
            }
        }
    }

    fn terminate(mut self) {
        signal(&self.child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "meshwork up exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "meshwork up did not exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for UmaskZeroMesh {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn secrets_in_the_data_dir_are_owner_only_whatever_the_umask_and_are_tightened_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    // First start, umask 000, on a data directory that does not exist yet.
    let (mesh, addr) = UmaskZeroMesh::up(&data);
    // The code secret is made by the first Shorten, into the store.
    let alice = format!("authorization: Bearer {}", token(&data, "alice", &[]));
    let body = r#"{"long_url":"https://example.com/secrets"}"#;
    let (ok, out, err) = grpcurl(addr, &["-H", &alice, "-d", body], &[&format!("{SVC}/Shorten")]);
    assert!(ok, "Shorten failed: {err}");
    let code = json_field(&out, "code").expect("code in Shorten reply");
    mesh.terminate();
    assert_eq!(mode(&data), 0o700, "the data directory meshwork made");
    assert_private(&data, "first start, umask 000");
    let jwks = fs::read_to_string(data.join("identity").join("jwks.json")).unwrap();

    // Loosened by hand (or by an older version): the restart tightens every one of them. The
    // data directory itself is left as its owner set it: what is secret sits in the folders
    // below it, each 0700 on its own.
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    for (path, _) in private_paths(&data) {
        let loose = if path.is_dir() { 0o777 } else { 0o666 };
        fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
    }
    let mesh = Mesh::up(&data);
    assert_private(&data, "restart after loosening");
    // The same key, and the links made before: tightening kept them.
    assert_eq!(fs::read_to_string(data.join("identity").join("jwks.json")).unwrap(), jwks);
    let (ok, out, err) = grpcurl(mesh.addr, &["-d", &format!("{{\"code\":\"{code}\"}}")], &[&format!("{SVC}/Resolve")]);
    assert!(ok && out.contains("https://example.com/secrets"), "Resolve after restart: {err}\n{out}");
    let alice = format!("authorization: Bearer {}", token(&data, "alice", &[]));
    let (ok, out, err) = grpcurl(mesh.addr, &["-H", &alice, "-d", body], &[&format!("{SVC}/Shorten")]);
    assert!(
        ok && json_field(&out, "code").is_some_and(|c| c.len() == 7 && c != code),
        "Shorten after restart: {err}\n{out}"
    );
    assert!(mesh.terminate(Duration::from_secs(30)).success());
}
