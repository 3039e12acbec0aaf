//! The model as a projection of the shop's event logs: [`Projection`] turns events into model
//! updates (pure, unit-tested); [`Live`] keeps one per replica in memory, built at start by
//! reading the logs from sequence 1 and then following them, and rebuilt from scratch every
//! `recommendation.rebuild_secs` to check (and reset) the incremental one.
//!
//! What counts:
//! - **Orders** (`orders` log, `OrderEvent`): a purchase of every sku of an order counts from
//!   the event that takes the order to CONFIRMED, and while it is CONFIRMED, PACKED, SHIPPED,
//!   DELIVERED or RETURN_REQUESTED. CANCELLED and RETURNED withdraw it: the customer did not
//!   keep the item, so it should not say "customers also bought". A withdrawn purchase's
//!   trending activity stays (it happened).
//! - **Ratings** (`ratings` log, `ReviewEvent`): the review's rating while it is PUBLISHED; an
//!   edit replaces it, a review leaving PUBLISHED removes it.
//! - **Catalog** (`catalog` log, product events): the item's category path.
//! - **Interactions** (`recommendation` log): what RecordInteraction recorded.
//!
//! Each log is applied in sequence order; the logs interleave in any order, which the model's
//! order-independent weights (the strongest signal per source) make harmless: the incremental
//! projection equals a rebuild that reads the logs one after the other.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use meshwork_common::events::Event;
use meshwork_common::{EventLog, ServiceResult};
use meshwork_proto::pb::catalog::v1 as catalog;
use meshwork_proto::pb::orders::v1 as orders;
use meshwork_proto::pb::ratings::v1 as ratings;
use meshwork_proto::pb::recommendation::v1 as pb;
use meshwork_storage::DynStore;
use prost::Message;

use crate::keys;
use crate::model::{ItemItemModel, ModelConfig};
use crate::validate;

/// The logs the model is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The orders' log.
    Orders,
    /// The ratings' log.
    Ratings,
    /// The catalog's log.
    Catalog,
    /// This service's own log (RecordInteraction).
    Interactions,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 4] = [Source::Orders, Source::Ratings, Source::Catalog, Source::Interactions];

    /// The event log's service name.
    pub fn log_name(self) -> &'static str {
        match self {
            Source::Orders => keys::ORDERS_LOG,
            Source::Ratings => keys::RATINGS_LOG,
            Source::Catalog => keys::CATALOG_LOG,
            Source::Interactions => keys::SERVICE,
        }
    }

    fn index(self) -> usize {
        match self {
            Source::Orders => 0,
            Source::Ratings => 1,
            Source::Catalog => 2,
            Source::Interactions => 3,
        }
    }
}

/// The last sequence applied from each log ([`Source::ALL`] order).
pub type Positions = [u64; 4];

/// An order that counts as a purchase: its user and distinct skus.
#[derive(Debug, Clone, PartialEq)]
struct CountedOrder {
    user: String,
    skus: Vec<String>,
}

/// The model and what it needs to apply the next events.
#[derive(Debug, Clone)]
pub struct Projection {
    /// The model.
    pub model: ItemItemModel,
    /// Orders whose purchases count now (by order id).
    counted: HashMap<String, CountedOrder>,
    positions: Positions,
}

/// Whether an order in `state` counts as a purchase.
fn counts_as_purchase(state: i32) -> bool {
    use orders::OrderState as S;
    matches!(S::try_from(state), Ok(S::Confirmed | S::Packed | S::Shipped | S::Delivered | S::ReturnRequested))
}

impl Projection {
    /// Returns an empty projection.
    pub fn new(config: ModelConfig) -> Self {
        Projection { model: ItemItemModel::new(config), counted: HashMap::new(), positions: [0; 4] }
    }

    /// Returns the last sequence applied from each log.
    pub fn positions(&self) -> Positions {
        self.positions
    }

    /// Applies `event` of `source` unless it was applied already (its sequence is not past the
    /// source's position). An undecodable payload is logged and passed over.
    pub fn apply(&mut self, source: Source, event: &Event) {
        let position = &mut self.positions[source.index()];
        if event.sequence <= *position {
            return;
        }
        *position = event.sequence;
        let result = match source {
            Source::Orders => {
                orders::OrderEvent::decode(event.payload.as_slice()).map(|e| self.order(&e, event.time_ms))
            }
            // Every `review.*` event carries the review as it is after the event.
            Source::Ratings if event.r#type.starts_with(keys::REVIEW_EVENT_PREFIX) => {
                ratings::ReviewEvent::decode(event.payload.as_slice()).map(|e| self.review(&e, event.time_ms))
            }
            Source::Ratings => Ok(()),
            Source::Catalog if keys::PRODUCT_EVENTS.contains(&event.r#type.as_str()) => {
                catalog::Product::decode(event.payload.as_slice())
                    .map(|p| self.model.set_category(&p.sku, (!p.category.is_empty()).then_some(p.category.as_str())))
            }
            Source::Catalog => Ok(()),
            Source::Interactions if event.r#type == keys::INTERACTION_RECORDED => {
                pb::RecordInteractionRequest::decode(event.payload.as_slice())
                    .map(|r| self.interaction(&r, event.time_ms))
            }
            Source::Interactions => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(log = source.log_name(), sequence = event.sequence, error = %e, "undecodable event passed over");
        }
    }

    fn order(&mut self, event: &orders::OrderEvent, time_ms: i64) {
        let Some(order) = &event.order else { return };
        let now = counts_as_purchase(order.state);
        let before = self.counted.contains_key(&order.order_id);
        if now == before {
            return;
        }
        if now {
            let mut skus: Vec<String> = order.lines.iter().map(|l| l.sku.clone()).collect();
            skus.sort_unstable();
            skus.dedup();
            for sku in &skus {
                self.model.adjust_order_purchase(&order.user_id, sku, 1, time_ms);
            }
            self.counted.insert(order.order_id.clone(), CountedOrder { user: order.user_id.clone(), skus });
        } else if let Some(gone) = self.counted.remove(&order.order_id) {
            for sku in &gone.skus {
                self.model.adjust_order_purchase(&gone.user, sku, -1, time_ms);
            }
        }
    }

    fn review(&mut self, event: &ratings::ReviewEvent, time_ms: i64) {
        let published = event.status == ratings::ReviewStatus::Published as i32 && (1..=5).contains(&event.rating);
        self.model.set_review(&event.user_id, &event.sku, published.then_some(f64::from(event.rating)), time_ms);
    }

    fn interaction(&mut self, req: &pb::RecordInteractionRequest, time_ms: i64) {
        let Some(kind) = validate::kind(req.kind) else { return };
        let at_ms =
            req.at.as_ref().map_or(time_ms, |t| t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000));
        self.model.observe(&req.user_id, &req.item, kind, req.value, at_ms);
    }
}

/// Settings of the live projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The model's knobs.
    pub model: ModelConfig,
    /// How often the model is rebuilt from the logs (`recommendation.rebuild_secs`, default
    /// 600 s; 0 turns the periodic rebuild off).
    pub rebuild_every: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { model: ModelConfig::default(), rebuild_every: Duration::from_secs(600) }
    }
}

impl Config {
    /// Reads `recommendation.rebuild_secs` and `recommendation.neighbours`.
    pub fn from_settings(settings: &meshwork_common::Settings) -> Config {
        let default = Config::default();
        Config {
            model: ModelConfig {
                neighbours: settings.get_or("recommendation.neighbours", default.model.neighbours).clamp(1, 1000),
                ..default.model
            },
            rebuild_every: Duration::from_secs(settings.get_or("recommendation.rebuild_secs", 600u64)),
        }
    }
}

/// What one rebuild found.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    /// The positions the rebuild read up to (and compared at).
    pub positions: Positions,
    /// Differences between the incremental model and the rebuilt one (empty: the same).
    pub differences: Vec<String>,
    /// Whether the rebuilt model replaced the incremental one.
    pub swapped: bool,
}

/// Metrics of the projection.
mod metrics {
    use std::sync::LazyLock;

    use prometheus::IntCounterVec;

    /// Rebuilds, by outcome (`same`, `different`, `failed`).
    pub static REBUILDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        meshwork_telemetry::metrics::counter(
            "meshwork_recommendation_rebuilds_total",
            "full rebuilds of the recommendation model from the event logs, by outcome (same, different, failed)",
            &["outcome"],
        )
    });
}

/// A replica's live projection: the model in memory, shared by the handlers (read lock) and
/// the task following the logs (write lock, per batch of events). Cheap to clone.
#[derive(Clone)]
pub struct Live {
    state: Arc<RwLock<Projection>>,
    store: DynStore,
    config: Config,
    /// True once the follower has applied every event that was in the logs when it started.
    ready: Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Events applied under one write lock, at most.
const BATCH: usize = 512;

impl Live {
    /// Returns an empty live projection on `store` (start [`Live::follow`] to fill it).
    pub fn new(store: DynStore, config: Config) -> Self {
        Live {
            state: Arc::new(RwLock::new(Projection::new(config.model.clone()))),
            store,
            config,
            ready: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Returns whether the model has caught up with the logs as they were when following
    /// started (before that it answers from part of the history).
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the model has caught up with the logs (see [`Live::is_ready`]), at most
    /// `limit`; returns whether it has.
    pub async fn ready_within(&self, limit: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        matches!(tokio::time::timeout(limit, rx.wait_for(|ready| *ready)).await, Ok(Ok(_)))
    }

    /// Returns the heads of the four logs now; a log that cannot be read counts as empty
    /// (readiness must not wait for a store that is down).
    async fn heads(&self) -> Positions {
        let mut heads = [0; 4];
        for source in Source::ALL {
            match EventLog::new(self.store.clone(), source.log_name()).head().await {
                Ok(head) => heads[source.index()] = head,
                Err(e) => tracing::warn!(log = source.log_name(), error = %e, "reading an event log's head failed"),
            }
        }
        heads
    }

    /// Runs `f` on the current model (under the read lock: keep it short, never await in it).
    pub fn read<T>(&self, f: impl FnOnce(&ItemItemModel) -> T) -> T {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard.model)
    }

    /// Returns a copy of the projection (for tests and comparisons).
    pub fn snapshot(&self) -> Projection {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Returns the last sequence applied from each log.
    pub fn positions(&self) -> Positions {
        self.state.read().unwrap_or_else(|p| p.into_inner()).positions
    }

    /// Follows the four logs from where the projection is, applying events in batches, until
    /// the task is aborted.
    pub async fn follow(self) {
        let from = self.positions();
        let start_heads = self.heads().await;
        let caught_up = |p: &Positions| p.iter().zip(&start_heads).all(|(p, h)| p >= h);
        if caught_up(&from) {
            self.ready.send_replace(true);
        }
        let streams = Source::ALL.map(|source| {
            EventLog::new(self.store.clone(), source.log_name())
                .follow(from[source.index()] + 1)
                .map(move |item| (source, item))
                .boxed()
        });
        let mut merged = futures::stream::select_all(streams);
        while let Some(first) = merged.next().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match futures::FutureExt::now_or_never(merged.next()) {
                    Some(Some(item)) => batch.push(item),
                    _ => break,
                }
            }
            let mut failed = false;
            {
                let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
                for (source, item) in batch {
                    match item {
                        Ok(event) => guard.apply(source, &event),
                        Err(e) => {
                            tracing::warn!(log = source.log_name(), error = %e, "reading an event log failed");
                            failed = true;
                        }
                    }
                }
                guard.model.refresh();
                if !*self.ready.borrow() && caught_up(&guard.positions) {
                    tracing::info!(positions = ?guard.positions, stats = ?guard.model.stats(), "recommendation model caught up");
                    self.ready.send_replace(true);
                }
            }
            if failed {
                // An undecodable event is yielded again on the next read: do not spin on it.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Rebuilds every `rebuild_every` until the task is aborted.
    pub async fn rebuild_periodically(self) {
        if self.config.rebuild_every.is_zero() {
            return;
        }
        loop {
            tokio::time::sleep(self.config.rebuild_every).await;
            if let Err(e) = self.rebuild().await {
                metrics::REBUILDS.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %e, "rebuilding the recommendation model failed");
            }
        }
    }

    /// Rebuilds the model from the logs: reads each log from sequence 1 up to the position the
    /// incremental model has reached, compares the two (logging and counting differences),
    /// then catches the rebuilt one up with events applied meanwhile and swaps it in.
    pub async fn rebuild(&self) -> ServiceResult<RebuildReport> {
        let incremental = self.snapshot();
        let positions = incremental.positions;
        let mut fresh = Projection::new(self.config.model.clone());
        self.read_into(&mut fresh, positions).await?;
        // Rescanning and comparing whole models is CPU work: off the async workers.
        let (mut fresh, differences) = tokio::task::spawn_blocking(move || {
            fresh.model.refresh();
            let differences = incremental.model.differences(&fresh.model, 20);
            (fresh, differences)
        })
        .await
        .map_err(|e| meshwork_common::ServiceError::Internal(format!("the rebuild's comparison failed: {e}")))?;
        if differences.is_empty() {
            metrics::REBUILDS.with_label_values(&["same"]).inc();
            tracing::info!(?positions, stats = ?fresh.model.stats(), "recommendation model rebuilt: same as incremental");
        } else {
            metrics::REBUILDS.with_label_values(&["different"]).inc();
            tracing::warn!(?positions, ?differences, "recommendation model rebuilt: the incremental one differed");
        }
        // Catch up with what the follower applied meanwhile; swap once level with it.
        for _ in 0..5 {
            let target = self.positions();
            if target != fresh.positions {
                self.read_into(&mut fresh, target).await?;
                fresh.model.refresh();
            }
            let level = {
                let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
                let level = guard.positions == fresh.positions;
                if level {
                    *guard = std::mem::replace(&mut fresh, Projection::new(self.config.model.clone()));
                }
                level
            };
            if level {
                return Ok(RebuildReport { positions, differences, swapped: true });
            }
        }
        Ok(RebuildReport { positions, differences, swapped: false })
    }

    /// Applies to `projection` the events after its positions up to `to`, log by log.
    async fn read_into(&self, projection: &mut Projection, to: Positions) -> ServiceResult<()> {
        for source in Source::ALL {
            let log = EventLog::new(self.store.clone(), source.log_name());
            let end = to[source.index()];
            loop {
                let next = projection.positions[source.index()] + 1;
                if next > end {
                    break;
                }
                let events = log.read(next, 500).await?;
                if events.is_empty() {
                    break;
                }
                for event in events.iter().take_while(|e| e.sequence <= end) {
                    projection.apply(source, event);
                }
                if events.last().is_some_and(|e| e.sequence >= end) {
                    break;
                }
            }
            // Trimmed events (or a log shorter than expected) must not stall the catch-up.
            let p = &mut projection.positions[source.index()];
            *p = (*p).max(end);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: u64, r#type: &str, payload: Vec<u8>) -> Event {
        Event { sequence, r#type: r#type.into(), time_ms: 1000 * sequence as i64, payload, traceparent: String::new() }
    }

    fn order_event(sequence: u64, id: &str, user: &str, skus: &[&str], state: orders::OrderState) -> Event {
        let order = orders::Order {
            order_id: id.into(),
            user_id: user.into(),
            state: state as i32,
            lines: skus
                .iter()
                .map(|s| orders::OrderLine { sku: s.to_string(), quantity: 1, ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let e = orders::OrderEvent { order: Some(order), ..Default::default() };
        event(sequence, "order.state_changed", e.encode_to_vec())
    }

    fn review_event(sequence: u64, user: &str, sku: &str, rating: i32, status: ratings::ReviewStatus) -> Event {
        let e = ratings::ReviewEvent {
            review_id: format!("{user}-{sku}"),
            sku: sku.into(),
            user_id: user.into(),
            rating,
            status: status as i32,
            ..Default::default()
        };
        event(sequence, "review.submitted", e.encode_to_vec())
    }

    #[test]
    fn orders_count_from_confirmation_until_cancelled_or_returned() {
        use orders::OrderState as S;
        let mut p = Projection::new(ModelConfig::default());
        p.apply(Source::Orders, &order_event(1, "o1", "u", &["A-1", "B-1", "A-1"], S::Created));
        assert_eq!(p.model.weight("u", "A-1"), 0.0);
        p.apply(Source::Orders, &order_event(2, "o1", "u", &["A-1", "B-1", "A-1"], S::Confirmed));
        p.apply(Source::Orders, &order_event(3, "o1", "u", &["A-1", "B-1", "A-1"], S::Shipped));
        assert_eq!(p.model.weight("u", "A-1"), 4.0);
        assert_eq!(p.model.similar("A-1", 5)[0].item, "B-1");
        // A replayed event is not applied twice.
        p.apply(Source::Orders, &order_event(2, "o1", "u", &["A-1", "B-1"], S::Confirmed));
        p.apply(Source::Orders, &order_event(4, "o1", "u", &["A-1", "B-1", "A-1"], S::Cancelled));
        assert_eq!(p.model.weight("u", "A-1"), 0.0);
        assert!(p.model.similar("A-1", 5).is_empty());
        assert_eq!(p.positions(), [4, 0, 0, 0]);
    }

    #[test]
    fn only_published_reviews_count_and_an_edit_replaces_the_rating() {
        use ratings::ReviewStatus as R;
        let mut p = Projection::new(ModelConfig::default());
        p.apply(Source::Ratings, &review_event(1, "u", "A-1", 5, R::Pending));
        assert_eq!(p.model.weight("u", "A-1"), 0.0);
        p.apply(Source::Ratings, &review_event(2, "u", "A-1", 5, R::Published));
        assert_eq!(p.model.weight("u", "A-1"), 5.0);
        p.apply(Source::Ratings, &review_event(3, "u", "A-1", 2, R::Published));
        assert_eq!(p.model.weight("u", "A-1"), 2.0);
        p.apply(Source::Ratings, &review_event(4, "u", "A-1", 2, R::Rejected));
        assert_eq!(p.model.weight("u", "A-1"), 0.0);
    }

    #[tokio::test]
    async fn a_live_model_is_ready_once_it_has_read_what_the_logs_held_at_start() {
        let store = meshwork_test_support::memory_store();
        let log = EventLog::new(store.clone(), keys::ORDERS_LOG);
        for n in 0..3u64 {
            let e = order_event(0, &format!("o{n}"), "u", &["A-1", "B-1"], orders::OrderState::Confirmed);
            log.append_alone("order.state_changed", e.payload).await.unwrap();
        }
        let live = Live::new(store, Config::default());
        assert!(!live.is_ready());
        assert!(!live.ready_within(Duration::from_millis(20)).await, "nothing follows the logs yet");
        let follower = tokio::spawn(live.clone().follow());
        assert!(live.ready_within(Duration::from_secs(5)).await);
        assert_eq!(live.positions(), [3, 0, 0, 0]);
        assert_eq!(live.read(|m| m.similar("A-1", 1))[0].item, "B-1");
        follower.abort();
    }

    #[test]
    fn catalog_products_give_categories_and_interactions_are_observed() {
        let mut p = Projection::new(ModelConfig::default());
        let product = catalog::Product { sku: "TV-1".into(), category: "electronics/tv".into(), ..Default::default() };
        p.apply(Source::Catalog, &event(1, "catalog.product_created", product.encode_to_vec()));
        p.apply(Source::Catalog, &event(2, "checkout.started", b"not a product".to_vec()));
        assert_eq!(p.model.category("TV-1"), Some("electronics/tv"));
        let view = pb::RecordInteractionRequest {
            request_id: "r".into(),
            user_id: "u".into(),
            item: "TV-1".into(),
            kind: pb::InteractionKind::View as i32,
            value: 0.0,
            at: None,
        };
        p.apply(Source::Interactions, &event(1, keys::INTERACTION_RECORDED, view.encode_to_vec()));
        p.apply(Source::Interactions, &event(2, keys::INTERACTION_RECORDED, vec![0xff, 0xff]));
        assert_eq!(p.model.interaction_counts("TV-1"), [1, 0, 0, 0]);
        assert_eq!(p.positions(), [0, 0, 2, 2]);
    }
}
