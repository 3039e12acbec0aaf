//! Every key the log store writes, order-preserving (big-endian hex numbers). Everything of a
//! tenant lives under `logging/t/<tenant>/`, so tenants are isolated by prefix; the write-ahead
//! log is the store's own journal of acknowledged pushes, shared by all tenants (each record
//! names its tenant) and deleted as its lines reach chunks.

/// Prefix of the tenant registry (`logging/tenants/<tenant>` -> empty).
pub const TENANTS: &str = "logging/tenants/";

/// A tenant's registry entry.
pub fn tenant(tenant: &str) -> String {
    format!("{TENANTS}{tenant}")
}

/// Prefix of one engine instance's write-ahead log (each instance writes its own, so two
/// engines on one store never number records alike).
pub fn wal_prefix(instance: &str) -> String {
    format!("logging/wal/{instance}/")
}

/// A write-ahead-log record by its sequence.
pub fn wal(instance: &str, seq: u64) -> String {
    format!("logging/wal/{instance}/{seq:016x}")
}

/// Returns the sequence of a write-ahead-log key.
pub fn wal_seq(instance: &str, key: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(key).ok()?.strip_prefix(&wal_prefix(instance))?;
    u64::from_str_radix(s, 16).ok()
}

/// Everything of a tenant.
pub fn tenant_root(tenant: &str) -> String {
    format!("logging/t/{tenant}/")
}

/// Prefix of a tenant's stream records (`s/<fp>` -> labels and persisted position).
pub fn streams(tenant: &str) -> String {
    format!("logging/t/{tenant}/s/")
}

/// A stream's record.
pub fn stream(tenant: &str, fp: u64) -> String {
    format!("logging/t/{tenant}/s/{fp:016x}")
}

/// Prefix of a tenant's label index.
pub fn label_names(tenant: &str) -> String {
    format!("logging/t/{tenant}/i/")
}

/// Prefix of the index entries of one label name.
pub fn label_values(tenant: &str, name: &str) -> String {
    format!("logging/t/{tenant}/i/{name}\0")
}

/// A label index entry: label name/value -> stream (`i/<name>\0<value>\0<fp>` -> empty).
pub fn label(tenant: &str, name: &str, value: &str, fp: u64) -> String {
    format!("logging/t/{tenant}/i/{name}\0{value}\0{fp:016x}")
}

/// Prefix of a tenant's chunk metadata (`m/<fp>/<min_ts>/<id>`), by stream then time.
pub fn chunk_metas(tenant: &str) -> String {
    format!("logging/t/{tenant}/m/")
}

/// A chunk's metadata (time range, counts).
pub fn chunk_meta(tenant: &str, fp: u64, min_ts: i64, id: u64) -> String {
    format!("logging/t/{tenant}/m/{fp:016x}/{:016x}/{id:016x}", min_ts as u64)
}

/// A chunk's compressed entries.
pub fn chunk_data(tenant: &str, fp: u64, min_ts: i64, id: u64) -> String {
    format!("logging/t/{tenant}/c/{fp:016x}/{:016x}/{id:016x}", min_ts as u64)
}

/// A chunk's bloom filter.
pub fn chunk_bloom(tenant: &str, fp: u64, min_ts: i64, id: u64) -> String {
    format!("logging/t/{tenant}/b/{fp:016x}/{:016x}/{id:016x}", min_ts as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_by_number_and_parse_back() {
        assert!(wal("a", 9) < wal("a", 10) && wal("a", 255) < wal("a", 256));
        assert_eq!(wal_seq("a", wal("a", 12345).as_bytes()), Some(12345));
        assert_eq!(wal_seq("b", wal("a", 1).as_bytes()), None);
        assert!(chunk_meta("t", 1, 9, 0) < chunk_meta("t", 1, 10, 0));
        assert!(!stream("a", 1).starts_with(&tenant_root("ab")));
    }
}
