//! Records of the log store and their encodings: a validated push ([`Batch`]), its
//! write-ahead-log record (LZ4-compressed), a stream's record (labels and the position of the
//! last entry that reached a chunk) and a chunk's metadata.

use std::sync::Arc;

use crate::chunk::{CorruptChunk, get_str, get_uvarint, put_str, put_uvarint};
use crate::labels::LabelSet;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Unix nanoseconds.
    pub ts: i64,
    /// The line.
    pub line: String,
    /// Structured metadata (not indexed).
    pub metadata: Vec<(String, String)>,
}

/// A stream's entries within a batch.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    /// The stream's labels.
    pub labels: Arc<LabelSet>,
    /// Its fingerprint.
    pub fp: u64,
    /// Entries in push order.
    pub entries: Vec<LogEntry>,
}

/// A validated push of one tenant: what one write-ahead-log record holds.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The tenant.
    pub tenant: String,
    /// The streams, each at most once.
    pub streams: Vec<StreamBatch>,
}

const WAL_FORMAT: u8 = 1;

impl Batch {
    /// Returns the number of entries.
    pub fn entries(&self) -> usize {
        self.streams.iter().map(|s| s.entries.len()).sum()
    }

    /// Returns the write-ahead-log record: the batch encoded and LZ4-compressed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.streams.iter().map(|s| s.entries.iter().map(|e| e.line.len() + 12).sum::<usize>()).sum::<usize>(),
        );
        out.push(WAL_FORMAT);
        put_str(&mut out, &self.tenant);
        put_uvarint(&mut out, self.streams.len() as u64);
        for s in &self.streams {
            put_str(&mut out, &s.labels.to_string());
            put_uvarint(&mut out, s.entries.len() as u64);
            for e in &s.entries {
                put_uvarint(&mut out, e.ts as u64);
                put_str(&mut out, &e.line);
                put_uvarint(&mut out, e.metadata.len() as u64);
                for (k, v) in &e.metadata {
                    put_str(&mut out, k);
                    put_str(&mut out, v);
                }
            }
        }
        lz4_flex::compress_prepend_size(&out)
    }

    /// Decodes [`Batch::encode`]'s output.
    pub fn decode(b: &[u8]) -> Result<Batch, CorruptChunk> {
        let raw = lz4_flex::decompress_size_prepended(b).map_err(|_| CorruptChunk("wal lz4"))?;
        let b = raw.as_slice();
        if b.first() != Some(&WAL_FORMAT) {
            return Err(CorruptChunk("unknown wal format"));
        }
        let mut pos = 1;
        let tenant = get_str(b, &mut pos)?.to_string();
        let n = get_uvarint(b, &mut pos)?;
        let mut streams = Vec::new();
        for _ in 0..n {
            let labels = LabelSet::parse(get_str(b, &mut pos)?).map_err(|_| CorruptChunk("wal labels"))?;
            let count = get_uvarint(b, &mut pos)? as usize;
            let mut entries = Vec::with_capacity(count.min(b.len()));
            for _ in 0..count {
                let ts = get_uvarint(b, &mut pos)? as i64;
                let line = get_str(b, &mut pos)?.to_string();
                let m = get_uvarint(b, &mut pos)?;
                let mut metadata = Vec::new();
                for _ in 0..m {
                    let k = get_str(b, &mut pos)?.to_string();
                    let v = get_str(b, &mut pos)?.to_string();
                    metadata.push((k, v));
                }
                entries.push(LogEntry { ts, line, metadata });
            }
            let fp = labels.fingerprint();
            streams.push(StreamBatch { labels: Arc::new(labels), fp, entries });
        }
        Ok(Batch { tenant, streams })
    }
}

/// Where an entry came from: its write-ahead-log record and its index among that record's
/// entries of the same stream. Entries of a stream reach chunks in position order, so a stream
/// remembers the last position stored in a chunk, and replay skips everything up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// The record's sequence (from 1; 0 = nothing).
    pub seq: u64,
    /// The entry's index within the record's entries of the stream.
    pub idx: u32,
}

/// A stream's stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Loki's label string.
    pub labels: String,
    /// The last entry that reached a chunk.
    pub persisted: Position,
    /// Id for the stream's next chunk.
    pub next_chunk: u64,
}

impl StreamRecord {
    /// Returns the stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![1];
        put_str(&mut out, &self.labels);
        put_uvarint(&mut out, self.persisted.seq);
        put_uvarint(&mut out, u64::from(self.persisted.idx));
        put_uvarint(&mut out, self.next_chunk);
        out
    }

    /// Decodes [`StreamRecord::encode`]'s output.
    pub fn decode(b: &[u8]) -> Result<StreamRecord, CorruptChunk> {
        if b.first() != Some(&1) {
            return Err(CorruptChunk("stream record format"));
        }
        let mut pos = 1;
        let labels = get_str(b, &mut pos)?.to_string();
        let seq = get_uvarint(b, &mut pos)?;
        let idx = u32::try_from(get_uvarint(b, &mut pos)?).map_err(|_| CorruptChunk("position"))?;
        let next_chunk = get_uvarint(b, &mut pos)?;
        Ok(StreamRecord { labels, persisted: Position { seq, idx }, next_chunk })
    }
}

/// What is known of a stored chunk without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// The chunk's id within its stream.
    pub id: u64,
    /// Oldest entry, unix ns.
    pub min_ts: i64,
    /// Newest entry, unix ns.
    pub max_ts: i64,
    /// Entries.
    pub count: u32,
    /// Uncompressed line bytes.
    pub raw_bytes: u64,
    /// Stored bytes (data + bloom).
    pub stored_bytes: u64,
}

impl ChunkMeta {
    /// Returns the stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![1];
        for v in
            [self.id, self.min_ts as u64, self.max_ts as u64, u64::from(self.count), self.raw_bytes, self.stored_bytes]
        {
            put_uvarint(&mut out, v);
        }
        out
    }

    /// Decodes [`ChunkMeta::encode`]'s output.
    pub fn decode(b: &[u8]) -> Result<ChunkMeta, CorruptChunk> {
        if b.first() != Some(&1) {
            return Err(CorruptChunk("chunk meta format"));
        }
        let mut pos = 1;
        let mut v = [0u64; 6];
        for x in &mut v {
            *x = get_uvarint(b, &mut pos)?;
        }
        Ok(ChunkMeta {
            id: v[0],
            min_ts: v[1] as i64,
            max_ts: v[2] as i64,
            count: u32::try_from(v[3]).map_err(|_| CorruptChunk("count"))?,
            raw_bytes: v[4],
            stored_bytes: v[5],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let labels = Arc::new(LabelSet::parse(r#"{app="x"}"#).unwrap());
        let fp = labels.fingerprint();
        let batch = Batch {
            tenant: "t1".into(),
            streams: vec![StreamBatch {
                labels,
                fp,
                entries: vec![
                    LogEntry { ts: 5, line: "a".into(), metadata: vec![] },
                    LogEntry {
                        ts: 1_700_000_000_000_000_000,
                        line: "b\nc".into(),
                        metadata: vec![("k".into(), "v".into())],
                    },
                ],
            }],
        };
        let back = Batch::decode(&batch.encode()).unwrap();
        assert_eq!(back.tenant, "t1");
        assert_eq!(back.streams[0].entries, batch.streams[0].entries);
        assert_eq!(back.streams[0].fp, fp);
        let r = StreamRecord { labels: "{a=\"b\"}".into(), persisted: Position { seq: 7, idx: 3 }, next_chunk: 2 };
        assert_eq!(StreamRecord::decode(&r.encode()).unwrap(), r);
        let m = ChunkMeta { id: 1, min_ts: 2, max_ts: 3, count: 4, raw_bytes: 5, stored_bytes: 6 };
        assert_eq!(ChunkMeta::decode(&m.encode()).unwrap(), m);
    }
}
