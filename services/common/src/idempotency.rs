//! Idempotency keys (DESIGN "Service conventions"): every call that creates something or moves
//! money or stock carries a client-chosen `request_id` (1-64 characters). The same
//! `request_id` with the same request returns the first answer, also while the first call is
//! still running; with a different request it is ALREADY_EXISTS.
//!
//! The answer is recorded under `<service>/requests/<request_id>` together with a
//! [`Fingerprint`] of the request (SHA-256 of its prost encoding, or a digest the caller
//! computes) and kept for a time-to-live (24 h by default). Two ways to use it:
//!
//! - **In one transaction** ([`Idempotency::transact`], or [`Idempotency::run_in_txn`] inside a
//!   service's own [`transact`]): the record is read through the [`Txn`] and written in the same
//!   commit as the operation's effects. Either both are committed or neither; a concurrent
//!   duplicate conflicts on the record's key, retries, finds the record and returns the stored
//!   answer without running the operation again. This is the mode for anything that only
//!   writes to the store.
//! - **With a claim** ([`Idempotency::claim`]), for long operations that call other services
//!   (a checkout saga calling payments) and so cannot sit inside one store transaction: a
//!   PENDING record is created if absent, with a lease. A duplicate that arrives meanwhile
//!   watches the record and returns the answer once the owner completes it (bounded by its own
//!   deadline). A claim whose owner died (its lease ran out) is taken over by the next
//!   duplicate; operations run under a claim must therefore themselves be safe to re-run from
//!   the start (pass the same `request_id` on to the services they call). The owner finishes
//!   with [`ClaimGuard::complete`] (or [`ClaimGuard::complete_in`] to commit the answer with
//!   its last writes), or gives the claim up with [`ClaimGuard::release`] when it failed.
//!
//! Leases are judged by the wall clocks of the replicas: keep the lease far above their skew.
//! The record adds one condition and one put to the operation's transaction.
//!
//! An operation that fails records nothing: a retry with the same `request_id` runs it again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use meshwork_storage::{Condition, DynStore, EventKind, Mutation, StoreError, Txn, transact};
use prost::Message;

use crate::clock::{Clock, SystemClock};
use crate::error::{ServiceError, ServiceResult};

/// How long a recorded answer is kept by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a claim holds by default before another call may take it over.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Most characters in a `request_id`.
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// The proto field name used in error messages.
const FIELD: &str = "request_id";

/// Record layout version.
const FORMAT: u8 = 1;
const STATE_PENDING: u8 = 0;
const STATE_DONE: u8 = 1;

/// Checks a `request_id`: 1 to 64 characters of `[A-Za-z0-9._:-]` (it becomes part of a
/// store key, and a saga derives its steps' ids from it with `:`). Fails with INVALID_ARGUMENT
/// naming the field.
pub fn validate_request_id(request_id: &str) -> ServiceResult<()> {
    let chars = request_id.chars().count();
    if chars == 0 {
        return Err(ServiceError::invalid(
            FIELD,
            "is required (1 to 64 characters of [A-Za-z0-9._:-], chosen by the client)",
        ));
    }
    if chars > MAX_REQUEST_ID_CHARS {
        return Err(ServiceError::invalid(FIELD, format!("must be at most 64 characters, got {chars}")));
    }
    if !request_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')) {
        return Err(ServiceError::invalid(FIELD, "must be characters of [A-Za-z0-9._:-]"));
    }
    Ok(())
}

/// A SHA-256 digest that identifies a request's content, so that a reused `request_id` with a
/// different request is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Returns the SHA-256 of the prost encoding of `request`.
    pub fn of<M: Message>(request: &M) -> Self {
        Fingerprint::digest(&request.encode_to_vec())
    }

    /// Returns the SHA-256 of `bytes` (for callers that fingerprint a canonical form of their
    /// own, e.g. without fields that may legitimately differ between retries).
    pub fn digest(bytes: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }
}

impl<M: Message> From<&M> for Fingerprint {
    fn from(request: &M) -> Self {
        Fingerprint::of(request)
    }
}

/// What is stored under a request's key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    /// A claim is running; it may be taken over once `lease_until_ms` has passed.
    Pending { fingerprint: Fingerprint, lease_until_ms: i64 },
    /// The call finished with this (prost-encoded) answer.
    Done { fingerprint: Fingerprint, response: Vec<u8> },
}

impl Record {
    fn fingerprint(&self) -> Fingerprint {
        match self {
            Record::Pending { fingerprint, .. } | Record::Done { fingerprint, .. } => *fingerprint,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(34 + 8);
        out.push(FORMAT);
        match self {
            Record::Pending { fingerprint, lease_until_ms } => {
                out.push(STATE_PENDING);
                out.extend_from_slice(&fingerprint.0);
                out.extend_from_slice(&lease_until_ms.to_be_bytes());
            }
            Record::Done { fingerprint, response } => {
                out.push(STATE_DONE);
                out.extend_from_slice(&fingerprint.0);
                out.extend_from_slice(response);
            }
        }
        out
    }

    fn decode(raw: &[u8]) -> ServiceResult<Record> {
        let bad = || ServiceError::Internal("undecodable idempotency record".into());
        if raw.len() < 34 || raw[0] != FORMAT {
            return Err(bad());
        }
        let mut fp = [0u8; 32];
        fp.copy_from_slice(&raw[2..34]);
        let fingerprint = Fingerprint(fp);
        match raw[1] {
            STATE_PENDING => {
                let lease: [u8; 8] = raw[34..].try_into().map_err(|_| bad())?;
                Ok(Record::Pending { fingerprint, lease_until_ms: i64::from_be_bytes(lease) })
            }
            STATE_DONE => Ok(Record::Done { fingerprint, response: raw[34..].to_vec() }),
            _ => Err(bad()),
        }
    }
}

/// Returns the error of a `request_id` reused for a different request.
fn reused(request_id: &str) -> ServiceError {
    ServiceError::AlreadyExists { what: format!("request_id {request_id:?} (with a different request)") }
}

fn decode_response<Resp: Message + Default>(bytes: &[u8]) -> ServiceResult<Resp> {
    Resp::decode(bytes).map_err(|e| ServiceError::Internal(format!("undecodable recorded answer: {e}")))
}

/// The idempotency records of one service. Cheap to clone.
#[derive(Clone)]
pub struct Idempotency {
    store: DynStore,
    prefix: Arc<str>,
    ttl: Duration,
    lease: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Idempotency {
    /// Returns the records of `service` (its key prefix, e.g. `catalog`) on `store`, with the
    /// default time-to-live, lease and the system clock.
    pub fn new(store: DynStore, service: &str) -> Self {
        Idempotency {
            store,
            prefix: format!("{service}/requests/").into(),
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            clock: Arc::new(SystemClock),
        }
    }

    /// Returns these records kept for `ttl` instead (at least one second).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// Returns these records with claims leased for `lease` (at least one millisecond).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(1));
        self
    }

    /// Returns these records judging lease expiry by `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Returns the store key of `request_id`'s record.
    pub fn key(&self, request_id: &str) -> Vec<u8> {
        format!("{}{request_id}", self.prefix).into_bytes()
    }

    /// Runs `effect` inside the caller's transaction `tx`, unless `request_id` has been answered
    /// already: then returns the recorded answer without awaiting `effect` (a future does
    /// nothing until awaited, so its writes never happen). Otherwise it awaits `effect` and
    /// buffers the record of its answer in `tx`, to be committed with the effect's own writes.
    ///
    /// Use it inside [`transact`], so that a conflict (a concurrent duplicate committed first)
    /// reruns the body and finds the record:
    /// `transact(&store, |tx| Box::pin(async move { idem.run_in_txn(&tx, id, &req, async { ...; Ok(answer) }).await }))`.
    /// Fails with INVALID_ARGUMENT for a bad `request_id` and ALREADY_EXISTS when it was used
    /// for a different request.
    pub async fn run_in_txn<Resp, Fut>(
        &self,
        tx: &Txn,
        request_id: &str,
        fingerprint: impl Into<Fingerprint>,
        effect: Fut,
    ) -> ServiceResult<Resp>
    where
        Resp: Message + Default,
        Fut: Future<Output = ServiceResult<Resp>>,
    {
        validate_request_id(request_id)?;
        let fingerprint = fingerprint.into();
        let key = self.key(request_id);
        if let Some(found) = tx.get(&key).await? {
            return match Record::decode(&found.value)? {
                record if record.fingerprint() != fingerprint => Err(reused(request_id)),
                Record::Done { response, .. } => decode_response(&response),
                // Another call holds a claim on this id (the claim mode): it is still running.
                Record::Pending { .. } => {
                    Err(ServiceError::Aborted(format!("request_id {request_id:?} is still being processed; retry")))
                }
            };
        }
        let answer = effect.await?;
        let record = Record::Done { fingerprint, response: answer.encode_to_vec() };
        tx.put_with_ttl(key, record.encode(), self.ttl);
        Ok(answer)
    }

    /// Runs `body` as a read-modify-write transaction ([`transact`]) whose commit also records
    /// its answer under `request_id`; a repeated call returns the recorded answer instead of
    /// running `body` (see [`Idempotency::run_in_txn`]). `body` has the shape of a
    /// [`transact`] body: `|tx| Box::pin(async move { ...; Ok(answer) })`.
    pub async fn transact<'env, Resp, F>(
        &self,
        request_id: &str,
        fingerprint: impl Into<Fingerprint>,
        mut body: F,
    ) -> ServiceResult<Resp>
    where
        Resp: Message + Default + 'env,
        F: FnMut(Txn) -> BoxFuture<'env, ServiceResult<Resp>>,
    {
        validate_request_id(request_id)?;
        let fingerprint = fingerprint.into();
        transact(&self.store, |tx| {
            // Built here, awaited (or dropped unpolled) by `run_in_txn`.
            let effect = body(tx.clone());
            let this = self.clone();
            let request_id = request_id.to_string();
            Box::pin(async move { this.run_in_txn(&tx, &request_id, fingerprint, effect).await })
        })
        .await
    }

    /// Claims `request_id` for a long operation. Returns [`Claim::Done`] with the recorded
    /// answer when the call was answered already, or [`Claim::Owned`] when this call must run
    /// the operation (no record, or an earlier owner's lease ran out: a takeover). When another
    /// call holds a live claim, waits for its answer by watching the record, at most `wait`
    /// (the caller's remaining deadline); then DEADLINE_EXCEEDED. A different request under
    /// the same id is ALREADY_EXISTS.
    pub async fn claim<Resp: Message + Default>(
        &self,
        request_id: &str,
        fingerprint: impl Into<Fingerprint>,
        wait: Duration,
    ) -> ServiceResult<Claim<Resp>> {
        validate_request_id(request_id)?;
        let fingerprint = fingerprint.into();
        let key = self.key(request_id);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now_ms = self.clock.now_ms();
            let condition = match self.store.get(&key).await? {
                None => Condition::Absent(key.clone()),
                Some(found) => match Record::decode(&found.value)? {
                    record if record.fingerprint() != fingerprint => return Err(reused(request_id)),
                    Record::Done { response, .. } => return Ok(Claim::Done(decode_response(&response)?)),
                    Record::Pending { lease_until_ms, .. } if lease_until_ms <= now_ms => {
                        tracing::info!(request_id, "taking over an expired idempotency claim");
                        Condition::Version(key.clone(), found.version)
                    }
                    Record::Pending { lease_until_ms, .. } => {
                        let lease_left = Duration::from_millis((lease_until_ms - now_ms).unsigned_abs());
                        self.wait_for_change(&key, found.version, deadline, lease_left, request_id).await?;
                        continue;
                    }
                },
            };
            let pending = self.pending(fingerprint);
            let put = Mutation::put_with_ttl(key.clone(), pending.encode(), self.ttl);
            match self.store.write(vec![condition], vec![put]).await {
                Ok(version) => {
                    return Ok(Claim::Owned(ClaimGuard {
                        idem: self.clone(),
                        key,
                        version,
                        fingerprint,
                        request_id: request_id.to_string(),
                    }));
                }
                // Another call created or took over the claim first: look again.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn pending(&self, fingerprint: Fingerprint) -> Record {
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        Record::Pending { fingerprint, lease_until_ms: self.clock.now_ms().saturating_add(lease_ms) }
    }

    /// Waits until the record at `key` changes after `version`, the claim's lease runs out
    /// (`lease_left`), or `deadline` passes (DEADLINE_EXCEEDED).
    async fn wait_for_change(
        &self,
        key: &[u8],
        version: u64,
        deadline: tokio::time::Instant,
        lease_left: Duration,
        request_id: &str,
    ) -> ServiceResult<()> {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(ServiceError::DeadlineExceeded(format!(
                "request_id {request_id:?} is still being processed by an earlier call"
            )));
        }
        // A lease ending before the deadline ends the wait then, for a takeover.
        let until = deadline.min(now + lease_left);
        // The prefix watch also sees longer ids that start with this one: filter by key.
        let mut changes = self.store.watch(key, Some(version + 1)).await?;
        let changed = async {
            while let Some(change) = changes.next().await {
                match change {
                    Ok(change) if change.key == key => return Ok(change.kind),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(StoreError::Unavailable("watch of an idempotency record ended".into()))
        };
        match tokio::time::timeout_at(until, changed).await {
            Ok(Ok(EventKind::Put | EventKind::Delete)) | Err(_) => Ok(()),
            // A broken watch is not the end: the loop reads the record again.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "idempotency watch failed; reading the record again");
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            }
        }
    }
}

/// The outcome of [`Idempotency::claim`].
#[derive(Debug)]
#[must_use = "an owned claim must be completed or released"]
pub enum Claim<Resp> {
    /// The call was answered already: this is the recorded answer.
    Done(Resp),
    /// This call runs the operation and must record its answer.
    Owned(ClaimGuard),
}

/// A claim on a `request_id` held by the call running the operation. Complete it with the
/// answer, or release it on failure; a guard dropped without either keeps the claim until its
/// lease runs out (a crashed owner looks the same), then another call may take it over.
#[derive(Debug)]
#[must_use = "an owned claim must be completed or released"]
pub struct ClaimGuard {
    idem: Idempotency,
    key: Vec<u8>,
    /// Version of the PENDING record this guard wrote.
    version: u64,
    fingerprint: Fingerprint,
    request_id: String,
}

impl ClaimGuard {
    /// Returns the `request_id` claimed.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    fn lost(&self) -> ServiceError {
        ServiceError::Aborted(format!(
            "the claim on request_id {:?} expired and was taken over by another call",
            self.request_id
        ))
    }

    fn done(&self, answer: &impl Message) -> Vec<u8> {
        Record::Done { fingerprint: self.fingerprint, response: answer.encode_to_vec() }.encode()
    }

    /// Records `answer` as the answer of the request, if this guard still holds the claim;
    /// otherwise (its lease ran out and another call took over) fails with ABORTED.
    pub async fn complete<Resp: Message>(self, answer: &Resp) -> ServiceResult<()> {
        let put = Mutation::put_with_ttl(self.key.clone(), self.done(answer), self.idem.ttl);
        match self.idem.store.write(vec![Condition::Version(self.key.clone(), self.version)], vec![put]).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(self.lost()),
            Err(e) => Err(e.into()),
        }
    }

    /// Buffers the answer in `tx`, conditioned on this guard still holding the claim, so that
    /// the operation's last writes and its answer commit together (a lost claim makes the
    /// commit conflict).
    pub fn complete_in<Resp: Message>(self, tx: &Txn, answer: &Resp) {
        tx.require(Condition::Version(self.key.clone(), self.version));
        tx.put_with_ttl(self.key.clone(), self.done(answer), self.idem.ttl);
    }

    /// Extends the lease by a full lease from now (for operations that run longer than one).
    /// Fails with ABORTED when the claim was lost.
    pub async fn renew(&mut self) -> ServiceResult<()> {
        let pending = self.idem.pending(self.fingerprint);
        let put = Mutation::put_with_ttl(self.key.clone(), pending.encode(), self.idem.ttl);
        match self.idem.store.write(vec![Condition::Version(self.key.clone(), self.version)], vec![put]).await {
            Ok(version) => {
                self.version = version;
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(self.lost()),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the claim up without an answer (the operation failed and changed nothing that a
    /// retry would repeat): the next call with this `request_id` runs it again. A claim lost
    /// meanwhile is left to its new owner.
    pub async fn release(self) -> ServiceResult<()> {
        let delete = Mutation::delete(self.key.clone());
        match self.idem.store.write(vec![Condition::Version(self.key.clone(), self.version)], vec![delete]).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_one_to_64_key_safe_characters() {
        assert!(validate_request_id("a").is_ok());
        assert!(validate_request_id(&"a.B_9:-".repeat(10)[..64]).is_ok());
        for bad in [String::new(), "x".repeat(65), "a b".into(), "é".into(), "a/b".into()] {
            let err = validate_request_id(&bad).unwrap_err();
            assert!(matches!(&err, ServiceError::InvalidArgument { field, .. } if field == "request_id"), "{err}");
            assert_eq!(tonic::Status::from(err).code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn records_round_trip() {
        let fingerprint = Fingerprint::digest(b"request");
        for record in [
            Record::Pending { fingerprint, lease_until_ms: 1_700_000_000_123 },
            Record::Done { fingerprint, response: b"answer".to_vec() },
            Record::Done { fingerprint, response: Vec::new() },
        ] {
            assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        }
        assert!(Record::decode(b"short").is_err());
        assert_ne!(Fingerprint::digest(b"a"), Fingerprint::digest(b"b"));
        // SHA-256 of the empty string.
        assert_eq!(Fingerprint::digest(b"").0[..4], [0xe3, 0xb0, 0xc4, 0x42]);
    }
}
