//! Spam scoring of a review at submit time, as pure functions: the text features (MinHash
//! signatures over word shingles and their LSH bands, links, e-mail addresses, phone
//! numbers), the rate features (a burst on one product against its own baseline, an
//! account's velocity) and the score that adds the points of every signal that fired, with
//! its reasons, and routes the review to PUBLISHED, PENDING or REJECTED. The state the rate
//! and duplicate signals need (recent submit times, LSH buckets) lives in the store and is
//! read and written by the service in the submit's transaction; this module only computes.

use serde::{Deserialize, Serialize};

/// Words per shingle.
pub const SHINGLE_WORDS: usize = 3;
/// Hash functions of a MinHash signature.
pub const SIGNATURE_LEN: usize = BANDS * ROWS;
/// LSH bands (each one store key per review).
pub const BANDS: usize = 16;
/// Signature rows per band: two texts share a band with probability `jaccard^ROWS`.
pub const ROWS: usize = 4;
/// Texts with fewer shingles are too short to call near-duplicates (short texts such as
/// "great value, works well" repeat naturally).
pub const MIN_SHINGLES: usize = 8;
/// Bands two texts must share to count as near-duplicates: with 16 bands of 4 rows, texts of
/// Jaccard similarity 0.85 share about 8.4 bands, texts of 0.3 about 0.13.
pub const DUPLICATE_BANDS: usize = 5;

/// Score at or above which a review waits for a moderator.
pub const PENDING_AT: i32 = 40;
/// Score at or above which a review is refused outright.
pub const REJECTED_AT: i32 = 70;

/// Submits to one product in the last hour that make a burst, at least.
pub const BURST_MIN: u32 = 10;
/// A burst is also more than this many times the product's baseline hourly rate.
pub const BURST_FACTOR: f64 = 6.0;
/// Submit times kept per product (enough to count a burst of `BURST_MIN` and well above).
pub const PRODUCT_RECENT: usize = 64;
/// Submit times kept per account.
pub const ACCOUNT_RECENT: usize = 32;
/// Reviews by one account in one hour beyond which it is too fast.
pub const VELOCITY_HOUR: u32 = 5;
/// Reviews by one account in one day beyond which it is too fast.
pub const VELOCITY_DAY: u32 = 15;
/// Words below which a text is short.
pub const SHORT_WORDS: usize = 8;

const HOUR_MS: i64 = 3_600_000;

/// Where a score sends a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// Shown and counted.
    Published,
    /// Waits in the moderation queue.
    Pending,
    /// Refused.
    Rejected,
}

/// One signal that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code (`near_duplicate`, `product_burst`...).
    pub code: String,
    /// Detail for moderators.
    pub detail: String,
    /// Points added.
    pub points: i32,
}

/// The outcome of scoring: 0-100 points, why, and where the review goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub score: i32,
    pub reasons: Vec<Reason>,
    pub route: Route,
}

/// What the service knows about a submit when it scores it.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Other reviews (other products, or other users) whose text shares at least
    /// [`DUPLICATE_BANDS`] bands with this one; one example id for the detail.
    pub near_duplicates: u32,
    pub duplicate_example: String,
    /// Submits to the product in the last hour, this one included, and its baseline rate per
    /// hour before that hour.
    pub product_last_hour: u32,
    pub product_baseline_per_hour: f64,
    /// Whether this is the account's first review (the service knows accounts by their
    /// reviews: a first review is a new account's).
    pub new_account: bool,
    /// Reviews by the account in the last hour and day, this one included.
    pub account_last_hour: u32,
    pub account_last_day: u32,
    pub verified: bool,
    /// 1 to 5.
    pub rating: i32,
    /// The product's PUBLISHED histogram (1 to 5 stars) before this review.
    pub product_histogram: [i64; 5],
}

/// Returns the lower-cased words of `text` (letters and digits; apostrophes dropped).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.replace('\'', "").to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// FNV-1a, 64 bits: a stable hash (the signature must be the same on every replica and
/// release, which `std`'s hasher does not promise).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64's finaliser: a cheap permutation standing for an independent hash per seed.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Returns the hashes of the distinct `SHINGLE_WORDS`-word shingles of `text`.
pub fn shingles(text: &str) -> Vec<u64> {
    let words = words(text);
    let mut out: Vec<u64> = words.windows(SHINGLE_WORDS).map(|w| fnv(w.join(" ").as_bytes())).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Returns the MinHash signature of `text`, or `None` when it has fewer than
/// [`MIN_SHINGLES`] shingles.
pub fn signature(text: &str) -> Option<Vec<u64>> {
    let shingles = shingles(text);
    if shingles.len() < MIN_SHINGLES {
        return None;
    }
    let sig = (0..SIGNATURE_LEN as u64)
        .map(|seed| {
            let salt = mix(seed.wrapping_add(0x9e37_79b9_7f4a_7c15));
            shingles.iter().map(|&s| mix(s ^ salt)).min().unwrap_or(u64::MAX)
        })
        .collect();
    Some(sig)
}

/// Returns the `BANDS` band hashes of a signature: texts that share one are candidates.
pub fn bands(signature: &[u64]) -> Vec<u64> {
    signature
        .chunks(ROWS)
        .enumerate()
        .map(|(band, rows)| mix(rows.iter().fold(band as u64, |h, &r| mix(h ^ r))))
        .collect()
}

/// Returns the estimated Jaccard similarity of two signatures (shared minima / length).
pub fn similarity(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// Contact details found in a text: links, e-mail addresses, phone numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contacts {
    pub links: u32,
    pub emails: u32,
    pub phones: u32,
}

const TLDS: &[&str] = &[".com", ".net", ".org", ".io", ".biz", ".info", ".ru", ".cn", ".xyz", ".top", ".shop", ".co"];

/// Returns the links, e-mail addresses and phone numbers in `text`.
pub fn contacts(text: &str) -> Contacts {
    let mut found = Contacts::default();
    for token in text.split_whitespace() {
        let t = token.trim_matches(|c: char| matches!(c, '(' | ')' | '<' | '>' | '"' | '\'' | ',' | ';' | '!' | '?'));
        let lower = t.to_lowercase();
        let lower = lower.trim_end_matches('.');
        if let Some((local, domain)) = lower.split_once('@')
            && !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
        {
            found.emails += 1;
            continue;
        }
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("www.")
            || TLDS.iter().any(|tld| lower.ends_with(tld) && lower.len() > tld.len() + 1 && !lower.contains(' '))
            || TLDS.iter().any(|tld| lower.contains(&format!("{tld}/")))
        {
            found.links += 1;
        }
    }
    found.phones = phone_numbers(text);
    found
}

/// Counts runs of 9 to 15 digits written with only spaces, dashes, dots, parentheses or a
/// leading `+` between them: phone numbers, not prices or model numbers.
fn phone_numbers(text: &str) -> u32 {
    let mut count = 0;
    let mut digits = 0;
    let mut gap = 0;
    for c in text.chars().chain(std::iter::once('x')) {
        if c.is_ascii_digit() {
            digits += 1;
            gap = 0;
        } else if digits > 0 && matches!(c, ' ' | '-' | '.' | '(' | ')' | '+') && gap < 2 {
            gap += 1;
        } else {
            if (9..=15).contains(&digits) {
                count += 1;
            }
            digits = 0;
            gap = 0;
        }
    }
    count
}

/// Returns how many of `times` fall in the hour and the day before `now` (inclusive).
pub fn recent_counts(times: &[i64], now: i64) -> (u32, u32) {
    let hour = times.iter().filter(|&&t| t > now - HOUR_MS && t <= now).count() as u32;
    let day = times.iter().filter(|&&t| t > now - 24 * HOUR_MS && t <= now).count() as u32;
    (hour, day)
}

/// Returns a product's baseline submits per hour before the last hour: the submits it had
/// before then over the hours it has existed before then (at least one day, so that a new
/// product's first hour does not make its own baseline).
pub fn baseline_per_hour(total_before_now: u64, last_hour: u32, first_ms: i64, now: i64) -> f64 {
    let before = total_before_now.saturating_sub(u64::from(last_hour.saturating_sub(1)));
    let hours = ((now - first_ms - HOUR_MS) as f64 / HOUR_MS as f64).max(24.0);
    before as f64 / hours
}

/// Returns whether `last_hour` submits are a burst for a product whose baseline is
/// `baseline` per hour.
pub fn is_burst(last_hour: u32, baseline: f64) -> bool {
    last_hour >= BURST_MIN && f64::from(last_hour) > BURST_FACTOR * baseline
}

/// Scores a review of `text` (title and body) with `signals`.
pub fn score(text: &str, signals: &Signals) -> Verdict {
    let mut reasons = Vec::new();
    let mut add = |code: &str, detail: String, points: i32| {
        reasons.push(Reason { code: code.into(), detail, points });
    };
    if signals.near_duplicates > 0 {
        let points = if signals.near_duplicates >= 2 { 75 } else { 45 };
        add(
            "near_duplicate",
            format!(
                "text nearly identical to {} other review(s), e.g. {}",
                signals.near_duplicates, signals.duplicate_example
            ),
            points,
        );
    }
    if is_burst(signals.product_last_hour, signals.product_baseline_per_hour) {
        add(
            "product_burst",
            format!(
                "{} reviews of this product in the last hour against a baseline of {:.2} per hour",
                signals.product_last_hour, signals.product_baseline_per_hour
            ),
            30,
        );
    }
    if signals.new_account {
        add("new_account", "the account's first review".into(), 10);
    }
    if signals.account_last_hour > VELOCITY_HOUR || signals.account_last_day > VELOCITY_DAY {
        add(
            "account_velocity",
            format!(
                "{} reviews by this account in the last hour, {} in the last day",
                signals.account_last_hour, signals.account_last_day
            ),
            30,
        );
    }
    let word_count = words(text).len();
    if !signals.verified && matches!(signals.rating, 1 | 5) && word_count < SHORT_WORDS {
        add("unverified_extreme_short", format!("unverified, {} star(s), {word_count} word(s)", signals.rating), 20);
    }
    let found = contacts(text);
    if found.links > 0 {
        add("link", format!("{} link(s) in the text", found.links), 50);
    }
    if found.emails > 0 {
        add("email", format!("{} e-mail address(es) in the text", found.emails), 50);
    }
    if found.phones > 0 {
        add("phone", format!("{} phone number(s) in the text", found.phones), 50);
    }
    if let Some(detail) = rating_outlier(signals.rating, &signals.product_histogram) {
        add("rating_outlier", detail, 8);
    }
    let score = reasons.iter().map(|r| r.points).sum::<i32>().min(100);
    let route = if score >= REJECTED_AT {
        Route::Rejected
    } else if score >= PENDING_AT {
        Route::Pending
    } else {
        Route::Published
    };
    Verdict { score, reasons, route }
}

/// Returns why `rating` is far from a product's distribution: the product has at least 20
/// published reviews, fewer than 5% of them give this rating, and it is at least 2.5 stars
/// from their mean.
pub fn rating_outlier(rating: i32, histogram: &[i64; 5]) -> Option<String> {
    let count: i64 = histogram.iter().sum();
    if count < 20 || !(1..=5).contains(&rating) {
        return None;
    }
    let sum: i64 = histogram.iter().enumerate().map(|(i, n)| (i as i64 + 1) * n).sum();
    let mean = sum as f64 / count as f64;
    let share = histogram[(rating - 1) as usize] as f64 / count as f64;
    (share < 0.05 && (f64::from(rating) - mean).abs() >= 2.5).then(|| {
        format!("{rating} star(s) against a mean of {mean:.2}; {:.1}% of {count} reviews give it", share * 100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &str = "I bought this kettle for my office and it boils water quickly, the handle stays cool \
                        and the lid closes firmly, although the cord is a little short for our counter";

    #[test]
    fn near_duplicates_share_bands_and_different_texts_do_not() {
        let a = signature(LONG).unwrap();
        let edited = LONG.replace("office", "kitchen");
        let b = signature(&edited).unwrap();
        let other = signature(
            "The running shoes fit true to size, the sole grips wet pavement well and after two months \
             of daily runs the cushioning still feels new",
        )
        .unwrap();
        assert!(similarity(&a, &b) > 0.6, "{}", similarity(&a, &b));
        assert!(similarity(&a, &other) < 0.1);
        let shared = |x: &[u64], y: &[u64]| bands(x).iter().zip(bands(y)).filter(|(p, q)| *p == q).count();
        assert!(shared(&a, &b) >= DUPLICATE_BANDS, "{}", shared(&a, &b));
        assert_eq!(shared(&a, &other), 0);
        assert_eq!(shared(&a, &a), BANDS);
        assert_eq!(signature("too short to judge"), None);
    }

    #[test]
    fn contacts_are_found() {
        assert_eq!(contacts("see https://deals.example/x now").links, 1);
        assert_eq!(contacts("visit cheap-watches.com today").links, 1);
        assert_eq!(contacts("www.spam.biz").links, 1);
        assert_eq!(contacts("mail me: bob@spam.example").emails, 1);
        assert_eq!(contacts("call +1 (555) 010-2345 now").phones, 1);
        assert_eq!(contacts("call 555-010-2345").phones, 1);
        let clean = contacts("It cost 129.99 and the model 4K-55 works. Great value, e.g. for kids.");
        assert_eq!(clean, Contacts::default());
    }

    #[test]
    fn bursts_are_measured_against_the_baseline() {
        let now = 100 * HOUR_MS;
        let times: Vec<i64> = (0..12).map(|i| now - i * 60_000).collect();
        assert_eq!(recent_counts(&times, now), (12, 12));
        // A quiet product: 24 reviews over 99 hours, then 12 in one hour.
        let baseline = baseline_per_hour(24 + 11, 12, 0, now);
        assert!(baseline < 0.3, "{baseline}");
        assert!(is_burst(12, baseline));
        // A busy product: 3 per hour is its normal.
        assert!(!is_burst(12, 3.0));
        assert!(!is_burst(BURST_MIN - 1, 0.0));
    }

    #[test]
    fn scores_route_reviews() {
        let clean = Signals { rating: 4, verified: true, ..Default::default() };
        let verdict = score(LONG, &clean);
        assert_eq!((verdict.score, verdict.route), (0, Route::Published));

        let link = score("great deals at https://cheap.example/x", &Signals { rating: 4, ..Default::default() });
        assert_eq!((link.score, link.route), (50, Route::Pending));
        let shouting = score("great deals at https://cheap.example/x", &Signals { rating: 5, ..Default::default() });
        let codes: Vec<&str> = shouting.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["unverified_extreme_short", "link"]);
        assert_eq!((shouting.score, shouting.route), (70, Route::Rejected));

        let burst = Signals {
            product_last_hour: 40,
            product_baseline_per_hour: 0.1,
            new_account: true,
            rating: 4,
            ..Default::default()
        };
        assert_eq!(score(LONG, &burst).route, Route::Pending);

        let dup = Signals { near_duplicates: 3, duplicate_example: "rev_x".into(), rating: 4, ..Default::default() };
        assert_eq!(score(LONG, &dup).route, Route::Rejected);

        // A genuine first review that is short and extreme is not enough on its own.
        let first = Signals { new_account: true, rating: 5, ..Default::default() };
        assert_eq!(score("love it", &first).route, Route::Published);
    }

    #[test]
    fn outliers_need_a_distribution() {
        assert!(rating_outlier(1, &[0, 0, 1, 10, 20]).is_some());
        assert!(rating_outlier(1, &[0, 0, 1, 2, 3]).is_none(), "too few reviews");
        assert!(rating_outlier(4, &[0, 0, 1, 10, 20]).is_none());
        assert!(rating_outlier(1, &[5, 0, 1, 10, 20]).is_none(), "one star is common here");
    }
}
