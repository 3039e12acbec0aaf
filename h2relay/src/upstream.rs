//! The upstream (client) side: one task per h2c connection to an upstream. Streams are opened
//! by downstream connections through the connection's inbox with ids reserved in order (see
//! `pool.rs`); HEADERS wait for a slot under the upstream's SETTINGS_MAX_CONCURRENT_STREAMS;
//! GOAWAY drains the connection: no new streams, streams above its last-stream-id fail as
//! retriable.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::config::{LocalSettings, UpstreamConfig};
use crate::conn::{Conn, Out, Side, Stream};
use crate::error::{H2Error, Reason};
use crate::frame::{self, PREFACE};
use crate::head::sanitize_response;
use crate::hpack::{DecodeError, HeaderList};
use crate::pool::{Connect, Handle, Io};
use crate::relay::{Msg, Open, Refusal};

pub(crate) struct ClientSide {
    handle: Arc<Handle>,
    /// The highest stream id opened here.
    pub last_opened: u32,
    /// Streams whose HEADERS wait for a concurrency slot, in id order.
    pending: VecDeque<u32>,
    /// Streams whose HEADERS were written and that are not closed.
    active: u32,
    peer_max: u32,
    /// GOAWAY received: no new streams.
    pub draining: bool,
    /// Every sender of the inbox is gone (the pool was dropped).
    pub inbox_closed: bool,
}

impl ClientSide {
    pub fn set_peer_max_concurrent(&mut self, n: u32) {
        self.peer_max = n;
        self.handle.peer_max.store(n, Ordering::Relaxed);
    }

    pub fn on_stream_removed(&mut self, stream: &Stream) {
        if !stream.pending_open {
            self.active = self.active.saturating_sub(1);
        }
        self.handle.outstanding.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn on_closed(&mut self) {
        self.handle.close();
    }
}

/// Runs one upstream connection until it fails or drains.
pub(crate) async fn run(
    addr: SocketAddr,
    config: Arc<UpstreamConfig>,
    connector: Option<Arc<dyn Connect>>,
    handle: Arc<Handle>,
    mut rx: UnboundedReceiver<Msg>,
) {
    let connecting = async {
        match &connector {
            Some(connector) => connector.connect(addr).await,
            None => {
                let io = TcpStream::connect(addr).await?;
                let _ = io.set_nodelay(true);
                Ok(Box::new(io) as Box<dyn Io>)
            }
        }
    };
    let io = match tokio::time::timeout(config.connect_timeout, connecting).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "h2relay: upstream connect failed");
            let why = Refusal::Unavailable { message: "upstream connect failed", sent: false };
            return refuse_inbox(&handle, &mut rx, why);
        }
        Err(_) => {
            let why = Refusal::Unavailable { message: "upstream connect timed out", sent: false };
            return refuse_inbox(&handle, &mut rx, why);
        }
    };
    let side = ClientSide {
        handle: handle.clone(),
        last_opened: 0,
        pending: VecDeque::new(),
        active: 0,
        peer_max: config.assumed_max_concurrent_streams,
        draining: false,
        inbox_closed: false,
    };
    let mut conn = Conn::new(Side::Client(Box::new(side)), LocalSettings::from(&*config), None, None);
    conn.out.buf().extend_from_slice(PREFACE);
    conn.write_preamble(&[(frame::setting::ENABLE_PUSH, 0)]);
    if let Err(e) = crate::driver::run(io, &mut conn, &mut rx, None).await {
        tracing::debug!(%addr, error = %e, "h2relay: upstream connection error");
    }
    conn.on_eof();
    refuse_inbox(&handle, &mut rx, Refusal::Retriable);
}

/// Closes the connection to new streams and refuses every Open still in its inbox.
fn refuse_inbox(handle: &Handle, rx: &mut UnboundedReceiver<Msg>, why: Refusal) {
    handle.close();
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Open(open) = msg {
            handle.outstanding.fetch_sub(1, Ordering::Relaxed);
            open.peer.send(Msg::Refused { sid: open.peer.sid, why });
        }
    }
}

impl Conn {
    fn client(&mut self) -> Option<&mut ClientSide> {
        match &mut self.side {
            Side::Client(c) => Some(c),
            Side::Server(_) => None,
        }
    }

    /// A downstream connection opens a stream here.
    pub(crate) fn client_open(&mut self, open: Open) {
        let closing = self.closing;
        let Some(c) = self.client() else { return };
        if c.draining || closing {
            c.handle.outstanding.fetch_sub(1, Ordering::Relaxed);
            open.peer.send(Msg::Refused { sid: open.peer.sid, why: Refusal::Retriable });
            return;
        }
        c.last_opened = open.sid;
        c.pending.push_back(open.sid);
        let mut stream = Stream::new(Some(open.peer), self.peer_initial_window, self.local.initial_stream_window);
        stream.pending_open = true;
        stream.queue.push_back(Out::Headers(open.fields, open.end_stream));
        self.streams.insert(open.sid, stream);
        self.activate_pending();
    }

    /// Lets waiting streams write their HEADERS while the upstream's concurrency allows.
    pub(crate) fn activate_pending(&mut self) {
        let Side::Client(c) = &mut self.side else { return };
        if c.draining {
            return;
        }
        let mut activated = Vec::new();
        while c.active < c.peer_max {
            let Some(sid) = c.pending.pop_front() else { break };
            if let Some(stream) = self.streams.get_mut(&sid) {
                stream.pending_open = false;
                c.active += 1;
                activated.push(sid);
            }
        }
        for sid in activated {
            self.schedule(sid);
        }
    }

    pub(crate) fn client_header_block(
        &mut self,
        sid: u32,
        decoded: Result<(), DecodeError>,
        mut fields: HeaderList,
        end_stream: bool,
    ) -> Result<(), H2Error> {
        match decoded {
            Err(DecodeError::Compression(why)) => return Err(H2Error::conn(Reason::COMPRESSION_ERROR, why)),
            Err(DecodeError::ListFarTooLarge) => {
                return Err(H2Error::conn(Reason::ENHANCE_YOUR_CALM, "response header list far over the limit"));
            }
            _ => {}
        }
        let Some(stream) = self.streams.get_mut(&sid) else { return Ok(()) };
        if stream.recv_end {
            return Err(H2Error::Stream(sid, Reason::STREAM_CLOSED));
        }
        if decoded.is_err() || sanitize_response(&mut fields).is_err() {
            return Err(H2Error::Stream(sid, Reason::PROTOCOL_ERROR));
        }
        if !stream.headers_received {
            let Some((_, status)) = fields.iter().find(|(n, _)| &n[..] == b":status") else {
                return Err(H2Error::Stream(sid, Reason::PROTOCOL_ERROR));
            };
            if status.first() == Some(&b'1') {
                // Informational (1xx): not relayed.
                return if end_stream { Err(H2Error::Stream(sid, Reason::PROTOCOL_ERROR)) } else { Ok(()) };
            }
            stream.headers_received = true;
        } else if !end_stream || fields.iter().any(|(n, _)| n.first() == Some(&b':')) {
            return Err(H2Error::Stream(sid, Reason::PROTOCOL_ERROR));
        }
        stream.recv_end = end_stream;
        if let Some(peer) = &stream.peer {
            peer.send(Msg::Headers { sid: peer.sid, fields, end_stream });
        }
        if end_stream {
            self.maybe_finish(sid);
        }
        Ok(())
    }

    /// The upstream sent GOAWAY: drain. Streams above `last_stream_id` and those still waiting
    /// to be written never reached it and fail as retriable; the rest finish normally.
    pub(crate) fn client_goaway(&mut self, last_stream_id: u32, reason: Reason) {
        tracing::debug!(?reason, last_stream_id, "h2relay: upstream sent GOAWAY");
        let Some(c) = self.client() else { return };
        c.draining = true;
        c.handle.draining.store(true, Ordering::Relaxed);
        let refused: Vec<u32> = self
            .streams
            .iter()
            .filter(|&(&sid, s)| sid > last_stream_id || s.pending_open)
            .map(|(&sid, _)| sid)
            .collect();
        for sid in refused {
            if let Some(stream) = self.remove_stream(sid)
                && let Some(peer) = &stream.peer
            {
                peer.send(Msg::Refused { sid: peer.sid, why: Refusal::Retriable });
            }
        }
    }

    pub(crate) fn client_inbox_closed(&mut self) {
        if let Some(c) = self.client() {
            c.inbox_closed = true;
        }
    }
}
