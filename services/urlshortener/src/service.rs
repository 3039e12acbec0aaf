//! The URL shortener's domain logic, independent of gRPC: creating codes from leased ids or
//! custom aliases, resolving through an in-process cache, deleting into tombstones, and stats.

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::caller::Caller;
use meshwork_common::counter::decode_count;
use meshwork_common::idempotency::{Fingerprint, Idempotency, validate_request_id};
use meshwork_common::{Clock, IdAllocator, Record, ServiceError, ServiceResult, WatchedCache, utc_date};
use meshwork_storage::{Condition, Direction, DynStore, KeyRange, Mutation, StoreError, scan_all, transact};

use crate::clicks::ClickRecorder;
use crate::codes::{self, CodePermutation};
use crate::keys;
use crate::model::{LinkRecord, LinkState};
use crate::validate;

/// Tunables of the URL shortener.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base of the short URLs handed out (`<public_url>/<code>`).
    pub public_url: String,
    /// How often buffered clicks are written to the store.
    pub click_flush_interval: Duration,
    /// Most links held in the resolve cache.
    pub cache_capacity: u64,
    /// How long a positive cache entry lives without a store change being seen.
    pub cache_ttl: Duration,
    /// How long "no such code" is remembered (bounds staleness if a watch event is missed).
    pub negative_ttl: Duration,
    /// How long an expired link's record is kept, answering "expired" (HTTP 410), before the
    /// store drops it.
    pub expired_retention: Duration,
    /// Ids leased from the store at a time.
    pub id_block: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_url: "http://127.0.0.1:8080".into(),
            click_flush_interval: Duration::from_secs(1),
            cache_capacity: 100_000,
            cache_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(2),
            expired_retention: Duration::from_secs(30 * 24 * 3600),
            id_block: 1000,
        }
    }
}

/// What a lookup of a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(LinkRecord),
    Gone(LinkState),
}

/// Click analytics of one code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub total: u64,
    /// (date, clicks), oldest first, days with clicks only.
    pub daily: Vec<(String, u64)>,
    /// (referrer, clicks), most clicks first.
    pub referrers: Vec<(String, u64)>,
}

/// The URL shortener.
pub struct Shortener {
    store: DynStore,
    clock: Arc<dyn Clock>,
    config: Config,
    ids: IdAllocator,
    /// The keyed id -> code permutation, loaded (or created) from the store on first need.
    codes: tokio::sync::OnceCell<CodePermutation>,
    /// Code -> record (tombstones included), kept coherent with other replicas by a watch.
    links: WatchedCache<LinkRecord>,
    clicks: ClickRecorder,
    /// The answers of Shorten calls that carried a `request_id`.
    requests: Idempotency,
}

const MAX_CODE_ATTEMPTS: usize = 16;

/// Checks that `caller` may manage (delete, read the stats of) a link owned by `owner`: its
/// owner or an admin may; a link without an owner (made by an anonymous Shorten) only an admin.
pub fn authorize(caller: &Caller, code: &str, owner: &str, action: &str) -> ServiceResult<()> {
    if owner.is_empty() {
        if caller.is_admin() {
            return Ok(());
        }
        return Err(ServiceError::PermissionDenied(format!(
            "code {code:?} has no owner: only an admin may {action} it"
        )));
    }
    if caller.subject == owner || caller.is_admin() {
        return Ok(());
    }
    Err(ServiceError::PermissionDenied(format!(
        "code {code:?} belongs to another user: only its owner or an admin may {action} it"
    )))
}

impl Shortener {
    /// Returns a shortener on `store`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: Config) -> Self {
        Shortener {
            ids: IdAllocator::new(store.clone(), keys::ID_COUNTER, config.id_block),
            codes: tokio::sync::OnceCell::new(),
            // New links are cached as the watch sees them: they are usually resolved soon.
            links: WatchedCache::builder("urlshortener_links", store.clone(), keys::LINK_PREFIX)
                .capacity(config.cache_capacity)
                .ttl(config.cache_ttl)
                .negative_ttl(config.negative_ttl)
                .refresh_on_change(true)
                .build_records(),
            clicks: ClickRecorder::new(store.clone()),
            requests: Idempotency::new(store.clone(), "urlshortener").with_clock(clock.clone()),
            store,
            clock,
            config,
        }
    }

    /// Returns the short URL of `code`.
    pub fn short_url(&self, code: &str) -> String {
        format!("{}/{code}", self.config.public_url.trim_end_matches('/'))
    }

    /// Loads this deployment's short-code secret from the store, creating it if no replica has
    /// yet. Shorten does this on first need, so calling it at start only moves the store round
    /// trip (and a store failure's log line) out of the first request.
    pub async fn init_code_key(&self) -> ServiceResult<()> {
        self.permutation().await.map(|_| ())
    }

    /// Returns the id -> code permutation, loading its secret on first use; a failed load is
    /// retried by the next call.
    async fn permutation(&self) -> ServiceResult<&CodePermutation> {
        self.codes
            .get_or_try_init(|| async {
                let secret = codes::load_or_create_secret(&self.store).await?;
                Ok(CodePermutation::new(&secret))
            })
            .await
    }

    /// Returns the click recorder (flushed by the background task and on shutdown).
    pub fn clicks(&self) -> &ClickRecorder {
        &self.clicks
    }

    /// Returns the link cache (its watch task runs in the background).
    pub fn links(&self) -> &WatchedCache<LinkRecord> {
        &self.links
    }

    /// Creates a code for `long_url`: `custom_alias` when given, else a generated one. `owner`
    /// is the caller's subject, empty for an anonymous caller (an ownerless link).
    pub async fn shorten(
        &self,
        long_url: &str,
        custom_alias: &str,
        ttl_seconds: i64,
        owner: &str,
    ) -> ServiceResult<(String, LinkRecord)> {
        let long_url = validate::long_url(long_url)?;
        if !custom_alias.is_empty() {
            validate::custom_alias(custom_alias)?;
        }
        validate::ttl_seconds(ttl_seconds)?;

        let now = self.clock.now_ms();
        let record = LinkRecord {
            long_url,
            created_at_ms: now,
            expires_at_ms: if ttl_seconds > 0 { now + ttl_seconds * 1000 } else { 0 },
            custom_alias: !custom_alias.is_empty(),
            deleted_at_ms: 0,
            owner: owner.to_string(),
        };
        let store_ttl =
            (ttl_seconds > 0).then(|| Duration::from_secs(ttl_seconds as u64) + self.config.expired_retention);
        let value = record.encode()?;

        if !custom_alias.is_empty() {
            return match self.create(custom_alias, &record, &value, store_ttl).await {
                Ok(()) => Ok((custom_alias.to_string(), record)),
                Err(StoreError::Conflict { .. }) => {
                    Err(ServiceError::AlreadyExists { what: format!("custom_alias {custom_alias:?}") })
                }
                Err(e) => Err(e.into()),
            };
        }
        let permutation = self.permutation().await?;
        for _ in 0..MAX_CODE_ATTEMPTS {
            let id = self.ids.next().await?;
            let code = permutation
                .code_for_id(id)
                .ok_or_else(|| ServiceError::ResourceExhausted("short code space exhausted".into()))?;
            match self.create(&code, &record, &value, store_ttl).await {
                Ok(()) => return Ok((code, record)),
                // A custom alias (or a code from before the secret) holds this code: skip the id,
                // never share a code.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Aborted("no free code after several ids; retry".into()))
    }

    /// [`Shortener::shorten`] with an idempotency key: the first call with `request_id` makes
    /// the link, and its code is recorded in the same store transaction, so a retry (after a
    /// lost answer, a replica killed mid-call or a failover of the store) returns that code and
    /// never makes a second link. The same `request_id` with different fields is
    /// ALREADY_EXISTS.
    pub async fn shorten_once(
        &self,
        request_id: &str,
        long_url: &str,
        custom_alias: &str,
        ttl_seconds: i64,
        owner: &str,
    ) -> ServiceResult<(String, LinkRecord)> {
        validate_request_id(request_id)?;
        let long_url = validate::long_url(long_url)?;
        if !custom_alias.is_empty() {
            validate::custom_alias(custom_alias)?;
        }
        validate::ttl_seconds(ttl_seconds)?;
        let fingerprint = Fingerprint::digest(format!("{long_url}\0{custom_alias}\0{ttl_seconds}").as_bytes());
        let now = self.clock.now_ms();
        let record = LinkRecord {
            long_url,
            created_at_ms: now,
            expires_at_ms: if ttl_seconds > 0 { now + ttl_seconds * 1000 } else { 0 },
            custom_alias: !custom_alias.is_empty(),
            deleted_at_ms: 0,
            owner: owner.to_string(),
        };
        let store_ttl =
            (ttl_seconds > 0).then(|| Duration::from_secs(ttl_seconds as u64) + self.config.expired_retention);
        let value = record.encode()?;
        let permutation = if custom_alias.is_empty() { Some(self.permutation().await?) } else { None };
        let code: String = self
            .requests
            .transact(request_id, fingerprint, |tx| {
                let value = value.clone();
                Box::pin(async move {
                    let code = match permutation {
                        None => {
                            if tx.get(&keys::link(custom_alias)).await?.is_some() {
                                return Err(ServiceError::AlreadyExists {
                                    what: format!("custom_alias {custom_alias:?}"),
                                });
                            }
                            custom_alias.to_string()
                        }
                        Some(permutation) => {
                            let mut free = None;
                            for _ in 0..MAX_CODE_ATTEMPTS {
                                let id = self.ids.next().await?;
                                let code = permutation.code_for_id(id).ok_or_else(|| {
                                    ServiceError::ResourceExhausted("short code space exhausted".into())
                                })?;
                                if tx.get(&keys::link(&code)).await?.is_none() {
                                    free = Some(code);
                                    break;
                                }
                            }
                            free.ok_or_else(|| ServiceError::Aborted("no free code after several ids; retry".into()))?
                        }
                    };
                    match store_ttl {
                        Some(ttl) => tx.put_with_ttl(keys::link(&code), value, ttl),
                        None => tx.put(keys::link(&code), value),
                    }
                    Ok(code)
                })
            })
            .await?;
        // A replay answers with the link as it was stored by the first call.
        if let Some(stored) = self.record(&code).await? {
            return Ok((code, (*stored).clone()));
        }
        self.links.invalidate(&code);
        Ok((code, record))
    }

    /// Writes a new link if its code is free.
    async fn create(
        &self,
        code: &str,
        record: &LinkRecord,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let key = keys::link(code);
        let put = Mutation::Put { key: key.clone(), value: value.to_vec(), ttl };
        let revision = self.store.write(vec![Condition::Absent(key)], vec![put]).await?;
        // New links are usually resolved soon (and this replica may have cached "no such code").
        self.links.insert(code, record.clone(), revision);
        Ok(())
    }

    /// Returns the record of `code` (tombstones included), through the cache.
    async fn record(&self, code: &str) -> ServiceResult<Option<Arc<LinkRecord>>> {
        self.links.get(code).await
    }

    /// Looks `code` up without counting a click.
    pub async fn lookup(&self, code: &str) -> ServiceResult<Lookup> {
        validate::code(code)?;
        let Some(record) = self.record(code).await? else {
            return Ok(Lookup::Gone(LinkState::Unknown));
        };
        Ok(match record.state_at(self.clock.now_ms()) {
            LinkState::Active => Lookup::Found((*record).clone()),
            state => Lookup::Gone(state),
        })
    }

    /// Resolves `code` and counts a click from `referrer` unless `skip_click`.
    pub async fn resolve(&self, code: &str, referrer: &str, skip_click: bool) -> ServiceResult<Lookup> {
        let referrer = validate::referrer(referrer)?;
        let found = self.lookup(code).await?;
        if matches!(found, Lookup::Found(_)) && !skip_click {
            self.clicks.record(code, self.clock.now_ms(), &referrer);
        }
        Ok(found)
    }

    /// Returns the record of `code` if `caller` may manage it (see [`authorize`]): NOT_FOUND when
    /// there is no such link or it was deleted, PERMISSION_DENIED when it is not the caller's.
    async fn managed_record(&self, code: &str, caller: &Caller, action: &str) -> ServiceResult<Arc<LinkRecord>> {
        let record = match self.record(code).await? {
            Some(r) if r.deleted_at_ms == 0 => r,
            _ => return Err(ServiceError::not_found(format!("code {code:?}"))),
        };
        authorize(caller, code, &record.owner, action)?;
        Ok(record)
    }

    /// Deletes `code` for `caller` (its owner or an admin), leaving a tombstone so the code is
    /// never handed out again.
    pub async fn delete(&self, code: &str, caller: &Caller) -> ServiceResult<()> {
        validate::code(code)?;
        let checked = self.managed_record(code, caller, "delete").await?;
        let key = keys::link(code);
        let now = self.clock.now_ms();
        let result: ServiceResult<()> = transact(&self.store, |tx| {
            let (key, checked) = (&key, &checked);
            Box::pin(async move {
                let Some(current) = tx.get(key).await? else {
                    return Err(ServiceError::not_found(format!("code {code:?}")));
                };
                let mut record = LinkRecord::decode(&current.value)?;
                if record.deleted_at_ms != 0 {
                    return Err(ServiceError::not_found(format!("code {code:?}")));
                }
                // The check above may have read a cached link that has since expired out of the
                // store and been re-created (an alias) by someone else: only the link checked
                // is deleted.
                if record.owner != checked.owner || record.created_at_ms != checked.created_at_ms {
                    return Err(ServiceError::Aborted(format!("code {code:?} changed during the delete; retry")));
                }
                record.deleted_at_ms = now;
                record.long_url.clear();
                tx.put(key.clone(), record.encode()?);
                Ok(())
            })
        })
        .await;
        // Deleted or not, the next call should see the link as the store has it now.
        self.links.invalidate(code);
        result
    }

    /// Returns the click analytics of `code` over the last `days` days (1-366, 0 = 30) with
    /// the top `top` referrers (1-100, 0 = 10), for `caller` (the link's owner or an admin).
    pub async fn stats(&self, code: &str, days: i32, top: i32, caller: &Caller) -> ServiceResult<Stats> {
        validate::code(code)?;
        let days = match days {
            0 => 30,
            1..=366 => days,
            _ => {
                return Err(ServiceError::invalid("days", format!("must be 1 to 366 (0 means 30), got {days}")));
            }
        };
        let top = match top {
            0 => 10,
            1..=100 => top as usize,
            _ => {
                return Err(ServiceError::invalid(
                    "top_referrers",
                    format!("must be 1 to 100 (0 means 10), got {top}"),
                ));
            }
        };
        self.managed_record(code, caller, "read the stats of").await?;
        self.read_stats(code, days, top).await
    }

    /// Reads the counters of `code` (after flushing its buffered clicks).
    async fn read_stats(&self, code: &str, days: i32, top: usize) -> ServiceResult<Stats> {
        self.clicks.flush_code(code).await?;

        let total = match self.store.get(&keys::clicks_total(code)).await? {
            Some(v) => decode_count(&v.value)?,
            None => 0,
        };
        let now = self.clock.now_ms();
        let first = utc_date(now - i64::from(days - 1) * 86_400_000);
        let last = utc_date(now);
        let day_prefix = keys::clicks_day_prefix(code);
        let range = KeyRange::between(format!("{day_prefix}{first}"), format!("{day_prefix}{last}\u{0}"));
        let daily =
            self.scan_all(range).await?.into_iter().map(|(k, v)| (k[day_prefix.len()..].to_string(), v)).collect();

        let ref_prefix = keys::clicks_referrer_prefix(code);
        let mut referrers: Vec<(String, u64)> = self
            .scan_all(KeyRange::prefix(ref_prefix.clone()))
            .await?
            .into_iter()
            .map(|(k, v)| (k[ref_prefix.len()..].to_string(), v))
            .collect();
        referrers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        referrers.truncate(top);
        Ok(Stats { total, daily, referrers })
    }

    /// Returns every counter in `range` as (key, count).
    async fn scan_all(&self, range: KeyRange) -> ServiceResult<Vec<(String, u64)>> {
        let entries = scan_all(&self.store, range, Direction::Forward).await?;
        entries.iter().map(|e| Ok((String::from_utf8_lossy(&e.key).into_owned(), decode_count(&e.value)?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn caller(subject: &str, roles: &[&str]) -> Caller {
        Caller { subject: subject.into(), roles: roles.iter().map(|r| r.to_string()).collect() }
    }

    #[test]
    fn owners_and_admins_manage_links_and_ownerless_links_are_admin_only() {
        let (alice, bob, admin) = (caller("alice", &[]), caller("bob", &["editor"]), caller("root", &["admin"]));
        assert!(authorize(&alice, "abc", "alice", "delete").is_ok());
        assert!(authorize(&admin, "abc", "alice", "delete").is_ok());
        assert!(authorize(&admin, "abc", "", "delete").is_ok());
        let denied = authorize(&bob, "abc", "alice", "delete").unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.to_string().contains("only its owner or an admin may delete"), "{}", denied.to_string());
        let denied = authorize(&alice, "abc", "", "read the stats of").unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.to_string().contains("no owner"), "{}", denied.to_string());
        // Subjects compare exactly: no case folding, no prefixes.
        assert!(authorize(&caller("Alice", &[]), "abc", "alice", "delete").is_err());
        assert!(authorize(&caller("alice2", &[]), "abc", "alice", "delete").is_err());
    }
}
