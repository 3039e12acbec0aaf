//! A frame-level HTTP/2 relay for gRPC, after HAProxy's h2 mux: each request head is
//! HPACK-decoded once, handed to a [`Router`], re-encoded for an upstream connection, and from
//! then on DATA frames are forwarded between the two connections as `Bytes` split off the read
//! buffer, with no task, channel or state machine per stream.
//!
//! # Task model
//! One tokio task per connection, downstream ([`serve_connection`]) or upstream (spawned by an
//! [`UpstreamPool`]). The task owns its socket, its HPACK encoder and decoder and its stream
//! table, and is a single poll function (`driver.rs`) that takes, in turn, everything in its
//! **inbox** (an unbounded channel per *connection* of messages from the other side of its
//! streams: open, headers, data, reset, window credit), every whole frame in its read buffer,
//! then writes all pending frames with one (vectored) write. Stream ids are reserved by the
//! downstream task when it opens a stream on an upstream connection (under that connection's
//! lock, so Opens arrive in id order), so both tasks know each other's stream id and no lookup
//! table sits between them. An upstream pool keeps `connections` h2c connections per address
//! (default: the runtime's worker count, at least 2), spreads streams by fewest outstanding,
//! honours each upstream's SETTINGS_MAX_CONCURRENT_STREAMS (excess streams wait for a slot in
//! the upstream task), replaces failed connections on the next request and drains on GOAWAY.
//!
//! # Flow control and the memory bound
//! Stream windows are relayed end to end: the relay gives a sender stream window back
//! (WINDOW_UPDATE, batched by a quarter window) only for bytes the *other* connection has put
//! into its write buffer, and that write buffer takes DATA only while it is under
//! 256 KiB (`HIGH_WATER`), which is also when the socket is read. So a slow reader stops the
//! writer at the far end, and the DATA the relay holds for one stream in one direction is at
//! most the window it advertised for it: [`ServerConfig::initial_stream_window`] for request
//! bodies, [`UpstreamConfig::initial_stream_window`] for responses (256 KiB each by default).
//! Per downstream connection that is at most
//! `max_concurrent_streams × (server window + upstream window)` plus 256 KiB of write buffer
//! on each connection; inboxes carry only window-bounded DATA, so "unbounded" channels are
//! bounded by that too. Connection windows are *not* relayed (one slow stream must not stall
//! the other clients sharing an upstream connection): they are opened as frames are taken off
//! the socket. [`Stats`] counts the bytes held so tests can check the bound.
//!
//! # Calls: observers and deadlines
//! A [`Route`] may carry a [`CallObserver`]: the downstream task keeps it with the stream (no
//! allocation beyond the router's box), notes the `:status` and `grpc-status` of the header
//! blocks it writes to the client, and calls it once with an [`Outcome`] when the stream is gone
//! (complete, reset by either side, refused or failed upstream, timed out, or the connection
//! closed). A route's `timeout` is kept in a heap per connection with one `Sleep`, re-armed for
//! the earliest: at expiry the upstream stream is reset (CANCEL) and the client gets
//! `grpc-status` 4, trailers-only or as trailers after the response head. An upstream's
//! CANCELLED within 20 ms of the deadline (tonic enforcing the forwarded `grpc-timeout`) is
//! passed on as DEADLINE_EXCEEDED.
//!
//! # Defences (downstream side)
//! Preface and first-SETTINGS checks; SETTINGS_MAX_FRAME_SIZE enforced from the frame header
//! (FRAME_SIZE_ERROR); a cap on a header block's compressed size and CONTINUATION count
//! (ENHANCE_YOUR_CALM); HPACK table and decoded list bounds (COMPRESSION_ERROR, or 431 for a
//! list over SETTINGS_MAX_HEADER_LIST_SIZE); SETTINGS_MAX_CONCURRENT_STREAMS (REFUSED_STREAM);
//! rapid reset (streams the client resets before they complete, counted per period:
//! ENHANCE_YOUR_CALM), PING, SETTINGS and useless-frame floods (ENHANCE_YOUR_CALM) and too many
//! stream errors over the connection's life (ENHANCE_YOUR_CALM). No
//! input from a peer panics; every protocol error is a GOAWAY or an RST_STREAM with its
//! RFC 9113 code.
//!
//! # Retries and size caps
//! A route with a `retry_buffer` keeps the request (its upstream header block and the DATA
//! relayed, as `Bytes` clones) while it fits; when an attempt fails before any of its answer
//! went to the client (refused, connect failure, broken stream, trailers-only UNAVAILABLE) the
//! observer is asked ([`CallObserver::retry`]) and may name another upstream: the request is
//! replayed there, and the client's window is not given back twice for the replayed bytes.
//! A route's `max_request_message` / `max_response_message` are read from each gRPC message's
//! length prefix ([`MessageMeter`]): a message over its cap ends the call with
//! RESOURCE_EXHAUSTED and cancels it upstream.
//!
//! # Not implemented (yet)
//! TLS is the caller's (any `AsyncRead + AsyncWrite` is served, ALPN is not checked; upstream
//! connections run over what a [`Connect`] opens, TCP by default); `grpc-timeout` is parsed
//! out for the router, which turns it into [`Route::timeout`] (the relay does not enforce a
//! header it was not told to); no keepalive PINGs, handshake timeouts, SETTINGS-ack timeout
//! (an idle timeout: [`ServerConfig::idle_timeout`]; graceful GOAWAY on shutdown:
//! [`serve_connection_until`]); no reconnect backoff; stream priorities are ignored; server
//! push is refused; request methods other than CONNECT are relayed but the relay is meant and
//! tested for gRPC.

#![forbid(unsafe_code)]

mod config;
mod conn;
mod driver;
pub mod error;
mod flow;
pub mod frame;
mod grpc;
pub mod head;
pub mod hpack;
pub mod limits;
mod pool;
mod relay;
mod server;
mod upstream;
pub mod wbuf;

pub use config::{ServerConfig, UpstreamConfig};
pub use error::{H2Error, Reason};
pub use grpc::MessageMeter;
pub use head::RequestHead;
pub use limits::{Limits, RateLimit};
pub use pool::{Connect, Connecting, Io, UpstreamPool};
pub use relay::{AttemptFailure, CallObserver, Outcome, Reject, Retry, Route, Router, Stats};
pub use server::{serve_connection, serve_connection_until};
