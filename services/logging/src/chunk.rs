//! Columnar blocks of log entries and their chunk encoding. A head chunk in memory and a
//! decompressed stored chunk are the same [`Columns`]: timestamps, line end offsets, the lines
//! joined by `\n` (so one `memmem` pass over the whole text finds literal terms, as ripgrep
//! does, and a term without `\n` can never match across two lines) and per-entry structured
//! metadata. A stored chunk is the columns LZ4-compressed, plus a [`Bloom`] of the text's 4-byte
//! grams that lets a `|= "term"` query skip chunks that cannot contain the term.

/// Why stored bytes could not be decoded (corruption or a format from the future).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct CorruptChunk(pub &'static str);

const FORMAT: u8 = 1;

/// A block of entries in columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns {
    /// Unix nanoseconds of each entry.
    pub ts: Vec<i64>,
    /// End offset in `text` of each line (exclusive); line `i` starts at `ends[i-1] + 1`.
    pub ends: Vec<u32>,
    /// Lines joined by `\n`.
    pub text: Vec<u8>,
    /// Encoded metadata of every entry, back to back.
    pub meta: Vec<u8>,
    /// End offset in `meta` of each entry's metadata.
    pub meta_ends: Vec<u32>,
}

/// Appends `v` as a LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*pos`.
pub fn get_uvarint(b: &[u8], pos: &mut usize) -> Result<u64, CorruptChunk> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos).ok_or(CorruptChunk("truncated varint"))?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err(CorruptChunk("varint too long"));
        }
    }
}

/// Appends a length-prefixed string.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Reads a length-prefixed string.
pub fn get_str<'a>(b: &'a [u8], pos: &mut usize) -> Result<&'a str, CorruptChunk> {
    let n = get_uvarint(b, pos)? as usize;
    let end = pos.checked_add(n).filter(|e| *e <= b.len()).ok_or(CorruptChunk("truncated string"))?;
    let s = std::str::from_utf8(&b[*pos..end]).map_err(|_| CorruptChunk("string not UTF-8"))?;
    *pos = end;
    Ok(s)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

impl Columns {
    /// Returns the number of entries.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Returns true when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Returns the bytes of the lines (without separators).
    pub fn line_bytes(&self) -> usize {
        self.text.len().saturating_sub(self.len().saturating_sub(1))
    }

    /// Appends one entry.
    pub fn push(&mut self, ts: i64, line: &str, metadata: &[(String, String)]) {
        if !self.ts.is_empty() {
            self.text.push(b'\n');
        }
        self.text.extend_from_slice(line.as_bytes());
        self.ts.push(ts);
        self.ends.push(self.text.len() as u32);
        if !metadata.is_empty() {
            put_uvarint(&mut self.meta, metadata.len() as u64);
            for (n, v) in metadata {
                put_str(&mut self.meta, n);
                put_str(&mut self.meta, v);
            }
        }
        self.meta_ends.push(self.meta.len() as u32);
    }

    /// Returns the start offset of line `i` in `text`.
    pub fn line_start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] as usize + 1 }
    }

    /// Returns line `i`. The text was built from `&str` lines, so it is valid UTF-8 at line
    /// boundaries; a corrupt chunk yields lossy text rather than a panic.
    pub fn line(&self, i: usize) -> &[u8] {
        &self.text[self.line_start(i)..self.ends[i] as usize]
    }

    /// Returns the structured metadata of entry `i`.
    pub fn metadata(&self, i: usize) -> Vec<(String, String)> {
        let start = if i == 0 { 0 } else { self.meta_ends[i - 1] as usize };
        let end = self.meta_ends[i] as usize;
        if start == end {
            return Vec::new();
        }
        let b = &self.meta[start..end];
        let mut pos = 0;
        let mut out = Vec::new();
        if let Ok(n) = get_uvarint(b, &mut pos) {
            for _ in 0..n {
                match (get_str(b, &mut pos), get_str(b, &mut pos)) {
                    (Ok(k), Ok(v)) => out.push((k.to_string(), v.to_string())),
                    _ => break,
                }
            }
        }
        out
    }

    /// Returns true when the entries are in timestamp order.
    pub fn is_sorted(&self) -> bool {
        self.ts.is_sorted()
    }

    /// Returns the entries reordered by timestamp (stable), as a chunk stores them.
    pub fn sorted(&self) -> Columns {
        if self.is_sorted() {
            return self.clone();
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| self.ts[i]);
        let mut out = Columns::default();
        for i in order {
            let line = String::from_utf8_lossy(self.line(i));
            out.push(self.ts[i], &line, &self.metadata(i));
        }
        out
    }

    /// Returns the uncompressed encoding: the text first, then the columns, then a footer
    /// (text length, columns length, format), so that decoding keeps the decompressed buffer
    /// as the text without copying it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + self.len() * 4 + self.meta.len() + 16);
        out.extend_from_slice(&self.text);
        let cols_start = out.len();
        put_uvarint(&mut out, self.len() as u64);
        let mut prev = 0i64;
        for &t in &self.ts {
            put_uvarint(&mut out, zigzag(t.wrapping_sub(prev)));
            prev = t;
        }
        let mut prev_end = 0u32;
        for (i, &e) in self.ends.iter().enumerate() {
            let start = if i == 0 { 0 } else { prev_end + 1 };
            put_uvarint(&mut out, u64::from(e - start));
            prev_end = e;
        }
        let mut prev_meta = 0u32;
        for &e in &self.meta_ends {
            put_uvarint(&mut out, u64::from(e - prev_meta));
            prev_meta = e;
        }
        put_uvarint(&mut out, self.meta.len() as u64);
        out.extend_from_slice(&self.meta);
        let cols_len = out.len() - cols_start;
        out.extend_from_slice(&(self.text.len() as u32).to_le_bytes());
        out.extend_from_slice(&(cols_len as u32).to_le_bytes());
        out.push(FORMAT);
        out
    }

    /// Decodes [`Columns::encode`]'s output.
    pub fn decode(b: &[u8]) -> Result<Columns, CorruptChunk> {
        Columns::decode_owned(b.to_vec())
    }

    /// Decodes [`Columns::encode`]'s output, keeping the buffer as the text.
    pub fn decode_owned(mut raw: Vec<u8>) -> Result<Columns, CorruptChunk> {
        let len = raw.len();
        if len < 9 || raw[len - 1] != FORMAT {
            return Err(CorruptChunk("unknown block format"));
        }
        let u32_at = |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]) as usize;
        let (text_len, cols_len) = (u32_at(len - 9), u32_at(len - 5));
        if text_len.checked_add(cols_len) != Some(len - 9) {
            return Err(CorruptChunk("block lengths"));
        }
        let b = &raw[text_len..len - 9];
        let mut pos = 0;
        let n = get_uvarint(b, &mut pos)? as usize;
        if n > b.len() {
            return Err(CorruptChunk("entry count"));
        }
        let mut c = Columns {
            ts: Vec::with_capacity(n),
            ends: Vec::with_capacity(n),
            meta_ends: Vec::with_capacity(n),
            ..Columns::default()
        };
        let mut prev = 0i64;
        for _ in 0..n {
            prev = prev.wrapping_add(unzigzag(get_uvarint(b, &mut pos)?));
            c.ts.push(prev);
        }
        let mut end = 0u64;
        for i in 0..n {
            let len = get_uvarint(b, &mut pos)?;
            end = if i == 0 { len } else { end + 1 + len };
            c.ends.push(u32::try_from(end).map_err(|_| CorruptChunk("line offsets"))?);
        }
        let mut mend = 0u64;
        for _ in 0..n {
            mend += get_uvarint(b, &mut pos)?;
            c.meta_ends.push(u32::try_from(mend).map_err(|_| CorruptChunk("metadata offsets"))?);
        }
        let mlen = get_uvarint(b, &mut pos)? as usize;
        let mstop = pos.checked_add(mlen).filter(|e| *e <= b.len()).ok_or(CorruptChunk("metadata"))?;
        c.meta = b[pos..mstop].to_vec();
        if mend as usize != c.meta.len() || end as usize != text_len {
            return Err(CorruptChunk("column lengths"));
        }
        raw.truncate(text_len);
        c.text = raw;
        Ok(c)
    }

    /// Returns the LZ4-compressed encoding.
    pub fn compress(&self) -> Vec<u8> {
        lz4_flex::compress_prepend_size(&self.encode())
    }

    /// Decodes [`Columns::compress`]'s output.
    pub fn decompress(b: &[u8]) -> Result<Columns, CorruptChunk> {
        RawBlock::decompress(b)?.decode()
    }
}

/// A stored chunk decompressed but with its columns not decoded yet: a scan can search the
/// text first and decode timestamps and line offsets only when the text holds a match.
#[derive(Debug)]
pub struct RawBlock {
    /// The decompressed block in its first `len` bytes; past them, whatever an earlier, larger
    /// block left in a reused buffer.
    raw: Vec<u8>,
    len: usize,
    text_len: usize,
}

impl RawBlock {
    /// Decompresses [`Columns::compress`]'s output and checks its footer.
    pub fn decompress(b: &[u8]) -> Result<RawBlock, CorruptChunk> {
        RawBlock::decompress_in(b, Vec::new())
    }

    /// Like [`RawBlock::decompress`], into `buf` (the buffer of an earlier block, from
    /// [`RawBlock::into_buffer`]): a cold scan decompresses chunk after chunk into the same few
    /// buffers, whose pages are mapped and in cache already, where a fresh ~1 MiB allocation per
    /// chunk is faulted in and zeroed by the kernel page by page (under perf, page zeroing was a
    /// fifth of a 10M-line cold scan's CPU time, which instruction counts do not show; what is
    /// left of it comes from the store's reads of the compressed values).
    ///
    /// The decoder is liblz4's (the `lz4` crate): the same LZ4 block format as lz4_flex, which
    /// still compresses chunks, so every chunk reads as before; on chunk data it retires 16-17%
    /// fewer instructions than lz4_flex's fast decoder and runs 15-30% faster (both decoding the
    /// generators' 1 MiB chunks into a reused buffer; in the benchmark's cold scan, 240 -> 199
    /// instructions per line). `LZ4_decompress_safe` is made for
    /// untrusted input: a corrupt block is an error, never a read or write out of bounds.
    pub fn decompress_in(b: &[u8], mut buf: Vec<u8>) -> Result<RawBlock, CorruptChunk> {
        let (&prefix, block) = b.split_first_chunk::<4>().ok_or(CorruptChunk("lz4 size"))?;
        let len = u32::from_le_bytes(prefix) as usize;
        // An LZ4 block expands at most ~255 times (a match of 255 bytes costs one more input
        // byte): a larger size is corruption, refused before it becomes an allocation.
        if block.len() > i32::MAX as usize || len > block.len().saturating_mul(255).min(i32::MAX as usize) {
            return Err(CorruptChunk("lz4 size"));
        }
        // Grown, never shrunk nor cleared: the decoder writes exactly the block's `len` bytes
        // (checked below), and nothing reads past them.
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let n = lz4::block::decompress_to_buffer(block, Some(len as i32), &mut buf[..len])
            .map_err(|_| CorruptChunk("lz4"))?;
        if n != len || len < 9 || buf[len - 1] != FORMAT {
            return Err(CorruptChunk(if n != len { "lz4 size" } else { "unknown block format" }));
        }
        let text_len = u32::from_le_bytes([buf[len - 9], buf[len - 8], buf[len - 7], buf[len - 6]]) as usize;
        if text_len > len - 9 {
            return Err(CorruptChunk("block lengths"));
        }
        Ok(RawBlock { raw: buf, len, text_len })
    }

    /// Returns the lines joined by `\n`.
    pub fn text(&self) -> &[u8] {
        &self.raw[..self.text_len]
    }

    /// Decodes the columns, keeping the buffer as the text.
    pub fn decode(mut self) -> Result<Columns, CorruptChunk> {
        self.raw.truncate(self.len);
        Columns::decode_owned(self.raw)
    }

    /// Returns the buffer, for [`RawBlock::decompress_in`] to reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.raw
    }
}

/// A bloom filter of the 4-byte grams of a chunk's text. A literal term of 4 bytes or more can
/// only occur in the text when every one of its grams is in the filter.
///
/// Two hashings exist, told apart by the stored form. Version 2 (written since the third pass on
/// issue 22) hashes each gram with one multiplication and sets its two bits in the same 64-bit
/// word (a blocked bloom filter: one word to update per text byte, where version 1 multiplied
/// twice and updated two words). Version 1 filters of chunks stored before stay readable and
/// are queried with their own hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    bits: Vec<u64>,
    log2: u32,
    version: u8,
}

const GRAM: usize = 4;

/// Bits per filter of a version 2 filter: at least 4 Ki, at most 4 Mi (its word index and its
/// two bit positions come from disjoint bits of one 64-bit hash).
const V2_MIN_LOG2: u32 = 12;
const V2_MAX_LOG2: u32 = 22;
/// The first byte of a version 2 filter's stored form (a version 1 form starts with its log2,
/// 6 to 30).
const V2_TAG: u8 = 0xB2;

fn gram_hashes(g: u32, log2: u32) -> (usize, usize) {
    let a = u64::from(g).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let b = (u64::from(g) ^ 0x5bd1_e995).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    ((a >> (64 - log2)) as usize, (b >> (64 - log2)) as usize)
}

/// A version 2 gram's word (from the hash's top 16 bits; the caller keeps the low `log2 - 6` of
/// them) and the mask of its two bits (from hash bits 36-41 and 42-47, which every bit of the
/// gram reaches through the multiplication).
#[inline(always)]
fn gram_word(g: u32) -> (usize, u64) {
    let h = u64::from(g).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 48) as usize, (1u64 << ((h >> 36) & 63)) | (1u64 << ((h >> 42) & 63)))
}

impl Bloom {
    /// Builds the filter of `text`'s grams, sized at about half a bit per text byte (at least
    /// 4 Ki bits, at most 4 Mi bits), with the version 2 hashing.
    pub fn of(text: &[u8]) -> Bloom {
        let want = (text.len() / 2).clamp(1 << V2_MIN_LOG2, 1 << V2_MAX_LOG2);
        let log2 = usize::BITS - (want - 1).leading_zeros();
        let mut bits = vec![0u64; (1usize << log2) / 64];
        let words = bits.len() - 1;
        // One multiplication and one word update per text byte; the grams at `i..i + 4` come
        // from one unaligned 8-byte read.
        let mut set = |g: u32| {
            let (word, mask) = gram_word(g);
            bits[word & words] |= mask;
        };
        let mut i = 0;
        while let Some(w) = text.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
            let w = u64::from_le_bytes(*w);
            set(w as u32);
            set((w >> 8) as u32);
            set((w >> 16) as u32);
            set((w >> 24) as u32);
            i += 4;
        }
        for w in text[i..].windows(GRAM) {
            set(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
        Bloom { bits, log2, version: 2 }
    }

    /// Builds the filter with the version 1 hashing (two words per gram), as chunks written
    /// before version 2 carry (tests; comparisons).
    pub fn of_v1(text: &[u8]) -> Bloom {
        let want = (text.len() / 2).clamp(4096, 1 << 22);
        let log2 = usize::BITS - (want - 1).leading_zeros();
        let mut bits = vec![0u64; (1usize << log2) / 64];
        // One pass with the gram kept in a register (the bytes of `text[i-3..=i]`, first byte
        // lowest, as `u32::from_le_bytes` reads a window); a gram equal to the one before sets
        // the same bits again and is skipped.
        let mask = bits.len() - 1;
        let mut set = |g: u32| {
            let (a, b) = gram_hashes(g, log2);
            bits[(a >> 6) & mask] |= 1 << (a & 63);
            bits[(b >> 6) & mask] |= 1 << (b & 63);
        };
        if let Some(first) = text.first_chunk::<GRAM>() {
            let mut g = u32::from_le_bytes(*first);
            set(g);
            for &byte in &text[GRAM..] {
                let next = (g >> 8) | (u32::from(byte) << 24);
                if next != g {
                    set(next);
                }
                g = next;
            }
        }
        Bloom { bits, log2, version: 1 }
    }

    /// Returns false only when `term` certainly does not occur in the text (terms shorter than
    /// a gram are always possible).
    pub fn may_contain(&self, term: &[u8]) -> bool {
        term.windows(GRAM).all(|w| {
            let g = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            if self.version == 1 {
                let (a, b) = gram_hashes(g, self.log2);
                self.bits[a >> 6] & (1 << (a & 63)) != 0 && self.bits[b >> 6] & (1 << (b & 63)) != 0
            } else {
                let (word, mask) = gram_word(g);
                self.bits[word & (self.bits.len() - 1)] & mask == mask
            }
        })
    }

    /// Returns the size of the bits in bytes.
    pub fn bytes(&self) -> usize {
        self.bits.len() * 8
    }

    /// Returns the stored form (LZ4-compressed: a version 2 filter's tag, log2, and the bits).
    pub fn encode(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(self.bits.len() * 8 + 2);
        if self.version != 1 {
            raw.push(V2_TAG);
        }
        raw.push(self.log2 as u8);
        for w in &self.bits {
            raw.extend_from_slice(&w.to_le_bytes());
        }
        lz4_flex::compress_prepend_size(&raw)
    }

    /// Decodes [`Bloom::encode`]'s output (either version).
    pub fn decode(b: &[u8]) -> Result<Bloom, CorruptChunk> {
        let raw = lz4_flex::decompress_size_prepended(b).map_err(|_| CorruptChunk("bloom lz4"))?;
        let (version, rest) = match raw.split_first() {
            Some((&V2_TAG, rest)) => (2, rest),
            _ => (1, raw.as_slice()),
        };
        let (&log2, rest) = rest.split_first().ok_or(CorruptChunk("bloom"))?;
        let log2 = u32::from(log2);
        let sizes = if version == 1 { 6..=30 } else { V2_MIN_LOG2..=V2_MAX_LOG2 };
        if !sizes.contains(&log2) || rest.len() != (1usize << log2) / 8 {
            return Err(CorruptChunk("bloom size"));
        }
        let bits = rest
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(Bloom { bits, log2, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_and_sort() {
        let mut c = Columns::default();
        c.push(30, "third line", &[]);
        c.push(10, "first\nwith newline", &[("trace_id".into(), "abc".into())]);
        c.push(20, "", &[]);
        let back = Columns::decompress(&c.compress()).unwrap();
        assert_eq!(back, c);
        let s = c.sorted();
        assert_eq!(s.ts, vec![10, 20, 30]);
        assert_eq!(s.line(0), b"first\nwith newline");
        assert_eq!(s.line(1), b"");
        assert_eq!(s.metadata(0), vec![("trace_id".to_string(), "abc".to_string())]);
        assert!(s.metadata(1).is_empty());
        assert!(Columns::decode(&[9, 1]).is_err());
    }

    #[test]
    fn raw_blocks_reuse_buffers_and_refuse_corrupt_chunks() {
        let chunk = |n: usize| {
            let mut c = Columns::default();
            for (ts, line) in crate::generators::Generator::new(crate::generators::Format::Hdfs, 3, 0, 1000).take(n) {
                c.push(ts, &line, &[("k".into(), "v".into())]);
            }
            c
        };
        let (big, small) = (chunk(3000), chunk(10));
        // liblz4 reads what lz4_flex wrote (every stored chunk), into a buffer a larger chunk
        // left behind.
        let block = RawBlock::decompress_in(&big.compress(), Vec::new()).unwrap();
        assert_eq!(block.text(), big.text.as_slice());
        let block = RawBlock::decompress_in(&small.compress(), block.into_buffer()).unwrap();
        assert_eq!(block.text(), small.text.as_slice());
        assert_eq!(block.decode().unwrap(), small);
        assert_eq!(Columns::decompress(&big.compress()).unwrap(), big);
        // Corruption is an error whatever the buffer: truncated, flipped bytes, sizes that lie.
        let good = big.compress();
        let mut buf = Vec::new();
        for bad in [
            Vec::new(),
            good[..3].to_vec(),
            good[..good.len() / 2].to_vec(),
            [&u32::MAX.to_le_bytes()[..], &good[4..]].concat(),
            [&(u32::from_le_bytes(good[..4].try_into().unwrap()) - 1).to_le_bytes()[..], &good[4..]].concat(),
            [&(u32::from_le_bytes(good[..4].try_into().unwrap()) + 1).to_le_bytes()[..], &good[4..]].concat(),
        ] {
            assert!(RawBlock::decompress_in(&bad, std::mem::take(&mut buf)).is_err());
        }
        let mut rng = crate::generators::Rng::new(9);
        for _ in 0..2000 {
            let mut bad = good.clone();
            for _ in 0..1 + rng.below(4) {
                let at = 4 + rng.below(bad.len() as u64 - 4) as usize;
                bad[at] ^= 1 << rng.below(8);
            }
            // Either an error or a block whose footer checks out; never a panic.
            if let Ok(block) = RawBlock::decompress_in(&bad, std::mem::take(&mut buf)) {
                let _ = block.text().len();
                buf = block.into_buffer();
            }
        }
    }

    #[test]
    fn bloom_sets_the_bits_of_every_window() {
        let mut text = b"aaaaaaaa 2026-01-01 sshd[123]: Failed password\nxyz".to_vec();
        text.extend((0..5000u32).flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 7).to_le_bytes()));
        for len in [0, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, text.len() - 1, text.len()] {
            let b = Bloom::of_v1(&text[..len]);
            let mut want = vec![0u64; b.bits.len()];
            for w in text[..len].windows(GRAM) {
                let (x, y) = gram_hashes(u32::from_le_bytes([w[0], w[1], w[2], w[3]]), b.log2);
                want[x >> 6] |= 1 << (x & 63);
                want[y >> 6] |= 1 << (y & 63);
            }
            assert_eq!(b.bits, want, "{len}");
            let b2 = Bloom::of(&text[..len]);
            let mut want = vec![0u64; b2.bits.len()];
            for w in text[..len].windows(GRAM) {
                let (word, mask) = gram_word(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
                let words = want.len() - 1;
                want[word & words] |= mask;
            }
            assert_eq!(b2.bits, want, "{len}");
        }
    }

    #[test]
    fn bloom_versions_round_trip_and_answer_alike() {
        let text = crate::generators::Generator::new(crate::generators::Format::OpenSsh, 7, 0, 1_000_000)
            .take(4000)
            .into_iter()
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("\n");
        let v1 = Bloom::decode(&Bloom::of_v1(text.as_bytes()).encode()).unwrap();
        let v2 = Bloom::decode(&Bloom::of(text.as_bytes()).encode()).unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert_eq!(v1, Bloom::of_v1(text.as_bytes()));
        assert_eq!(v2, Bloom::of(text.as_bytes()));
        // Every term of the text is possible in both; absent terms are mostly ruled out by both.
        for line in text.lines().take(200) {
            for term in line.split(' ').filter(|t| t.len() >= 4) {
                assert!(v1.may_contain(term.as_bytes()) && v2.may_contain(term.as_bytes()), "{term}");
            }
        }
        let absent: Vec<String> = (0..2000u32).map(|i| format!("q{:x}z{}", i.wrapping_mul(2_654_435_761), i)).collect();
        let fp = |b: &Bloom| absent.iter().filter(|t| b.may_contain(t.as_bytes())).count();
        assert!(fp(&v1) < 100 && fp(&v2) < 100, "false positives: v1 {}, v2 {}", fp(&v1), fp(&v2));
    }

    #[test]
    fn bloom_has_no_false_negatives() {
        let text = b"2026-01-01 sshd[123]: Failed password for root from 10.0.0.1\nblock blk_123 replicated";
        let bloom = Bloom::decode(&Bloom::of(text).encode()).unwrap();
        for term in ["Failed password", "blk_123", "sshd[", "10.0.0.1", "ab"] {
            assert!(bloom.may_contain(term.as_bytes()), "{term}");
        }
        let absent =
            ["zzzzqqqq", "Accepted publickey", "XYZW1234"].iter().filter(|t| bloom.may_contain(t.as_bytes())).count();
        assert!(absent <= 1);
    }
}
