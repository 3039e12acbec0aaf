//! Test support (cargo feature `testing`): a throwaway etcd cluster on loopback, started from
//! the `etcd` binary on `PATH`, for any crate's tests:
//!
//! ```no_run
//! # async fn demo() {
//! use meshwork_storage::testing::EtcdCluster;
//! let cluster = EtcdCluster::start(3).expect("etcd cluster");
//! let store = meshwork_storage::open(&cluster.store_url()).await.unwrap();
//! # drop(store);
//! # }
//! ```
//!
//! Members listen on free loopback ports, keep their data in a temporary directory and are
//! killed (and the directory removed) when the [`EtcdCluster`] is dropped. When `etcd` is not
//! installed, [`EtcdCluster::start`] fails with a message saying so: tests that need etcd
//! must fail, not skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::StoreUrl;

/// How long a fresh cluster may take to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One member of an [`EtcdCluster`]: etcd runs under a small `sh` watchdog that kills it when
/// the test process exits (so clusters held in statics do not outlive the test binary).
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// The watchdog shell.
    child: Option<Child>,
    /// Where the watchdog writes etcd's pid.
    pid_file: PathBuf,
}

/// A running etcd cluster on loopback; dropped = killed and deleted.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `--initial-cluster` and its token, for restarting a member.
    initial: String,
    token: String,
}

/// Returns the path of the `etcd` binary, or an explanation of why there is none.
pub fn etcd_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MESHWORK_ETCD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("etcd");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err("the `etcd` binary is not on PATH: install it (Debian: `apt-get install etcd-server`) or set \
         MESHWORK_ETCD_BIN; the etcd storage tests need a real etcd and do not skip"
        .to_string())
}

/// Returns a loopback TCP port that nothing listens on, for a server a test is about to start
/// on it. Ports come from below the kernel's ephemeral range (`ip_local_port_range`), in a
/// sequence no two calls of one process share. A port the kernel picked for `bind(:0)` and
/// that was then released is in the ephemeral range: the kernel may hand it out again, as the
/// local port of any outgoing connection, before the test's server binds it (it did, once in
/// about 200 runs of the gateway tests on 16 threads: "Address already in use").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    /// The next candidate's offset; it starts from the process id, so that test binaries run
    /// one after the other do not start on the ports the one before used.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    const LOWEST: u32 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOWEST);
    if span < 1_000 {
        // An ephemeral range reaching this low leaves no room below it: let the kernel pick.
        return TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding a free port").port();
    }
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = LOWEST + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).expect("below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOWEST} and {ephemeral}");
}

/// [`free_port`] on 127.0.0.1.
pub fn free_addr() -> std::net::SocketAddr {
    ([127, 0, 0, 1], free_port()).into()
}

/// Returns the response (head and body) of an HTTP/1.0 GET of `path` on a member's client port.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).ok()?;
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    Some(body)
}

fn healthy(port: u16) -> bool {
    http_get(port, "/health").is_some_and(|body| body.contains("\"health\":\"true\""))
}

impl EtcdCluster {
    /// Returns the 3-member cluster of this test binary, started on first use and shared by its
    /// tests (each takes its own key prefix); the members go when the test process exits.
    ///
    /// # Panics
    /// When the cluster cannot start (no `etcd` binary): the etcd tests fail, never skip.
    pub fn shared() -> &'static EtcdCluster {
        static CLUSTER: std::sync::OnceLock<Result<EtcdCluster, String>> = std::sync::OnceLock::new();
        match CLUSTER.get_or_init(|| EtcdCluster::start(3)) {
            Ok(c) => c,
            Err(e) => panic!("cannot start the etcd test cluster: {e}"),
        }
    }

    /// Starts an `n`-member cluster and waits until every member reports healthy.
    pub fn start(n: usize) -> Result<EtcdCluster, String> {
        let bin = etcd_binary()?;
        let dir = tempfile::Builder::new().prefix("meshwork-etcd-").tempdir().map_err(|e| e.to_string())?;
        let ports: Vec<u16> = (0..2 * n).map(|_| free_port()).collect();
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let initial: Vec<String> =
            names.iter().enumerate().map(|(i, name)| format!("{name}=http://127.0.0.1:{}", ports[n + i])).collect();
        let initial = initial.join(",");
        let token = format!("meshwork-{}-{}", std::process::id(), ports[0]);
        let mut cluster = EtcdCluster { members: Vec::with_capacity(n), dir, bin, initial, token };
        for (i, name) in names.iter().enumerate() {
            let (client, peer) = (ports[i], ports[n + i]);
            let pid_file = cluster.dir.path().join(format!("{name}.pid"));
            let child =
                spawn_member(&cluster.bin, cluster.dir.path(), name, client, peer, &cluster.initial, &cluster.token)?;
            cluster.members.push(Member {
                name: name.clone(),
                client_port: client,
                peer_port: peer,
                child: Some(child),
                pid_file,
            });
        }
        cluster.wait_healthy(START_TIMEOUT)?;
        tracing::info!(endpoints = ?cluster.endpoints(), "etcd test cluster is healthy");
        Ok(cluster)
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for m in &mut self.members {
                if let Some(child) = m.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(format!(
                        "etcd member {} exited during start-up with {status}; see {}",
                        m.name,
                        self.dir.path().join(format!("{}.log", m.name)).display()
                    ));
                }
                if m.child.is_some() && !healthy(m.client_port) {
                    all = false;
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd cluster not healthy within {timeout:?}; logs in {}",
                    self.dir.path().display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Returns the client endpoints as `127.0.0.1:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect()
    }

    /// Returns the store URL naming every member.
    pub fn store_url(&self) -> StoreUrl {
        StoreUrl::Etcd(self.endpoints())
    }

    /// Kills member `i` with SIGKILL (no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self, i: usize) {
        let Some(m) = self.members.get_mut(i) else { return };
        let Some(mut watchdog) = m.child.take() else { return };
        match std::fs::read_to_string(&m.pid_file) {
            Ok(pid) => {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
            Err(e) => tracing::warn!(member = %m.name, error = %e, "no etcd pid file; killing the watchdog only"),
        }
        // The watchdog notices etcd is gone and exits; make sure of it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = watchdog.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = watchdog.kill();
        let _ = watchdog.wait();
    }

    /// Starts member `i` again after [`EtcdCluster::kill`], on its ports and data directory (it
    /// rejoins with its log and catches up from the leader), and waits until every running
    /// member is healthy. Does nothing to a member that runs.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        let Some(m) = self.members.get(i) else { return Err(format!("no member {i}")) };
        if m.child.is_some() {
            return Ok(());
        }
        let (name, client, peer) = (m.name.clone(), m.client_port, m.peer_port);
        let child = spawn_member(&self.bin, self.dir.path(), &name, client, peer, &self.initial, &self.token)?;
        self.members[i].child = Some(child);
        self.wait_healthy(START_TIMEOUT)
    }

    /// Returns the index of the member that is the raft leader now, if a running member says
    /// it is (from its `/metrics`: `etcd_server_is_leader 1`).
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.child.is_some()
                && http_get(m.client_port, "/metrics").is_some_and(|body| body.contains("\netcd_server_is_leader 1"))
        })
    }

    /// Returns the number of members (killed ones included).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Returns true for a cluster without members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Returns the directory holding the members' data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn spawn_member(
    bin: &Path,
    dir: &Path,
    name: &str,
    client: u16,
    peer: u16,
    initial: &str,
    token: &str,
) -> Result<Child, String> {
    // Appended to, so that a restarted member's log follows its first life's.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    // $1 = pid to watch, $2 = pid file, $3 = member data dir, $4... = etcd command line.
    let script = r#"
parent=$1; pidfile=$2; top=$3; shift 3
"$@" &
child=$!
echo $child > "$pidfile"
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.2; done
kill -9 "$child" 2>/dev/null
wait "$child" 2>/dev/null
kill -0 "$parent" 2>/dev/null || rm -rf "$top"
exit 0
"#;
    let data = dir.join(format!("{name}.etcd"));
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("meshwork-etcd-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir.join(format!("{name}.pid")))
        .arg(dir)
        .arg(bin)
        .arg("--name")
        .arg(name)
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", token])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
