//! One HTTP/2 connection's state, shared by both sides: frame dispatch, SETTINGS, PING,
//! flow control, stream queues and writing. What differs (accepting requests on the
//! downstream side, opening streams and GOAWAY draining on the upstream side) lives in
//! `server.rs` and `upstream.rs`; `driver.rs` runs it over a socket.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;

use tokio::time::{Instant, Sleep};

use bytes::{Bytes, BytesMut};

use crate::config::LocalSettings;
use crate::error::{H2Error, Reason};
use crate::flow;
use crate::frame::{self, Frame, MAX_WINDOW, Settings};
use crate::grpc::MessageMeter;
use crate::hpack::{Decoder, Encoder, HeaderList};
use crate::limits::Counters;
use crate::relay::{AttemptFailure, CallObserver, Inbox, Msg, Outcome, Peer, Retry, Stats};
use crate::server::ServerSide;
use crate::upstream::ClientSide;
use crate::wbuf::WriteBuf;

/// The write buffer size above which no more DATA is queued into it (and the socket is not
/// read) until it drains.
pub(crate) const HIGH_WATER: usize = 256 * 1024;

pub(crate) type StreamMap = HashMap<u32, Stream, foldhash::fast::RandomState>;

/// Output of a stream waiting its turn (DATA waits for window; the rest keeps its order).
#[derive(Debug)]
pub(crate) enum Out {
    Headers(HeaderList, bool),
    Data(Bytes, bool),
    Reset(Reason),
}

/// A stream's state on one connection.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The other connection's end of this stream; `None` when the relay answers it itself.
    pub peer: Option<Peer>,
    /// How much DATA the peer lets us send.
    pub send_window: i64,
    /// How much DATA the peer may still send us.
    pub recv_window: i64,
    /// Bytes taken from the peer that may be given back with WINDOW_UPDATE.
    pub recv_unacked: u32,
    pub queue: VecDeque<Out>,
    /// DATA bytes in `queue`.
    pub queued: usize,
    /// Request DATA forwarded to the other side and not yet credited back (server side).
    pub forwarded: u64,
    /// We sent END_STREAM or RST_STREAM.
    pub sent_end: bool,
    /// The peer sent END_STREAM.
    pub recv_end: bool,
    /// We wrote HEADERS on it.
    pub headers_sent: bool,
    /// The peer sent HEADERS on it (client side: the response started).
    pub headers_received: bool,
    /// Client side: HEADERS not yet written, waiting for a concurrency slot.
    pub pending_open: bool,
    pub in_ready: bool,
    /// Server side: the router's observer of the call and what it will be told.
    pub call: Option<CallState>,
    /// Server side: when the call must be over (`Route::timeout`).
    pub deadline: Option<Instant>,
}

/// An upstream's CANCELLED this close to the call's deadline is the upstream enforcing the
/// forwarded `grpc-timeout` (tonic answers CANCELLED): the client is told DEADLINE_EXCEEDED.
const DEADLINE_SLACK: std::time::Duration = std::time::Duration::from_millis(20);

/// Rewrites `grpc-status: 1` to 4 in a response's last header block.
fn cancelled_to_deadline(fields: &mut HeaderList) {
    for (name, value) in fields.iter_mut() {
        if &name[..] == b"grpc-status" && &value[..] == b"1" {
            *value = Bytes::from_static(b"4");
        }
    }
}

/// A request kept for retries: the upstream header fields and the DATA relayed so far.
#[derive(Debug)]
pub(crate) struct Replay {
    pub fields: HeaderList,
    /// The request was a header block alone (END_STREAM on HEADERS).
    pub headers_end: bool,
    pub data: Vec<Bytes>,
    /// The client's END_STREAM came on DATA.
    pub data_end: bool,
    pub bytes: usize,
    cap: usize,
}

impl Replay {
    pub fn new(fields: HeaderList, headers_end: bool, cap: usize) -> Box<Self> {
        Box::new(Replay { fields, headers_end, data: Vec::new(), data_end: false, bytes: 0, cap })
    }

    /// Keeps a DATA frame's bytes; `false` once the request is larger than the buffer.
    fn push(&mut self, data: &Bytes, end_stream: bool) -> bool {
        self.bytes += data.len();
        if self.bytes > self.cap {
            return false;
        }
        if !data.is_empty() {
            self.data.push(data.clone());
        }
        self.data_end |= end_stream;
        true
    }
}

/// A routed call's observer, its outcome so far, its retry buffer and size caps (server side).
pub(crate) struct CallState {
    observer: Option<Box<dyn CallObserver>>,
    started: Instant,
    pub outcome: Outcome,
    /// The request as sent, while it may still be sent again.
    pub replay: Option<Box<Replay>>,
    pub request_cap: Option<(MessageMeter, u32)>,
    pub response_cap: Option<(MessageMeter, u32)>,
    /// Credit the current attempt's upstream will give for replayed bytes whose window the
    /// client got back already: not given twice.
    pub skip_credit: u64,
}

impl std::fmt::Debug for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallState").field("outcome", &self.outcome).finish_non_exhaustive()
    }
}

impl CallState {
    pub fn new(observer: Option<Box<dyn CallObserver>>, started: Instant) -> Self {
        CallState {
            observer,
            started,
            outcome: Outcome { attempts: 1, ..Outcome::default() },
            replay: None,
            request_cap: None,
            response_cap: None,
            skip_credit: 0,
        }
    }

    /// Asks the observer where a failed attempt goes next.
    pub fn retry(&mut self, failure: AttemptFailure) -> Option<Retry> {
        self.observer.as_mut()?.retry(failure)
    }

    /// The `grpc-message` of the relay's UNAVAILABLE answer for this call.
    pub fn unavailable_message(
        &self,
        failure: AttemptFailure,
        relay_message: &'static str,
    ) -> std::borrow::Cow<'static, str> {
        match self.observer.as_ref().and_then(|o| o.unavailable_message(failure, relay_message)) {
            Some(message) => message.into(),
            None => relay_message.into(),
        }
    }

    /// Notes a header block going to the client: the response head's `:status`, a
    /// `grpc-status` (trailers, or a trailers-only head).
    fn on_headers(&mut self, fields: &HeaderList) {
        for (name, value) in fields {
            match &name[..] {
                b":status" if self.outcome.http_status == 0 => {
                    self.outcome.http_status = parse_u32(value).map_or(0, |s| s.min(999) as u16);
                    self.outcome.headers_after = Some(self.started.elapsed());
                }
                b"grpc-status" => self.outcome.grpc_status = parse_u32(value),
                _ => {}
            }
        }
    }

    fn finish(mut self, sent_end: bool) {
        let o = &mut self.outcome;
        if !sent_end && o.reset.is_none() && !o.upstream_failed && !o.deadline_exceeded {
            // Gone before the end without a reset of either side: the client's connection.
            o.client_cancelled = true;
        }
        o.elapsed = self.started.elapsed();
        let outcome = self.outcome;
        if let Some(observer) = self.observer {
            observer.on_end(&outcome);
        }
    }
}

/// The `grpc-status` of a header block, when it has one.
pub(crate) fn grpc_status(fields: &HeaderList) -> Option<u32> {
    fields.iter().find(|(n, _)| &n[..] == b"grpc-status").and_then(|(_, v)| parse_u32(v))
}

/// A small decimal number (`:status`, `grpc-status`).
fn parse_u32(value: &[u8]) -> Option<u32> {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

impl Stream {
    pub fn new(peer: Option<Peer>, send_window: u32, recv_window: u32) -> Self {
        Stream {
            peer,
            send_window: i64::from(send_window),
            recv_window: i64::from(recv_window),
            recv_unacked: 0,
            queue: VecDeque::new(),
            queued: 0,
            forwarded: 0,
            sent_end: false,
            recv_end: false,
            headers_sent: false,
            headers_received: false,
            pending_open: false,
            in_ready: false,
            call: None,
            deadline: None,
        }
    }
}

/// A header block being assembled from HEADERS and CONTINUATION frames.
#[derive(Debug)]
pub(crate) struct Partial {
    pub sid: u32,
    pub block: BytesMut,
    pub end_stream: bool,
    pub frames: u32,
}

/// The side-specific part of a connection.
pub(crate) enum Side {
    Server(Box<ServerSide>),
    Client(Box<ClientSide>),
}

pub(crate) struct Conn {
    pub side: Side,
    pub local: LocalSettings,
    pub streams: StreamMap,
    pub decoder: Decoder,
    pub encoder: Encoder,
    pub out: WriteBuf,
    scratch: BytesMut,
    pub peer_max_frame_size: u32,
    pub peer_initial_window: u32,
    pub conn_send_window: i64,
    pub conn_recv_window: i64,
    conn_recv_unacked: u32,
    pub partial: Option<Partial>,
    ready: VecDeque<u32>,
    out_blocked: bool,
    /// No more reading: the connection ends once `out` is written.
    pub closing: bool,
    /// This connection's own inbox, handed to the other side of each stream (downstream
    /// connections only: an upstream connection must not keep its own inbox open).
    pub self_tx: Option<Inbox>,
    pub counters: Counters,
    /// The server's counters (`None` on upstream connections).
    pub stats: Option<Arc<Stats>>,
    /// Streams with a deadline (server side), earliest first; entries of streams gone since
    /// are skipped when they come up (and swept when they pile up).
    pub deadlines: BinaryHeap<Reverse<(Instant, u32)>>,
    /// The one timer of the connection, set to the earliest deadline.
    timer: Option<Pin<Box<Sleep>>>,
    /// Since when the connection has had no stream (server side, with an idle timeout).
    idle_since: Option<Instant>,
    idle_timer: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    pub fn new(side: Side, local: LocalSettings, self_tx: Option<Inbox>, stats: Option<Arc<Stats>>) -> Self {
        Conn {
            side,
            decoder: Decoder::new(local.header_table_size as usize, local.max_header_list_size as usize),
            encoder: Encoder::default(),
            counters: Counters::new(&local.limits),
            local,
            streams: StreamMap::default(),
            out: WriteBuf::default(),
            scratch: BytesMut::new(),
            peer_max_frame_size: frame::MIN_MAX_FRAME_SIZE,
            peer_initial_window: 65_535,
            conn_send_window: 65_535,
            conn_recv_window: 65_535,
            conn_recv_unacked: 0,
            partial: None,
            ready: VecDeque::new(),
            out_blocked: false,
            closing: false,
            self_tx,
            stats,
            deadlines: BinaryHeap::new(),
            timer: None,
            idle_since: None,
            idle_timer: None,
        }
    }

    /// Notes a stream's deadline.
    pub fn add_deadline(&mut self, sid: u32, at: Instant) {
        if self.deadlines.len() >= 64 && self.deadlines.len() > 2 * self.streams.len() {
            let streams = &self.streams;
            self.deadlines.retain(|Reverse((_, sid))| streams.contains_key(sid));
        }
        self.deadlines.push(Reverse((at, sid)));
    }

    /// Ends the streams whose deadline passed; otherwise arms the timer for the next one.
    /// Returns whether it did anything.
    pub fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(&Reverse((first, _))) = self.deadlines.peek() else { return false };
        let now = Instant::now();
        if first <= now {
            while let Some(&Reverse((at, sid))) = self.deadlines.peek() {
                if at > now {
                    break;
                }
                self.deadlines.pop();
                self.expire(sid);
            }
            return true;
        }
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(first)));
        if timer.deadline() != first {
            timer.as_mut().reset(first);
        }
        timer.as_mut().poll(cx).is_ready()
    }

    /// Closes a downstream connection that has had no stream for the idle timeout (GOAWAY
    /// NO_ERROR); otherwise arms the idle timer. Returns whether it closed the connection.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timeout) = self.local.idle_timeout else { return false };
        if !self.streams.is_empty() || self.closing {
            self.idle_since = None;
            return false;
        }
        let at = *self.idle_since.get_or_insert_with(|| Instant::now() + timeout);
        let timer = self.idle_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let last = self.goaway_last_id();
        frame::write_goaway(&mut self.out, last, Reason::NO_ERROR, b"idle");
        self.closing = true;
        true
    }

    /// A stream's deadline passed: its upstream stream is reset (CANCEL) and the client gets
    /// `grpc-status` 4, trailers-only or as trailers after the response head.
    fn expire(&mut self, sid: u32) {
        let Some(stream) = self.streams.get_mut(&sid) else { return };
        if stream.sent_end {
            return;
        }
        if let Some(call) = &mut stream.call {
            call.outcome.deadline_exceeded = true;
        }
        self.end_call(sid, 4, "deadline exceeded at the gateway");
    }

    /// Ends a call at the relay (server side): the upstream stream is reset (CANCEL), what is
    /// queued for the client is dropped, and the client gets `grpc-status` `status`,
    /// trailers-only or as trailers after the response head, then RST_STREAM(NO_ERROR) if it
    /// is still sending (RFC 9113 §8.1: the rest of its request is not wanted).
    pub fn end_call(&mut self, sid: u32, status: u32, message: &str) {
        let Some(stream) = self.streams.get_mut(&sid) else { return };
        if stream.sent_end {
            return;
        }
        if let Some(peer) = stream.peer.take() {
            peer.send(Msg::Reset { sid: peer.sid, reason: crate::error::Reason::CANCEL });
        }
        let held = std::mem::take(&mut stream.forwarded);
        stream.recv_unacked += held as u32;
        let held = held + std::mem::take(&mut stream.queued) as u64;
        if let Some(stats) = &self.stats {
            stats.add_buffered(-(held as i64));
        }
        stream.queue.clear();
        if let Some(call) = &mut stream.call {
            call.replay = None;
        }
        let fields = if stream.headers_sent {
            vec![
                (Bytes::from_static(b"grpc-status"), Bytes::from(status.to_string())),
                (Bytes::from_static(b"grpc-message"), crate::head::percent_encode(message)),
            ]
        } else {
            crate::head::trailers_only(status, message)
        };
        stream.queue.push_back(Out::Headers(fields, true));
        if !stream.recv_end {
            stream.queue.push_back(Out::Reset(Reason::NO_ERROR));
        }
        self.schedule(sid);
    }

    /// The last-stream-id of a GOAWAY we send: the last stream the client opened (0 upstream,
    /// where we open the streams).
    fn goaway_last_id(&self) -> u32 {
        match &self.side {
            Side::Server(s) => s.last_peer_sid,
            Side::Client(_) => 0,
        }
    }

    /// Whether the connection has nothing left to do once `out` is written.
    pub fn is_done(&self) -> bool {
        self.closing
            || self.streams.is_empty()
                && match &self.side {
                    Side::Server(s) => s.peer_goaway,
                    Side::Client(c) => c.draining || c.inbox_closed,
                }
    }

    pub fn is_server(&self) -> bool {
        matches!(self.side, Side::Server(_))
    }

    /// Writes our SETTINGS and opens the connection window to its configured size.
    pub fn write_preamble(&mut self, extra: &[(u16, u32)]) {
        use frame::setting as s;
        let mut params = vec![
            (s::INITIAL_WINDOW_SIZE, self.local.initial_stream_window),
            (s::MAX_FRAME_SIZE, self.local.max_frame_size),
            (s::MAX_HEADER_LIST_SIZE, self.local.max_header_list_size),
        ];
        if self.local.header_table_size != 4096 {
            params.push((s::HEADER_TABLE_SIZE, self.local.header_table_size));
        }
        params.extend_from_slice(extra);
        frame::write_settings(&mut self.out, &params);
        self.conn_recv_window = i64::from(self.local.connection_window);
        if self.local.connection_window > 65_535 {
            frame::write_window_update(&mut self.out, 0, self.local.connection_window - 65_535);
        }
    }

    // ---- reading ----

    /// Handles every whole frame in `rbuf`.
    pub fn on_read(&mut self, rbuf: &mut BytesMut) {
        if let Side::Server(_) = self.side
            && !self.server_preface(rbuf)
        {
            return;
        }
        while !self.closing {
            let frame = match frame::decode(rbuf, self.local.max_frame_size) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    self.on_error(e);
                    break;
                }
            };
            if let Err(e) = self.on_frame(frame) {
                self.on_error(e);
            }
        }
    }

    fn on_error(&mut self, e: H2Error) {
        match e {
            H2Error::Connection(reason, why) => self.fail(reason, why),
            H2Error::Stream(sid, reason) => {
                self.reset_stream(sid, reason);
                if self.is_server() {
                    self.counters.error_resets += 1;
                    if self.counters.error_resets > self.local.limits.error_resets {
                        self.fail(Reason::ENHANCE_YOUR_CALM, "too many stream errors");
                    }
                }
            }
        }
    }

    /// A connection error: GOAWAY, every stream's other side told, then close.
    pub fn fail(&mut self, reason: Reason, why: &'static str) {
        if self.closing {
            return;
        }
        tracing::debug!(?reason, why, "h2relay: connection error");
        let last = self.goaway_last_id();
        frame::write_goaway(&mut self.out, last, reason, why.as_bytes());
        if let Some(stats) = &self.stats {
            stats.goaways.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.abort_all("upstream connection failed");
        self.closing = true;
    }

    /// The socket is gone (EOF or error): every stream's other side is told.
    pub fn on_eof(&mut self) {
        self.abort_all("upstream connection closed");
        self.closing = true;
    }

    /// Tells the other side of every stream that this connection is gone, and forgets them.
    pub fn abort_all(&mut self, why: &'static str) {
        let sids: Vec<u32> = self.streams.keys().copied().collect();
        for sid in sids {
            if let Some(stream) = self.remove_stream(sid) {
                self.tell_peer_aborted(&stream, why);
            }
        }
        if let Side::Client(c) = &mut self.side {
            c.on_closed();
        }
    }

    /// Tells a stream's other side that it failed here.
    fn tell_peer_aborted(&self, stream: &Stream, why: &'static str) {
        let Some(peer) = &stream.peer else { return };
        match self.side {
            Side::Server(_) => peer.send(Msg::Reset { sid: peer.sid, reason: Reason::CANCEL }),
            Side::Client(_) if !stream.headers_received => {
                let why = crate::relay::Refusal::Unavailable { message: why, sent: stream.headers_sent };
                peer.send(Msg::Refused { sid: peer.sid, why })
            }
            Side::Client(_) => peer.send(Msg::Reset { sid: peer.sid, reason: Reason::INTERNAL_ERROR }),
        }
    }

    /// A stream error: RST_STREAM to the peer, the other side told.
    pub fn reset_stream(&mut self, sid: u32, reason: Reason) {
        if let Some(call) = self.streams.get_mut(&sid).and_then(|s| s.call.as_mut()) {
            call.outcome.reset = Some(reason);
        }
        frame::write_rst(&mut self.out, sid, reason);
        if let Some(stream) = self.remove_stream(sid) {
            self.tell_peer_aborted(&stream, "upstream stream error");
        }
    }

    /// Whether `sid` names a stream that was never opened.
    fn is_idle(&self, sid: u32) -> bool {
        match &self.side {
            Side::Server(s) => sid.is_multiple_of(2) || sid > s.last_peer_sid,
            Side::Client(c) => sid.is_multiple_of(2) || sid > c.last_opened,
        }
    }

    /// HEADERS may open a stream (client-initiated, odd ids) on the server side, and only
    /// answer our own streams on the client side.
    fn check_headers_stream(&self, sid: u32) -> Result<(), H2Error> {
        let bad = match &self.side {
            Side::Server(_) => sid.is_multiple_of(2),
            Side::Client(c) => sid.is_multiple_of(2) || sid > c.last_opened,
        };
        if bad { Err(H2Error::protocol("HEADERS on a stream the peer may not open")) } else { Ok(()) }
    }

    fn useless_frame(&mut self) -> Result<(), H2Error> {
        if self.counters.useless.hit() {
            return Err(H2Error::conn(Reason::ENHANCE_YOUR_CALM, "too many useless frames"));
        }
        Ok(())
    }

    fn on_frame(&mut self, f: Frame) -> Result<(), H2Error> {
        if self.is_server() {
            self.server_first_frame(matches!(f, Frame::Settings { ack: false, .. }))?;
        }
        if let Some(p) = &self.partial
            && !matches!(f, Frame::Continuation { stream_id, .. } if stream_id == p.sid)
        {
            return Err(H2Error::protocol("header block interrupted"));
        }
        match f {
            Frame::Data { stream_id, data, end_stream, flow_len } => {
                self.on_data(stream_id, data, end_stream, flow_len)
            }
            Frame::Headers { stream_id, block, end_stream, end_headers } => {
                self.check_headers_stream(stream_id)?;
                if end_headers {
                    return self.on_header_block(stream_id, block, end_stream);
                }
                if block.len() > self.local.max_header_block {
                    return Err(H2Error::conn(Reason::ENHANCE_YOUR_CALM, "header block too large"));
                }
                self.partial =
                    Some(Partial { sid: stream_id, block: BytesMut::from(&block[..]), end_stream, frames: 0 });
                Ok(())
            }
            Frame::Continuation { stream_id, block, end_headers } => {
                let Some(p) = self.partial.as_mut() else {
                    return Err(H2Error::protocol("CONTINUATION without HEADERS"));
                };
                debug_assert_eq!(p.sid, stream_id);
                p.frames += 1;
                p.block.extend_from_slice(&block);
                if p.block.len() > self.local.max_header_block {
                    return Err(H2Error::conn(Reason::ENHANCE_YOUR_CALM, "header block too large"));
                }
                if p.frames > self.local.max_continuation_frames {
                    return Err(H2Error::conn(Reason::ENHANCE_YOUR_CALM, "CONTINUATION flood"));
                }
                if !end_headers {
                    return Ok(());
                }
                let Some(p) = self.partial.take() else { return Ok(()) };
                self.on_header_block(p.sid, p.block.freeze(), p.end_stream)
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => self.useless_frame(),
            Frame::RstStream { stream_id, reason } => self.on_peer_reset(stream_id, reason),
            Frame::Settings { ack: true, .. } => Ok(()),
            Frame::Settings { ack: false, settings } => {
                if self.is_server() && self.counters.settings.hit() {
                    return Err(H2Error::conn(Reason::ENHANCE_YOUR_CALM, "SETTINGS flood"));
                }
                self.apply_settings(&settings)?;
                frame::write_settings_ack(&mut self.out);
                Ok(())
            }
            Frame::PushPromise { .. } => Err(H2Error::protocol("PUSH_PROMISE (push is disabled)")),
            Frame::Ping { ack: true, .. } => Ok(()),
            Frame::Ping { ack: false, payload } => {
                if self.is_server() && self.counters.pings.hit() {
                    return Err(H2Error::conn(Reason::ENHANCE_YOUR_CALM, "PING flood"));
                }
                frame::write_ping(&mut self.out, true, payload);
                Ok(())
            }
            Frame::GoAway { last_stream_id, reason, .. } => {
                self.on_goaway(last_stream_id, reason);
                Ok(())
            }
            Frame::WindowUpdate { stream_id: 0, increment } => {
                self.conn_send_window = flow::grow(self.conn_send_window, increment)
                    .ok_or(H2Error::conn(Reason::FLOW_CONTROL_ERROR, "connection window over 2^31-1"))?;
                self.schedule_all();
                Ok(())
            }
            Frame::WindowUpdate { stream_id, increment } => {
                if self.is_idle(stream_id) {
                    return Err(H2Error::protocol("WINDOW_UPDATE on an idle stream"));
                }
                let Some(stream) = self.streams.get_mut(&stream_id) else { return self.useless_frame() };
                stream.send_window = flow::grow(stream.send_window, increment)
                    .ok_or(H2Error::Stream(stream_id, Reason::FLOW_CONTROL_ERROR))?;
                self.schedule(stream_id);
                Ok(())
            }
        }
    }

    fn apply_settings(&mut self, s: &Settings) -> Result<(), H2Error> {
        if let Some(size) = s.header_table_size {
            self.encoder.set_peer_max_table_size(size as usize);
        }
        if let Some(size) = s.max_frame_size {
            self.peer_max_frame_size = size;
        }
        if let Some(window) = s.initial_window_size {
            let delta = i64::from(window) - i64::from(self.peer_initial_window);
            self.peer_initial_window = window;
            for stream in self.streams.values_mut() {
                stream.send_window += delta;
                if stream.send_window > i64::from(MAX_WINDOW) {
                    return Err(H2Error::conn(Reason::FLOW_CONTROL_ERROR, "stream window over 2^31-1"));
                }
            }
            self.schedule_all();
        }
        if let (Some(n), Side::Client(c)) = (s.max_concurrent_streams, &mut self.side) {
            c.set_peer_max_concurrent(n);
            self.activate_pending();
        }
        Ok(())
    }

    fn on_data(&mut self, sid: u32, data: Bytes, end_stream: bool, flow_len: u32) -> Result<(), H2Error> {
        if i64::from(flow_len) > self.conn_recv_window {
            return Err(H2Error::conn(Reason::FLOW_CONTROL_ERROR, "DATA beyond the connection window"));
        }
        self.conn_recv_window -= i64::from(flow_len);
        self.conn_recv_unacked += flow_len;
        if self.is_idle(sid) {
            return Err(H2Error::protocol("DATA on an idle stream"));
        }
        let Some(stream) = self.streams.get_mut(&sid) else {
            // A stream we closed: its bytes still count against the connection window only.
            return Ok(());
        };
        if stream.recv_end {
            return Err(H2Error::Stream(sid, Reason::STREAM_CLOSED));
        }
        if !stream.headers_received && !matches!(self.side, Side::Server(_)) {
            return Err(H2Error::Stream(sid, Reason::PROTOCOL_ERROR));
        }
        if i64::from(flow_len) > stream.recv_window {
            return Err(H2Error::Stream(sid, Reason::FLOW_CONTROL_ERROR));
        }
        stream.recv_window -= i64::from(flow_len);
        let len = data.len() as u32;
        // Padding is given back at once.
        stream.recv_unacked += flow_len - len;
        if data.is_empty() && !end_stream {
            self.useless_frame()?;
        }
        let Some(stream) = self.streams.get_mut(&sid) else { return Ok(()) };
        let mut over = None;
        if stream.peer.is_some()
            && let Some(call) = &mut stream.call
        {
            if let Some((meter, cap)) = &mut call.request_cap
                && let Err(n) = meter.feed(&data, *cap)
            {
                over = Some((n, *cap));
            } else if let Some(replay) = &mut call.replay
                && !replay.push(&data, end_stream)
            {
                call.replay = None;
            }
        }
        if let Some((n, cap)) = over {
            // Not relayed: the window is given back, the call ends here.
            stream.recv_unacked += len;
            stream.recv_end |= end_stream;
            self.end_call(sid, 8, &format!("request message of {n} bytes is above the limit of {cap}"));
            return Ok(());
        }
        match &stream.peer {
            Some(peer) => {
                stream.forwarded += u64::from(len);
                if let Some(stats) = &self.stats {
                    stats.add_buffered(i64::from(len));
                }
                peer.send(Msg::Data { sid: peer.sid, data, end_stream });
            }
            _ => stream.recv_unacked += len,
        }
        if end_stream {
            stream.recv_end = true;
            self.maybe_finish(sid);
        } else {
            self.maybe_window_update(sid);
        }
        Ok(())
    }

    fn on_peer_reset(&mut self, sid: u32, reason: Reason) -> Result<(), H2Error> {
        if self.is_idle(sid) {
            return Err(H2Error::protocol("RST_STREAM on an idle stream"));
        }
        if let Some(stream) = self.streams.get_mut(&sid)
            && !stream.sent_end
            && let Some(call) = stream.call.as_mut()
        {
            call.outcome.reset = Some(reason);
            call.outcome.client_cancelled = true;
        }
        let Some(stream) = self.remove_stream(sid) else { return Ok(()) };
        if let Some(peer) = &stream.peer {
            match self.side {
                // A client's reason is not the upstream's business: it cancelled.
                Side::Server(_) => peer.send(Msg::Reset { sid: peer.sid, reason: Reason::CANCEL }),
                Side::Client(_) => peer.send(Msg::Reset { sid: peer.sid, reason }),
            }
        }
        if self.is_server() && !stream.sent_end && self.counters.resets.hit() {
            return Err(H2Error::conn(Reason::ENHANCE_YOUR_CALM, "too many streams reset (rapid reset)"));
        }
        Ok(())
    }

    fn on_goaway(&mut self, last_stream_id: u32, reason: Reason) {
        match &mut self.side {
            Side::Server(s) => {
                s.peer_goaway = true;
                tracing::debug!(?reason, "h2relay: client sent GOAWAY");
            }
            Side::Client(_) => self.client_goaway(last_stream_id, reason),
        }
    }

    fn on_header_block(&mut self, sid: u32, block: Bytes, end_stream: bool) -> Result<(), H2Error> {
        let mut fields = HeaderList::new();
        let decoded = self.decoder.decode(&block, &mut fields);
        match self.side {
            Side::Server(_) => self.server_header_block(sid, decoded, fields, end_stream),
            Side::Client(_) => self.client_header_block(sid, decoded, fields, end_stream),
        }
    }

    /// Frees a stream's window as its bytes are taken; sends WINDOW_UPDATE when worth it.
    pub fn maybe_window_update(&mut self, sid: u32) {
        let Some(stream) = self.streams.get_mut(&sid) else { return };
        if stream.recv_end || !flow::worth_update(stream.recv_unacked, self.local.initial_stream_window) {
            return;
        }
        frame::write_window_update(&mut self.out, sid, stream.recv_unacked);
        stream.recv_window += i64::from(stream.recv_unacked);
        stream.recv_unacked = 0;
    }

    // ---- messages from the other side ----

    pub fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Open(open) => self.client_open(*open),
            Msg::Headers { sid, mut fields, end_stream } => {
                if self.is_server() && self.server_upstream_head(sid, &fields, end_stream) {
                    return;
                }
                if end_stream
                    && let Some(deadline) = self.streams.get(&sid).and_then(|s| s.deadline)
                    && Instant::now() + DEADLINE_SLACK >= deadline
                {
                    cancelled_to_deadline(&mut fields);
                }
                self.enqueue(sid, Out::Headers(fields, end_stream));
            }
            Msg::Data { sid, data, end_stream } => {
                if let Some(stream) = self.streams.get_mut(&sid)
                    && stream.peer.is_some()
                    && let Some(call) = &mut stream.call
                    && let Some((meter, cap)) = &mut call.response_cap
                    && let Err(n) = meter.feed(&data, *cap)
                {
                    let cap = *cap;
                    self.end_call(sid, 8, &format!("response message of {n} bytes is above the limit of {cap}"));
                    return;
                }
                let len = data.len();
                if self.enqueue(sid, Out::Data(data, end_stream))
                    && let Some(stats) = &self.stats
                {
                    stats.add_buffered(len as i64);
                }
            }
            Msg::Reset { sid, reason } => {
                let is_server = self.is_server();
                let Some(stream) = self.streams.get_mut(&sid) else { return };
                if is_server && stream.peer.is_none() {
                    return;
                }
                if is_server && !stream.headers_sent && stream.call.as_ref().is_some_and(|c| c.replay.is_some()) {
                    let failure =
                        if reason == Reason::REFUSED_STREAM { AttemptFailure::NotSent } else { AttemptFailure::Broken };
                    if self.server_retry(sid, failure) {
                        return;
                    }
                }
                let Some(stream) = self.streams.get_mut(&sid) else { return };
                if let Some(call) = &mut stream.call
                    && reason != Reason::NO_ERROR
                {
                    call.outcome.upstream_failed = true;
                    call.outcome.reset = Some(reason);
                }
                if reason == Reason::NO_ERROR && !stream.queue.is_empty() {
                    stream.queue.push_back(Out::Reset(reason));
                    return;
                }
                // An upstream stream whose HEADERS are not written yet was never opened there:
                // it is dropped silently (an RST on it would be a connection error; its id is
                // simply skipped).
                if stream.headers_sent || is_server {
                    frame::write_rst(&mut self.out, sid, reason);
                }
                self.remove_stream(sid);
            }
            Msg::Credit { sid, n } => {
                let Some(stream) = self.streams.get_mut(&sid) else { return };
                // Replayed bytes the client got its window back for already are not given twice.
                let skip = match &mut stream.call {
                    Some(call) if call.skip_credit > 0 => {
                        let skip = call.skip_credit.min(u64::from(n));
                        call.skip_credit -= skip;
                        skip as u32
                    }
                    _ => 0,
                };
                stream.recv_unacked += n - skip;
                // Bytes given back already (a refused or timed-out stream) are not counted twice.
                let credited = u64::from(n).min(stream.forwarded);
                stream.forwarded -= credited;
                if let Some(stats) = &self.stats {
                    stats.add_buffered(-(credited as i64));
                }
                self.maybe_window_update(sid);
            }
            Msg::Refused { sid, why } => self.server_refused(sid, why),
        }
    }

    /// Queues output on a stream; `false` when the stream is gone.
    fn enqueue(&mut self, sid: u32, out: Out) -> bool {
        let is_server = self.is_server();
        let Some(stream) = self.streams.get_mut(&sid) else { return false };
        if is_server && stream.peer.is_none() {
            // Cut from its upstream (refused, timed out): late messages are dropped.
            return false;
        }
        if let Out::Data(d, _) = &out {
            stream.queued += d.len();
        }
        stream.queue.push_back(out);
        self.schedule(sid);
        true
    }

    pub fn schedule(&mut self, sid: u32) {
        if let Some(stream) = self.streams.get_mut(&sid)
            && !stream.in_ready
            && !stream.pending_open
            && !stream.queue.is_empty()
        {
            stream.in_ready = true;
            self.ready.push_back(sid);
        }
    }

    fn schedule_all(&mut self) {
        let mut sids: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.in_ready && !s.pending_open && !s.queue.is_empty())
            .map(|(&sid, _)| sid)
            .collect();
        sids.sort_unstable();
        for sid in sids {
            self.schedule(sid);
        }
    }

    // ---- writing ----

    /// Called once per wake-up, before writing: drains stream queues into the write buffer
    /// and sends the connection WINDOW_UPDATE when due.
    pub fn before_write(&mut self) {
        if self.out_blocked && self.out.len() < HIGH_WATER {
            self.out_blocked = false;
            self.schedule_all();
        }
        let mut n = self.ready.len();
        while n > 0 && !self.closing {
            n -= 1;
            let Some(sid) = self.ready.pop_front() else { break };
            if let Some(stream) = self.streams.get_mut(&sid) {
                stream.in_ready = false;
                self.drain_stream(sid);
            }
        }
        if flow::worth_update(self.conn_recv_unacked, self.local.connection_window) && !self.closing {
            frame::write_window_update(&mut self.out, 0, self.conn_recv_unacked);
            self.conn_recv_window += i64::from(self.conn_recv_unacked);
            self.conn_recv_unacked = 0;
        }
    }

    /// Writes what a stream's windows allow.
    fn drain_stream(&mut self, sid: u32) {
        let mut written: u32 = 0;
        let mut finished = false;
        loop {
            let Some(stream) = self.streams.get_mut(&sid) else { return };
            let Some(front) = stream.queue.front_mut() else { break };
            match front {
                Out::Headers(..) => {
                    let Some(Out::Headers(fields, end)) = stream.queue.pop_front() else { break };
                    if let Some(call) = &mut stream.call {
                        call.on_headers(&fields);
                    }
                    stream.headers_sent = true;
                    if end {
                        stream.sent_end = true;
                        finished = true;
                    }
                    self.scratch.clear();
                    self.encoder.encode(fields.iter().map(|(n, v)| (n, v)), &mut self.scratch);
                    frame::write_headers(&mut self.out, sid, &self.scratch, end, self.peer_max_frame_size);
                }
                Out::Reset(reason) => {
                    let reason = *reason;
                    if let Some(call) = &mut stream.call
                        && reason != Reason::NO_ERROR
                    {
                        call.outcome.reset = Some(reason);
                    }
                    frame::write_rst(&mut self.out, sid, reason);
                    stream.sent_end = true;
                    stream.recv_end = true;
                    finished = true;
                    break;
                }
                Out::Data(data, end) => {
                    if data.is_empty() {
                        let end = *end;
                        frame::write_data(&mut self.out, sid, Bytes::new(), end);
                        stream.queue.pop_front();
                        if end {
                            stream.sent_end = true;
                            finished = true;
                        }
                        continue;
                    }
                    if self.out.len() >= HIGH_WATER {
                        self.out_blocked = true;
                        break;
                    }
                    let allowed =
                        stream.send_window.min(self.conn_send_window).min(i64::from(self.peer_max_frame_size));
                    if allowed <= 0 {
                        break;
                    }
                    let n = (allowed as usize).min(data.len());
                    let (chunk, end) = if n == data.len() {
                        let end = *end;
                        let Some(Out::Data(chunk, _)) = stream.queue.pop_front() else { break };
                        (chunk, end)
                    } else {
                        (data.split_to(n), false)
                    };
                    stream.send_window -= n as i64;
                    stream.queued -= n;
                    self.conn_send_window -= n as i64;
                    written += n as u32;
                    if end {
                        stream.sent_end = true;
                        finished = true;
                    }
                    frame::write_data(&mut self.out, sid, chunk, end);
                }
            }
            if finished {
                // A RST_STREAM(NO_ERROR) queued after the response (`end_call`) still goes out.
                let reset_next = self.streams.get(&sid).is_some_and(|s| matches!(s.queue.front(), Some(Out::Reset(_))));
                if !reset_next {
                    break;
                }
                finished = false;
            }
        }
        if written > 0 {
            if let Some(stats) = &self.stats {
                stats.add_buffered(-i64::from(written));
            }
            if let Some(peer) = self.streams.get(&sid).and_then(|s| s.peer.as_ref()) {
                peer.send(Msg::Credit { sid: peer.sid, n: written });
            }
        }
        if finished {
            self.maybe_finish(sid);
        }
    }

    /// Forgets a stream once both ends are closed.
    pub fn maybe_finish(&mut self, sid: u32) {
        if let Some(stream) = self.streams.get(&sid)
            && stream.sent_end
            && stream.recv_end
        {
            self.remove_stream(sid);
        }
    }

    /// Removes a stream and settles its accounts: bytes it still held, the upstream
    /// connection's outstanding count.
    pub fn remove_stream(&mut self, sid: u32) -> Option<Stream> {
        let mut stream = self.streams.remove(&sid)?;
        if let Some(call) = stream.call.take() {
            call.finish(stream.sent_end);
        }
        if let Some(stats) = &self.stats {
            stats.add_buffered(-((stream.queued as u64 + stream.forwarded) as i64));
        }
        if let Side::Client(c) = &mut self.side {
            c.on_stream_removed(&stream);
            self.activate_pending();
        }
        Some(stream)
    }
}
