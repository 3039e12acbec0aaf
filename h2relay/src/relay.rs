//! What the relay's caller supplies (a [`Router`]) and what connection tasks send each other
//! ([`Msg`] through a per-connection inbox).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use crate::error::Reason;
use crate::head::RequestHead;
use crate::hpack::HeaderList;
use crate::pool::UpstreamPool;

/// Decides, once per request, where it goes.
pub trait Router: Send + Sync + 'static {
    /// Called on the downstream connection's task with the decoded request head: it must not
    /// block.
    fn route(&self, head: &RequestHead) -> Result<Route, Reject>;
}

/// Where a request goes and how its headers change on the way.
#[derive(Clone)]
pub struct Route {
    pub upstream: Arc<UpstreamPool>,
    /// Replaces `:authority` when set.
    pub authority: Option<Bytes>,
    /// Headers removed from the request (lowercase names).
    pub remove_headers: Vec<Bytes>,
    /// Headers added to the request (after removal; lowercase names).
    pub add_headers: Vec<(Bytes, Bytes)>,
}

impl Route {
    /// A route to `upstream` with no header edits.
    pub fn to(upstream: Arc<UpstreamPool>) -> Self {
        Route { upstream, authority: None, remove_headers: Vec::new(), add_headers: Vec::new() }
    }
}

/// A refusal answered by the relay itself with a trailers-only gRPC response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The gRPC status code (`grpc-status`), e.g. 14 for UNAVAILABLE.
    pub grpc_status: u32,
    /// The `grpc-message` (percent-encoded on the wire).
    pub message: String,
}

/// Counters shared by a server's connections (tests and metrics read them).
#[derive(Debug, Default)]
pub struct Stats {
    /// DATA bytes the relay holds right now: received from one side, not yet written to the
    /// other (in inboxes and stream queues).
    pub buffered: AtomicI64,
    /// The most `buffered` has been.
    pub buffered_peak: AtomicI64,
    /// Streams accepted from clients.
    pub streams: AtomicU64,
    /// Connections closed with GOAWAY for a protocol error or abuse.
    pub goaways: AtomicU64,
}

impl Stats {
    pub(crate) fn add_buffered(&self, n: i64) {
        let now = self.buffered.fetch_add(n, Ordering::Relaxed) + n;
        if n > 0 {
            self.buffered_peak.fetch_max(now, Ordering::Relaxed);
        }
    }
}

/// A connection task's inbox.
pub(crate) type Inbox = UnboundedSender<Msg>;

/// The other end of a relayed stream: the connection task that owns it and its stream id there.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub tx: Inbox,
    pub sid: u32,
}

impl Peer {
    /// Sends to the other side; a closed inbox means that side is gone, which it has already
    /// dealt with (its streams were reset), so the message is dropped.
    pub fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg);
    }
}

/// A request to open a stream on an upstream connection.
#[derive(Debug)]
pub(crate) struct Open {
    /// The stream id reserved on the upstream connection.
    pub sid: u32,
    /// The downstream side.
    pub peer: Peer,
    pub fields: HeaderList,
    pub end_stream: bool,
}

/// Why an upstream could not take a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The upstream never saw the stream (GOAWAY, draining): safe to retry; the client gets
    /// RST_STREAM(REFUSED_STREAM).
    Retriable,
    /// The upstream failed (connect error, connection lost): the client gets a trailers-only
    /// UNAVAILABLE with this message.
    Unavailable(&'static str),
}

/// What connection tasks send each other. `sid` is always the receiver's stream id.
#[derive(Debug)]
pub(crate) enum Msg {
    Open(Box<Open>),
    Headers {
        sid: u32,
        fields: HeaderList,
        end_stream: bool,
    },
    Data {
        sid: u32,
        data: Bytes,
        end_stream: bool,
    },
    Reset {
        sid: u32,
        reason: Reason,
    },
    /// The other side wrote (or dropped) `n` bytes of this stream's DATA: the receiver may open
    /// its peer's stream window by that much.
    Credit {
        sid: u32,
        n: u32,
    },
    Refused {
        sid: u32,
        why: Refusal,
    },
}
