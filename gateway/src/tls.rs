//! TLS at the gateway, with rustls: the optional TLS listener (`[tls]`, ALPN h2 and http/1.1,
//! optionally requiring client certificates) and TLS or mutual TLS to a pool's replicas
//! (`[pools.NAME.tls]`), for the proxied calls and for the gateway's own tonic clients (active
//! health checks, short-link redirects) alike.
//!
//! Every PEM file is read, parsed and cross-checked (key against certificate) when the
//! configuration is validated, so a missing or broken file is one line naming the field and the
//! file, before any port is bound; requests only clone what was loaded. The reading and checking
//! is `meshwork-identity`'s ([`meshwork_identity::tls`]), shared with the services, the trace
//! collector and the OTLP exporter; the listener's files make a [`TlsIdentity`].
//!
//! One crypto provider: `ring`, the one pingora-rustls compiles in (tonic uses `tls-ring` to
//! match). rustls panics ("no process-level CryptoProvider") when several providers are compiled
//! in and none is installed, so the binary and the tests call [`install_crypto_provider`] first
//! (and [`crate::spawn`] does too).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshwork_identity::tls::{TlsFile, TlsIdentity, parse_certs, parse_roots, read_pem};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{CertKey, WrappedX509, parse_x509};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::sign::SingleCertAndKey;
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::{ConfigError, GatewayConfig};

/// Installs `ring` as rustls' process-wide crypto provider (a no-op when one is installed).
/// Call it once at the start of a process that uses TLS, before any TLS configuration is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `[tls]`: TLS on the gateway's listener (gRPC over h2 and HTTP/1.1, chosen by ALPN).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// PEM certificate chain of the gateway, leaf first.
    pub cert: PathBuf,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate signed by one of them.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// `[pools.NAME.tls]`: TLS (with `ca`) or mutual TLS (plus `cert` and `key`) to the replicas.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM CA certificates the replicas' certificates must chain to.
    pub ca: PathBuf,
    /// PEM client certificate chain the gateway presents (mutual TLS); needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name sent as SNI and checked against the replicas' certificates. Default: the host of
    /// each endpoint as configured (`localhost` for `localhost:50051`; the IP address for
    /// `127.0.0.1:50051` and for replicas that joined through the registry).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// `field = "path": reason` as a configuration error.
fn file_error(field: &str, path: &Path, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("{field} = \"{}\": {reason}", path.display()))
}

/// The `[tls]` field (and `[pools.NAME.tls]` field) of an identity's file.
fn field_name(file: TlsFile) -> &'static str {
    match file {
        TlsFile::Cert => "cert",
        TlsFile::Key => "key",
        TlsFile::ClientCa => "client_ca",
    }
}

/// The listener's TLS, loaded.
pub(crate) struct ListenerTls {
    identity: TlsIdentity,
}

impl ListenerTls {
    /// Reads and checks the files; an error names the field (`tls.cert`, `tls.key`,
    /// `tls.client_ca`) and the file.
    fn load(config: &ListenerTlsConfig) -> Result<Self, ConfigError> {
        let identity = TlsIdentity::from_files(&config.cert, &config.key, config.client_ca.as_deref())
            .map_err(|e| file_error(&format!("tls.{}", field_name(e.file)), &e.path, e.problem))?;
        Ok(Self { identity })
    }

    /// Pingora's settings for the listener: the loaded certificate (never a file read, so
    /// `TlsSettings::build` cannot panic on it), ALPN h2 then http/1.1, client verification.
    pub(crate) fn settings(&self) -> Result<TlsSettings, String> {
        // `intermediate` only records paths; with a certificate resolver they are never read.
        let mut settings = TlsSettings::intermediate("", "").map_err(|e| e.to_string())?;
        settings.set_cert_resolver(Arc::new(SingleCertAndKey::from(self.identity.certified_key())));
        settings.enable_h2();
        if let Some(verifier) = self.identity.client_verifier() {
            settings.set_client_cert_verifier(verifier);
        }
        Ok(settings)
    }
}

/// A pool's upstream TLS, loaded: what Pingora's connector and tonic's channels need.
#[derive(Clone)]
pub(crate) struct UpstreamTls {
    ca: Arc<[WrappedX509]>,
    cert_key: Option<Arc<CertKey>>,
    /// Keeps this pool's upstream connections apart from any other pool's (Pingora reuses a
    /// connection by address, SNI and client certificate, but not by CA).
    group_key: u64,
    server_name: Option<String>,
    /// The configured host of each endpoint, the default verification name.
    hosts: HashMap<SocketAddr, String>,
    tonic: ClientTlsConfig,
    /// The gRPC fast path's client config (same CA and client certificate, ALPN h2).
    relay: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("ca_certs", &self.ca.len())
            .field("client_cert", &self.cert_key.is_some())
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    fn load(pool: &str, config: &UpstreamTlsConfig) -> Result<Self, ConfigError> {
        let field = |name: &str| format!("pools.{pool}.tls.{name}");
        let ca_error = |e| file_error(&field("ca"), &config.ca, e);
        let ca_pem = read_pem(&config.ca).map_err(ca_error)?;
        let roots = parse_roots(&ca_pem).map_err(ca_error)?;
        let relay = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Invalid(format!("pools.{pool}.tls: {e}")))?
            .with_root_certificates(roots);
        let ca_certs = parse_certs(&ca_pem).map_err(ca_error)?;
        let mut tonic = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
        let mut relay = Some(relay);
        let mut relay_config = None;
        let cert_key = match (&config.cert, &config.key) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "pools.{pool}.tls: cert and key go together (mutual TLS needs both)"
                )));
            }
            (Some(cert), Some(key)) => {
                let identity = TlsIdentity::from_files(cert, key, None)
                    .map_err(|e| file_error(&field(field_name(e.file)), &e.path, e.problem))?;
                // Pingora turns the key back from DER by sniffing its format (and panics if that
                // fails): check that it can.
                let key_der = identity.private_key().secret_der().to_vec();
                PrivateKeyDer::try_from(key_der.clone()).map_err(|e| file_error(&field("key"), key, e))?;
                let chain: Vec<Vec<u8>> = identity.cert_chain().iter().map(|c| c.to_vec()).collect();
                tonic = tonic.identity(Identity::from_pem(identity.cert_pem(), identity.key_pem()));
                if let Some(builder) = relay.take() {
                    let chain = identity.cert_chain().to_vec();
                    relay_config = Some(
                        builder
                            .with_client_auth_cert(chain, identity.private_key().clone_key())
                            .map_err(|e| file_error(&field("key"), key, e))?,
                    );
                }
                Some(Arc::new(CertKey::new(chain, key_der)))
            }
        };
        if let Some(name) = &config.server_name
            && ServerName::try_from(name.as_str()).is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "pools.{pool}.tls.server_name = \"{name}\": not a DNS name or IP address"
            )));
        }
        // tonic parses the PEMs again when a channel is built; make sure it accepts them now.
        Endpoint::from_static("https://127.0.0.1:1").tls_config(tonic.clone()).map_err(|e| {
            ConfigError::Invalid(format!("pools.{pool}.tls: the gRPC client does not accept these files: {e}"))
        })?;
        let ca = ca_certs.into_iter().map(|c| WrappedX509::new(c.to_vec(), parse_x509)).collect::<Vec<_>>();
        let mut relay = match (relay_config, relay) {
            (Some(config), _) => config,
            (None, Some(builder)) => builder.with_no_client_auth(),
            (None, None) => unreachable!("the builder is taken only to make relay_config"),
        };
        relay.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            ca: ca.into(),
            cert_key,
            group_key: crate::balance::hash64(pool.as_bytes()),
            server_name: config.server_name.clone(),
            hosts: HashMap::new(),
            tonic,
            relay: Arc::new(relay),
        })
    }

    /// The same settings, with the configured host of each endpoint address.
    pub(crate) fn with_hosts(&self, hosts: HashMap<SocketAddr, String>) -> Self {
        Self { hosts, ..self.clone() }
    }

    /// Tells this pool's connections apart from other pools' to the same address.
    pub(crate) fn group_key(&self) -> u64 {
        self.group_key
    }

    /// The name sent as SNI to `addr` and checked against its certificate.
    pub(crate) fn server_name(&self, addr: SocketAddr) -> String {
        self.server_name.clone().or_else(|| self.hosts.get(&addr).cloned()).unwrap_or_else(|| addr.ip().to_string())
    }

    /// A Pingora peer for `addr`: TLS, verified against the pool's CA, with the client
    /// certificate when configured.
    pub(crate) fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, true, self.server_name(addr));
        peer.client_cert_key = self.cert_key.clone();
        peer.options.ca = Some(self.ca.clone());
        peer.group_key = self.group_key;
        peer
    }

    /// The fast path's connector to `addr`: TCP, then TLS with ALPN h2 (the same CA, client
    /// certificate and name as [`Self::peer`]).
    pub(crate) fn relay_connector(&self, addr: SocketAddr) -> Arc<dyn meshwork_h2relay::Connect> {
        Arc::new(RelayTls { config: self.relay.clone(), name: self.server_name(addr) })
    }

    /// A tonic endpoint for `addr` (`https://`, same CA, client certificate and name).
    fn endpoint(&self, addr: SocketAddr) -> Endpoint {
        let endpoint = Endpoint::from(https_uri(addr));
        let config = self.tonic.clone().domain_name(self.server_name(addr));
        match endpoint.clone().tls_config(config) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                // Checked at load; a channel without TLS config fails every call (unhealthy).
                tracing::error!(error = %e, replica = %addr, "cannot set up TLS to replica");
                endpoint
            }
        }
    }
}

/// TLS to one replica for the fast path's relay.
struct RelayTls {
    config: Arc<rustls::ClientConfig>,
    name: String,
}

impl meshwork_h2relay::Connect for RelayTls {
    fn connect(&self, addr: SocketAddr) -> meshwork_h2relay::Connecting {
        let config = self.config.clone();
        let name = ServerName::try_from(self.name.clone());
        Box::pin(async move {
            let name = name.map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(std::io::Error::other("the replica did not agree to HTTP/2 (ALPN h2)"));
            }
            Ok(Box::new(tls) as Box<dyn meshwork_h2relay::Io>)
        })
    }
}

/// A lazily connected-to-be tonic endpoint for a replica, with the pool's TLS if it has one.
pub(crate) fn replica_endpoint(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    connect_timeout: std::time::Duration,
) -> Endpoint {
    let endpoint = match tls {
        Some(tls) => tls.endpoint(addr),
        None => Endpoint::from(crate::http_routes::upstream::grpc_uri(addr)),
    };
    endpoint.connect_timeout(connect_timeout).tcp_nodelay(true)
}

fn https_uri(addr: SocketAddr) -> http::Uri {
    // A socket address always forms a valid authority; the fallback is never taken.
    format!("https://{addr}").parse().unwrap_or_else(|_| http::Uri::from_static("https://127.0.0.1:1"))
}

/// Every TLS setting of a configuration, loaded.
#[derive(Default)]
pub(crate) struct TlsMaterial {
    pub listener: Option<ListenerTls>,
    pub pools: HashMap<String, UpstreamTls>,
}

impl TlsMaterial {
    /// Reads and checks every certificate and key the configuration names.
    pub(crate) fn load(config: &GatewayConfig) -> Result<Self, ConfigError> {
        let listener = config.tls.as_ref().map(ListenerTls::load).transpose()?;
        let mut pools = HashMap::new();
        for (name, pool) in &config.pools {
            if let Some(tls) = &pool.tls {
                pools.insert(name.clone(), UpstreamTls::load(name, tls)?);
            }
        }
        Ok(Self { listener, pools })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA-signed client certificate and its key, written to `dir`: (ca, cert, key).
    fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        (write("ca.pem", ca.pem()), write("c.pem", cert.pem()), write("c.key", key.serialize_pem()))
    }

    #[test]
    fn peers_verify_the_configured_name_else_the_endpoint_host() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = files(dir.path());
        let config = UpstreamTlsConfig { ca, cert: Some(cert), key: Some(key), server_name: None };
        let (named, by_ip): (SocketAddr, SocketAddr) = ("127.0.0.1:1".parse().unwrap(), "127.0.0.2:2".parse().unwrap());
        let tls = UpstreamTls::load("a", &config).unwrap().with_hosts(HashMap::from([(named, "localhost".into())]));
        assert_eq!(tls.server_name(named), "localhost");
        assert_eq!(tls.server_name(by_ip), "127.0.0.2");

        let peer = tls.peer(named);
        assert!(peer.is_tls());
        assert_eq!(peer.sni, "localhost");
        assert!(peer.client_cert_key.is_some());
        assert_eq!(peer.options.ca.as_ref().map(|ca| ca.len()), Some(1));

        let fixed = UpstreamTlsConfig { server_name: Some("svc.internal".into()), cert: None, key: None, ..config };
        let other = UpstreamTls::load("b", &fixed).unwrap().with_hosts(HashMap::from([(named, "localhost".into())]));
        assert_eq!(other.server_name(named), "svc.internal");
        assert!(other.peer(named).client_cert_key.is_none());
        // Pools never share upstream connections, even to the same address and name.
        assert_ne!(other.peer(named).group_key, tls.peer(named).group_key);
    }
}
