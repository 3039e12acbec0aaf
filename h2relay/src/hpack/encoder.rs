//! HPACK encoding (RFC 7541 §6): static and dynamic table indexing, incremental indexing of
//! fields that repeat across calls (content-type, te, user-agent, method paths ...), literals
//! without indexing for per-call values (grpc-timeout, trace ids ...), never-indexed literals
//! for credentials. Strings are written raw (no Huffman): cheaper to produce, and the
//! dynamic table already removes most repeated bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::table::{DynamicTable, ENTRY_OVERHEAD, static_find};

/// The largest dynamic table the encoder uses, whatever the peer allows.
pub const MAX_TABLE_SIZE: usize = 4096;

/// A header block encoder; one per connection direction.
#[derive(Debug)]
pub struct Encoder {
    table: DynamicTable,
    /// Size updates to announce at the start of the next block: the smallest size since the
    /// last block, then the final one (RFC 7541 §4.2).
    pending_min: Option<usize>,
    pending_final: Option<usize>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder { table: DynamicTable::new(MAX_TABLE_SIZE), pending_min: None, pending_final: None }
    }
}

/// Whether a field's value changes from call to call, so indexing it would only churn the table.
fn volatile(name: &[u8]) -> bool {
    matches!(
        name,
        b"grpc-timeout"
            | b"grpc-message"
            | b"grpc-status-details-bin"
            | b"grpc-trace-bin"
            | b"traceparent"
            | b"tracestate"
            | b"content-length"
            | b"date"
            | b"x-request-id"
            | b"etag"
            | b"last-modified"
    )
}

fn sensitive(name: &[u8]) -> bool {
    matches!(name, b"authorization" | b"proxy-authorization" | b"cookie" | b"set-cookie")
}

pub(super) fn put_int(dst: &mut BytesMut, first_bits: u8, prefix_bits: u8, mut value: usize) {
    let mask = (1usize << prefix_bits) - 1;
    if value < mask {
        dst.put_u8(first_bits | value as u8);
        return;
    }
    dst.put_u8(first_bits | mask as u8);
    value -= mask;
    while value >= 128 {
        dst.put_u8((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

fn put_string(dst: &mut BytesMut, s: &[u8]) {
    put_int(dst, 0, 7, s.len());
    dst.put_slice(s);
}

impl Encoder {
    /// Applies the peer's SETTINGS_HEADER_TABLE_SIZE.
    pub fn set_peer_max_table_size(&mut self, peer_max: usize) {
        let size = peer_max.min(MAX_TABLE_SIZE);
        if size == self.table.max_size() && self.pending_final.is_none() {
            return;
        }
        self.table.set_max_size(size);
        self.pending_min = Some(self.pending_min.map_or(size, |m| m.min(size)));
        self.pending_final = Some(size);
    }

    /// Encodes a header list as one block, appended to `dst`.
    pub fn encode<'a, I>(&mut self, fields: I, dst: &mut BytesMut)
    where
        I: IntoIterator<Item = (&'a Bytes, &'a Bytes)>,
    {
        if let Some(final_size) = self.pending_final.take() {
            if let Some(min) = self.pending_min.take().filter(|&m| m < final_size) {
                put_int(dst, 0x20, 5, min);
            }
            put_int(dst, 0x20, 5, final_size);
        }
        for (name, value) in fields {
            self.encode_field(name, value, dst);
        }
    }

    fn encode_field(&mut self, name: &Bytes, value: &Bytes, dst: &mut BytesMut) {
        let (exact, static_name) = static_find(name, value);
        if let Some(i) = exact {
            put_int(dst, 0x80, 7, i);
            return;
        }
        if sensitive(name) {
            match static_name {
                Some(i) => put_int(dst, 0x10, 4, i),
                None => {
                    dst.put_u8(0x10);
                    put_string(dst, name);
                }
            }
            put_string(dst, value);
            return;
        }
        let mut name_index = static_name;
        for (i, (n, v)) in self.table.iter().enumerate() {
            if n == name {
                if v == value {
                    put_int(dst, 0x80, 7, 62 + i);
                    return;
                }
                name_index = name_index.or(Some(62 + i));
            }
        }
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        let index = !volatile(name) && size <= self.table.max_size() / 4;
        let (first, prefix) = if index { (0x40, 6) } else { (0x00, 4) };
        match name_index {
            Some(i) => put_int(dst, first, prefix, i),
            None => {
                dst.put_u8(first);
                put_string(dst, name);
            }
        }
        put_string(dst, value);
        if index {
            self.table.insert(name.clone(), value.clone());
        }
    }
}
