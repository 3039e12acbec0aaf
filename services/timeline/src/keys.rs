//! Every storage key of the timeline service, in one place. Handles are stored lower case
//! (`[a-z0-9_]{3,15}`: no `/`, so one user's prefix never covers another's); post ids are
//! written as 16 hex digits, plainly (`<id>`, oldest first) or inverted (`<inv>` =
//! `u64::MAX - id`, newest first), so that key order is time order. Layout:
//!
//! - `timeline/users/<handle>`                          -> user record
//! - `timeline/counts/<handle>/<kind>/<shard>`          -> i64 big-endian, one shard of a user counter
//! - `timeline/following/<user>/<target>`               -> follow record (ListFollowing, read path)
//! - `timeline/followers/<target>/<user>`               -> follow record (ListFollowers, fan-out)
//! - `timeline/posts/<id>`                              -> post record
//! - `timeline/posts/<id>/<kind>/<shard>`               -> i64, one shard of a post counter
//! - `timeline/by-author/<author>/<inv>`                -> empty (GetUserTimeline, pulls)
//! - `timeline/inbox/<user>/<inv>`                      -> author handle (pushed home entries)
//! - `timeline/inbox-floor/<user>`                      -> u64 big-endian: ids at or below it may be
//!   missing from the inbox (trimmed, or older than a backfill reached); 0 = none missing,
//!   written by CreateUser; absent (users made before floors existed) = unknown
//! - `timeline/likes/<id>/<user>`                       -> the counter shard the like went to
//! - `timeline/reposts/<id>/<user>`                     -> the repost's id (16 hex)
//! - `timeline/celebs/<author>`                         -> empty: authors whose posts are pulled
//! - `timeline/fanout/jobs/<id>`                        -> fan-out job (the plan of one post)
//! - `timeline/fanout/tasks/<id>/<chunk>`               -> fan-out task (one chunk of followers)
//! - `timeline/fanout/pending/<id>/<chunk>`             -> empty while the task is not done
//! - `timeline/fanout/pending-mark`                     -> the pending markers' low-water mark:
//!   no live marker lies below its key (see `fanout::PendingMark`)
//! - `timeline/node-counter`                            -> the snowflake node id allocator
//! - `timeline/events/...`, `timeline/event-head`, `timeline/consumers/...` -> event log (kit)
//! - `timeline/requests/...`                            -> idempotency records (kit)

/// The service's key prefix, event log and idempotency namespace.
pub const SERVICE: &str = "timeline";

/// Shards of every counter (likes, reposts, followers...): concurrent increments of one
/// counter meet on one key only one time in this many.
pub const COUNTER_SHARDS: u32 = 16;

/// Returns an id as 16 hex digits (key order = id order).
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}

/// Returns an id inverted, as 16 hex digits (key order = newest first).
pub fn inv(id: u64) -> String {
    format!("{:016x}", u64::MAX - id)
}

/// Parses the 16 hex digits at the end of a key written by [`inv`] back to the id.
pub fn id_of_inverted_key(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(16)?..)?;
    let raw = u64::from_str_radix(std::str::from_utf8(tail).ok()?, 16).ok()?;
    Some(u64::MAX - raw)
}

/// Parses 16 hex digits written by [`hex`].
pub fn parse_hex(text: &[u8]) -> Option<u64> {
    if text.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
}

/// Returns the key of a user record.
pub fn user(handle: &str) -> Vec<u8> {
    format!("timeline/users/{handle}").into_bytes()
}

/// Returns the prefix of one user counter's shards (`kind`: followers, following, posts).
pub fn user_count_prefix(handle: &str, kind: &str) -> Vec<u8> {
    format!("timeline/counts/{handle}/{kind}/").into_bytes()
}

/// Returns the prefix of one post counter's shards (`kind`: likes, reposts).
pub fn post_count_prefix(id: u64, kind: &str) -> Vec<u8> {
    format!("timeline/posts/{}/{kind}/", hex(id)).into_bytes()
}

/// Returns the key of shard `shard` of the counter at `prefix`.
pub fn shard(prefix: &[u8], shard: u32) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{shard:02}").as_bytes());
    key
}

/// Returns the prefix of whom `user` follows.
pub fn following_prefix(user: &str) -> Vec<u8> {
    format!("timeline/following/{user}/").into_bytes()
}

/// Returns the key saying `user` follows `target`.
pub fn following(user: &str, target: &str) -> Vec<u8> {
    format!("timeline/following/{user}/{target}").into_bytes()
}

/// Returns the prefix of who follows `target`.
pub fn followers_prefix(target: &str) -> Vec<u8> {
    format!("timeline/followers/{target}/").into_bytes()
}

/// Returns the key saying `user` follows `target`, in the target's follower list.
pub fn follower(target: &str, user: &str) -> Vec<u8> {
    format!("timeline/followers/{target}/{user}").into_bytes()
}

/// Returns the handle at the end of a following or followers key.
pub fn last_segment(key: &[u8]) -> Option<&str> {
    let pos = key.iter().rposition(|b| *b == b'/')?;
    std::str::from_utf8(&key[pos + 1..]).ok().filter(|s| !s.is_empty())
}

/// Returns the key of a post record; the post's counters sort right after it.
pub fn post(id: u64) -> Vec<u8> {
    format!("timeline/posts/{}", hex(id)).into_bytes()
}

/// Returns the prefix of an author's posts, newest first.
pub fn by_author_prefix(author: &str) -> Vec<u8> {
    format!("timeline/by-author/{author}/").into_bytes()
}

/// Returns the index key of an author's post.
pub fn by_author(author: &str, id: u64) -> Vec<u8> {
    format!("timeline/by-author/{author}/{}", inv(id)).into_bytes()
}

/// Returns the prefix of a user's home inbox, newest first.
pub fn inbox_prefix(user: &str) -> Vec<u8> {
    format!("timeline/inbox/{user}/").into_bytes()
}

/// Returns the inbox key of post `id` in `user`'s inbox (the post id makes writes idempotent).
pub fn inbox(user: &str, id: u64) -> Vec<u8> {
    format!("timeline/inbox/{user}/{}", inv(id)).into_bytes()
}

/// Returns the key of `user`'s inbox floor (see the layout above).
pub fn inbox_floor(user: &str) -> Vec<u8> {
    format!("timeline/inbox-floor/{user}").into_bytes()
}

/// Returns the post id of a key under `timeline/posts/<id>` (the record or a counter shard).
pub fn post_id_of_key(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(b"timeline/posts/".as_slice())?;
    parse_hex(rest.get(..16)?)
}

/// Returns the key of `user`'s like of post `id`.
pub fn like(id: u64, user: &str) -> Vec<u8> {
    format!("timeline/likes/{}/{user}", hex(id)).into_bytes()
}

/// Returns the prefix of a post's likes.
pub fn likes_prefix(id: u64) -> Vec<u8> {
    format!("timeline/likes/{}/", hex(id)).into_bytes()
}

/// Returns the key of `user`'s repost of post `id`.
pub fn repost(id: u64, user: &str) -> Vec<u8> {
    format!("timeline/reposts/{}/{user}", hex(id)).into_bytes()
}

/// Returns the prefix of a post's reposts.
pub fn reposts_prefix(id: u64) -> Vec<u8> {
    format!("timeline/reposts/{}/", hex(id)).into_bytes()
}

/// Returns the prefix of the celebrity markers.
pub fn celebs_prefix() -> Vec<u8> {
    b"timeline/celebs/".to_vec()
}

/// Returns the marker of an author whose posts are pulled at read time.
pub fn celeb(author: &str) -> Vec<u8> {
    format!("timeline/celebs/{author}").into_bytes()
}

/// Returns the key of a post's fan-out job.
pub fn job(id: u64) -> Vec<u8> {
    format!("timeline/fanout/jobs/{}", hex(id)).into_bytes()
}

/// Returns the prefix of a post's fan-out tasks.
pub fn tasks_prefix(id: u64) -> Vec<u8> {
    format!("timeline/fanout/tasks/{}/", hex(id)).into_bytes()
}

/// Returns the key of one fan-out task.
pub fn task(id: u64, chunk: u32) -> Vec<u8> {
    format!("timeline/fanout/tasks/{}/{chunk:05}", hex(id)).into_bytes()
}

/// Returns the prefix of every pending fan-out task, oldest post first.
pub fn pending_prefix() -> Vec<u8> {
    b"timeline/fanout/pending/".to_vec()
}

/// Returns the pending marker of one fan-out task.
pub fn pending(id: u64, chunk: u32) -> Vec<u8> {
    format!("timeline/fanout/pending/{}/{chunk:05}", hex(id)).into_bytes()
}

/// Returns the key of the pending markers' low-water mark (outside [`pending_prefix`]).
pub fn pending_mark() -> Vec<u8> {
    b"timeline/fanout/pending-mark".to_vec()
}

/// Returns the (post id, chunk) of a pending marker key.
pub fn parse_pending(key: &[u8]) -> Option<(u64, u32)> {
    let rest = key.strip_prefix(pending_prefix().as_slice())?;
    let (id, chunk) = rest.split_at_checked(16)?;
    let chunk = chunk.strip_prefix(b"/")?;
    Some((parse_hex(id)?, std::str::from_utf8(chunk).ok()?.parse().ok()?))
}

/// Returns the key of the snowflake node id allocator.
pub fn node_counter() -> Vec<u8> {
    b"timeline/node-counter".to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverted_ids_sort_newest_first_and_parse_back() {
        let (old, new) = (5u64, 1 << 40);
        assert!(inbox("ann", new) < inbox("ann", old));
        assert!(by_author("ann", new) < by_author("ann", old));
        assert_eq!(id_of_inverted_key(&inbox("ann", new)), Some(new));
        assert_eq!(id_of_inverted_key(&by_author("ann", old)), Some(old));
        assert!(task(7, 2) < task(7, 10));
        assert_eq!(parse_pending(&pending(7, 12)), Some((7, 12)));
        assert_eq!(parse_pending(b"timeline/fanout/pending/xyz"), None);
    }

    #[test]
    fn a_post_record_sorts_before_its_counters_and_other_posts_after() {
        assert!(post(9) < shard(&post_count_prefix(9, "likes"), 0));
        assert!(shard(&post_count_prefix(9, "reposts"), 15) < post(10));
        assert_eq!(last_segment(&follower("bob", "ann")), Some("ann"));
        assert_eq!(post_id_of_key(&post(9)), Some(9));
        assert_eq!(post_id_of_key(&shard(&post_count_prefix(9, "likes"), 3)), Some(9));
        assert_eq!(post_id_of_key(b"timeline/posts/xyz"), None);
        assert!(!inbox_floor("ann").starts_with(&inbox_prefix("ann")));
    }
}
