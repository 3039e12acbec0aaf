//! The guard on a client connection before Pingora parses it: a request head (HTTP/1.1) or the
//! HTTP/2 connection preface must arrive whole within `header_read_timeout_ms` of its first
//! byte (of the accept, for a connection's first), and an HTTP/1.1 head may not exceed
//! `max_header_list_bytes`. Late heads are answered 408 and big ones 431, then the connection
//! is closed (after a first answer on a keep-alive connection, only closed).
//!
//! Pingora's HTTP/1.1 reader only times out each read (60 s of keep-alive), so a client that
//! trickles one byte at a time (slowloris) holds a connection forever, and it lets a head grow
//! to 1 MiB before answering 400. HTTP/2 has its own limits past the preface (see
//! `crate::server`: the header list, resets, the idle timeout). The guard wraps the accepted
//! stream, watches the bytes Pingora reads, and answers by itself while no response has
//! started, which is the only time a 408 or 431 can be sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
const TOO_LARGE_RESPONSE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// The guard's limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuardSettings {
    /// Time for a whole head (or the HTTP/2 preface).
    pub header_timeout: Duration,
    /// Largest HTTP/1.1 request head, in bytes.
    pub max_head_bytes: usize,
}

/// A Pingora application whose every accepted connection goes through a [`HeadGuard`].
pub(crate) struct Guarded<A> {
    inner: Arc<A>,
    settings: GuardSettings,
}

impl<A> Guarded<A> {
    pub(crate) fn new(inner: A, settings: GuardSettings) -> Self {
        Self { inner: Arc::new(inner), settings }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let guarded: Stream = Box::new(HeadGuard::new(stream, self.settings));
        self.inner.process_new(guarded, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Where the connection is.
#[derive(Debug)]
enum State {
    /// Reading a head: `bytes` of it so far (the deadline runs once `bytes > 0`, or from the
    /// accept for the first head), `window` the last four bytes, `start` its first three.
    Head { bytes: usize, window: u32, start: [u8; 3] },
    /// The head is in; the body and the answer pass untouched until the gateway writes.
    Passing,
    /// HTTP/2 past its preface: the h2 settings take over.
    H2,
    /// Writing a 408 or 431 (`written` bytes of it so far) before failing the read.
    Rejecting { response: &'static [u8], written: usize },
    /// Rejected: every read fails.
    Closed,
}

/// The accepted stream with the guard's state; every other trait goes to the inner stream.
#[derive(Debug)]
pub(crate) struct HeadGuard {
    inner: Stream,
    settings: GuardSettings,
    state: State,
    /// Whether an answer went out on this connection: its first head is timed from the
    /// accept, later ones from their first byte.
    answered: bool,
    deadline: Pin<Box<Sleep>>,
}

impl HeadGuard {
    fn new(inner: Stream, settings: GuardSettings) -> Self {
        Self {
            inner,
            settings,
            state: State::Head { bytes: 0, window: 0, start: [0; 3] },
            answered: false,
            // A connection's first head is timed from the accept: a client that connects and
            // says nothing is a slowloris too.
            deadline: Box::pin(tokio::time::sleep(settings.header_timeout)),
        }
    }

    /// Accounts `data`, just read as part of a head; returns the state the head moves to, if
    /// it ended or broke a limit.
    fn scan(&mut self, data: &[u8]) -> Option<State> {
        let State::Head { bytes, window, start } = &mut self.state else { return None };
        if *bytes == 0 && !data.is_empty() && self.answered {
            // A later head's time starts with its first byte.
            let deadline = Instant::now() + self.settings.header_timeout;
            self.deadline.as_mut().reset(deadline);
        }
        for &b in data {
            if *bytes < 3 {
                start[*bytes] = b;
            }
            *bytes += 1;
            *window = (*window << 8) | u32::from(b);
            if start == b"PRI" {
                if *bytes == H2_PREFACE.len() {
                    return Some(State::H2);
                }
                continue;
            }
            // httparse also takes a bare LF as a line end.
            if *window == 0x0d0a_0d0a || *window & 0xffff == 0x0a0a {
                return Some(State::Passing);
            }
            if *bytes > self.settings.max_head_bytes {
                return Some(State::Rejecting { response: TOO_LARGE_RESPONSE, written: 0 });
            }
        }
        None
    }

    /// Writes the rejection, then fails the read so that Pingora closes the connection.
    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.answered && matches!(self.state, State::Rejecting { written: 0, .. }) {
            // After an answer, what looks like a late or long head may be the rest of a body
            // that Pingora drains after answering early: a 408 or 431 written now could follow
            // a response mid-way, so the connection is only closed.
            self.state = State::Closed;
        }
        while let State::Rejecting { response, written } = &mut self.state {
            if *written == response.len() {
                ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
                let status = if std::ptr::eq(*response, TIMEOUT_RESPONSE) { 408 } else { 431 };
                tracing::debug!(status, "request head rejected");
                self.state = State::Closed;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &response[*written..]))?;
            if n == 0 {
                self.state = State::Closed;
                break;
            }
            *written += n;
        }
        Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "request head rejected")))
    }
}

impl AsyncRead for HeadGuard {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.state {
            State::Passing | State::H2 => return Pin::new(&mut this.inner).poll_read(cx, buf),
            State::Rejecting { .. } | State::Closed => return this.poll_reject(cx),
            State::Head { .. } => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                match this.scan(&buf.filled()[before..]) {
                    Some(State::Rejecting { response, written }) => {
                        // Pingora must not see the head it would parse.
                        buf.set_filled(before);
                        this.state = State::Rejecting { response, written };
                        this.poll_reject(cx)
                    }
                    Some(next) => {
                        this.state = next;
                        Poll::Ready(Ok(()))
                    }
                    None => Poll::Ready(Ok(())),
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // A head not begun after an answer waits under Pingora's keep-alive timeout.
                let timed = matches!(this.state, State::Head { bytes, .. } if bytes > 0 || !this.answered);
                if timed && this.deadline.as_mut().poll(cx).is_ready() {
                    let preface = matches!(this.state, State::Head { bytes, start, .. }
                        if H2_PREFACE.starts_with(&start[..bytes.min(3)]) && bytes > 0);
                    if preface {
                        // Not an HTTP/1.1 client: close without an HTTP/1.1 answer.
                        this.state = State::Closed;
                    } else {
                        this.state = State::Rejecting { response: TIMEOUT_RESPONSE, written: 0 };
                    }
                    return this.poll_reject(cx);
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
        if n > 0 && matches!(this.state, State::Passing) {
            // An answer is going out: what the client sends next is a new head.
            this.state = State::Head { bytes: 0, window: 0, start: [0; 3] };
            this.answered = true;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if n > 0 && matches!(this.state, State::Passing) {
            this.state = State::Head { bytes: 0, window: 0, start: [0; 3] };
            this.answered = true;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadGuard {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadGuard {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadGuard {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadGuard {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadGuard {
    /// Pingora peeks for the HTTP/2 preface with a `read_exact` of 24 bytes and no timeout: a
    /// client that sends less (or nothing) would hold the connection forever. The peek gets the
    /// first head's deadline; past it the client is answered 408 (harmless to a client that
    /// meant HTTP/2 and is that slow) and the connection is dropped.
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        let deadline = self.deadline.deadline();
        match tokio::time::timeout_at(deadline, self.inner.try_peek(buf)).await {
            Ok(peeked) => peeked,
            Err(_) => {
                use tokio::io::AsyncWriteExt;
                // A client that does not read either gets no more of our time.
                let answer = async {
                    self.inner.write_all(TIMEOUT_RESPONSE).await?;
                    self.inner.flush().await
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
                self.state = State::Closed;
                tracing::debug!(status = 408, "no request head before the header timeout");
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no request head before the header timeout"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(200);

    /// A guard over one end of an in-memory pipe (as Pingora would read it) and the client's end.
    fn guarded() -> (HeadGuard, DuplexStream) {
        let (server, client) = tokio::io::duplex(1 << 16);
        let settings = GuardSettings { header_timeout: TIMEOUT, max_head_bytes: 1024 };
        (HeadGuard::new(Box::new(server), settings), client)
    }

    async fn read_some(guard: &mut HeadGuard) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; 4096];
        let n = guard.read(&mut buf).await?;
        buf.truncate(n);
        Ok(buf)
    }

    async fn answer_of(client: &mut DuplexStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_whole_head_passes_and_an_idle_keep_alive_is_not_timed() {
        let (mut guard, mut client) = guarded();
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        client.write_all(head).await.unwrap();
        assert_eq!(read_some(&mut guard).await.unwrap(), head);
        guard.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        // Idle past the header timeout after an answer: Pingora's keep-alive timeout rules.
        tokio::time::sleep(TIMEOUT * 2).await;
        client.write_all(head).await.unwrap();
        assert_eq!(read_some(&mut guard).await.unwrap(), head);
    }

    #[tokio::test]
    async fn a_head_not_whole_in_time_is_answered_408() {
        let (mut guard, mut client) = guarded();
        client.write_all(b"GET / HT").await.unwrap();
        assert_eq!(read_some(&mut guard).await.unwrap(), b"GET / HT");
        let started = std::time::Instant::now();
        let err = read_some(&mut guard).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < TIMEOUT * 3);
        drop(guard);
        assert!(answer_of(&mut client).await.starts_with("HTTP/1.1 408 "));
    }

    #[tokio::test]
    async fn a_head_over_the_cap_is_answered_431_unseen() {
        let (mut guard, mut client) = guarded();
        let head = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(2000));
        client.write_all(head.as_bytes()).await.unwrap();
        // Pingora gets an error, never the head.
        assert!(read_some(&mut guard).await.is_err());
        drop(guard);
        assert!(answer_of(&mut client).await.starts_with("HTTP/1.1 431 "));
    }

    #[tokio::test]
    async fn http2_past_its_preface_is_left_alone() {
        let (mut guard, mut client) = guarded();
        client.write_all(H2_PREFACE).await.unwrap();
        let mut preface = vec![0; H2_PREFACE.len()];
        guard.read_exact(&mut preface).await.unwrap();
        assert_eq!(preface, H2_PREFACE);
        // Writes (the server's SETTINGS) and silence past the timeout change nothing.
        guard.write_all(b"\0\0\0\x04\0\0\0\0\0").await.unwrap();
        tokio::time::sleep(TIMEOUT * 2).await;
        client.write_all(b"frames").await.unwrap();
        assert_eq!(read_some(&mut guard).await.unwrap(), b"frames");
    }

    #[tokio::test]
    async fn after_an_answer_a_late_head_only_closes() {
        let (mut guard, mut client) = guarded();
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        read_some(&mut guard).await.unwrap();
        guard.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        let mut answer = vec![0; 64];
        let n = client.read(&mut answer).await.unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
        client.write_all(b"GET").await.unwrap();
        assert_eq!(read_some(&mut guard).await.unwrap(), b"GET");
        assert!(read_some(&mut guard).await.is_err());
        drop(guard);
        // Nothing more than the close: the bytes may have been a body drained after an answer.
        assert_eq!(answer_of(&mut client).await, "");
    }
}
