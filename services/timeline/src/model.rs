//! Records the timeline service keeps in the Store, and the payloads of its events; all are
//! versioned JSON ([`Record`]).

use meshwork_common::record::Record;
use serde::{Deserialize, Serialize};

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The handle as written at creation (the key holds it lower case).
    pub handle: String,
    pub display_name: String,
    pub created_ms: i64,
}

impl Record for UserRecord {
    const KIND: &'static str = "timeline user";
}

/// One edge of the follow graph (stored under both ends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowRecord {
    pub since_ms: i64,
}

impl Record for FollowRecord {
    const KIND: &'static str = "timeline follow";
}

/// A post or a repost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostRecord {
    pub id: u64,
    /// Lower-case handle.
    pub author: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub reply_to: Option<u64>,
    #[serde(default)]
    pub repost_of: Option<u64>,
    pub created_ms: i64,
    /// True when followers' inboxes get it (the author was not a celebrity when it was
    /// written); false when readers pull it. Decided once, at creation.
    pub pushed: bool,
    /// The author's follower count when it was written.
    #[serde(default)]
    pub followers_at_post: u64,
}

impl Record for PostRecord {
    const KIND: &'static str = "timeline post";
}

/// The plan of one post's fan-out: its follower list cut into chunks, one task each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanoutJob {
    pub post_id: u64,
    pub author: String,
    /// Followers counted when planned.
    pub followers: u64,
    pub chunks: u32,
    pub planned_ms: i64,
}

impl Record for FanoutJob {
    const KIND: &'static str = "timeline fan-out job";
}

/// One chunk of a fan-out: followers of `author` from `start` (inclusive) to `end`
/// (exclusive; `None` = to the end of the list). Claimed by a worker with a lease (`owner`,
/// `lease_until_ms`), advanced batch by batch with `checkpoint` (the last follower written)
/// in the same conditional write as the batch's inbox entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanoutTask {
    pub post_id: u64,
    pub chunk: u32,
    pub author: String,
    pub start: String,
    #[serde(default)]
    pub end: Option<String>,
    /// Followers in the chunk when planned.
    pub total: u64,
    /// Inboxes written so far.
    #[serde(default)]
    pub written: u64,
    /// The last follower whose inbox was written; the next batch starts after it.
    #[serde(default)]
    pub checkpoint: Option<String>,
    #[serde(default)]
    pub done: bool,
    /// Set when the post was deleted before the chunk was done.
    #[serde(default)]
    pub cancelled: bool,
    /// The worker holding the lease ("" when none).
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub lease_until_ms: i64,
    /// Leases taken over from another worker (a crashed or stalled one).
    #[serde(default)]
    pub takeovers: u32,
    /// When the last batch was written (0 while not done).
    #[serde(default)]
    pub done_ms: i64,
}

impl Record for FanoutTask {
    const KIND: &'static str = "timeline fan-out task";
}

/// What the service's event log carries: one of these, JSON-encoded, per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimelineEvent {
    /// A post (or repost) was written.
    PostCreated { post_id: u64, author: String, pushed: bool },
    /// A post was deleted.
    PostDeleted { post_id: u64, author: String },
    /// `user` started following `target`.
    Followed { user: String, target: String },
    /// `user` stopped following `target`.
    Unfollowed { user: String, target: String },
}

impl Record for TimelineEvent {
    const KIND: &'static str = "timeline event";
}

/// Event types in the log (`Event::type`).
pub mod event_type {
    pub const POST_CREATED: &str = "post.created";
    pub const POST_DELETED: &str = "post.deleted";
    pub const FOLLOWED: &str = "user.followed";
    pub const UNFOLLOWED: &str = "user.unfollowed";
}
