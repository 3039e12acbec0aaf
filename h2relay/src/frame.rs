//! The HTTP/2 frame codec (RFC 9113 §4 and §6): [`decode`] takes one frame off the front of a
//! read buffer (payloads are `Bytes` split off that buffer, never copied), the `write_*`
//! functions append frames to a [`WriteBuf`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{H2Error, Reason};
use crate::wbuf::WriteBuf;

/// Length of a frame header.
pub const HEADER_LEN: usize = 9;
/// The connection preface a client sends first.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Smallest and largest legal SETTINGS_MAX_FRAME_SIZE.
pub const MIN_MAX_FRAME_SIZE: u32 = 16_384;
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// Largest flow-control window.
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Frame type codes.
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flags {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS parameter identifiers.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// The parameters of one SETTINGS frame (those it does not carry are `None`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settings {
    pub header_table_size: Option<u32>,
    pub enable_push: Option<u32>,
    pub max_concurrent_streams: Option<u32>,
    pub initial_window_size: Option<u32>,
    pub max_frame_size: Option<u32>,
    pub max_header_list_size: Option<u32>,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        data: Bytes,
        end_stream: bool,
        /// The frame's whole payload length (padding included), what flow control counts.
        flow_len: u32,
    },
    Headers {
        stream_id: u32,
        block: Bytes,
        end_stream: bool,
        end_headers: bool,
    },
    Priority {
        stream_id: u32,
    },
    RstStream {
        stream_id: u32,
        reason: Reason,
    },
    Settings {
        ack: bool,
        settings: Settings,
    },
    PushPromise {
        stream_id: u32,
    },
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream_id: u32,
        reason: Reason,
        debug: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        increment: u32,
    },
    Continuation {
        stream_id: u32,
        block: Bytes,
        end_headers: bool,
    },
    /// A frame of an unknown type: ignored (RFC 9113 §4.1), but counted by the flood limits.
    Unknown {
        kind: u8,
        stream_id: u32,
    },
}

/// Takes one frame off the front of `buf`, or returns `Ok(None)` when `buf` does not hold a
/// whole frame yet. A frame longer than `max_frame_size` is refused as soon as its header is in
/// (FRAME_SIZE_ERROR), before its payload is buffered.
pub fn decode(buf: &mut BytesMut, max_frame_size: u32) -> Result<Option<Frame>, H2Error> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]);
    if len > max_frame_size {
        return Err(H2Error::conn(Reason::FRAME_SIZE_ERROR, "frame longer than SETTINGS_MAX_FRAME_SIZE"));
    }
    if buf.len() < HEADER_LEN + len as usize {
        return Ok(None);
    }
    let kind = buf[3];
    let flags = buf[4];
    let stream_id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & MAX_WINDOW;
    buf.advance(HEADER_LEN);
    let payload = buf.split_to(len as usize).freeze();
    parse(kind, flags, stream_id, payload).map(Some)
}

fn need_stream(stream_id: u32) -> Result<(), H2Error> {
    if stream_id == 0 { Err(H2Error::protocol("frame needs a stream")) } else { Ok(()) }
}

fn need_conn(stream_id: u32) -> Result<(), H2Error> {
    if stream_id != 0 { Err(H2Error::protocol("frame on a stream must be on stream 0")) } else { Ok(()) }
}

/// Strips padding (RFC 9113 §6.1): the pad length octet and the padding itself.
fn unpad(mut payload: Bytes) -> Result<Bytes, H2Error> {
    if payload.is_empty() {
        return Err(H2Error::conn(Reason::FRAME_SIZE_ERROR, "padded frame without pad length"));
    }
    let pad = payload[0] as usize;
    payload.advance(1);
    if pad > payload.len() {
        return Err(H2Error::protocol("padding longer than the frame"));
    }
    payload.truncate(payload.len() - pad);
    Ok(payload)
}

fn parse(kind: u8, flags: u8, stream_id: u32, payload: Bytes) -> Result<Frame, H2Error> {
    use self::flags as f;
    let len = payload.len();
    Ok(match kind {
        kind::DATA => {
            need_stream(stream_id)?;
            let flow_len = len as u32;
            let data = if flags & f::PADDED != 0 { unpad(payload)? } else { payload };
            Frame::Data { stream_id, data, end_stream: flags & f::END_STREAM != 0, flow_len }
        }
        kind::HEADERS => {
            need_stream(stream_id)?;
            let mut block = if flags & f::PADDED != 0 { unpad(payload)? } else { payload };
            if flags & f::PRIORITY != 0 {
                if block.len() < 5 {
                    return Err(H2Error::conn(Reason::FRAME_SIZE_ERROR, "HEADERS priority fields cut short"));
                }
                let dep = u32::from_be_bytes([block[0], block[1], block[2], block[3]]) & MAX_WINDOW;
                if dep == stream_id {
                    return Err(H2Error::Stream(stream_id, Reason::PROTOCOL_ERROR));
                }
                block.advance(5);
            }
            Frame::Headers {
                stream_id,
                block,
                end_stream: flags & f::END_STREAM != 0,
                end_headers: flags & f::END_HEADERS != 0,
            }
        }
        kind::PRIORITY => {
            need_stream(stream_id)?;
            if len != 5 {
                return Err(H2Error::Stream(stream_id, Reason::FRAME_SIZE_ERROR));
            }
            let dep = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & MAX_WINDOW;
            if dep == stream_id {
                return Err(H2Error::Stream(stream_id, Reason::PROTOCOL_ERROR));
            }
            Frame::Priority { stream_id }
        }
        kind::RST_STREAM => {
            need_stream(stream_id)?;
            if len != 4 {
                return Err(H2Error::conn(Reason::FRAME_SIZE_ERROR, "RST_STREAM is not 4 octets"));
            }
            let reason = Reason(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]));
            Frame::RstStream { stream_id, reason }
        }
        kind::SETTINGS => {
            need_conn(stream_id)?;
            let ack = flags & f::ACK != 0;
            if ack && len != 0 {
                return Err(H2Error::conn(Reason::FRAME_SIZE_ERROR, "SETTINGS ack with a payload"));
            }
            if !len.is_multiple_of(6) {
                return Err(H2Error::conn(Reason::FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6"));
            }
            let mut settings = Settings::default();
            for chunk in payload.chunks_exact(6) {
                let id = u16::from_be_bytes([chunk[0], chunk[1]]);
                let value = u32::from_be_bytes([chunk[2], chunk[3], chunk[4], chunk[5]]);
                match id {
                    setting::HEADER_TABLE_SIZE => settings.header_table_size = Some(value),
                    setting::ENABLE_PUSH => {
                        if value > 1 {
                            return Err(H2Error::protocol("SETTINGS_ENABLE_PUSH not 0 or 1"));
                        }
                        settings.enable_push = Some(value);
                    }
                    setting::MAX_CONCURRENT_STREAMS => settings.max_concurrent_streams = Some(value),
                    setting::INITIAL_WINDOW_SIZE => {
                        if value > MAX_WINDOW {
                            return Err(H2Error::conn(
                                Reason::FLOW_CONTROL_ERROR,
                                "SETTINGS_INITIAL_WINDOW_SIZE too large",
                            ));
                        }
                        settings.initial_window_size = Some(value);
                    }
                    setting::MAX_FRAME_SIZE => {
                        if !(MIN_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) {
                            return Err(H2Error::protocol("SETTINGS_MAX_FRAME_SIZE out of range"));
                        }
                        settings.max_frame_size = Some(value);
                    }
                    setting::MAX_HEADER_LIST_SIZE => settings.max_header_list_size = Some(value),
                    _ => {}
                }
            }
            Frame::Settings { ack, settings }
        }
        kind::PUSH_PROMISE => {
            need_stream(stream_id)?;
            Frame::PushPromise { stream_id }
        }
        kind::PING => {
            need_conn(stream_id)?;
            let payload: [u8; 8] = payload
                .as_ref()
                .try_into()
                .map_err(|_| H2Error::conn(Reason::FRAME_SIZE_ERROR, "PING is not 8 octets"))?;
            Frame::Ping { ack: flags & f::ACK != 0, payload }
        }
        kind::GOAWAY => {
            need_conn(stream_id)?;
            if len < 8 {
                return Err(H2Error::conn(Reason::FRAME_SIZE_ERROR, "GOAWAY shorter than 8 octets"));
            }
            let last_stream_id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & MAX_WINDOW;
            let reason = Reason(u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]));
            Frame::GoAway { last_stream_id, reason, debug: payload.slice(8..) }
        }
        kind::WINDOW_UPDATE => {
            if len != 4 {
                return Err(H2Error::conn(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE is not 4 octets"));
            }
            let increment = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & MAX_WINDOW;
            if increment == 0 {
                return Err(if stream_id == 0 {
                    H2Error::protocol("WINDOW_UPDATE of 0 on the connection")
                } else {
                    H2Error::Stream(stream_id, Reason::PROTOCOL_ERROR)
                });
            }
            Frame::WindowUpdate { stream_id, increment }
        }
        kind::CONTINUATION => {
            need_stream(stream_id)?;
            Frame::Continuation { stream_id, block: payload, end_headers: flags & f::END_HEADERS != 0 }
        }
        other => Frame::Unknown { kind: other, stream_id },
    })
}

/// Writes a frame header into `dst`.
pub fn put_header(dst: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    debug_assert!(len <= MAX_MAX_FRAME_SIZE as usize);
    let len = len as u32;
    dst.put_slice(&len.to_be_bytes()[1..]);
    dst.put_u8(kind);
    dst.put_u8(flags);
    dst.put_u32(stream_id & MAX_WINDOW);
}

/// Writes a DATA frame (`data` must fit the peer's SETTINGS_MAX_FRAME_SIZE).
pub fn write_data(out: &mut WriteBuf, stream_id: u32, data: Bytes, end_stream: bool) {
    let flags = if end_stream { flags::END_STREAM } else { 0 };
    put_header(out.buf(), data.len(), kind::DATA, flags, stream_id);
    out.put_bytes(data);
}

/// Writes a header block as a HEADERS frame and as many CONTINUATION frames as
/// `max_frame_size` makes it need.
pub fn write_headers(out: &mut WriteBuf, stream_id: u32, block: &[u8], end_stream: bool, max_frame_size: u32) {
    let max = max_frame_size as usize;
    let mut chunks = block.chunks(max.max(1));
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { flags::END_STREAM } else { 0 };
    let rest = block.len() > first.len();
    if !rest {
        flags |= flags::END_HEADERS;
    }
    let dst = out.buf();
    put_header(dst, first.len(), kind::HEADERS, flags, stream_id);
    dst.put_slice(first);
    let mut written = first.len();
    for chunk in chunks {
        written += chunk.len();
        let flags = if written == block.len() { flags::END_HEADERS } else { 0 };
        put_header(dst, chunk.len(), kind::CONTINUATION, flags, stream_id);
        dst.put_slice(chunk);
    }
}

/// Writes RST_STREAM.
pub fn write_rst(out: &mut WriteBuf, stream_id: u32, reason: Reason) {
    let dst = out.buf();
    put_header(dst, 4, kind::RST_STREAM, 0, stream_id);
    dst.put_u32(reason.0);
}

/// Writes SETTINGS with the given parameters.
pub fn write_settings(out: &mut WriteBuf, params: &[(u16, u32)]) {
    let dst = out.buf();
    put_header(dst, params.len() * 6, kind::SETTINGS, 0, 0);
    for &(id, value) in params {
        dst.put_u16(id);
        dst.put_u32(value);
    }
}

/// Writes a SETTINGS acknowledgement.
pub fn write_settings_ack(out: &mut WriteBuf) {
    put_header(out.buf(), 0, kind::SETTINGS, flags::ACK, 0);
}

/// Writes PING (or its acknowledgement).
pub fn write_ping(out: &mut WriteBuf, ack: bool, payload: [u8; 8]) {
    let dst = out.buf();
    put_header(dst, 8, kind::PING, if ack { flags::ACK } else { 0 }, 0);
    dst.put_slice(&payload);
}

/// Writes GOAWAY.
pub fn write_goaway(out: &mut WriteBuf, last_stream_id: u32, reason: Reason, debug: &[u8]) {
    let dst = out.buf();
    put_header(dst, 8 + debug.len(), kind::GOAWAY, 0, 0);
    dst.put_u32(last_stream_id & MAX_WINDOW);
    dst.put_u32(reason.0);
    dst.put_slice(debug);
}

/// Writes WINDOW_UPDATE (`increment` must be 1 to 2^31-1).
pub fn write_window_update(out: &mut WriteBuf, stream_id: u32, increment: u32) {
    let dst = out.buf();
    put_header(dst, 4, kind::WINDOW_UPDATE, 0, stream_id);
    dst.put_u32(increment & MAX_WINDOW);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(len: u32, kind: u8, flags: u8, sid: u32, payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_slice(&len.to_be_bytes()[1..]);
        b.put_u8(kind);
        b.put_u8(flags);
        b.put_u32(sid);
        b.put_slice(payload);
        b
    }

    fn written(f: impl FnOnce(&mut WriteBuf)) -> BytesMut {
        let mut w = WriteBuf::default();
        f(&mut w);
        let mut out = BytesMut::new();
        for chunk in w.drain_all() {
            out.put_slice(&chunk);
        }
        out
    }

    #[test]
    fn round_trips_every_frame_written() {
        let mut buf = written(|w| {
            write_data(w, 1, Bytes::from_static(b"hello"), true);
            write_headers(w, 3, b"abc", false, 16_384);
            write_rst(w, 5, Reason::CANCEL);
            write_settings(w, &[(setting::INITIAL_WINDOW_SIZE, 1000), (setting::MAX_FRAME_SIZE, 20_000)]);
            write_settings_ack(w);
            write_ping(w, true, [1, 2, 3, 4, 5, 6, 7, 8]);
            write_goaway(w, 7, Reason::ENHANCE_YOUR_CALM, b"calm");
            write_window_update(w, 0, 12345);
        });
        let mut frames = Vec::new();
        while let Some(f) = decode(&mut buf, 16_384).unwrap() {
            frames.push(f);
        }
        assert!(buf.is_empty());
        assert_eq!(
            frames,
            vec![
                Frame::Data { stream_id: 1, data: Bytes::from_static(b"hello"), end_stream: true, flow_len: 5 },
                Frame::Headers {
                    stream_id: 3,
                    block: Bytes::from_static(b"abc"),
                    end_stream: false,
                    end_headers: true
                },
                Frame::RstStream { stream_id: 5, reason: Reason::CANCEL },
                Frame::Settings {
                    ack: false,
                    settings: Settings {
                        initial_window_size: Some(1000),
                        max_frame_size: Some(20_000),
                        ..Settings::default()
                    }
                },
                Frame::Settings { ack: true, settings: Settings::default() },
                Frame::Ping { ack: true, payload: [1, 2, 3, 4, 5, 6, 7, 8] },
                Frame::GoAway {
                    last_stream_id: 7,
                    reason: Reason::ENHANCE_YOUR_CALM,
                    debug: Bytes::from_static(b"calm")
                },
                Frame::WindowUpdate { stream_id: 0, increment: 12345 },
            ]
        );
    }

    #[test]
    fn splits_a_large_header_block_into_continuations() {
        let block: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut buf = written(|w| write_headers(w, 1, &block, true, 16_384));
        let mut got = Vec::new();
        let mut kinds = Vec::new();
        while let Some(f) = decode(&mut buf, 16_384).unwrap() {
            match f {
                Frame::Headers { block, end_headers, end_stream, .. } => {
                    assert!(end_stream && !end_headers);
                    kinds.push("H");
                    got.extend_from_slice(&block);
                }
                Frame::Continuation { block, end_headers, .. } => {
                    kinds.push(if end_headers { "C!" } else { "C" });
                    got.extend_from_slice(&block);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(kinds, ["H", "C", "C!"]);
        assert_eq!(got, block);
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let full = raw(5, kind::DATA, 0, 1, b"hello");
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut part, 16_384).unwrap(), None);
        }
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut buf = raw(16_385, kind::DATA, 0, 1, b"");
        assert_eq!(
            decode(&mut buf, 16_384).unwrap_err(),
            H2Error::Connection(Reason::FRAME_SIZE_ERROR, "frame longer than SETTINGS_MAX_FRAME_SIZE")
        );
    }

    #[test]
    fn padding_is_stripped_and_counted() {
        let mut buf = raw(8, kind::DATA, flags::PADDED, 1, &[3, b'a', b'b', b'c', b'd', 0, 0, 0]);
        assert_eq!(
            decode(&mut buf, 16_384).unwrap(),
            Some(Frame::Data { stream_id: 1, data: Bytes::from_static(b"abcd"), end_stream: false, flow_len: 8 })
        );
        let mut bad = raw(2, kind::DATA, flags::PADDED, 1, &[5, b'a']);
        assert!(matches!(decode(&mut bad, 16_384), Err(H2Error::Connection(Reason::PROTOCOL_ERROR, _))));
    }

    #[test]
    fn malformed_frames_get_the_right_codes() {
        let conn = |buf: &mut BytesMut| match decode(buf, 16_384) {
            Err(H2Error::Connection(r, _)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(conn(&mut raw(3, kind::PING, 0, 0, b"abc")), Reason::FRAME_SIZE_ERROR);
        assert_eq!(conn(&mut raw(8, kind::PING, 0, 1, b"abcdefgh")), Reason::PROTOCOL_ERROR);
        assert_eq!(conn(&mut raw(5, kind::SETTINGS, 0, 0, b"abcde")), Reason::FRAME_SIZE_ERROR);
        assert_eq!(conn(&mut raw(3, kind::RST_STREAM, 0, 1, b"abc")), Reason::FRAME_SIZE_ERROR);
        assert_eq!(conn(&mut raw(4, kind::DATA, 0, 0, b"abcd")), Reason::PROTOCOL_ERROR);
        assert_eq!(conn(&mut raw(4, kind::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0])), Reason::PROTOCOL_ERROR);
        assert_eq!(conn(&mut raw(6, kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0])), Reason::FLOW_CONTROL_ERROR);
        assert_eq!(conn(&mut raw(6, kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1])), Reason::PROTOCOL_ERROR);
        assert_eq!(
            decode(&mut raw(4, kind::WINDOW_UPDATE, 0, 3, &[0, 0, 0, 0]), 16_384),
            Err(H2Error::Stream(3, Reason::PROTOCOL_ERROR))
        );
        assert_eq!(
            decode(&mut raw(5, kind::PRIORITY, 0, 3, &[0, 0, 0, 3, 0]), 16_384),
            Err(H2Error::Stream(3, Reason::PROTOCOL_ERROR))
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: random bytes, random limits.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let n = (next() % 64) as usize;
            let mut buf: BytesMut = (0..n).map(|_| next() as u8).collect();
            if buf.len() >= 3 {
                buf[0] = 0;
                buf[1] = 0;
            }
            while let Ok(Some(_)) = decode(&mut buf, 16_384) {}
        }
    }
}
