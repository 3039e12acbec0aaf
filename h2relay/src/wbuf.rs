//! A connection's write buffer: frames are coalesced into it and it is written with one
//! (vectored) write per wake-up. Frame headers and small payloads are copied into a contiguous
//! buffer; DATA payloads of [`COPY_LIMIT`] bytes or more are queued as their own `Bytes` chunk
//! and never copied.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;

/// Payloads shorter than this are copied into the contiguous buffer; copying a few hundred
/// bytes is cheaper than one more iovec.
pub const COPY_LIMIT: usize = 1024;
const MAX_IOVECS: usize = 64;

/// Pending output of one connection.
#[derive(Debug, Default)]
pub struct WriteBuf {
    chunks: VecDeque<Bytes>,
    chunks_len: usize,
    cur: BytesMut,
}

impl WriteBuf {
    /// The contiguous tail, to append frame headers and small payloads to.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.cur
    }

    /// Appends a payload: copied when small, queued as its own chunk otherwise.
    pub fn put_bytes(&mut self, data: Bytes) {
        if data.len() < COPY_LIMIT {
            self.cur.put_slice(&data);
        } else {
            self.seal();
            self.chunks_len += data.len();
            self.chunks.push_back(data);
        }
    }

    fn seal(&mut self) {
        if !self.cur.is_empty() {
            let chunk = self.cur.split().freeze();
            self.chunks_len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.chunks_len + self.cur.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes as much as `io` takes without blocking. `Ready(Ok(true))` when something was
    /// written, `Ready(Ok(false))` when there was nothing to write, `Pending` when `io` is full.
    pub fn poll_write<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<bool>> {
        let mut wrote = false;
        loop {
            self.seal();
            if self.chunks.is_empty() {
                return Poll::Ready(Ok(wrote));
            }
            let n = if io.is_write_vectored() && self.chunks.len() > 1 {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let count = self.chunks.len().min(MAX_IOVECS);
                for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                    *slot = IoSlice::new(chunk);
                }
                match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]) {
                    Poll::Ready(r) => r?,
                    Poll::Pending => return if wrote { Poll::Ready(Ok(true)) } else { Poll::Pending },
                }
            } else {
                let first = &self.chunks[0];
                match Pin::new(&mut *io).poll_write(cx, first) {
                    Poll::Ready(r) => r?,
                    Poll::Pending => return if wrote { Poll::Ready(Ok(true)) } else { Poll::Pending },
                }
            };
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            wrote = true;
            self.consume(n);
        }
    }

    fn consume(&mut self, mut n: usize) {
        self.chunks_len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else { return };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Takes everything pending (tests).
    #[cfg(test)]
    pub fn drain_all(&mut self) -> Vec<Bytes> {
        self.seal();
        self.chunks_len = 0;
        self.chunks.drain(..).collect()
    }
}
