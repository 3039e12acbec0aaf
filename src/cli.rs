//! Flags of every subcommand (DESIGN section 3) and their validation into a [`Command`]:
//! everything that can be wrong with the input is found here, before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use meshwork_storage::StoreUrl;

/// Every service `meshwork serve` and `meshwork up` can run.
pub const SERVICES: &[&str] = &["urlshortener"];

#[derive(Debug, Parser)]
#[command(name = "meshwork", version, about = "A gRPC service mesh: the seed's systems behind a Pingora gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Args,
}

#[derive(Debug, Subcommand)]
pub enum Args {
    /// Runs the whole mesh on one machine: every service, the gateway, the embedded store.
    Up {
        /// Address of the gateway (gRPC h2c, HTTP/1.1 redirects).
        #[arg(long, default_value = "127.0.0.1:8080", env = "MESHWORK_LISTEN")]
        listen: SocketAddr,
        /// Directory of the embedded store (used unless --store is given).
        #[arg(long, default_value = "./data", env = "MESHWORK_DATA_DIR")]
        data_dir: PathBuf,
        /// Store URL: memory:, embedded:<dir>, etcd://host:port[,host:port...].
        #[arg(long, env = "MESHWORK_STORE")]
        store: Option<String>,
        /// Base of the short URLs handed out; defaults to http://<listen>.
        #[arg(long, env = "MESHWORK_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Runs some services as their own process (replicas share a distributed store).
    Serve {
        /// Services to run (any of: urlshortener).
        #[arg(required = true)]
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
    },
    /// Runs the gateway alone, with routes from a TOML file.
    Gateway {
        /// Gateway configuration (see proxy/examples/gateway.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

/// A validated command.
#[derive(Debug)]
pub enum Command {
    Up { listen: SocketAddr, store: StoreUrl, public_url: String },
    Serve { services: Vec<String>, listen: SocketAddr, store: StoreUrl, public_url: String },
    Gateway { config: meshwork_proxy::GatewayConfig },
}

fn public_url(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) || trimmed.len() <= "https://".len() {
        return Err(format!("--public-url {raw:?}: must be an http:// or https:// URL"));
    }
    Ok(trimmed.to_string())
}

impl Args {
    /// Checks every flag and returns what to run, or one line naming the problem.
    pub fn validate(self) -> Result<Command, String> {
        match self {
            Args::Up { listen, data_dir, store, public_url: url } => {
                let store = match store {
                    Some(s) => s.parse::<StoreUrl>()?,
                    None => {
                        if data_dir.as_os_str().is_empty() {
                            return Err("--data-dir must not be empty".into());
                        }
                        if data_dir.exists() && !data_dir.is_dir() {
                            return Err(format!("--data-dir {}: exists and is not a directory", data_dir.display()));
                        }
                        StoreUrl::Embedded(data_dir.join("store"))
                    }
                };
                let url = public_url(&url.unwrap_or_else(|| format!("http://{listen}")))?;
                Ok(Command::Up { listen, store, public_url: url })
            }
            Args::Serve { services, listen, store, public_url: url } => {
                for s in &services {
                    if !SERVICES.contains(&s.as_str()) {
                        return Err(format!("unknown service {s:?}; known: {}", SERVICES.join(", ")));
                    }
                }
                let mut unique = services.clone();
                unique.sort();
                unique.dedup();
                if unique.len() != services.len() {
                    return Err("a service is named twice".into());
                }
                Ok(Command::Serve { services, listen, store: store.parse()?, public_url: public_url(&url)? })
            }
            Args::Gateway { config } => {
                let config = meshwork_proxy::GatewayConfig::from_file(&config)
                    .map_err(|e| format!("--config {}: {e}", config.display()))?;
                config.validate().map_err(|e| format!("gateway config: {e}"))?;
                Ok(Command::Gateway { config })
            }
        }
    }
}
