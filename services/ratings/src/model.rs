//! The records the ratings service stores (versioned JSON, [`Record`]) and their conversion
//! to the wire types.

use meshwork_common::Record;
use meshwork_common::fields::{timestamp, timestamp_opt};
use meshwork_proto::pb::ratings::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::spam::{ACCOUNT_RECENT, PRODUCT_RECENT, Reason};

/// Members kept per LSH bucket (the newest): enough to find a campaign, bounded in size.
pub const BUCKET_MEMBERS: usize = 32;

/// A review's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Published,
    Pending,
    Rejected,
}

impl Status {
    /// Returns the wire value.
    pub fn to_pb(self) -> pb::ReviewStatus {
        match self {
            Status::Published => pb::ReviewStatus::Published,
            Status::Pending => pb::ReviewStatus::Pending,
            Status::Rejected => pb::ReviewStatus::Rejected,
        }
    }
}

/// The seller's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRecord {
    pub seller_id: String,
    pub body: String,
    pub time_ms: i64,
}

/// A review as stored under [`crate::keys::review`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    pub review_id: String,
    pub sku: String,
    pub user_id: String,
    pub rating: i32,
    pub title: String,
    pub body: String,
    pub media_urls: Vec<String>,
    pub status: Status,
    pub verified: bool,
    pub helpful: i32,
    pub unhelpful: i32,
    pub reports: i32,
    pub spam_score: i32,
    pub spam_reasons: Vec<Reason>,
    pub moderation_reason: String,
    /// A moderator rejected it: an edit does not publish it again by itself.
    pub moderator_rejected: bool,
    pub reply: Option<ReplyRecord>,
    pub revision: u32,
    pub create_ms: i64,
    pub update_ms: i64,
    /// When it entered the moderation queue (its queue key), 0 when not PENDING.
    pub queued_ms: i64,
}

impl Record for ReviewRecord {
    const KIND: &'static str = "review record";
}

impl ReviewRecord {
    /// Returns the wire form.
    pub fn to_pb(&self) -> pb::Review {
        pb::Review {
            review_id: self.review_id.clone(),
            sku: self.sku.clone(),
            user_id: self.user_id.clone(),
            rating: self.rating,
            title: self.title.clone(),
            body: self.body.clone(),
            media_urls: self.media_urls.clone(),
            status: self.status.to_pb() as i32,
            verified_purchase: self.verified,
            helpful_votes: self.helpful,
            unhelpful_votes: self.unhelpful,
            report_count: self.reports,
            spam_score: self.spam_score,
            spam_reasons: self
                .spam_reasons
                .iter()
                .map(|r| pb::SpamReason { code: r.code.clone(), detail: r.detail.clone(), points: r.points })
                .collect(),
            moderation_reason: self.moderation_reason.clone(),
            seller_reply: self.reply.as_ref().map(|r| pb::SellerReply {
                seller_id: r.seller_id.clone(),
                body: r.body.clone(),
                create_time: Some(timestamp(r.time_ms)),
            }),
            revision: self.revision as i32,
            create_time: timestamp_opt(self.create_ms),
            update_time: timestamp_opt(self.update_ms),
        }
    }

    /// Returns the event payload for this review after a change from `previous` (status and
    /// rating; `None` for a first submit).
    pub fn event(&self, previous: Option<(Status, i32)>, now_ms: i64) -> pb::ReviewEvent {
        pb::ReviewEvent {
            review_id: self.review_id.clone(),
            sku: self.sku.clone(),
            user_id: self.user_id.clone(),
            rating: self.rating,
            status: self.status.to_pb() as i32,
            previous_status: previous.map_or(pb::ReviewStatus::Unspecified, |(s, _)| s.to_pb()) as i32,
            previous_rating: previous.map_or(0, |(_, r)| r),
            verified_purchase: self.verified,
            time: Some(timestamp(now_ms)),
        }
    }
}

/// An earlier version of a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub revision: u32,
    pub rating: i32,
    pub title: String,
    pub body: String,
    pub media_urls: Vec<String>,
    pub status: Status,
    pub time_ms: i64,
}

impl Record for RevisionRecord {
    const KIND: &'static str = "review revision";
}

impl RevisionRecord {
    /// Returns the version `review` is now, to keep before an edit replaces it.
    pub fn of(review: &ReviewRecord) -> Self {
        RevisionRecord {
            revision: review.revision,
            rating: review.rating,
            title: review.title.clone(),
            body: review.body.clone(),
            media_urls: review.media_urls.clone(),
            status: review.status,
            time_ms: review.update_ms,
        }
    }

    /// Returns the wire form.
    pub fn to_pb(&self) -> pb::ReviewRevision {
        pb::ReviewRevision {
            revision: self.revision as i32,
            rating: self.rating,
            title: self.title.clone(),
            body: self.body.clone(),
            media_urls: self.media_urls.clone(),
            status: self.status.to_pb() as i32,
            time: timestamp_opt(self.time_ms),
        }
    }
}

/// A helpful vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRecord {
    pub helpful: bool,
    pub time_ms: i64,
}

impl Record for VoteRecord {
    const KIND: &'static str = "helpful vote";
}

/// An abuse report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRecord {
    pub reason: String,
    pub time_ms: i64,
}

impl Record for ReportRecord {
    const KIND: &'static str = "abuse report";
}

/// Recent submit times of a product or an account, newest last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRecord {
    /// First submit seen.
    pub first_ms: i64,
    /// Submits counted so far.
    pub total: u64,
    /// The latest submit times (at most [`PRODUCT_RECENT`] or [`ACCOUNT_RECENT`]).
    pub recent: Vec<i64>,
}

impl Record for ActivityRecord {
    const KIND: &'static str = "activity record";
}

impl ActivityRecord {
    /// Counts a submit at `now_ms`, keeping the `keep` latest times.
    pub fn record(&mut self, now_ms: i64, keep: usize) {
        if self.total == 0 {
            self.first_ms = now_ms;
        }
        self.total += 1;
        self.recent.push(now_ms);
        let excess = self.recent.len().saturating_sub(keep);
        self.recent.drain(..excess);
    }

    /// The product form of [`ActivityRecord::record`].
    pub fn record_product(&mut self, now_ms: i64) {
        self.record(now_ms, PRODUCT_RECENT);
    }

    /// The account form of [`ActivityRecord::record`].
    pub fn record_account(&mut self, now_ms: i64) {
        self.record(now_ms, ACCOUNT_RECENT);
    }
}

/// A review in an LSH bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketMember {
    pub review_id: String,
    pub sku: String,
    pub user_id: String,
}

/// The reviews whose text fell in one LSH bucket (the newest [`BUCKET_MEMBERS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub members: Vec<BucketMember>,
}

impl Record for BucketRecord {
    const KIND: &'static str = "lsh bucket";
}

impl BucketRecord {
    /// Adds `member` unless it is in already, dropping the oldest beyond the bound.
    pub fn add(&mut self, member: BucketMember) {
        if self.members.iter().any(|m| m.review_id == member.review_id) {
            return;
        }
        self.members.push(member);
        let excess = self.members.len().saturating_sub(BUCKET_MEMBERS);
        self.members.drain(..excess);
    }
}
