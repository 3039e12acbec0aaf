//! Every key the ratings service writes, under `ratings/`. Skus match `[A-Z0-9-]{3,40}` and
//! review ids `rev_[0-9A-Za-z]{20}`, so neither holds a `/` and a user id may follow them as
//! the last segment of a key. Numbers are big-endian, so key order is number order.

/// `ratings/reviews/<sku>/<review_id>`: a review.
pub fn review(sku: &str, review_id: &str) -> Vec<u8> {
    format!("ratings/reviews/{sku}/{review_id}").into_bytes()
}

/// The prefix of every review of `sku`.
pub fn reviews_of(sku: &str) -> Vec<u8> {
    format!("ratings/reviews/{sku}/").into_bytes()
}

/// `ratings/review-skus/<review_id>`: the sku of a review (written once, never changed), to
/// find a review by its id.
pub fn review_sku(review_id: &str) -> Vec<u8> {
    format!("ratings/review-skus/{review_id}").into_bytes()
}

/// `ratings/authors/<sku>/<user_id>`: the review id of a user's review of a product (one per
/// user per product).
pub fn author(sku: &str, user_id: &str) -> Vec<u8> {
    format!("ratings/authors/{sku}/{user_id}").into_bytes()
}

/// `ratings/revisions/<review_id>/<revision>`: an earlier version of a review.
pub fn revision(review_id: &str, revision: u32) -> Vec<u8> {
    let mut key = revisions_of(review_id);
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

/// The prefix of a review's earlier versions.
pub fn revisions_of(review_id: &str) -> Vec<u8> {
    format!("ratings/revisions/{review_id}/").into_bytes()
}

/// `ratings/votes/<review_id>/<user_id>`: one user's helpful vote.
pub fn vote(review_id: &str, user_id: &str) -> Vec<u8> {
    format!("ratings/votes/{review_id}/{user_id}").into_bytes()
}

/// `ratings/reports/<review_id>/<user_id>`: one user's abuse report.
pub fn report(review_id: &str, user_id: &str) -> Vec<u8> {
    format!("ratings/reports/{review_id}/{user_id}").into_bytes()
}

/// The prefix of the moderation queue.
pub const QUEUE: &[u8] = b"ratings/queue/";

/// `ratings/queue/<queued_ms>/<review_id>`: a PENDING review, oldest first; the value is its
/// sku.
pub fn queue(queued_ms: i64, review_id: &str) -> Vec<u8> {
    let mut key = QUEUE.to_vec();
    // Times are after 1970, so the i64 is non-negative and its u64 big-endian bytes sort.
    key.extend_from_slice(&(queued_ms.max(0) as u64).to_be_bytes());
    key.push(b'/');
    key.extend_from_slice(review_id.as_bytes());
    key
}

/// `ratings/aggregates/<sku>`: a product's aggregate over its PUBLISHED reviews.
pub fn aggregate(sku: &str) -> Vec<u8> {
    format!("ratings/aggregates/{sku}").into_bytes()
}

/// `ratings/activity/<sku>`: a product's recent submit times (the burst signal).
pub fn activity(sku: &str) -> Vec<u8> {
    format!("ratings/activity/{sku}").into_bytes()
}

/// `ratings/accounts/<user_id>`: an account's review times (the velocity signal).
pub fn account(user_id: &str) -> Vec<u8> {
    format!("ratings/accounts/{user_id}").into_bytes()
}

/// `ratings/lsh/<band>/<hash>`: the reviews whose text falls in one LSH bucket.
pub fn lsh(band: usize, hash: u64) -> Vec<u8> {
    let mut key = b"ratings/lsh/".to_vec();
    key.push(band as u8);
    key.push(b'/');
    key.extend_from_slice(&hash.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_by_time() {
        assert!(queue(999, "rev_b") < queue(1000, "rev_a"));
        assert!(revision("rev_a", 2) < revision("rev_a", 10));
        assert!(review("AB-1", "rev_x").starts_with(&reviews_of("AB-1")));
        assert!(!review("AB-10", "rev_x").starts_with(&reviews_of("AB-1")));
    }
}
