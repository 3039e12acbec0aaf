//! The ratings operations over the Store. Every change of a review, its aggregate, its
//! moderation-queue entry, the spam signals' state and its event in the `ratings` log is one
//! transaction, so that the aggregates stay exact under concurrency and the log never misses
//! or invents a change.
//!
//! Within one process, writes to the same product queue on a lock stripe (by sku) before
//! their transaction: they all read-modify-write the product's aggregate record and the event
//! log's head, so running them optimistically side by side would only make them retry. Across
//! replicas the transactions stay optimistic (conflicts retry).

use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_common::clock::Clock;
use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::events::EventLog;
use meshwork_common::idempotency::{Fingerprint, Idempotency};
use meshwork_common::locks::LockStripes;
use meshwork_common::mesh::{CallContext, MeshClient};
use meshwork_common::paging::{self, PageToken};
use meshwork_common::server::ServiceContext;
use meshwork_common::{Record, random_id};
use meshwork_proto::pb::orders::v1 as orders;
use meshwork_proto::pb::orders::v1::orders_client::OrdersClient;
use meshwork_proto::pb::ratings::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, Txn, scan_all, transact};
use prost::Message;

use crate::aggregate::Aggregate;
use crate::keys;
use crate::model::{
    ActivityRecord, BucketMember, BucketRecord, ReplyRecord, ReportRecord, ReviewRecord, RevisionRecord, Status,
    VoteRecord,
};
use crate::spam::{self, Reason, Route, Signals};
use crate::validate;

/// Event type of a first review.
pub const EVENT_SUBMITTED: &str = "review.submitted";
/// Event type of a second submit by the same user (an edit).
pub const EVENT_EDITED: &str = "review.edited";
/// Event type of a status change by a moderator (or by abuse reports).
pub const EVENT_MODERATED: &str = "review.moderated";

/// Role that may moderate.
pub const MODERATOR_ROLE: &str = "moderator";
/// Role that may reply as a seller.
pub const SELLER_ROLE: &str = "seller";

const STRIPES: usize = 64;

/// Tunables.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pages of a user's orders (100 each, newest first) read for the verified-purchase check.
    pub order_pages: usize,
    /// Distinct abuse reports that send a PUBLISHED review back to the moderation queue.
    pub report_threshold: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config { order_pages: 5, report_threshold: 3 }
    }
}

/// The ratings service's operations.
pub struct Ratings {
    store: DynStore,
    clock: Arc<dyn Clock>,
    mesh: MeshClient,
    idem: Idempotency,
    events: EventLog,
    stripes: LockStripes,
    config: Config,
}

fn decode<T: Record>(value: Option<meshwork_storage::Versioned>) -> ServiceResult<Option<T>> {
    value.map(|v| T::decode(&v.value).map_err(ServiceError::from)).transpose()
}

fn encode<T: Record>(record: &T) -> ServiceResult<Vec<u8>> {
    Ok(record.encode()?)
}

/// Checks that `caller` (if any) may act for `user_id`: it is that user or an admin.
fn act_for(caller: Option<&Caller>, user_id: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if c.subject != user_id && !c.is_admin() => Err(ServiceError::PermissionDenied(format!(
            "{:?} may not act for user {user_id:?}: acting for another user needs the \"admin\" role",
            c.subject
        ))),
        _ => Ok(()),
    }
}

/// Checks that `caller` (if any) has one of `roles` or is an admin.
fn need_role(caller: Option<&Caller>, role: &str, what: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if !c.has_role(role) && !c.is_admin() => Err(ServiceError::PermissionDenied(format!(
            "{what} needs the {role:?} or \"admin\" role; {:?} has neither",
            c.subject
        ))),
        _ => Ok(()),
    }
}

impl Ratings {
    /// Returns the service on `ctx`.
    pub fn new(ctx: &ServiceContext, config: Config) -> Self {
        Ratings {
            store: ctx.store.clone(),
            clock: ctx.clock.clone(),
            mesh: ctx.mesh.clone(),
            idem: Idempotency::new(ctx.store.clone(), "ratings").with_clock(ctx.clock.clone()),
            events: EventLog::new(ctx.store.clone(), "ratings").with_clock(ctx.clock.clone()),
            stripes: LockStripes::new(STRIPES),
            config,
        }
    }

    fn stripe(&self, sku: &str) -> &tokio::sync::Mutex<()> {
        self.stripes.stripe(&[sku.as_bytes()])
    }

    /// Returns whether the orders service shows a DELIVERED or RETURN_REQUESTED order (a return
    /// is only requested after delivery) with `sku` for `user_id`, reading at most
    /// [`Config::order_pages`] pages of the user's orders, newest first. RETURNED orders do
    /// not count: the buyer gave the item back. When orders cannot answer (down, slow,
    /// refusing), the review is submitted unverified rather than refused: a review should not
    /// depend on another service being up, and the next edit checks again.
    pub async fn verified_purchase(&self, cx: &CallContext, user_id: &str, sku: &str) -> ServiceResult<bool> {
        let mut client = OrdersClient::new(self.mesh.channel());
        let mut page_token = String::new();
        for _ in 0..self.config.order_pages {
            let request = cx.outgoing(orders::ListOrdersRequest {
                user_id: user_id.to_string(),
                page_size: 100,
                page_token: page_token.clone(),
            })?;
            let page = match client.list_orders(request).await {
                Ok(page) => page.into_inner(),
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "orders did not answer; review submitted unverified");
                    return Ok(false);
                }
            };
            let delivered = page.orders.iter().any(|o| {
                matches!(
                    orders::OrderState::try_from(o.state),
                    Ok(orders::OrderState::Delivered | orders::OrderState::ReturnRequested)
                ) && o.lines.iter().any(|l| l.sku == sku)
            });
            if delivered {
                return Ok(true);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(false)
    }

    /// Submits or edits `user_id`'s review of `sku`.
    pub async fn submit(
        &self,
        caller: Option<&Caller>,
        cx: &CallContext,
        req: pb::SubmitReviewRequest,
    ) -> ServiceResult<pb::SubmitReviewResponse> {
        validate::submit(&req)?;
        act_for(caller, &req.user_id)?;
        let verified = self.verified_purchase(cx, &req.user_id, &req.sku).await?;
        let _turn = self.stripe(&req.sku).lock().await;
        let req = &req;
        self.idem
            .transact(&req.request_id, Fingerprint::of(req), |tx| Box::pin(self.submit_in(tx, req, verified)))
            .await
    }

    async fn submit_in(
        &self,
        tx: Txn,
        req: &pb::SubmitReviewRequest,
        verified: bool,
    ) -> ServiceResult<pb::SubmitReviewResponse> {
        let now = self.clock.now_ms();
        let author_key = keys::author(&req.sku, &req.user_id);
        let existing_id = tx.get(&author_key).await?.map(|v| String::from_utf8_lossy(&v.value).into_owned());
        let existing: Option<ReviewRecord> = match &existing_id {
            Some(id) => Some(
                decode(tx.get(&keys::review(&req.sku, id)).await?)?
                    .ok_or_else(|| ServiceError::Internal(format!("review {id} of the author index is missing")))?,
            ),
            None => None,
        };
        let review_id = existing_id.unwrap_or_else(|| random_id("rev_", 20));
        let mut aggregate: Aggregate = decode(tx.get(&keys::aggregate(&req.sku)).await?)?.unwrap_or_default();
        let mut product: ActivityRecord = decode(tx.get(&keys::activity(&req.sku)).await?)?.unwrap_or_default();
        let mut account: ActivityRecord = decode(tx.get(&keys::account(&req.user_id)).await?)?.unwrap_or_default();

        // Near-duplicates: other reviews sharing enough LSH bands with this text.
        let text = format!("{}\n{}", req.title, req.body);
        let mut signals =
            Signals { verified, rating: req.rating, product_histogram: aggregate.histogram, ..Default::default() };
        let mut buckets = Vec::new();
        if let Some(signature) = spam::signature(&text) {
            let mut shared: std::collections::BTreeMap<String, usize> = Default::default();
            for (band, hash) in spam::bands(&signature).into_iter().enumerate() {
                let key = keys::lsh(band, hash);
                let bucket: BucketRecord = decode(tx.get(&key).await?)?.unwrap_or_default();
                for m in &bucket.members {
                    if m.review_id != review_id {
                        *shared.entry(m.review_id.clone()).or_default() += 1;
                    }
                }
                buckets.push((key, bucket));
            }
            let duplicates: Vec<&String> =
                shared.iter().filter(|(_, n)| **n >= spam::DUPLICATE_BANDS).map(|(id, _)| id).collect();
            signals.near_duplicates = duplicates.len() as u32;
            signals.duplicate_example = duplicates.first().map(|s| s.to_string()).unwrap_or_default();
        }
        // Rates: a first review counts towards the product's burst; every submit towards the
        // account's velocity.
        if existing.is_none() {
            product.record_product(now);
        }
        let (product_hour, _) = spam::recent_counts(&product.recent, now);
        signals.product_last_hour = product_hour;
        signals.product_baseline_per_hour = spam::baseline_per_hour(product.total, product_hour, product.first_ms, now);
        signals.new_account = account.total == 0;
        account.record_account(now);
        (signals.account_last_hour, signals.account_last_day) = spam::recent_counts(&account.recent, now);
        let verdict = spam::score(&text, &signals);

        let mut status = match verdict.route {
            Route::Published => Status::Published,
            Route::Pending => Status::Pending,
            Route::Rejected => Status::Rejected,
        };
        if status == Status::Published && existing.as_ref().is_some_and(|e| e.moderator_rejected) {
            // A moderator refused an earlier version: an edit goes back to a moderator.
            status = Status::Pending;
        }
        let previous = existing.as_ref().map(|e| (e.status, e.rating));
        let mut review = match &existing {
            Some(e) => {
                tx.put(keys::revision(&review_id, e.revision), encode(&RevisionRecord::of(e))?);
                if e.status == Status::Published {
                    aggregate.apply(e.rating, e.verified, -1);
                }
                if e.queued_ms != 0 {
                    tx.delete(keys::queue(e.queued_ms, &review_id));
                }
                ReviewRecord { revision: e.revision + 1, ..e.clone() }
            }
            None => {
                tx.put(author_key, review_id.clone().into_bytes());
                tx.put(keys::review_sku(&review_id), req.sku.clone().into_bytes());
                ReviewRecord {
                    review_id: review_id.clone(),
                    sku: req.sku.clone(),
                    user_id: req.user_id.clone(),
                    rating: 0,
                    title: String::new(),
                    body: String::new(),
                    media_urls: Vec::new(),
                    status,
                    verified,
                    helpful: 0,
                    unhelpful: 0,
                    reports: 0,
                    spam_score: 0,
                    spam_reasons: Vec::new(),
                    moderation_reason: String::new(),
                    moderator_rejected: false,
                    reply: None,
                    revision: 1,
                    create_ms: now,
                    update_ms: now,
                    queued_ms: 0,
                }
            }
        };
        review.rating = req.rating;
        review.title = req.title.clone();
        review.body = req.body.clone();
        review.media_urls = req.media_urls.clone();
        review.status = status;
        review.verified = verified;
        review.spam_score = verdict.score;
        review.spam_reasons = verdict.reasons;
        review.update_ms = now;
        review.queued_ms = 0;
        if status == Status::Published {
            aggregate.apply(review.rating, review.verified, 1);
        }
        if status == Status::Pending {
            review.queued_ms = now;
            tx.put(keys::queue(now, &review_id), req.sku.clone().into_bytes());
        }
        let member = BucketMember { review_id: review_id.clone(), sku: req.sku.clone(), user_id: req.user_id.clone() };
        for (key, mut bucket) in buckets {
            bucket.add(member.clone());
            tx.put(key, encode(&bucket)?);
        }
        tx.put(keys::review(&req.sku, &review_id), encode(&review)?);
        tx.put(keys::aggregate(&req.sku), encode(&aggregate)?);
        tx.put(keys::activity(&req.sku), encode(&product)?);
        tx.put(keys::account(&req.user_id), encode(&account)?);
        let kind = if existing.is_some() { EVENT_EDITED } else { EVENT_SUBMITTED };
        self.events.append(&tx, kind, review.event(previous, now).encode_to_vec()).await?;
        Ok(pb::SubmitReviewResponse { review: Some(review.to_pb()), edited: existing.is_some() })
    }

    /// Returns the sku of `review_id` (NOT_FOUND when there is no such review).
    async fn sku_of(&self, review_id: &str) -> ServiceResult<String> {
        match self.store.get(&keys::review_sku(review_id)).await? {
            Some(v) => Ok(String::from_utf8_lossy(&v.value).into_owned()),
            None => Err(ServiceError::not_found(format!("review {review_id}"))),
        }
    }

    async fn load(&self, tx: &Txn, sku: &str, review_id: &str) -> ServiceResult<ReviewRecord> {
        decode(tx.get(&keys::review(sku, review_id)).await?)?
            .ok_or_else(|| ServiceError::not_found(format!("review {review_id}")))
    }

    /// Returns a review and its earlier versions. A review that is not PUBLISHED is shown
    /// only to its author, moderators and admins when the caller is known.
    pub async fn get(
        &self,
        caller: Option<&Caller>,
        req: &pb::GetReviewRequest,
    ) -> ServiceResult<pb::GetReviewResponse> {
        validate::get(req)?;
        let sku = self.sku_of(&req.review_id).await?;
        let review: ReviewRecord = decode(self.store.get(&keys::review(&sku, &req.review_id)).await?)?
            .ok_or_else(|| ServiceError::not_found(format!("review {}", req.review_id)))?;
        if let Some(c) = caller {
            let privileged = c.subject == review.user_id || c.has_role(MODERATOR_ROLE) || c.is_admin();
            if review.status != Status::Published && !privileged {
                return Err(ServiceError::not_found(format!("review {}", req.review_id)));
            }
        }
        let history = scan_all(&self.store, KeyRange::prefix(keys::revisions_of(&req.review_id)), Direction::Forward)
            .await?
            .iter()
            .map(|e| RevisionRecord::decode(&e.value).map(|r| r.to_pb()).map_err(ServiceError::from))
            .collect::<ServiceResult<Vec<_>>>()?;
        Ok(pb::GetReviewResponse { review: Some(review.to_pb()), history })
    }

    /// Returns a page of a product's PUBLISHED reviews, filtered and sorted. The product's
    /// reviews are read with one scan and sorted in memory (the page token is the offset, tied
    /// to the query), which suits products with up to tens of thousands of reviews.
    pub async fn list(&self, req: &pb::ListReviewsRequest) -> ServiceResult<pb::ListReviewsResponse> {
        let page_size = validate::list(req)?;
        let mut stars = req.stars.clone();
        stars.sort_unstable();
        stars.dedup();
        let star_bytes: Vec<u8> = stars.iter().map(|s| *s as u8).collect();
        let fp = paging::fingerprint(&[
            req.sku.as_bytes(),
            &req.sort.to_be_bytes(),
            &star_bytes,
            &[u8::from(req.verified_only)],
        ]);
        let offset = match PageToken::decode(&req.page_token, fp)? {
            Some(token) => {
                let raw: [u8; 8] = token
                    .resume_key
                    .as_slice()
                    .try_into()
                    .map_err(|_| ServiceError::invalid("page_token", "is not a token returned by this query"))?;
                u64::from_be_bytes(raw) as usize
            }
            None => 0,
        };
        let entries = scan_all(&self.store, KeyRange::prefix(keys::reviews_of(&req.sku)), Direction::Forward).await?;
        let mut reviews = Vec::new();
        for entry in entries {
            let r = ReviewRecord::decode(&entry.value)?;
            if r.status == Status::Published
                && (stars.is_empty() || stars.contains(&r.rating))
                && (!req.verified_only || r.verified)
            {
                reviews.push(r);
            }
        }
        let sort = pb::ReviewSort::try_from(req.sort).unwrap_or(pb::ReviewSort::Helpful);
        reviews.sort_by(|a, b| {
            let newest = b.update_ms.cmp(&a.update_ms).then_with(|| a.review_id.cmp(&b.review_id));
            match sort {
                pb::ReviewSort::Unspecified | pb::ReviewSort::Helpful => {
                    (b.helpful - b.unhelpful).cmp(&(a.helpful - a.unhelpful)).then(newest)
                }
                pb::ReviewSort::Newest => newest,
                pb::ReviewSort::RatingHigh => b.rating.cmp(&a.rating).then(newest),
                pb::ReviewSort::RatingLow => a.rating.cmp(&b.rating).then(newest),
            }
        });
        let end = offset.saturating_add(page_size).min(reviews.len());
        let page: Vec<pb::Review> = reviews.get(offset..end).unwrap_or_default().iter().map(|r| r.to_pb()).collect();
        let next_page_token = if end < reviews.len() {
            PageToken { resume_key: (end as u64).to_be_bytes().to_vec(), fingerprint: fp }.encode()
        } else {
            String::new()
        };
        Ok(pb::ListReviewsResponse { reviews: page, next_page_token })
    }

    /// Returns the stored aggregate of `sku` (zero for a product without PUBLISHED reviews).
    pub async fn aggregate(&self, sku: &str) -> ServiceResult<Aggregate> {
        Ok(decode(self.store.get(&keys::aggregate(sku)).await?)?.unwrap_or_default())
    }

    /// Returns a product's rating.
    pub async fn product_rating(&self, req: &pb::GetProductRatingRequest) -> ServiceResult<pb::ProductRating> {
        validate::product_rating(req)?;
        let a = self.aggregate(&req.sku).await?;
        Ok(pb::ProductRating {
            sku: req.sku.clone(),
            count: a.count,
            mean: a.mean(),
            histogram: a.histogram.to_vec(),
            verified_count: a.verified,
            wilson_lower_bound: a.wilson_lower_bound(),
            bayesian_average: a.bayesian_average(),
        })
    }

    /// Sets `user_id`'s helpful vote on a review.
    pub async fn vote(&self, caller: Option<&Caller>, req: &pb::VoteHelpfulRequest) -> ServiceResult<pb::Review> {
        validate::vote(req)?;
        act_for(caller, &req.user_id)?;
        let sku = self.sku_of(&req.review_id).await?;
        let _turn = self.stripe(&sku).lock().await;
        let now = self.clock.now_ms();
        transact(&self.store, |tx| {
            let sku = sku.clone();
            Box::pin(async move {
                let mut review = self.load(&tx, &sku, &req.review_id).await?;
                if review.user_id == req.user_id {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "user {:?} wrote review {} and may not vote on their own review",
                        req.user_id, req.review_id
                    )));
                }
                if review.status != Status::Published {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "review {} is not published; only published reviews take votes",
                        req.review_id
                    )));
                }
                let key = keys::vote(&req.review_id, &req.user_id);
                let earlier: Option<VoteRecord> = decode(tx.get(&key).await?)?;
                if earlier.as_ref().map(|v| v.helpful) == Some(req.helpful) {
                    return Ok(review.to_pb());
                }
                match earlier {
                    Some(v) if v.helpful => review.helpful -= 1,
                    Some(_) => review.unhelpful -= 1,
                    None => {}
                }
                if req.helpful {
                    review.helpful += 1;
                } else {
                    review.unhelpful += 1;
                }
                tx.put(key, encode(&VoteRecord { helpful: req.helpful, time_ms: now })?);
                tx.put(keys::review(&sku, &req.review_id), encode(&review)?);
                Ok(review.to_pb())
            })
        })
        .await
    }

    /// Records `user_id`'s abuse report; at [`Config::report_threshold`] distinct reports a
    /// PUBLISHED review goes back to the moderation queue (an event `review.moderated`).
    pub async fn report(&self, caller: Option<&Caller>, req: &pb::ReportReviewRequest) -> ServiceResult<pb::Review> {
        validate::report(req)?;
        act_for(caller, &req.user_id)?;
        let sku = self.sku_of(&req.review_id).await?;
        let _turn = self.stripe(&sku).lock().await;
        let now = self.clock.now_ms();
        let threshold = self.config.report_threshold;
        transact(&self.store, |tx| {
            let sku = sku.clone();
            Box::pin(async move {
                let mut review = self.load(&tx, &sku, &req.review_id).await?;
                if review.user_id == req.user_id {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "user {:?} wrote review {}; an author does not report their own review",
                        req.user_id, req.review_id
                    )));
                }
                let key = keys::report(&req.review_id, &req.user_id);
                if tx.get(&key).await?.is_some() {
                    return Ok(review.to_pb());
                }
                tx.put(key, encode(&ReportRecord { reason: req.reason.clone(), time_ms: now })?);
                review.reports += 1;
                if review.reports >= threshold && review.status == Status::Published {
                    let previous = (review.status, review.rating);
                    let mut aggregate: Aggregate = decode(tx.get(&keys::aggregate(&sku)).await?)?.unwrap_or_default();
                    aggregate.apply(review.rating, review.verified, -1);
                    tx.put(keys::aggregate(&sku), encode(&aggregate)?);
                    review.status = Status::Pending;
                    review.queued_ms = now;
                    review.spam_reasons.push(Reason {
                        code: "abuse_reports".into(),
                        detail: format!("{} users reported it; latest reason: {}", review.reports, req.reason),
                        points: 0,
                    });
                    tx.put(keys::queue(now, &req.review_id), sku.clone().into_bytes());
                    self.events.append(&tx, EVENT_MODERATED, review.event(Some(previous), now).encode_to_vec()).await?;
                }
                tx.put(keys::review(&sku, &req.review_id), encode(&review)?);
                Ok(review.to_pb())
            })
        })
        .await
    }

    /// Returns a page of the moderation queue, longest waiting first.
    pub async fn queue(
        &self,
        caller: Option<&Caller>,
        req: &pb::ListModerationQueueRequest,
    ) -> ServiceResult<pb::ListModerationQueueResponse> {
        let page_size = validate::queue(req)?;
        need_role(caller, MODERATOR_ROLE, "reading the moderation queue")?;
        let fp = paging::fingerprint(&[b"moderation-queue"]);
        let mut range = KeyRange::prefix(keys::QUEUE.to_vec());
        if let Some(token) = PageToken::decode(&req.page_token, fp)? {
            if !token.resume_key.starts_with(keys::QUEUE) {
                return Err(ServiceError::invalid("page_token", "is not a token returned by this query"));
            }
            range.start = std::ops::Bound::Included(token.resume_key);
        }
        let page = self.store.scan(range, page_size, Direction::Forward).await?;
        let mut reviews = Vec::with_capacity(page.entries.len());
        for entry in &page.entries {
            let sku = String::from_utf8_lossy(&entry.value).into_owned();
            let Some(review_id) = entry.key.rsplit(|b| *b == b'/').next() else { continue };
            let review_id = String::from_utf8_lossy(review_id).into_owned();
            // A queue entry whose review moved on between the scan and this read is skipped.
            if let Some(review) = decode::<ReviewRecord>(self.store.get(&keys::review(&sku, &review_id)).await?)?
                && review.status == Status::Pending
            {
                reviews.push(review.to_pb());
            }
        }
        let next_page_token =
            page.next.map(|next| PageToken { resume_key: next, fingerprint: fp }.encode()).unwrap_or_default();
        Ok(pb::ListModerationQueueResponse { reviews, next_page_token })
    }

    /// Applies a moderator's decision.
    pub async fn moderate(&self, caller: Option<&Caller>, req: &pb::ModerateRequest) -> ServiceResult<pb::Review> {
        let decision = validate::moderate(req)?;
        need_role(caller, MODERATOR_ROLE, "moderating")?;
        let sku = self.sku_of(&req.review_id).await?;
        let _turn = self.stripe(&sku).lock().await;
        let now = self.clock.now_ms();
        transact(&self.store, |tx| {
            let sku = sku.clone();
            Box::pin(async move {
                let mut review = self.load(&tx, &sku, &req.review_id).await?;
                let previous = (review.status, review.rating);
                let status =
                    if decision == pb::ModerationDecision::Publish { Status::Published } else { Status::Rejected };
                if previous.0 != status {
                    let mut aggregate: Aggregate = decode(tx.get(&keys::aggregate(&sku)).await?)?.unwrap_or_default();
                    if previous.0 == Status::Published {
                        aggregate.apply(review.rating, review.verified, -1);
                    }
                    if status == Status::Published {
                        aggregate.apply(review.rating, review.verified, 1);
                    }
                    tx.put(keys::aggregate(&sku), encode(&aggregate)?);
                }
                if review.queued_ms != 0 {
                    tx.delete(keys::queue(review.queued_ms, &req.review_id));
                    review.queued_ms = 0;
                }
                review.status = status;
                review.moderator_rejected = status == Status::Rejected;
                review.moderation_reason = req.reason.clone();
                tx.put(keys::review(&sku, &req.review_id), encode(&review)?);
                self.events.append(&tx, EVENT_MODERATED, review.event(Some(previous), now).encode_to_vec()).await?;
                Ok(review.to_pb())
            })
        })
        .await
    }

    /// Adds the seller's one reply to a review.
    pub async fn reply(&self, caller: Option<&Caller>, req: &pb::ReplyToReviewRequest) -> ServiceResult<pb::Review> {
        validate::reply(req)?;
        need_role(caller, SELLER_ROLE, "replying as a seller")?;
        if let Some(c) = caller
            && c.subject != req.seller_id
            && !c.is_admin()
        {
            return Err(ServiceError::PermissionDenied(format!(
                "{:?} may not reply as seller {:?}",
                c.subject, req.seller_id
            )));
        }
        let sku = self.sku_of(&req.review_id).await?;
        let _turn = self.stripe(&sku).lock().await;
        let now = self.clock.now_ms();
        transact(&self.store, |tx| {
            let sku = sku.clone();
            Box::pin(async move {
                let mut review = self.load(&tx, &sku, &req.review_id).await?;
                if review.reply.is_some() {
                    return Err(ServiceError::AlreadyExists {
                        what: format!("a seller reply to review {}", req.review_id),
                    });
                }
                review.reply =
                    Some(ReplyRecord { seller_id: req.seller_id.clone(), body: req.body.clone(), time_ms: now });
                tx.put(keys::review(&sku, &req.review_id), encode(&review)?);
                Ok(review.to_pb())
            })
        })
        .await
    }

    /// Returns every review of `sku` as stored (for recomputing the aggregate in tests and
    /// audits).
    pub async fn reviews_of(&self, sku: &str) -> ServiceResult<Vec<ReviewRecord>> {
        scan_all(&self.store, KeyRange::prefix(keys::reviews_of(sku)), Direction::Forward)
            .await?
            .iter()
            .map(|e| ReviewRecord::decode(&e.value).map_err(ServiceError::from))
            .collect()
    }
}

/// Returns the aggregate of `reviews` computed from scratch.
pub fn recompute(reviews: &[ReviewRecord]) -> Aggregate {
    let mut a = Aggregate::default();
    for r in reviews.iter().filter(|r| r.status == Status::Published) {
        a.apply(r.rating, r.verified, 1);
    }
    a
}
