//! The recommendation operations, independent of gRPC. RecordInteraction appends the
//! interaction to this service's event log, idempotent by `request_id` (the record and the
//! event are one store write); every replica learns it from the log, like purchases and
//! reviews. The queries read the replica's in-memory model ([`Live`]) under a read lock and
//! never touch the store; a replica that just started waits for its model to catch up with
//! the logs (at most 5 s) before its first answers.

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::caller::Caller;
use meshwork_common::fields;
use meshwork_common::{Clock, EventLog, Fingerprint, Idempotency, ServiceError, ServiceResult};
use meshwork_proto::pb::recommendation::v1 as pb;
use meshwork_storage::DynStore;
use prost::Message;

use crate::keys;
use crate::model::{Exclude, Filter, ItemItemModel, Scored};
use crate::projection::Live;
use crate::validate;

/// How long a query waits, at most, for a replica that just started to catch up with the
/// logs before it answers from what it has.
const WARM_UP_WAIT: Duration = Duration::from_secs(5);

/// The recommendation service of one replica.
pub struct Recommendations {
    clock: Arc<dyn Clock>,
    idempotency: Idempotency,
    events: EventLog,
    live: Live,
}

impl std::fmt::Debug for Recommendations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recommendations").field("live", &self.live).finish_non_exhaustive()
    }
}

/// Succeeds when an anonymous caller, the user themself or an admin asks about `user_id`.
fn may_act_for(caller: Option<&Caller>, user_id: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if c.subject != user_id && !c.is_admin() => Err(ServiceError::PermissionDenied(format!(
            "{:?} may not act for {:?}: that needs the admin role",
            c.subject, user_id
        ))),
        _ => Ok(()),
    }
}

impl Recommendations {
    /// Returns the service on `store`, timed by `clock`, answering from `live`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, live: Live) -> Self {
        Recommendations {
            idempotency: Idempotency::new(store.clone(), keys::SERVICE).with_clock(clock.clone()),
            events: EventLog::new(store, keys::SERVICE).with_clock(clock.clone()),
            clock,
            live,
        }
    }

    /// Returns the replica's live model.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Waits (briefly, once) for a replica that just started to catch up with the logs, so
    /// that its first answers are not built from part of the history.
    async fn warmed_up(&self) {
        if !self.live.is_ready() && !self.live.ready_within(WARM_UP_WAIT).await {
            tracing::warn!("answering before the recommendation model caught up with the logs");
        }
    }

    /// Appends one interaction to the recommendation log and returns its sequence.
    pub async fn record_interaction(
        &self,
        req: &pb::RecordInteractionRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::RecordInteractionResponse> {
        let checked = validate::record_interaction(req, self.clock.now_ms())?;
        may_act_for(caller, &req.user_id)?;
        // The stored event carries the time it happened, so replays and rebuilds agree.
        let stored = pb::RecordInteractionRequest { at: Some(fields::timestamp(checked.at_ms)), ..req.clone() };
        let payload = stored.encode_to_vec();
        self.idempotency
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                let payload = payload.clone();
                Box::pin(async move {
                    let sequence = self.events.append(&tx, keys::INTERACTION_RECORDED, payload).await?;
                    Ok(pb::RecordInteractionResponse { sequence })
                })
            })
            .await
    }

    /// The user's recommendations (popularity in the category for a user without history).
    pub async fn recommend_for_user(
        &self,
        req: &pb::RecommendForUserRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::RecommendForUserResponse> {
        let (k, category) = validate::recommend_for_user(req)?;
        may_act_for(caller, &req.user_id)?;
        self.warmed_up().await;
        let exclude = if req.exclude_purchased { Exclude::Purchased } else { Exclude::Nothing };
        Ok(self.live.read(|m| {
            let answer = m.recommend_with(&req.user_id, k, Filter { exclude, category: category.as_deref() });
            let items = answer
                .items
                .into_iter()
                .map(|s| {
                    let reason = match &s.because {
                        Some(by) => {
                            let verb = m.strongest_kind(&req.user_id, by).map_or("liked", |kind| kind.verb());
                            format!("because you {verb} {by}")
                        }
                        None => popular_reason(category.as_deref()),
                    };
                    scored(m, s, reason)
                })
                .collect();
            pb::RecommendForUserResponse { items, cold_start: answer.cold_start }
        }))
    }

    /// The items most similar to one item.
    pub async fn similar_items(&self, req: &pb::SimilarItemsRequest) -> ServiceResult<pb::SimilarItemsResponse> {
        let k = validate::similar_items(req)?;
        self.warmed_up().await;
        Ok(self.live.read(|m| {
            let items = m
                .similar(&req.item, k)
                .into_iter()
                .map(|s| {
                    let reason = format!("customers who chose {} also chose this", req.item);
                    scored(m, s, reason)
                })
                .collect();
            pb::SimilarItemsResponse { items }
        }))
    }

    /// The most active items of the window.
    pub async fn trending(&self, req: &pb::TrendingRequest) -> ServiceResult<pb::TrendingResponse> {
        let (k, category, window) = validate::trending(req)?;
        self.warmed_up().await;
        let since = self.clock.now_ms() - window.as_millis() as i64;
        Ok(self.live.read(|m| {
            let reason = match &category {
                Some(c) => format!("trending in {c}"),
                None => "trending".to_string(),
            };
            let items =
                m.trending(category.as_deref(), since, k).into_iter().map(|s| scored(m, s, reason.clone())).collect();
            pb::TrendingResponse { items }
        }))
    }
}

fn popular_reason(category: Option<&str>) -> String {
    match category {
        Some(c) => format!("popular in {c}"),
        None => "popular".to_string(),
    }
}

fn scored(m: &ItemItemModel, s: Scored, reason: String) -> pb::ScoredItem {
    pb::ScoredItem {
        category: m.category(&s.item).unwrap_or_default().to_string(),
        item: s.item,
        score: s.score,
        because_item: s.because.unwrap_or_default(),
        reason,
    }
}
