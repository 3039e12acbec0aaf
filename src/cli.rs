//! Flags of every subcommand (DESIGN section 3) and their validation into a [`Command`]:
//! everything that can be wrong with the input is found here, before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use meshwork_common::Settings;
use meshwork_identity::tls::{TlsFile, TlsIdentity};
use meshwork_storage::StoreUrl;

/// The help of `meshwork serve`'s service names, from the service table (the names are checked
/// in [`Args::validate`], so that a wrong one fails with the same one line as every other flag).
fn services_help() -> String {
    let width = crate::services::names().iter().map(|n| n.len()).max().unwrap_or(0);
    let lines: Vec<String> =
        crate::services::specs().iter().map(|s| format!("  {:width$}  {}", s.name, s.about)).collect();
    format!("Services to run, any of:\n{}", lines.join("\n"))
}

#[derive(Debug, Parser)]
#[command(name = "meshwork", version, about = "A gRPC service mesh: the seed's systems behind a Pingora gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Args,
}

/// Tunables of individual services, passed to them as [`Settings`] (`<service>.<knob>`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceFlags {
    /// Share of payment calls (Authorize, Capture, Void, Refund) that fail with UNAVAILABLE,
    /// whatever the token, from 0 to 1: the processor's flakiness, for testing sagas.
    #[arg(long, default_value_t = 0.0, value_name = "RATE")]
    pub payment_failure_rate: f64,
    /// Milliseconds every payment call waits before answering, 0 to 60000.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub payment_latency_ms: u64,
    /// Length of the contact tracing's export batches, in seconds, 10 to 86400: keys published
    /// in one window are one signed export once it closes.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub export_window_secs: u64,
    /// Timeline authors with more followers than this are not fanned out: their posts are
    /// pulled and merged at read time (at least 1).
    #[arg(long, default_value_t = 10_000, value_name = "FOLLOWERS")]
    pub celebrity_threshold: u64,
}

impl ServiceFlags {
    /// Checks the values and returns them as the services' settings.
    pub fn settings(&self) -> Result<Settings, String> {
        if !(0.0..=1.0).contains(&self.payment_failure_rate) {
            return Err(format!("--payment-failure-rate {}: must be from 0 to 1", self.payment_failure_rate));
        }
        if self.payment_latency_ms > 60_000 {
            return Err(format!("--payment-latency-ms {}: at most 60000", self.payment_latency_ms));
        }
        if self.celebrity_threshold == 0 {
            return Err("--celebrity-threshold 0: must be at least 1".into());
        }
        if !(10..=86_400).contains(&self.export_window_secs) {
            return Err(format!("--export-window-secs {}: must be from 10 to 86400", self.export_window_secs));
        }
        Ok(Settings::default()
            .with("payments.failure_rate", self.payment_failure_rate)
            .with("payments.latency_ms", self.payment_latency_ms)
            .with("contacttracing.export_window_s", self.export_window_secs)
            .with("timeline.celebrity_threshold", self.celebrity_threshold))
    }
}

#[derive(Debug, Subcommand)]
pub enum Args {
    /// Runs the whole mesh on one machine: every service, the gateway, the embedded store.
    Up {
        /// Address of the gateway (gRPC h2c, HTTP/1.1 redirects).
        #[arg(long, default_value = "127.0.0.1:8080", env = "MESHWORK_LISTEN")]
        listen: SocketAddr,
        /// Directory of the embedded store (`<dir>/store`, used unless --store is given), the
        /// trace store (`traces`) and, with an embedded store, the log store (`logs`).
        #[arg(long, default_value = "./data", env = "MESHWORK_DATA_DIR")]
        data_dir: PathBuf,
        /// Store URL: memory:, embedded:<dir>, etcd://host:port[,host:port...].
        #[arg(long, env = "MESHWORK_STORE")]
        store: Option<String>,
        /// Base of the short URLs handed out; defaults to http://<listen>.
        #[arg(long, env = "MESHWORK_PUBLIC_URL")]
        public_url: Option<String>,
        /// Admin HTTP port: Prometheus /metrics (services, storage, gateway) and /ready.
        #[arg(long, default_value = "127.0.0.1:9464", env = "MESHWORK_ADMIN_LISTEN")]
        admin_listen: SocketAddr,
        #[command(flatten)]
        traces: TraceFlags,
        /// Do not start the embedded trace backend (spans still go to --otlp-endpoint or
        /// OTEL_EXPORTER_OTLP_ENDPOINT if set).
        #[arg(long)]
        no_traces: bool,
        #[command(flatten)]
        export: ExportFlags,
        /// PEM certificate chain: the gateway listens with TLS (ALPN h2, http/1.1) instead of h2c.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        service_flags: ServiceFlags,
        /// The log store's Loki-compatible HTTP API (push, query_range, labels...; Grafana's
        /// Loki data source and Loki shippers point here).
        #[arg(long, default_value = "127.0.0.1:3100", env = "MESHWORK_LOKI_LISTEN")]
        loki_listen: SocketAddr,
        /// Do not ship meshwork's own log lines into its log store (tenant `meshwork`).
        #[arg(long)]
        no_self_logs: bool,
    },
    /// Runs the embedded trace backend alone: OTLP receivers, Jaeger query API, web page.
    Traces {
        #[command(flatten)]
        traces: TraceFlags,
        /// Directory of the trace store (an embedded store in <dir>/traces), so traces survive
        /// a restart.
        #[arg(long, default_value = "./data", env = "MESHWORK_DATA_DIR")]
        data_dir: PathBuf,
        /// TLS of both OTLP receivers (the query API stays plain HTTP).
        #[command(flatten)]
        tls: ServerTlsFlags,
    },
    /// Runs some services as their own process (replicas share a distributed store).
    Serve {
        #[arg(required = true, help = services_help())]
        services: Vec<String>,
        /// Address to serve gRPC on.
        #[arg(long)]
        listen: SocketAddr,
        /// Store URL: memory:, embedded:<dir>, etcd://host:port[,host:port...].
        #[arg(long, env = "MESHWORK_STORE")]
        store: String,
        /// Base of the short URLs handed out (the gateway's public address).
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "MESHWORK_PUBLIC_URL")]
        public_url: String,
        /// The gateway the services call other services through (http:// for h2c, https://
        /// for TLS checked against the system's roots).
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "MESHWORK_GATEWAY")]
        gateway: String,
        /// Admin HTTP port: Prometheus /metrics and /ready; none by default.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Service registry, etcd://host:port[,host:port...]: each service registers as a
        /// replica of the gateway pool of the same name (lease with keep-alive) and deregisters
        /// first on shutdown.
        #[arg(long, env = "MESHWORK_REGISTRY")]
        registry: Option<String>,
        #[command(flatten)]
        export: ExportFlags,
        #[command(flatten)]
        tls: ServerTlsFlags,
        #[command(flatten)]
        service_flags: ServiceFlags,
    },
    /// Runs the gateway alone, with routes from a TOML file.
    Gateway {
        /// Gateway configuration (see gateway/examples/gateway.toml).
        #[arg(long)]
        config: PathBuf,
        /// Graceful upgrade: take the listening socket over from the gateway running with this
        /// configuration, which hands it over and drains when it gets SIGQUIT (send it within
        /// 5 s of starting this one). No connection is refused meanwhile.
        #[arg(long)]
        upgrade: bool,
        #[command(flatten)]
        export: ExportFlags,
    },
    /// Load-tests a gRPC method the way ghz does (reports: summary, JSON in ghz's shape, HTML).
    Load(Box<meshwork_loadtest::LoadArgs>),
    /// Offline evaluation of the recommendation model: precision@k, recall@k, nDCG@k, MAP@k
    /// and catalogue coverage, against a popularity baseline, on a random or time split of an
    /// interactions file (`user,item,value,timestamp_ms`) or of synthetic data.
    RecommendEval(Box<meshwork_recommendation::eval::EvalArgs>),
    /// Solves every VRPLIB instance (`*.vrp`, best-known costs from `*.sol` beside them) with
    /// the routing crate's CVRP solver and prints cost, gap to best-known, time and the
    /// solution checker's verdict per instance, then the pick-path saving against S-shape.
    RouteBench {
        /// Folder of VRPLIB instances.
        #[arg(default_value = "routing/data/cvrp")]
        dir: PathBuf,
        /// Time limit per instance, in seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Seed of the solver's random choices (the same seed and limit give the same run, bar
        /// how far the clock lets it get).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The device side of exposure notification: matches the sightings in FILE (JSON lines of
    /// observed Rolling Proximity Identifiers) against the diagnosis keys of the GAEN export
    /// archives in DIR (verified with DIR/public_key.pem when present), scores the exposure
    /// windows with GAEN v2's default risk configuration and prints the report as JSON. The
    /// server never learns who met whom: this runs on the device.
    ExposureCheck {
        /// Folder of export archives (`*.zip` with export.bin and export.sig).
        #[arg(long)]
        exports: PathBuf,
        /// The device's sightings, JSON lines (see meshwork-gaen's `matching` module).
        #[arg(long)]
        observed: PathBuf,
    },
    /// Prints a development token (JWT, ES256) signed by the key `meshwork up` trusts, for
    /// `grpcurl -H "authorization: Bearer $(meshwork token --sub alice)"`.
    Token {
        /// Whom the token names (its `sub`).
        #[arg(long)]
        sub: String,
        /// A role of the caller (repeatable), e.g. `--role admin`.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// How long the token is valid: `90` (seconds), `15m`, `1h`, `7d`.
        #[arg(long, default_value = "1h", value_parser = meshwork_identity::parse_ttl)]
        ttl: std::time::Duration,
        /// Data directory of the `meshwork up` whose key signs (the key is made when missing).
        #[arg(long, default_value = "./data", env = "MESHWORK_DATA_DIR")]
        data_dir: PathBuf,
    },
}

/// A server's TLS identity and, for mutual TLS, the CA its clients' certificates must chain to.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerTlsFlags {
    /// PEM certificate chain: serve over TLS instead of plaintext (gRPC with ALPN h2).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: require client certificates signed by them (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServerTlsFlags {
    /// Reads and checks the files (see [`server_tls`]).
    fn read(&self) -> Result<Option<TlsIdentity>, String> {
        server_tls(self.tls_cert.as_deref(), self.tls_key.as_deref(), self.tls_client_ca.as_deref())
    }
}

/// Where the embedded trace backend listens.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceFlags {
    /// OTLP/gRPC receiver of the embedded trace backend.
    #[arg(long, default_value = "127.0.0.1:4317", env = "MESHWORK_OTLP_GRPC")]
    pub otlp_grpc: SocketAddr,
    /// OTLP/HTTP receiver (POST /v1/traces, protobuf or JSON).
    #[arg(long, default_value = "127.0.0.1:4318", env = "MESHWORK_OTLP_HTTP")]
    pub otlp_http: SocketAddr,
    /// Jaeger-compatible query API (v1 and /api/v3) and the trace web page.
    #[arg(long, default_value = "127.0.0.1:16686", env = "MESHWORK_TRACE_UI")]
    pub trace_ui: SocketAddr,
}

impl TraceFlags {
    /// Checks that the trace ports differ from each other and from `others`.
    fn validate(&self, others: &[(&str, SocketAddr)]) -> Result<(), String> {
        let mut all =
            vec![("--otlp-grpc", self.otlp_grpc), ("--otlp-http", self.otlp_http), ("--trace-ui", self.trace_ui)];
        all.extend_from_slice(others);
        for (i, (a, x)) in all.iter().enumerate() {
            for (b, y) in &all[i + 1..] {
                if x == y && x.port() != 0 {
                    return Err(format!("{a} and {b} are both {x}"));
                }
            }
        }
        Ok(())
    }

    /// Returns the collector configuration.
    pub fn collector(&self) -> meshwork_collector::CollectorConfig {
        meshwork_collector::CollectorConfig {
            otlp_grpc: self.otlp_grpc,
            otlp_http: self.otlp_http,
            query: self.trace_ui,
            limits: Default::default(),
            tls: None,
            extra_grpc: None,
            extra_http: None,
        }
    }
}

/// Where this process sends its own spans and how many it samples. The flags override the
/// standard `OTEL_*` variables, which still work on their own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExportFlags {
    /// OTLP/gRPC endpoint for this process's spans, e.g. http://127.0.0.1:4317 (overrides
    /// OTEL_EXPORTER_OTLP_ENDPOINT; for `up`, replaces the embedded trace backend as target).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces sampled, from 0 to 1 (overrides OTEL_TRACES_SAMPLER and _ARG).
    /// Parent-based: a call that arrives with a `traceparent` follows its caller's decision.
    #[arg(long, value_name = "RATIO")]
    pub trace_sampling: Option<f64>,
}

impl ExportFlags {
    fn validate(&self) -> Result<(), String> {
        if let Some(endpoint) = &self.otlp_endpoint {
            let rest =
                endpoint.strip_prefix("http://").or_else(|| endpoint.strip_prefix("https://")).unwrap_or(endpoint);
            let authority = rest.trim_end_matches('/');
            let port_ok =
                authority.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok || authority.contains('/') {
                return Err(format!("--otlp-endpoint {endpoint:?}: must be [http://|https://]host:port"));
            }
        }
        if let Some(ratio) = self.trace_sampling
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(format!("--trace-sampling {ratio}: must be a number from 0 to 1"));
        }
        Ok(())
    }
}

/// A validated command.
#[derive(Debug)]
pub enum Command {
    Up {
        listen: SocketAddr,
        store: StoreUrl,
        /// Where the development signing key lives (`<data-dir>/identity`).
        data_dir: PathBuf,
        public_url: String,
        admin: SocketAddr,
        traces: Option<TraceFlags>,
        /// Directory of the trace store (`None`: traces kept in memory only, with a `memory:` store).
        trace_dir: Option<PathBuf>,
        export: ExportFlags,
        tls: Option<meshwork_gateway::ListenerTlsConfig>,
        settings: Settings,
        /// The log store's Loki HTTP API.
        loki_listen: SocketAddr,
        /// Ship meshwork's own log lines into its log store.
        self_logs: bool,
    },
    Traces {
        traces: TraceFlags,
        /// Directory of the trace store.
        dir: PathBuf,
        /// TLS of the OTLP receivers.
        tls: Option<TlsIdentity>,
    },
    Serve {
        services: Vec<String>,
        listen: SocketAddr,
        store: StoreUrl,
        public_url: String,
        gateway: String,
        admin: Option<SocketAddr>,
        registry: Option<String>,
        export: ExportFlags,
        tls: Option<TlsIdentity>,
        settings: Settings,
    },
    Gateway {
        config: Box<meshwork_gateway::GatewayConfig>,
        export: ExportFlags,
    },
    Load(Box<meshwork_loadtest::LoadArgs>),
    RecommendEval(Box<meshwork_recommendation::eval::EvalArgs>),
    RouteBench {
        dir: PathBuf,
        time_limit: std::time::Duration,
        seed: u64,
    },
    ExposureCheck {
        exports: PathBuf,
        observed: PathBuf,
    },
    Token {
        sub: String,
        roles: Vec<String>,
        ttl: std::time::Duration,
        data_dir: PathBuf,
    },
}

fn public_url(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) || trimmed.len() <= "https://".len() {
        return Err(format!("--public-url {raw:?}: must be an http:// or https:// URL"));
    }
    Ok(trimmed.to_string())
}

/// `<data_dir>/<name>`, after checking the directory flag.
fn data_subdir(data_dir: &std::path::Path, name: &str) -> Result<PathBuf, String> {
    if data_dir.as_os_str().is_empty() {
        return Err("--data-dir must not be empty".into());
    }
    if data_dir.exists() && !data_dir.is_dir() {
        return Err(format!("--data-dir {}: exists and is not a directory", data_dir.display()));
    }
    Ok(data_dir.join(name))
}

/// Reads and checks `--tls-cert`, `--tls-key` and `--tls-client-ca` (when given) into the
/// identity a TLS server presents; errors name the flag and the file.
fn server_tls(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<Option<TlsIdentity>, String> {
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if client_ca.is_none() => return Ok(None),
        _ => return Err("--tls-cert and --tls-key go together (and --tls-client-ca needs them)".into()),
    };
    let identity = TlsIdentity::from_files(cert, key, client_ca).map_err(|e| {
        let flag = match e.file {
            TlsFile::Cert => "--tls-cert",
            TlsFile::Key => "--tls-key",
            TlsFile::ClientCa => "--tls-client-ca",
        };
        format!("{flag} {}: {}", e.path.display(), e.problem)
    })?;
    Ok(Some(identity))
}

impl Args {
    /// Checks every flag and returns what to run, or one line naming the problem.
    pub fn validate(self) -> Result<Command, String> {
        match self {
            Args::Up {
                listen,
                data_dir,
                store,
                public_url: url,
                admin_listen,
                traces,
                no_traces,
                export,
                tls_cert,
                tls_key,
                service_flags,
                loki_listen,
                no_self_logs,
            } => {
                export.validate()?;
                let settings = service_flags.settings()?;
                if loki_listen == listen || loki_listen == admin_listen {
                    return Err(format!("--loki-listen {loki_listen} is also --listen or --admin-listen"));
                }
                server_tls(tls_cert.as_deref(), tls_key.as_deref(), None)?;
                let tls = tls_cert.zip(tls_key).map(|(cert, key)| meshwork_gateway::ListenerTlsConfig {
                    cert,
                    key,
                    client_ca: None,
                });
                if admin_listen == listen {
                    return Err(format!("--listen and --admin-listen are both {listen}"));
                }
                if !no_traces {
                    traces.validate(&[("--listen", listen), ("--admin-listen", admin_listen)])?;
                }
                let store = match store {
                    Some(s) => s.parse::<StoreUrl>()?,
                    None => StoreUrl::Embedded(data_subdir(&data_dir, "store")?),
                };
                // Traces get an embedded store of their own beside the data (with `memory:`,
                // nothing goes to disk and traces stay in memory).
                let trace_dir = match store {
                    StoreUrl::Memory => None,
                    _ => Some(data_subdir(&data_dir, "traces")?),
                };
                let scheme = if tls.is_some() { "https" } else { "http" };
                let url = public_url(&url.unwrap_or_else(|| format!("{scheme}://{listen}")))?;
                Ok(Command::Up {
                    listen,
                    store,
                    data_dir,
                    public_url: url,
                    admin: admin_listen,
                    traces: (!no_traces).then_some(traces),
                    trace_dir,
                    export,
                    tls,
                    settings,
                    loki_listen,
                    self_logs: !no_self_logs,
                })
            }
            Args::Serve {
                services,
                listen,
                store,
                public_url: url,
                gateway,
                admin_listen,
                registry,
                export,
                tls,
                service_flags,
            } => {
                export.validate()?;
                let settings = service_flags.settings()?;
                if let Some(registry) = &registry {
                    meshwork_registry::parse_url(registry).map_err(|e| format!("--registry: {e}"))?;
                }
                if admin_listen == Some(listen) {
                    return Err(format!("--listen and --admin-listen are both {listen}"));
                }
                for s in &services {
                    if crate::services::find(s).is_none() {
                        let known = crate::services::names().join(", ");
                        return Err(format!("unknown service {s:?}; known: {known}"));
                    }
                }
                let mut unique = services.clone();
                unique.sort();
                unique.dedup();
                if unique.len() != services.len() {
                    return Err("a service is named twice".into());
                }
                let tls = tls.read()?;
                let gateway = public_url(&gateway).map_err(|e| e.replace("--public-url", "--gateway"))?;
                Ok(Command::Serve {
                    services,
                    listen,
                    store: store.parse()?,
                    public_url: public_url(&url)?,
                    gateway,
                    admin: admin_listen,
                    registry,
                    export,
                    tls,
                    settings,
                })
            }
            Args::Traces { traces, data_dir, tls } => {
                traces.validate(&[])?;
                let tls = tls.read()?;
                Ok(Command::Traces { traces, dir: data_subdir(&data_dir, "traces")?, tls })
            }
            Args::Gateway { config, upgrade, export } => {
                export.validate()?;
                let mut config = meshwork_gateway::GatewayConfig::from_file(&config)
                    .map_err(|e| format!("--config {}: {e}", config.display()))?;
                config.take_over = upgrade;
                // The mesh's descriptors: reflection and HTTP routes of every meshwork service.
                config.descriptor_sets.push(meshwork_proto::FILE_DESCRIPTOR_SET.into());
                config.validate().map_err(|e| format!("gateway config: {e}"))?;
                Ok(Command::Gateway { config: Box::new(config), export })
            }
            Args::Load(args) => {
                args.validate()?;
                Ok(Command::Load(args))
            }
            Args::RecommendEval(args) => Ok(Command::RecommendEval(args)),
            Args::ExposureCheck { exports, observed } => Ok(Command::ExposureCheck { exports, observed }),
            Args::RouteBench { dir, seconds, seed } => {
                if !(seconds > 0.0 && seconds <= 3600.0) {
                    return Err(format!("--seconds {seconds}: must be above 0 and at most 3600"));
                }
                Ok(Command::RouteBench { dir, time_limit: std::time::Duration::from_secs_f64(seconds), seed })
            }
            Args::Token { sub, roles, ttl, data_dir } => {
                if sub.is_empty() || sub.len() > 256 || sub.chars().any(char::is_control) {
                    return Err(format!("--sub {sub:?}: must be 1 to 256 characters, no control characters"));
                }
                if let Some(role) = roles.iter().find(|r| r.is_empty() || r.chars().any(|c| c.is_whitespace())) {
                    return Err(format!("--role {role:?}: must be a non-empty word"));
                }
                data_subdir(&data_dir, "identity")?;
                Ok(Command::Token { sub, roles, ttl, data_dir })
            }
        }
    }
}
