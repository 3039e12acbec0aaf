//! A pool of h2c connections to one upstream address. Each stream goes to the usable
//! connection with the fewest outstanding streams (preferring those under the upstream's
//! SETTINGS_MAX_CONCURRENT_STREAMS); an empty, failed or draining slot gets a new connection.
//!
//! Stream ids are reserved by the downstream task: under a connection's lock it takes the
//! next id and puts the Open in the connection's inbox, so Opens arrive in id order and the
//! upstream task writes HEADERS in the order HTTP/2 requires. Both sides then know the
//! stream's id on the other, and every later message names the receiver's own stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::config::UpstreamConfig;
use crate::frame::MAX_WINDOW;
use crate::relay::{Inbox, Msg, Open, Peer};

/// The pool's end of one upstream connection.
#[derive(Debug)]
pub(crate) struct Handle {
    tx: Inbox,
    /// The next stream id to reserve, and whether the connection takes no more streams.
    state: Mutex<(u32, bool)>,
    closed: AtomicBool,
    pub draining: AtomicBool,
    /// Streams reserved and not yet closed.
    pub outstanding: AtomicU32,
    /// The upstream's SETTINGS_MAX_CONCURRENT_STREAMS.
    pub peer_max: AtomicU32,
}

impl Handle {
    fn usable(&self) -> bool {
        !self.closed.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }

    /// Marks the connection closed to new streams.
    pub fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 = true;
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Reserves a stream id and hands the Open to the connection's task; gives the Open back
    /// when the connection takes no more streams (`None` when its task is gone).
    fn open(&self, mut open: Open) -> Result<Peer, Option<Open>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (next, closed) = *state;
        if closed || self.draining.load(Ordering::Relaxed) {
            return Err(Some(open));
        }
        if next > MAX_WINDOW {
            // Stream ids exhausted: let the pool replace this connection.
            self.draining.store(true, Ordering::Relaxed);
            return Err(Some(open));
        }
        open.sid = next;
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Msg::Open(Box::new(open))).is_err() {
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
            state.1 = true;
            self.closed.store(true, Ordering::Relaxed);
            return Err(None);
        }
        state.0 = next + 2;
        Ok(Peer { tx: self.tx.clone(), sid: next })
    }
}

/// A byte stream an upstream connection runs over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What [`Connect::connect`] returns.
pub type Connecting = Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Io>>> + Send>>;

/// Opens the byte streams of a pool's connections when they are not plain TCP to its address
/// (TLS with ALPN h2, an in-process server): the future is bounded by the pool's
/// `connect_timeout` like a TCP connect.
pub trait Connect: Send + Sync + 'static {
    fn connect(&self, addr: SocketAddr) -> Connecting;
}

/// Connections to one upstream address.
pub struct UpstreamPool {
    addr: SocketAddr,
    config: Arc<UpstreamConfig>,
    connector: Option<Arc<dyn Connect>>,
    slots: Vec<Mutex<Option<Arc<Handle>>>>,
    opened: AtomicU64,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("addr", &self.addr)
            .field("connector", &self.connector.is_some())
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

impl UpstreamPool {
    /// A pool of `config.connections` connections (made as streams need them) to `addr`.
    pub fn new(addr: SocketAddr, config: UpstreamConfig) -> Arc<Self> {
        Self::build(addr, config, None)
    }

    /// A pool whose connections run over what `connector` opens (`addr` is passed to it).
    pub fn with_connector(addr: SocketAddr, config: UpstreamConfig, connector: Arc<dyn Connect>) -> Arc<Self> {
        Self::build(addr, config, Some(connector))
    }

    fn build(addr: SocketAddr, config: UpstreamConfig, connector: Option<Arc<dyn Connect>>) -> Arc<Self> {
        let slots = (0..config.connections.max(1)).map(|_| Mutex::new(None)).collect();
        Arc::new(UpstreamPool { addr, config: Arc::new(config), connector, slots, opened: AtomicU64::new(0) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Connections opened so far (reconnections included).
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Streams outstanding on each live connection.
    pub fn outstanding(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter_map(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .filter(|h| h.usable())
            .map(|h| h.outstanding.load(Ordering::Relaxed))
            .collect()
    }

    fn connect(&self) -> Option<Arc<Handle>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = Arc::new(Handle {
            tx,
            state: Mutex::new((1, false)),
            closed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            outstanding: AtomicU32::new(0),
            peer_max: AtomicU32::new(self.config.assumed_max_concurrent_streams),
        });
        self.opened.fetch_add(1, Ordering::Relaxed);
        let connector = self.connector.clone();
        runtime.spawn(crate::upstream::run(self.addr, self.config.clone(), connector, handle.clone(), rx));
        Some(handle)
    }

    /// Picks the least loaded usable connection, connecting empty or dead slots.
    fn pick(&self) -> Option<Arc<Handle>> {
        let mut best: Option<(bool, u32, Arc<Handle>)> = None;
        for slot in &self.slots {
            let handle = {
                let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                match &*slot {
                    Some(h) if h.usable() => h.clone(),
                    _ => {
                        let h = self.connect()?;
                        *slot = Some(h.clone());
                        h
                    }
                }
            };
            let load = handle.outstanding.load(Ordering::Relaxed);
            let full = load >= handle.peer_max.load(Ordering::Relaxed);
            if best.as_ref().is_none_or(|(bf, bl, _)| (full, load) < (*bf, *bl)) {
                let idle = load == 0;
                best = Some((full, load, handle));
                if idle {
                    break;
                }
            }
        }
        best.map(|(_, _, h)| h)
    }

    /// Opens a stream on one of the pool's connections; the `Err` is the grpc-message of the
    /// UNAVAILABLE the client gets.
    pub(crate) fn open(&self, mut open: Open) -> Result<Peer, &'static str> {
        for _ in 0..3 {
            let Some(handle) = self.pick() else { return Err("no upstream connection") };
            match handle.open(open) {
                Ok(peer) => return Ok(peer),
                Err(Some(back)) => open = back,
                Err(None) => return Err("upstream connection lost"),
            }
        }
        Err("no usable upstream connection")
    }
}
