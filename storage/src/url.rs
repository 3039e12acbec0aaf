//! Store URLs (`memory:`, `embedded:<dir>`, `etcd://host:port[,host:port...]`) and opening a
//! backend from one. Parsing is separate from opening so that bad URLs fail before any port
//! is bound.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::{DynStore, Result};

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// In-process, lost on exit (tests).
    Memory,
    /// fjall under this directory (the default).
    Embedded(PathBuf),
    /// An etcd cluster reached through these `host:port` endpoints.
    Etcd(Vec<String>),
}

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "memory:" || s == "memory" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(dir) = s.strip_prefix("embedded:") {
            let dir = dir.strip_prefix("//").unwrap_or(dir);
            if dir.is_empty() {
                return Err(format!("store url {s:?}: embedded: needs a directory, e.g. embedded:./data"));
            }
            return Ok(StoreUrl::Embedded(PathBuf::from(dir)));
        }
        if let Some(rest) = s.strip_prefix("etcd://") {
            let endpoints: Vec<String> = rest.split(',').map(|e| e.trim().to_string()).collect();
            for e in &endpoints {
                let Some((host, port)) = e.rsplit_once(':') else {
                    return Err(format!("store url {s:?}: endpoint {e:?} is not host:port"));
                };
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(format!("store url {s:?}: endpoint {e:?} is not host:port"));
                }
            }
            return Ok(StoreUrl::Etcd(endpoints));
        }
        if s.starts_with("tikv://") {
            return Err(format!("store url {s:?}: this build has no TiKV backend"));
        }
        Err(format!("store url {s:?}: expected memory:, embedded:<dir> or etcd://host:port[,host:port...]"))
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Memory => write!(f, "memory:"),
            StoreUrl::Embedded(dir) => write!(f, "embedded:{}", dir.display()),
            StoreUrl::Etcd(eps) => write!(f, "etcd://{}", eps.join(",")),
        }
    }
}

/// Opens the backend named by `url`, wrapped so that every operation is traced.
pub async fn open(url: &StoreUrl) -> Result<DynStore> {
    let backend: DynStore = match url {
        StoreUrl::Memory => Arc::new(crate::memory::MemoryStore::new()),
        StoreUrl::Embedded(dir) => Arc::new(crate::embedded::EmbeddedStore::open(dir).await?),
        StoreUrl::Etcd(endpoints) => Arc::new(crate::etcd::EtcdStore::connect(endpoints.clone()).await?),
    };
    Ok(Arc::new(crate::traced::TracedStore::new(backend)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;

    #[test]
    fn parses_every_kind() {
        assert_eq!("memory:".parse::<StoreUrl>().unwrap(), StoreUrl::Memory);
        assert_eq!("embedded:./d".parse::<StoreUrl>().unwrap(), StoreUrl::Embedded("./d".into()));
        assert_eq!(
            "etcd://127.0.0.1:2379,127.0.0.1:2380".parse::<StoreUrl>().unwrap(),
            StoreUrl::Etcd(vec!["127.0.0.1:2379".into(), "127.0.0.1:2380".into()])
        );
        assert!("etcd://nohost".parse::<StoreUrl>().is_err());
        assert!("embedded:".parse::<StoreUrl>().is_err());
        assert!("redis://x".parse::<StoreUrl>().is_err());
        let _ = StoreError::Invalid(String::new());
    }
}
