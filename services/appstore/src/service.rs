//! The app store's operations. Every change is one conditional store transaction over the
//! records it reads, recorded under its `request_id` in the same commit (the kit's
//! [`Idempotency`]): an app's listing and tracks are one record, so concurrent uploads of one
//! version code give exactly one release and a rollout change never loses another.
//!
//! Installs touch only the device's own key (`devices/<package>/<device>`) in their
//! transaction: many devices installing one hot app never contend on a key. The counts are
//! bumped in memory after the commit and flushed by the kit's [`BatchedCounters`] every
//! [`Config::counter_flush_interval`] and on shutdown; a read of the counts (the store page,
//! the charts) flushes this replica's pending deltas of the app first, so it is exact for every
//! install this replica acknowledged (another replica's land within its flush interval).
//!
//! CheckUpdate reads the app through a watch-coherent cache ([`WatchedCache`]): a hot read path
//! of one cached lookup and a hash per release.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use meshwork_common::caller::Caller;
use meshwork_common::counter::{BatchedCounters, decode_count};
use meshwork_common::paging::{self, PageToken};
use meshwork_common::record::Record;
use meshwork_common::{Clock, Fingerprint, Idempotency, ServiceError, ServiceResult, WatchedCache};
use meshwork_proto::pb::appstore::v1 as pb;
use meshwork_storage::{DynStore, KeyRange, Txn, scan_all, transact};

use crate::charts::{self, AppStats};
use crate::keys::{Counter, Keys, ROOT};
use crate::model::{self, AppRecord, DeveloperRecord, DeviceRecord, ReleaseRecord};
use crate::rollout::{self, RolloutError, Track};
use crate::search::{Found, SearchIndex, SearchParams};
use crate::validate::{self as v, MAX_DESCRIPTION_CHARS, MAX_QUERY_CHARS, MAX_TITLE_CHARS};

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Root of every key (`appstore`; tests use one of their own).
    pub root: String,
    /// How often install counts are flushed to the store.
    pub counter_flush_interval: Duration,
    /// Most apps held in CheckUpdate's cache.
    pub cache_capacity: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { root: ROOT.to_string(), counter_flush_interval: Duration::from_secs(1), cache_capacity: 100_000 }
    }
}

/// A track change, applied to the app inside its transaction.
pub enum TrackChange {
    /// Put a release on a track at a fraction (ppm).
    Set {
        track: String,
        version_code: i64,
        ppm: u32,
    },
    /// Raise the rollout's fraction.
    Update {
        track: String,
        ppm: u32,
    },
    Halt {
        track: String,
    },
    Resume {
        track: String,
    },
    Complete {
        track: String,
    },
    /// Put the newest release of `from` on `to` at a fraction.
    Promote {
        from: String,
        to: String,
        ppm: u32,
    },
}

impl TrackChange {
    /// Returns the track the change ends on.
    fn target(&self) -> &str {
        match self {
            TrackChange::Set { track, .. }
            | TrackChange::Update { track, .. }
            | TrackChange::Halt { track }
            | TrackChange::Resume { track }
            | TrackChange::Complete { track } => track,
            TrackChange::Promote { to, .. } => to,
        }
    }
}

/// What GetAppDetails shows.
#[derive(Debug, Clone)]
pub struct Details {
    pub app: AppRecord,
    pub total_installs: u64,
    pub removed: u64,
}

/// One page of a chart.
#[derive(Debug, Clone)]
pub struct ChartPage {
    pub entries: Vec<(usize, AppRecord, AppStats, f64)>,
    pub next_page_token: String,
}

/// The app store on one store.
pub struct AppStore {
    store: DynStore,
    clock: Arc<dyn Clock>,
    keys: Keys,
    idem: Idempotency,
    counters: BatchedCounters<Counter>,
    apps: WatchedCache<AppRecord>,
    config: Config,
}

/// Returns the FAILED_PRECONDITION of a refused track change.
fn refused(e: RolloutError) -> ServiceError {
    ServiceError::FailedPrecondition(e.to_string())
}

/// Checks that `caller` (when present) may change what `owner` owns.
pub fn authorize(caller: Option<&Caller>, owner: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if c.subject != owner && !c.is_admin() => Err(ServiceError::PermissionDenied(format!(
            "only the owning developer's user or an admin may do this; {:?} is neither",
            c.subject
        ))),
        _ => Ok(()),
    }
}

impl AppStore {
    /// Returns the app store on `store`, timed by `clock`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: Config) -> Self {
        let keys = Keys::new(&config.root);
        let counter_keys = keys.clone();
        let counters = BatchedCounters::new("appstore_installs", store.clone(), move |c| counter_keys.counter(c));
        let apps = WatchedCache::builder("appstore_apps", store.clone(), keys.apps_prefix())
            .capacity(config.cache_capacity)
            .build_records();
        AppStore {
            idem: Idempotency::new(store.clone(), keys.root()).with_clock(clock.clone()),
            store,
            clock,
            keys,
            counters,
            apps,
            config,
        }
    }

    /// Returns the keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Returns the install counters (their flush task and shutdown hook go to the builder).
    pub fn counters(&self) -> &BatchedCounters<Counter> {
        &self.counters
    }

    /// Returns the app cache (its watch task goes to the builder).
    pub fn app_cache(&self) -> &WatchedCache<AppRecord> {
        &self.apps
    }

    /// Returns the configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reads an app in a transaction, NOT_FOUND when absent.
    async fn app_in(&self, tx: &Txn, package: &str) -> ServiceResult<AppRecord> {
        match tx.get(&self.keys.app(package)).await? {
            Some(v) => Ok(AppRecord::decode(&v.value)?),
            None => Err(ServiceError::not_found(format!("app {package:?}"))),
        }
    }

    /// Registers a developer.
    pub async fn create_developer(
        &self,
        req: &pb::CreateDeveloperRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::Developer> {
        meshwork_common::validate_request_id(&req.request_id)?;
        v::developer_id("developer_id", &req.developer_id)?;
        v::text("name", &req.name, MAX_TITLE_CHARS, true)?;
        meshwork_common::fields::user_id("owner_user_id", &req.owner_user_id)?;
        authorize(caller, &req.owner_user_id)?;
        let now = self.clock.now_ms();
        self.idem
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                Box::pin(async move {
                    let key = self.keys.developer(&req.developer_id);
                    if tx.get(&key).await?.is_some() {
                        return Err(ServiceError::AlreadyExists { what: format!("developer {:?}", req.developer_id) });
                    }
                    let record = DeveloperRecord {
                        developer_id: req.developer_id.clone(),
                        name: req.name.trim().to_string(),
                        owner_user_id: req.owner_user_id.clone(),
                        create_time_ms: now,
                    };
                    tx.put(key, record.encode()?);
                    Ok(developer_pb(&record))
                })
            })
            .await
    }

    /// Creates an app owned by a developer.
    pub async fn create_app(&self, req: &pb::CreateAppRequest, caller: Option<&Caller>) -> ServiceResult<pb::App> {
        meshwork_common::validate_request_id(&req.request_id)?;
        let Some(app) = req.app.as_ref() else {
            return Err(ServiceError::invalid("app", "required"));
        };
        v::package_name("app.package_name", &app.package_name)?;
        v::developer_id("app.developer_id", &app.developer_id)?;
        v::text("app.title", &app.title, MAX_TITLE_CHARS, true)?;
        v::category("app.category", &app.category, true)?;
        v::text("app.description", &app.description, MAX_DESCRIPTION_CHARS, false)?;
        v::icon_url("app.icon_url", &app.icon_url)?;
        v::price("app.price_minor", "app.currency", app.price_minor, &app.currency)?;
        let now = self.clock.now_ms();
        let answer = self
            .idem
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                Box::pin(async move {
                    let developer = match tx.get(&self.keys.developer(&app.developer_id)).await? {
                        Some(v) => DeveloperRecord::decode(&v.value)?,
                        None => return Err(ServiceError::not_found(format!("developer {:?}", app.developer_id))),
                    };
                    authorize(caller, &developer.owner_user_id)?;
                    let key = self.keys.app(&app.package_name);
                    if tx.get(&key).await?.is_some() {
                        return Err(ServiceError::AlreadyExists { what: format!("app {:?}", app.package_name) });
                    }
                    let record = AppRecord {
                        package_name: app.package_name.clone(),
                        developer_id: developer.developer_id.clone(),
                        developer_name: developer.name.clone(),
                        owner_user_id: developer.owner_user_id.clone(),
                        title: app.title.trim().to_string(),
                        category: app.category.clone(),
                        description: app.description.clone(),
                        icon_url: app.icon_url.clone(),
                        price_minor: app.price_minor,
                        currency: app.currency.clone(),
                        create_time_ms: now,
                        last_version_code: 0,
                        tracks: Default::default(),
                    };
                    tx.put(key, record.encode()?);
                    Ok(record.to_pb())
                })
            })
            .await?;
        // This replica may have cached "no such app".
        self.apps.invalidate(&answer.package_name);
        Ok(answer)
    }

    /// Uploads a release: its version code must be above every earlier one.
    pub async fn upload_release(
        &self,
        req: &pb::UploadReleaseRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::Release> {
        meshwork_common::validate_request_id(&req.request_id)?;
        v::package_name("package_name", &req.package_name)?;
        v::version_code("version_code", req.version_code)?;
        v::text("version_name", &req.version_name, 50, true)?;
        v::sdk("min_sdk", req.min_sdk)?;
        v::sha256_hex("artifact_sha256", &req.artifact_sha256)?;
        v::size_bytes("size_bytes", req.size_bytes)?;
        v::text("notes", &req.notes, 500, false)?;
        let now = self.clock.now_ms();
        let answer = self
            .idem
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                Box::pin(async move {
                    let mut app = self.app_in(&tx, &req.package_name).await?;
                    authorize(caller, &app.owner_user_id)?;
                    let key = self.keys.release(&req.package_name, req.version_code);
                    if tx.get(&key).await?.is_some() {
                        return Err(ServiceError::AlreadyExists {
                            what: format!("release {} of {:?}", req.version_code, req.package_name),
                        });
                    }
                    if req.version_code <= app.last_version_code {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "version_code {} must be above every earlier release (the highest is {})",
                            req.version_code, app.last_version_code
                        )));
                    }
                    let release = ReleaseRecord {
                        package_name: req.package_name.clone(),
                        version_code: req.version_code,
                        version_name: req.version_name.trim().to_string(),
                        min_sdk: req.min_sdk,
                        artifact_sha256: req.artifact_sha256.clone(),
                        size_bytes: req.size_bytes,
                        notes: req.notes.clone(),
                        upload_time_ms: now,
                    };
                    app.last_version_code = req.version_code;
                    tx.put(key, release.encode()?);
                    tx.put(self.keys.app(&req.package_name), app.encode()?);
                    Ok(release.to_pb())
                })
            })
            .await?;
        self.apps.invalidate(&req.package_name);
        Ok(answer)
    }

    /// Applies a track change to `package` (validated by the caller), under `request_id`.
    pub async fn change_track(
        &self,
        request_id: &str,
        fingerprint: Fingerprint,
        package: &str,
        change: &TrackChange,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::Track> {
        let answer = self
            .idem
            .transact(request_id, fingerprint, |tx| {
                Box::pin(async move {
                    let mut app = self.app_in(&tx, package).await?;
                    authorize(caller, &app.owner_user_id)?;
                    let target = change.target().to_string();
                    match change {
                        TrackChange::Set { track, version_code, ppm } => {
                            let release = match tx.get(&self.keys.release(package, *version_code)).await? {
                                Some(v) => ReleaseRecord::decode(&v.value)?,
                                None => {
                                    return Err(ServiceError::not_found(format!(
                                        "release {version_code} of {package:?}"
                                    )));
                                }
                            };
                            app.tracks
                                .entry(track.clone())
                                .or_default()
                                .set(release.track_release(), *ppm)
                                .map_err(refused)?;
                        }
                        TrackChange::Update { track, ppm } => {
                            track_mut(&mut app, track)?.update(*ppm).map_err(refused)?
                        }
                        TrackChange::Halt { track } => track_mut(&mut app, track)?.halt().map_err(refused)?,
                        TrackChange::Resume { track } => track_mut(&mut app, track)?.resume().map_err(refused)?,
                        TrackChange::Complete { track } => track_mut(&mut app, track)?.complete().map_err(refused)?,
                        TrackChange::Promote { from, to, ppm } => {
                            let newest = app.tracks.get(from).and_then(Track::newest).cloned().ok_or_else(|| {
                                ServiceError::FailedPrecondition(format!("track {from:?} has no release"))
                            })?;
                            app.tracks.entry(to.clone()).or_default().set(newest, *ppm).map_err(refused)?;
                        }
                    }
                    tx.put(self.keys.app(package), app.encode()?);
                    Ok(app.track_pb(&target))
                })
            })
            .await?;
        self.apps.invalidate(package);
        Ok(answer)
    }

    /// Answers a device with the newest release it may have.
    pub async fn check_update(&self, req: &pb::CheckUpdateRequest) -> ServiceResult<pb::CheckUpdateResponse> {
        v::package_name("package_name", &req.package_name)?;
        if req.installed_version_code < 0 {
            return Err(ServiceError::invalid("installed_version_code", "must not be negative (0 = not installed)"));
        }
        v::device_id("device_id", &req.device_id)?;
        v::sdk("sdk_level", req.sdk_level)?;
        let track = v::track("track", &req.track, true)?;
        let app = self
            .apps
            .get(&req.package_name)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("app {:?}", req.package_name)))?;
        let device = rollout::Device {
            device_id: &req.device_id,
            installed_version_code: req.installed_version_code,
            sdk_level: req.sdk_level,
            track,
        };
        Ok(match rollout::check(&app.package_name, &device, |name| app.tracks.get(name)) {
            Some(offer) if offer.update => pb::CheckUpdateResponse {
                update_available: true,
                release: Some(model::track_release_pb(offer.release)),
                track: offer.track.to_string(),
            },
            _ => pb::CheckUpdateResponse::default(),
        })
    }

    /// Records an install (or an update) on a device; returns whether it counted.
    pub async fn record_install(&self, req: &pb::RecordInstallRequest) -> ServiceResult<bool> {
        v::package_name("package_name", &req.package_name)?;
        v::device_id("device_id", &req.device_id)?;
        if req.version_code < 0 {
            return Err(ServiceError::invalid("version_code", "must not be negative (0 = unknown)"));
        }
        self.set_installed(&req.package_name, &req.device_id, true, req.version_code).await
    }

    /// Records an uninstall on a device; returns whether it counted.
    pub async fn record_uninstall(&self, req: &pb::RecordUninstallRequest) -> ServiceResult<bool> {
        v::package_name("package_name", &req.package_name)?;
        v::device_id("device_id", &req.device_id)?;
        self.set_installed(&req.package_name, &req.device_id, false, 0).await
    }

    /// Moves a device's install state; counts the change when the state changed.
    async fn set_installed(
        &self,
        package: &str,
        device: &str,
        installed: bool,
        version_code: i64,
    ) -> ServiceResult<bool> {
        if self.apps.get(package).await?.is_none() {
            return Err(ServiceError::not_found(format!("app {package:?}")));
        }
        let now = self.clock.now_ms();
        let key = self.keys.device(package, device);
        let (store, counters, package) = (self.store.clone(), self.counters.clone(), package.to_string());
        // In a task of its own: a caller giving up (a cancelled request) must not drop the
        // count of a device change whose write the store may still apply.
        let task = tokio::spawn(async move {
            let counted = transact(&store, |tx| {
                let key = key.clone();
                Box::pin(async move {
                    let before = match tx.get(&key).await? {
                        Some(v) => Some(DeviceRecord::decode(&v.value)?),
                        None => None,
                    };
                    let was = before.as_ref().is_some_and(|d| d.installed);
                    let version_code =
                        if installed { version_code } else { before.as_ref().map_or(0, |d| d.version_code) };
                    // Nothing to remove, or the same version again: nothing to write or count.
                    let unchanged = if installed {
                        was && before.as_ref().is_some_and(|d| d.version_code == version_code)
                    } else {
                        !was
                    };
                    if unchanged {
                        return Ok::<_, ServiceError>(false);
                    }
                    tx.put(key, DeviceRecord { installed, version_code, update_time_ms: now }.encode()?);
                    Ok(was != installed)
                })
            })
            .await?;
            if counted {
                if installed {
                    counters.add(Counter::Daily(package.clone(), charts::day_of(now)), 1);
                    counters.add(Counter::Added(package), 1);
                } else {
                    counters.add(Counter::Removed(package), 1);
                }
            }
            Ok(counted)
        });
        task.await.map_err(|e| ServiceError::Internal(format!("install task failed: {e}")))?
    }

    /// Returns the store page's data: the app (read from the store) and its install counts,
    /// after flushing this replica's pending counts of the app.
    pub async fn app_details(&self, package: &str) -> ServiceResult<Details> {
        v::package_name("package_name", package)?;
        let app = match self.store.get(&self.keys.app(package)).await? {
            Some(v) => AppRecord::decode(&v.value)?,
            None => return Err(ServiceError::not_found(format!("app {package:?}"))),
        };
        let p = package.to_string();
        self.counters.flush_where(move |c| c.package() == p).await?;
        let total_installs = self.counters.stored(&Counter::Added(package.to_string())).await?;
        let removed = self.counters.stored(&Counter::Removed(package.to_string())).await?;
        Ok(Details { app, total_installs, removed })
    }

    /// Checks a search request.
    pub fn search_params(req: &pb::SearchAppsRequest) -> ServiceResult<SearchParams> {
        if req.query.chars().count() > MAX_QUERY_CHARS {
            return Err(ServiceError::invalid("query", format!("at most {MAX_QUERY_CHARS} characters")));
        }
        if req.query.chars().any(char::is_control) {
            return Err(ServiceError::invalid("query", "must not contain control characters"));
        }
        v::category("category", &req.category, false)?;
        let page_size = v::page_size("page_size", req.page_size)?;
        let fingerprint = paging::fingerprint(&[b"search", req.query.as_bytes(), req.category.as_bytes()]);
        let offset = offset_of(&req.page_token, fingerprint, crate::search::MAX_SEARCH_WINDOW)?;
        Ok(SearchParams {
            query: req.query.clone(),
            category: (!req.category.is_empty()).then(|| req.category.clone()),
            page_size,
            offset,
            fingerprint,
        })
    }

    /// Runs a search and reads the hits' listings from the store (through the cache).
    pub async fn search(
        &self,
        index: &SearchIndex,
        params: SearchParams,
    ) -> ServiceResult<(Vec<(AppRecord, f32)>, Found)> {
        let found = index.search(params).await?;
        let mut hits = Vec::with_capacity(found.hits.len());
        for (package, score) in &found.hits {
            if let Some(app) = self.apps.get(package).await? {
                hits.push(((*app).clone(), *score));
            }
        }
        Ok((hits, found))
    }

    /// Returns a page of a chart (see [`charts`]): flushes this replica's pending counts, then
    /// scans the apps, the install totals and the last 14 days' counts.
    pub async fn top_charts(&self, req: &pb::TopChartsRequest) -> ServiceResult<ChartPage> {
        v::category("category", &req.category, false)?;
        let chart = match pb::Chart::try_from(req.chart) {
            Ok(c @ (pb::Chart::TopFree | pb::Chart::TopPaid | pb::Chart::Trending)) => c,
            _ => {
                return Err(ServiceError::invalid("chart", "must be CHART_TOP_FREE, CHART_TOP_PAID or CHART_TRENDING"));
            }
        };
        let page_size = v::page_size("page_size", req.page_size)?;
        let fingerprint = paging::fingerprint(&[b"chart", req.category.as_bytes(), &req.chart.to_be_bytes()]);
        let offset = offset_of(&req.page_token, fingerprint, usize::MAX)?;

        self.counters.flush().await?;
        let apps =
            scan_all(&self.store, KeyRange::prefix(self.keys.apps_prefix()), meshwork_storage::Direction::Forward)
                .await?;
        let mut records: HashMap<String, AppRecord> = HashMap::new();
        for entry in apps {
            if self.keys.package_of(&entry.key).is_none() {
                continue;
            }
            let app = AppRecord::decode(&entry.value)?;
            if req.category.is_empty() || app.category == req.category {
                records.insert(app.package_name.clone(), app);
            }
        }
        let mut stats: HashMap<String, AppStats> = records
            .values()
            .map(|a| {
                let s = AppStats {
                    package: a.package_name.clone(),
                    paid: a.price_minor > 0,
                    total: 0,
                    recent: 0,
                    prior: 0,
                };
                (a.package_name.clone(), s)
            })
            .collect();
        let totals =
            scan_all(&self.store, KeyRange::prefix(self.keys.installs_prefix()), meshwork_storage::Direction::Forward)
                .await?;
        for entry in totals {
            if let Some(Counter::Added(p)) = self.keys.parse_installs(&entry.key)
                && let Some(s) = stats.get_mut(&p)
            {
                s.total = decode_count(&entry.value)?;
            }
        }
        let today = charts::day_of(self.clock.now_ms());
        let (start, end) = self.keys.daily_range(today - 13, today);
        let days = scan_all(&self.store, KeyRange::between(start, end), meshwork_storage::Direction::Forward).await?;
        for entry in days {
            let Some((day, package)) = self.keys.parse_daily(&entry.key) else { continue };
            let Some(s) = stats.get_mut(package) else { continue };
            let n = decode_count(&entry.value)?;
            match charts::window_of(day, today) {
                Some(true) => s.recent += n,
                Some(false) => s.prior += n,
                None => {}
            }
        }
        let ranked = charts::rank(chart, stats.into_values().collect());
        let end = offset.saturating_add(page_size).min(ranked.len());
        let next_page_token = if end < ranked.len() {
            PageToken { resume_key: (end as u64).to_be_bytes().to_vec(), fingerprint }.encode()
        } else {
            String::new()
        };
        let entries = ranked
            .into_iter()
            .enumerate()
            .skip(offset)
            .take(page_size)
            .filter_map(|(i, (s, score))| records.remove(&s.package).map(|app| (i + 1, app, s, score)))
            .collect();
        Ok(ChartPage { entries, next_page_token })
    }
}

/// Returns the track `name` of `app` for a change, FAILED_PRECONDITION when it has no rollout.
fn track_mut<'a>(app: &'a mut AppRecord, name: &str) -> ServiceResult<&'a mut Track> {
    app.tracks.get_mut(name).ok_or_else(|| refused(RolloutError::NoRollout))
}

/// Returns the offset a page token resumes at (0 without one).
fn offset_of(token: &str, fingerprint: u32, window: usize) -> ServiceResult<usize> {
    match PageToken::decode(token, fingerprint)? {
        None => Ok(0),
        Some(token) => {
            let bytes: [u8; 8] = token
                .resume_key
                .as_slice()
                .try_into()
                .map_err(|_| ServiceError::invalid("page_token", "is not a token returned by this query"))?;
            let offset = u64::from_be_bytes(bytes);
            if offset >= window as u64 {
                return Err(ServiceError::invalid("page_token", "is not a token returned by this query"));
            }
            Ok(offset as usize)
        }
    }
}

/// Returns a developer as protobuf.
pub fn developer_pb(r: &DeveloperRecord) -> pb::Developer {
    pb::Developer {
        developer_id: r.developer_id.clone(),
        name: r.name.clone(),
        owner_user_id: r.owner_user_id.clone(),
        create_time: meshwork_common::fields::timestamp_opt(r.create_time_ms),
    }
}
