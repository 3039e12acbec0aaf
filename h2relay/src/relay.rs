//! What the relay's caller supplies (a [`Router`]) and what connection tasks send each other
//! ([`Msg`] through a per-connection inbox).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

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
pub struct Route {
    pub upstream: Arc<UpstreamPool>,
    /// Replaces `:authority` when set.
    pub authority: Option<Bytes>,
    /// Headers removed from the request (lowercase names).
    pub remove_headers: Vec<Bytes>,
    /// Headers added to the request (after removal; lowercase names).
    pub add_headers: Vec<(Bytes, Bytes)>,
    /// The call's deadline, from when it is routed: past it the relay resets the upstream
    /// stream (CANCEL) and ends the client's with `grpc-status` 4 (DEADLINE_EXCEEDED). The
    /// connection's task keeps one timer for all its streams.
    pub timeout: Option<Duration>,
    /// Told how the call ended (and dropped) when its stream is gone; asked whether a failed
    /// attempt goes to another upstream ([`CallObserver::retry`]).
    pub observer: Option<Box<dyn CallObserver>>,
    /// Request bytes (DATA) kept so that a failed attempt can be sent again: retries are asked
    /// for only while the whole request fits (0: none kept, no retries).
    pub retry_buffer: usize,
    /// The largest gRPC request message relayed (its 5-byte length prefix is read): a larger
    /// one ends the call with RESOURCE_EXHAUSTED and cancels it upstream. `u32::MAX`: no cap.
    pub max_request_message: u32,
    /// The same for response messages.
    pub max_response_message: u32,
}

impl Route {
    /// A route to `upstream` with no header edits, deadline or observer.
    pub fn to(upstream: Arc<UpstreamPool>) -> Self {
        Route {
            upstream,
            authority: None,
            remove_headers: Vec::new(),
            add_headers: Vec::new(),
            timeout: None,
            observer: None,
            retry_buffer: 0,
            max_request_message: u32::MAX,
            max_response_message: u32::MAX,
        }
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("upstream", &self.upstream.addr())
            .field("authority", &self.authority)
            .field("timeout", &self.timeout)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

/// Learns how one relayed call ended. Called once, on the downstream connection's task, when
/// the stream is gone from it (complete, reset, refused, timed out, or its connection closed);
/// an observer whose connection task is dropped (runtime shutdown) is dropped without a call.
/// It must not block.
pub trait CallObserver: Send + 'static {
    fn on_end(self: Box<Self>, outcome: &Outcome);

    /// An attempt failed before any of its answer reached the client, and the request is still
    /// whole in the route's retry buffer: returns where to send it again, or `None` to pass
    /// the failure on to the client. Called on the downstream connection's task; it must not
    /// block. The default never retries.
    fn retry(&mut self, failure: AttemptFailure) -> Option<Retry> {
        let _ = failure;
        None
    }

    /// The `grpc-message` of the UNAVAILABLE the relay answers when an attempt failed before
    /// an answer and was not retried; `relay_message` is the relay's own ("upstream connect
    /// failed"). `None` keeps it.
    fn unavailable_message(&self, failure: AttemptFailure, relay_message: &str) -> Option<String> {
        let _ = (failure, relay_message);
        None
    }
}

/// Why an attempt failed (see [`CallObserver::retry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The upstream never saw the request (connect failure, GOAWAY or REFUSED_STREAM before
    /// it was processed): safe to send again whatever the method.
    NotSent,
    /// The upstream may have seen it: its connection or the stream broke before an answer.
    Broken,
    /// The upstream answered trailers-only `grpc-status: 14` (UNAVAILABLE).
    Unavailable,
}

/// Where a failed attempt goes next.
pub struct Retry {
    pub upstream: Arc<UpstreamPool>,
    /// Request headers replaced (or added) for this attempt (lowercase names), e.g. the new
    /// attempt's `traceparent`.
    pub set_headers: Vec<(Bytes, Bytes)>,
}

impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry").field("upstream", &self.upstream.addr()).finish_non_exhaustive()
    }
}

/// How a relayed call ended, as the client saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The response's `:status` (0 when no response head reached the client).
    pub http_status: u16,
    /// The `grpc-status` of the trailers, or of a trailers-only response (the relay's own
    /// answers included).
    pub grpc_status: Option<u32>,
    /// The stream ended with RST_STREAM towards or from the client, with this reason.
    pub reset: Option<Reason>,
    /// The client cancelled (RST_STREAM, or its connection went away) before the response ended.
    pub client_cancelled: bool,
    /// The upstream failed the call: connect failure, connection lost, stream reset or refused.
    pub upstream_failed: bool,
    /// The relay ended the call at its deadline ([`Route::timeout`]).
    pub deadline_exceeded: bool,
    /// Time from routing to the response head (`None` when none came).
    pub headers_after: Option<Duration>,
    /// Time from routing to the end.
    pub elapsed: Duration,
    /// Attempts sent upstream (1 plus the retries).
    pub attempts: u32,
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
    /// UNAVAILABLE with this message. `sent`: the request may have reached the upstream.
    Unavailable { message: &'static str, sent: bool },
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
