//! HPACK decoding (RFC 7541 §6) of untrusted header blocks: every length and index is checked
//! against what is left of the block and the tables, integers are capped, the dynamic table is
//! capped by our SETTINGS_HEADER_TABLE_SIZE and the decoded list by SETTINGS_MAX_HEADER_LIST_SIZE.

use bytes::Bytes;

use super::table::{DynamicTable, ENTRY_OVERHEAD, static_entry};
use super::{DecodeError, HeaderList, huffman};

/// A header block decoder; one per connection direction.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// The table size we advertised (SETTINGS_HEADER_TABLE_SIZE): size updates above it are errors.
    max_allowed: usize,
    /// Largest decoded header list (RFC 9113 §6.5.2: names + values + 32 per field).
    max_list_size: usize,
}

/// Integers above this are refused (no field of a legal block comes close).
const MAX_INT: usize = 1 << 28;

struct Cursor<'a> {
    block: &'a Bytes,
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.block.get(self.pos).copied()
    }

    fn int(&mut self, prefix_bits: u8) -> Result<usize, DecodeError> {
        let first = self.peek().ok_or(DecodeError::Compression("integer cut short"))?;
        self.pos += 1;
        let mask = (1u16 << prefix_bits) as usize - 1;
        let mut value = first as usize & mask;
        if value < mask {
            return Ok(value);
        }
        let mut shift = 0u32;
        loop {
            let b = self.peek().ok_or(DecodeError::Compression("integer cut short"))?;
            self.pos += 1;
            value += ((b & 0x7f) as usize) << shift;
            if value > MAX_INT {
                return Err(DecodeError::Compression("integer too large"));
            }
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 28 {
                return Err(DecodeError::Compression("integer too long"));
            }
        }
    }

    fn string(&mut self) -> Result<Bytes, DecodeError> {
        let huffman = self.peek().ok_or(DecodeError::Compression("string cut short"))? & 0x80 != 0;
        let len = self.int(7)?;
        let end = self.pos.checked_add(len).filter(|&e| e <= self.block.len());
        let end = end.ok_or(DecodeError::Compression("string longer than the block"))?;
        let raw = self.block.slice(self.pos..end);
        self.pos = end;
        if !huffman {
            return Ok(raw);
        }
        let mut out = Vec::new();
        huffman::decode(&raw, &mut out).map_err(DecodeError::Compression)?;
        Ok(Bytes::from(out))
    }
}

impl Decoder {
    /// A decoder whose peer may use up to `max_table_size` bytes of dynamic table (what we
    /// advertise as SETTINGS_HEADER_TABLE_SIZE) and whose lists may reach `max_list_size`.
    pub fn new(max_table_size: usize, max_list_size: usize) -> Self {
        Decoder { table: DynamicTable::new(max_table_size), max_allowed: max_table_size, max_list_size }
    }

    /// The dynamic table's current size in bytes (tests).
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    fn entry(&self, index: usize) -> Result<(Bytes, Bytes), DecodeError> {
        if index == 0 {
            return Err(DecodeError::Compression("index 0"));
        }
        if let Some(e) = static_entry(index) {
            return Ok(e);
        }
        self.table.get(index - 62).cloned().ok_or(DecodeError::Compression("index beyond the tables"))
    }

    /// Decodes a whole header block, appending its fields to `out`. A list over the size limit
    /// is still decoded to the end (the dynamic table must stay in step with the peer's) and
    /// then refused with [`DecodeError::ListTooLarge`], leaving `out` empty; one over
    /// `FAR_OVER` times the limit stops there ([`DecodeError::ListFarTooLarge`]).
    pub fn decode(&mut self, block: &Bytes, out: &mut HeaderList) -> Result<(), DecodeError> {
        /// A list this many times over the limit ends the connection (the `h2` crate does the same).
        const FAR_OVER: usize = 4;
        let mut cur = Cursor { block, pos: 0 };
        let mut list_size = 0usize;
        let mut too_large = false;
        let mut fields_seen = false;
        while let Some(b) = cur.peek() {
            let (name, value) = if b & 0x80 != 0 {
                let index = cur.int(7)?;
                self.entry(index)?
            } else if b & 0xc0 == 0x40 {
                let (name, value) = self.literal(&mut cur, 6)?;
                self.table.insert(name.clone(), value.clone());
                (name, value)
            } else if b & 0xe0 == 0x20 {
                if fields_seen {
                    return Err(DecodeError::Compression("table size update after a field"));
                }
                let size = cur.int(5)?;
                if size > self.max_allowed {
                    return Err(DecodeError::Compression("table size update above SETTINGS_HEADER_TABLE_SIZE"));
                }
                self.table.set_max_size(size);
                continue;
            } else {
                // 0000xxxx without indexing, 0001xxxx never indexed.
                self.literal(&mut cur, 4)?
            };
            fields_seen = true;
            list_size += name.len() + value.len() + ENTRY_OVERHEAD;
            if list_size > self.max_list_size {
                too_large = true;
                if list_size / FAR_OVER > self.max_list_size {
                    out.clear();
                    return Err(DecodeError::ListFarTooLarge);
                }
            }
            if !too_large {
                out.push((name, value));
            }
        }
        if too_large {
            out.clear();
            return Err(DecodeError::ListTooLarge);
        }
        Ok(())
    }

    fn literal(&self, cur: &mut Cursor<'_>, prefix_bits: u8) -> Result<(Bytes, Bytes), DecodeError> {
        let index = cur.int(prefix_bits)?;
        let name = if index == 0 { cur.string()? } else { self.entry(index)?.0 };
        let value = cur.string()?;
        Ok((name, value))
    }
}
