//! The downstream (server) side: [`serve_connection`] checks the client preface, exchanges
//! SETTINGS, decodes each request head once, asks the [`Router`] and opens the stream on an
//! upstream connection (or answers it itself).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::config::{LocalSettings, ServerConfig};
use crate::conn::{CallState, Conn, Out, Replay, Side, Stream, grpc_status};
use crate::error::{H2Error, Reason};
use crate::frame::{self, PREFACE};
use crate::grpc::MessageMeter;
use crate::head::{self, parse_request, trailers_only, upstream_fields};
use crate::hpack::{DecodeError, HeaderList};
use crate::relay::{AttemptFailure, Msg, Open, Peer, Refusal, Router};

/// gRPC's UNAVAILABLE.
const GRPC_UNAVAILABLE: u32 = 14;

pub(crate) struct ServerSide {
    router: Arc<dyn Router>,
    config: Arc<ServerConfig>,
    preface_done: bool,
    settings_seen: bool,
    /// The highest stream id the client has opened.
    pub last_peer_sid: u32,
    /// The client sent GOAWAY, or we did (shutdown): no new streams; the connection ends with
    /// the last one.
    pub peer_goaway: bool,
    /// We sent GOAWAY for a shutdown: streams the client opens anyway are refused.
    pub local_goaway: bool,
}

/// Serves one HTTP/2 client connection (h2c, or h2 over TLS once ALPN picked it) until it
/// closes: one task, no task per stream. Returns the socket's I/O error, if any; protocol
/// errors are answered with GOAWAY and end the connection normally.
pub async fn serve_connection<T, R>(io: T, config: Arc<ServerConfig>, router: Arc<R>) -> std::io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
    R: Router,
{
    serve(io, config, router, None).await
}

/// [`serve_connection`] with a graceful shutdown: once `shutdown` completes, the client is sent
/// GOAWAY (NO_ERROR, last stream id = the last it opened), streams in flight finish, new ones
/// are refused (RST_STREAM REFUSED_STREAM, safe for the client to retry elsewhere), and the
/// connection closes with its last stream.
pub async fn serve_connection_until<T, R, F>(
    io: T,
    config: Arc<ServerConfig>,
    router: Arc<R>,
    shutdown: F,
) -> std::io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
    R: Router,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    serve(io, config, router, Some(Box::pin(shutdown))).await
}

async fn serve<T, R>(
    io: T,
    config: Arc<ServerConfig>,
    router: Arc<R>,
    shutdown: crate::driver::Shutdown,
) -> std::io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
    R: Router,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let side = ServerSide {
        router,
        config: config.clone(),
        preface_done: false,
        settings_seen: false,
        last_peer_sid: 0,
        peer_goaway: false,
        local_goaway: false,
    };
    let local = LocalSettings::from(&*config);
    let mut conn = Conn::new(Side::Server(Box::new(side)), local, Some(tx), Some(config.stats.clone()));
    conn.write_preamble(&[(frame::setting::MAX_CONCURRENT_STREAMS, config.max_concurrent_streams)]);
    let mut rx = rx;
    let result = crate::driver::run(io, &mut conn, &mut rx, shutdown).await;
    conn.on_eof();
    result
}

impl Conn {
    fn server(&mut self) -> &mut ServerSide {
        match &mut self.side {
            Side::Server(s) => s,
            Side::Client(_) => unreachable!("server code on an upstream connection"),
        }
    }

    /// Starts a graceful shutdown: GOAWAY(NO_ERROR) with the last stream the client opened.
    pub(crate) fn server_shutdown(&mut self) {
        if self.closing {
            return;
        }
        let s = self.server();
        if s.local_goaway {
            return;
        }
        s.local_goaway = true;
        s.peer_goaway = true;
        let last = s.last_peer_sid;
        frame::write_goaway(&mut self.out, last, Reason::NO_ERROR, b"shutting down");
    }

    /// Consumes the client preface; `false` while it is incomplete or when it is wrong (the
    /// connection then fails).
    pub(crate) fn server_preface(&mut self, rbuf: &mut BytesMut) -> bool {
        if self.server().preface_done {
            return true;
        }
        let n = rbuf.len().min(PREFACE.len());
        if rbuf[..n] != PREFACE[..n] {
            self.fail(Reason::PROTOCOL_ERROR, "invalid connection preface");
            return false;
        }
        if n < PREFACE.len() {
            return false;
        }
        rbuf.advance(PREFACE.len());
        self.server().preface_done = true;
        true
    }

    /// The client's first frame must be SETTINGS.
    pub(crate) fn server_first_frame(&mut self, is_settings: bool) -> Result<(), H2Error> {
        let s = self.server();
        if !s.settings_seen {
            if !is_settings {
                return Err(H2Error::protocol("first frame is not SETTINGS"));
            }
            s.settings_seen = true;
        }
        Ok(())
    }

    pub(crate) fn server_header_block(
        &mut self,
        sid: u32,
        decoded: Result<(), DecodeError>,
        fields: HeaderList,
        end_stream: bool,
    ) -> Result<(), H2Error> {
        match decoded {
            Err(DecodeError::Compression(why)) => return Err(H2Error::conn(Reason::COMPRESSION_ERROR, why)),
            Err(DecodeError::ListFarTooLarge) => {
                return Err(H2Error::conn(Reason::ENHANCE_YOUR_CALM, "header list far over the limit"));
            }
            _ => {}
        }
        if sid <= self.server().last_peer_sid {
            return self.server_trailers(sid, decoded, fields, end_stream);
        }
        self.server().last_peer_sid = sid;
        let config = self.server().config.clone();
        let mut stream = Stream::new(None, self.peer_initial_window, self.local.initial_stream_window);
        stream.recv_end = end_stream;
        if decoded == Err(DecodeError::ListTooLarge) {
            let status = vec![(Bytes::from_static(b":status"), Bytes::from_static(b"431"))];
            return self.answer(sid, stream, status);
        }
        if self.streams.len() >= config.max_concurrent_streams as usize || self.server().local_goaway {
            frame::write_rst(&mut self.out, sid, Reason::REFUSED_STREAM);
            return Ok(());
        }
        config.stats.streams.fetch_add(1, Ordering::Relaxed);
        let head = parse_request(sid, fields, end_stream).map_err(|_| H2Error::Stream(sid, Reason::PROTOCOL_ERROR))?;
        let mut route = match self.server().router.route(&head) {
            Ok(route) => route,
            Err(reject) => return self.answer(sid, stream, trailers_only(reject.grpc_status, &reject.message)),
        };
        let now = tokio::time::Instant::now();
        let fields = upstream_fields(&head, &route, &route.upstream.config().scheme);
        let capped = route.max_request_message != u32::MAX || route.max_response_message != u32::MAX;
        if route.observer.is_some() || route.retry_buffer > 0 || capped {
            let mut call = CallState::new(route.observer.take(), now);
            if route.retry_buffer > 0 {
                call.replay = Some(Replay::new(fields.clone(), end_stream, route.retry_buffer));
            }
            if route.max_request_message != u32::MAX {
                call.request_cap = Some((MessageMeter::default(), route.max_request_message));
            }
            if route.max_response_message != u32::MAX {
                call.response_cap = Some((MessageMeter::default(), route.max_response_message));
            }
            stream.call = Some(call);
        }
        let Some(tx) = self.self_tx.clone() else { return Ok(()) };
        let open = Open { sid: 0, peer: Peer { tx, sid }, fields, end_stream };
        let opened = route.upstream.open(open);
        let deadline = route.timeout.map(|t| now + t);
        stream.deadline = deadline;
        if let Ok(peer) = &opened {
            stream.peer = Some(peer.clone());
        }
        self.streams.insert(sid, stream);
        if let Some(deadline) = deadline {
            self.add_deadline(sid, deadline);
        }
        if let Err(why) = opened
            && !self.server_retry(sid, AttemptFailure::NotSent)
            && let Some(stream) = self.streams.get_mut(&sid)
        {
            let mut message = std::borrow::Cow::Borrowed(why);
            if let Some(call) = &mut stream.call {
                call.outcome.upstream_failed = true;
                message = call.unavailable_message(AttemptFailure::NotSent, why);
            }
            stream.queue.push_back(Out::Headers(trailers_only(GRPC_UNAVAILABLE, &message), true));
            self.schedule(sid);
        }
        Ok(())
    }

    /// Sends a failed attempt's request again where the call's observer says. `false` when it
    /// says no, when the request is no longer whole in the retry buffer, or when part of an
    /// answer went (or is on its way) to the client.
    pub(crate) fn server_retry(&mut self, sid: u32, mut failure: AttemptFailure) -> bool {
        let Some(tx) = self.self_tx.clone() else { return false };
        let stats = self.stats.clone();
        let Some(stream) = self.streams.get_mut(&sid) else { return false };
        if stream.headers_sent || !stream.queue.is_empty() {
            return false;
        }
        let Stream { call: Some(call), peer: current, forwarded, .. } = stream else { return false };
        if call.replay.is_none() {
            return false;
        }
        loop {
            let Some(retry) = call.retry(failure) else { return false };
            let Some(replay) = call.replay.as_deref() else { return false };
            let mut fields = replay.fields.clone();
            for (name, value) in retry.set_headers {
                match fields.iter_mut().find(|(n, _)| *n == name) {
                    Some(field) => field.1 = value,
                    None => fields.push((name, value)),
                }
            }
            let open = Open { sid: 0, peer: Peer { tx: tx.clone(), sid }, fields, end_stream: replay.headers_end };
            let Ok(peer) = retry.upstream.open(open) else {
                // Not even queued there: another attempt that never reached an upstream.
                failure = AttemptFailure::NotSent;
                continue;
            };
            let last = replay.data.len();
            for (i, data) in replay.data.iter().enumerate() {
                let end_stream = replay.data_end && i + 1 == last;
                peer.send(Msg::Data { sid: peer.sid, data: data.clone(), end_stream });
            }
            if replay.data.is_empty() && replay.data_end {
                peer.send(Msg::Data { sid: peer.sid, data: Bytes::new(), end_stream: true });
            }
            // Every replayed byte is outstanding again; the client got the window of those the
            // failed upstream had taken back already, and does not get it twice.
            let replayed = replay.bytes as u64;
            call.skip_credit += replayed.saturating_sub(*forwarded);
            if let Some(stats) = &stats {
                stats.add_buffered(replayed as i64 - *forwarded as i64);
            }
            *forwarded = replayed;
            if let Some(old) = current.replace(peer) {
                old.send(Msg::Reset { sid: old.sid, reason: Reason::CANCEL });
            }
            call.outcome.attempts += 1;
            return true;
        }
    }

    /// A header block from the upstream (before it goes to the client): a trailers-only
    /// UNAVAILABLE before anything reached the client may be retried (`true`: it was); a
    /// response head ends the call's retry buffer.
    pub(crate) fn server_upstream_head(&mut self, sid: u32, fields: &HeaderList, end_stream: bool) -> bool {
        let Some(call) = self.streams.get_mut(&sid).and_then(|s| s.call.as_mut()) else { return false };
        let Some(replay) = &call.replay else { return false };
        // Only once the whole request went to that upstream: one still sending may yet hear
        // from it about this stream (a reset after its answer), which would reach the retry.
        let whole = replay.headers_end || replay.data_end;
        if end_stream && whole && grpc_status(fields) == Some(GRPC_UNAVAILABLE) {
            return self.server_retry(sid, AttemptFailure::Unavailable);
        }
        call.replay = None;
        false
    }

    /// Answers a stream with a complete response of headers only.
    fn answer(&mut self, sid: u32, mut stream: Stream, fields: HeaderList) -> Result<(), H2Error> {
        stream.queue.push_back(Out::Headers(fields, true));
        self.streams.insert(sid, stream);
        self.schedule(sid);
        Ok(())
    }

    fn server_trailers(
        &mut self,
        sid: u32,
        decoded: Result<(), DecodeError>,
        fields: HeaderList,
        end_stream: bool,
    ) -> Result<(), H2Error> {
        let Some(stream) = self.streams.get_mut(&sid) else {
            return Err(H2Error::Stream(sid, Reason::STREAM_CLOSED));
        };
        if stream.recv_end {
            return Err(H2Error::Stream(sid, Reason::STREAM_CLOSED));
        }
        let malformed = !end_stream
            || decoded.is_err()
            || fields.iter().any(|(n, v)| n.first() == Some(&b':') || !head::valid_field(n, v));
        if malformed {
            return Err(H2Error::Stream(sid, Reason::PROTOCOL_ERROR));
        }
        stream.recv_end = true;
        if let Some(peer) = &stream.peer {
            peer.send(crate::relay::Msg::Headers { sid: peer.sid, fields, end_stream: true });
        }
        self.maybe_finish(sid);
        Ok(())
    }

    /// The upstream could not take a stream.
    pub(crate) fn server_refused(&mut self, sid: u32, why: Refusal) {
        let Some(stream) = self.streams.get_mut(&sid) else { return };
        if stream.peer.is_none() {
            return;
        }
        let failure = match why {
            Refusal::Retriable | Refusal::Unavailable { sent: false, .. } => AttemptFailure::NotSent,
            Refusal::Unavailable { sent: true, .. } => AttemptFailure::Broken,
        };
        if self.server_retry(sid, failure) {
            return;
        }
        let Some(stream) = self.streams.get_mut(&sid) else { return };
        stream.peer = None;
        if let Some(call) = &mut stream.call {
            call.outcome.upstream_failed = true;
        }
        // Request bytes the upstream never took are the relay's to give back now.
        let forwarded = std::mem::take(&mut stream.forwarded);
        stream.recv_unacked += forwarded as u32;
        if let Some(stats) = &self.stats {
            stats.add_buffered(-(forwarded as i64));
        }
        match why {
            Refusal::Unavailable { message, .. } if !stream.headers_sent => {
                let message = match &stream.call {
                    Some(call) => call.unavailable_message(failure, message),
                    None => message.into(),
                };
                stream.queue.clear();
                stream.queue.push_back(Out::Headers(trailers_only(GRPC_UNAVAILABLE, &message), true));
                self.schedule(sid);
            }
            Refusal::Retriable if !stream.headers_sent => self.reset_stream(sid, Reason::REFUSED_STREAM),
            _ => self.reset_stream(sid, Reason::INTERNAL_ERROR),
        }
    }
}
