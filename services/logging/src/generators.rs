//! Seeded generators of realistic log lines in the formats of five real systems (the shapes of
//! the LogHub corpora): HDFS DataNode/NameNode, Apache access (combined format), Apache error,
//! Linux syslog and OpenSSH. Same seed, same lines; used by the correctness tests (results
//! compared with `grep` over the same lines) and by the benchmark.

/// A log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// HDFS (`081109 203615 148 INFO dfs.DataNode$PacketResponder: ...`).
    Hdfs,
    /// Apache access log, combined format.
    ApacheAccess,
    /// Apache error log.
    ApacheError,
    /// Linux syslog (cron, systemd, kernel, su).
    Syslog,
    /// OpenSSH server log (syslog framing).
    OpenSsh,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 5] =
        [Format::Hdfs, Format::ApacheAccess, Format::ApacheError, Format::Syslog, Format::OpenSsh];

    /// A short name, usable as a label value.
    pub fn name(self) -> &'static str {
        match self {
            Format::Hdfs => "hdfs",
            Format::ApacheAccess => "apache_access",
            Format::ApacheError => "apache_error",
            Format::Syslog => "syslog",
            Format::OpenSsh => "openssh",
        }
    }
}

/// A small, fast, seeded generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Returns a generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Returns one of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Returns (year, month 1-12, day 1-31) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

struct Civil {
    y: i64,
    mo: u32,
    d: u32,
    h: i64,
    mi: i64,
    s: i64,
    wd: usize,
}

fn civil(ts_ns: i64) -> Civil {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    Civil { y, mo, d, h: rem / 3600, mi: rem % 3600 / 60, s: rem % 60, wd: days.rem_euclid(7) as usize }
}

const IPS: [&str; 12] = [
    "10.250.19.102",
    "10.251.42.84",
    "10.251.30.6",
    "10.251.90.64",
    "10.251.73.220",
    "10.250.11.53",
    "173.234.31.186",
    "119.137.62.142",
    "112.95.230.3",
    "212.47.254.145",
    "183.62.140.253",
    "187.141.143.180",
];
const USERS: [&str; 10] =
    ["root", "admin", "fztu", "webmaster", "test", "oracle", "git", "ubuntu", "postgres", "alice"];
const PATHS: [&str; 12] = [
    "/index.html",
    "/images/logo.png",
    "/api/v1/orders",
    "/api/v1/orders/42",
    "/login",
    "/static/app.js",
    "/favicon.ico",
    "/search?q=shoes",
    "/cart",
    "/checkout",
    "/robots.txt",
    "/wp-login.php",
];
const AGENTS: [&str; 5] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Gecko/20100101 Firefox/120.0",
    "curl/7.81.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "python-requests/2.31.0",
];
const HOSTS: [&str; 4] = ["LabSZ", "combo", "web-01", "db-02"];

/// Produces lines of one format with increasing timestamps.
#[derive(Debug, Clone)]
pub struct Generator {
    format: Format,
    rng: Rng,
    ts_ns: i64,
    step_ns: i64,
}

impl Generator {
    /// Returns a generator of `format` seeded with `seed`, starting at `start_ns` with about
    /// `step_ns` between lines.
    pub fn new(format: Format, seed: u64, start_ns: i64, step_ns: i64) -> Generator {
        Generator { format, rng: Rng::new(seed), ts_ns: start_ns, step_ns: step_ns.max(1) }
    }

    /// Returns the next (timestamp in unix ns, line).
    pub fn next_line(&mut self) -> (i64, String) {
        self.ts_ns += 1 + self.rng.below(2 * self.step_ns as u64) as i64;
        let ts = self.ts_ns;
        let c = civil(ts);
        let r = &mut self.rng;
        let line = match self.format {
            Format::Hdfs => {
                let blk = r.next_u64() as i64 / 2;
                let (ip, ip2) = (*r.pick(&IPS), *r.pick(&IPS));
                let port = 40000 + r.below(20000);
                let body = match r.below(10) {
                    0..=2 => format!(
                        "INFO dfs.DataNode$DataXceiver: Receiving block blk_{blk} src: /{ip}:{port} dest: /{ip2}:50010"
                    ),
                    3..=4 => format!(
                        "INFO dfs.DataNode$PacketResponder: PacketResponder {} for block blk_{blk} terminating",
                        r.below(3)
                    ),
                    5 => format!(
                        "INFO dfs.DataNode$PacketResponder: Received block blk_{blk} of size {} from /{ip}",
                        67_108_864 - r.below(4096) as i64
                    ),
                    6 => format!(
                        "INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: {ip}:50010 is added to blk_{blk} size 67108864"
                    ),
                    7 => format!(
                        "INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /user/root/rand/_temporary/_task_200811092030_0001_m_{:06}_0/part-{:05}. blk_{blk}",
                        r.below(2000),
                        r.below(2000)
                    ),
                    8 => format!(
                        "WARN dfs.DataNode$DataXceiver: {ip}:50010:Got exception while serving blk_{blk} to /{ip2}:"
                    ),
                    _ => format!("INFO dfs.DataBlockScanner: Verification succeeded for blk_{blk}"),
                };
                format!(
                    "{:02}{:02}{:02} {:02}{:02}{:02} {} {body}",
                    c.y % 100,
                    c.mo,
                    c.d,
                    c.h,
                    c.mi,
                    c.s,
                    1 + r.below(3000)
                )
            }
            Format::ApacheAccess => {
                let ip = *r.pick(&IPS);
                let method = *r.pick(&["GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD"]);
                let path = *r.pick(&PATHS);
                let status = *r.pick(&[200, 200, 200, 200, 304, 301, 404, 404, 500, 503, 403]);
                let size = if status == 304 { 0 } else { 200 + r.below(50_000) };
                let referer = if r.below(3) == 0 {
                    "-".to_string()
                } else {
                    format!("https://shop.example.com{}", r.pick(&PATHS))
                };
                format!(
                    "{ip} - {} [{:02}/{}/{}:{:02}:{:02}:{:02} +0000] \"{method} {path} HTTP/1.1\" {status} {size} \"{referer}\" \"{}\"",
                    if r.below(4) == 0 { *r.pick(&USERS) } else { "-" },
                    c.d,
                    MONTHS[c.mo as usize - 1],
                    c.y,
                    c.h,
                    c.mi,
                    c.s,
                    r.pick(&AGENTS)
                )
            }
            Format::ApacheError => {
                let ip = *r.pick(&IPS);
                let (level, body) = match r.below(8) {
                    0..=1 => (
                        "notice",
                        format!("jk2_init() Found child {} in scoreboard slot {}", 1000 + r.below(9000), r.below(12)),
                    ),
                    2 => ("notice", "workerEnv.init() ok /etc/httpd/conf/workers2.properties".to_string()),
                    3..=4 => ("error", format!("[client {ip}] File does not exist: /var/www/html{}", r.pick(&PATHS))),
                    5 => ("error", format!("mod_jk child workerEnv in error state {}", 1 + r.below(9))),
                    6 => (
                        "warn",
                        format!(
                            "[client {ip}] mod_security: Access denied with code 403 (phase 2) [uri \"{}\"]",
                            r.pick(&PATHS)
                        ),
                    ),
                    _ => (
                        "error",
                        format!("[client {ip}] script not found or unable to stat: /var/www/cgi-bin/awstats.pl"),
                    ),
                };
                format!(
                    "[{} {} {:02} {:02}:{:02}:{:02} {}] [{level}] {body}",
                    WEEKDAYS[c.wd],
                    MONTHS[c.mo as usize - 1],
                    c.d,
                    c.h,
                    c.mi,
                    c.s,
                    c.y
                )
            }
            Format::Syslog => {
                let host = *r.pick(&HOSTS);
                let pid = 1000 + r.below(30000);
                let body = match r.below(8) {
                    0..=1 => format!("CRON[{pid}]: (root) CMD (run-parts /etc/cron.hourly)"),
                    2 => format!("systemd[1]: Started Session {} of user {}.", r.below(5000), r.pick(&USERS)),
                    3 => format!(
                        "kernel: [{}.{:06}] eth0: link up, 1000Mbps, full-duplex",
                        r.below(900_000),
                        r.below(1_000_000)
                    ),
                    4 => format!(
                        "kernel: [{}.{:06}] Out of memory: Killed process {pid} (java) total-vm:{}kB",
                        r.below(900_000),
                        r.below(1_000_000),
                        r.below(9_000_000)
                    ),
                    5 => format!("su(pam_unix)[{pid}]: session opened for user {} by (uid=0)", r.pick(&USERS)),
                    6 => format!("systemd-logind[712]: New session {} of user {}.", r.below(5000), r.pick(&USERS)),
                    _ => format!("ntpd[{pid}]: synchronized to {}, stratum 2", r.pick(&IPS)),
                };
                format!("{} {:>2} {:02}:{:02}:{:02} {host} {body}", MONTHS[c.mo as usize - 1], c.d, c.h, c.mi, c.s)
            }
            Format::OpenSsh => {
                let host = *r.pick(&HOSTS);
                let pid = 20000 + r.below(9000);
                let ip = *r.pick(&IPS);
                let user = *r.pick(&USERS);
                let port = 1024 + r.below(60000);
                let body = match r.below(10) {
                    0..=2 => format!("Failed password for invalid user {user} from {ip} port {port} ssh2"),
                    3 => format!("Failed password for {user} from {ip} port {port} ssh2"),
                    4 => format!("Invalid user {user} from {ip}"),
                    5 => format!("Accepted password for {user} from {ip} port {port} ssh2"),
                    6 => format!("pam_unix(sshd:session): session opened for user {user} by (uid=0)"),
                    7 => format!("Received disconnect from {ip}: 11: Bye Bye [preauth]"),
                    8 => format!(
                        "reverse mapping checking getaddrinfo for ns{}.example.net [{ip}] failed - POSSIBLE BREAK-IN ATTEMPT!",
                        r.below(100)
                    ),
                    _ => format!("Connection closed by {ip} [preauth]"),
                };
                format!(
                    "{} {:>2} {:02}:{:02}:{:02} {host} sshd[{pid}]: {body}",
                    MONTHS[c.mo as usize - 1],
                    c.d,
                    c.h,
                    c.mi,
                    c.s
                )
            }
        };
        (ts, line)
    }

    /// Returns the next `n` lines.
    pub fn take(&mut self, n: usize) -> Vec<(i64, String)> {
        (0..n).map(|_| self.next_line()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_realistic_lines() {
        let start = 1_700_000_000_000_000_000;
        for f in Format::ALL {
            let a = Generator::new(f, 7, start, 1_000_000).take(50);
            let b = Generator::new(f, 7, start, 1_000_000).take(50);
            assert_eq!(a, b);
            assert!(a.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(a.iter().all(|(_, l)| l.len() > 30 && !l.contains('\n')), "{f:?}");
        }
        let ssh = Generator::new(Format::OpenSsh, 1, start, 1).take(1);
        assert!(ssh[0].1.starts_with("Nov 14 22:13:2"), "{}", ssh[0].1);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}
