//! Runs a connection: one task polls, in turn, its inbox (messages from the other side of its
//! streams), its socket's read side and its write buffer, handling everything that is ready
//! before writing once. No await point holds state: the whole connection is one poll function.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::conn::{Conn, HIGH_WATER};
use crate::relay::Msg;

/// Bytes read from the socket at a time (at least).
const READ_CHUNK: usize = 32 * 1024;
/// Inbox messages taken per poll.
const INBOX_BATCH: usize = 128;

/// A future that, once ready, starts a graceful shutdown of a downstream connection.
pub(crate) type Shutdown = Option<Pin<Box<dyn Future<Output = ()> + Send>>>;

/// Drives `conn` over `io` until it is done or the socket fails; when `shutdown` fires, the
/// (downstream) connection is told GOAWAY and ends with its last stream.
pub(crate) async fn run<T>(
    mut io: T,
    conn: &mut Conn,
    inbox: &mut UnboundedReceiver<Msg>,
    mut shutdown: Shutdown,
) -> std::io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut batch = Vec::with_capacity(INBOX_BATCH);
    let mut inbox_open = true;
    let mut need_flush = false;
    let mut eof = false;
    let result = poll_fn(|cx| {
        if let Some(fut) = shutdown.as_mut()
            && fut.as_mut().poll(cx).is_ready()
        {
            shutdown = None;
            conn.server_shutdown();
        }
        poll_conn(&mut io, conn, inbox, &mut inbox_open, &mut rbuf, &mut batch, &mut need_flush, &mut eof, cx)
    })
    .await;
    if result.is_ok() && conn.closing && !eof && conn.is_server() {
        linger(&mut io).await;
    }
    result
}

/// How long a client we closed for an error is read after our GOAWAY.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// After a GOAWAY for an error (our write side shut) the client may still be sending: its bytes
/// are read and dropped until it closes or for a moment at most (a lingering close, as nginx's
/// `lingering_close`). Closing with its bytes unread would make the kernel answer with a reset,
/// and a reset can destroy the GOAWAY before the client reads it. No byte cap: a flooder on
/// loopback sends megabytes before it reads the GOAWAY, and stopping at any count it can pass
/// brings the reset back; the time bound is what limits the work.
async fn linger<T: AsyncRead + Unpin>(io: &mut T) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(LINGER, async { while let Ok(1..) = io.read(&mut buf).await {} }).await;
}

#[allow(clippy::too_many_arguments)]
fn poll_conn<T>(
    io: &mut T,
    conn: &mut Conn,
    inbox: &mut UnboundedReceiver<Msg>,
    inbox_open: &mut bool,
    rbuf: &mut BytesMut,
    batch: &mut Vec<Msg>,
    need_flush: &mut bool,
    eof: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let mut progress = false;
        if *inbox_open && !conn.closing {
            match inbox.poll_recv_many(cx, batch, INBOX_BATCH) {
                Poll::Ready(0) => {
                    *inbox_open = false;
                    conn.client_inbox_closed();
                    progress = true;
                }
                Poll::Ready(_) => {
                    for msg in batch.drain(..) {
                        conn.on_msg(msg);
                    }
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        if !conn.closing && !*eof && conn.out.len() < HIGH_WATER {
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 2 {
                rbuf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, rbuf) {
                Poll::Ready(Ok(0)) => {
                    *eof = true;
                    conn.on_eof();
                    progress = true;
                }
                Poll::Ready(Ok(_)) => {
                    conn.on_read(rbuf);
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if !conn.closing && conn.poll_deadlines(cx) {
            progress = true;
        }
        if conn.poll_idle(cx) {
            progress = true;
        }
        conn.before_write();
        match conn.out.poll_write(io, cx) {
            Poll::Ready(Ok(true)) => {
                *need_flush = true;
                progress = true;
            }
            Poll::Ready(Ok(false)) | Poll::Pending => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        }
        if *need_flush && conn.out.is_empty() {
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => *need_flush = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if (conn.is_done() || *eof) && conn.out.is_empty() && !*need_flush {
            return match Pin::new(&mut *io).poll_shutdown(cx) {
                Poll::Ready(_) => Poll::Ready(Ok(())),
                Poll::Pending => Poll::Pending,
            };
        }
        if !progress {
            return Poll::Pending;
        }
    }
}
