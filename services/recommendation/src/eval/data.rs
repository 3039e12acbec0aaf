//! Interaction data for the offline evaluation: the file format (CSV with the header
//! `user,item,value,timestamp_ms`), its reader and writer, and a seeded generator of synthetic
//! interactions with planted structure (clusters of users who prefer clusters of items, a
//! popularity skew and noise), so that a model that learns co-occurrence has something to find
//! and a popularity ranking does not.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use super::EvalError;

/// The header every interactions file starts with.
pub const HEADER: &str = "user,item,value,timestamp_ms";

/// One user-item interaction: a rating, a purchase or a view, with its strength and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    /// The user's id.
    pub user: String,
    /// The item's id (a sku, a MovieLens movieId, ...).
    pub item: String,
    /// The strength: a rating, a count; how a model weighs it is the evaluation's choice.
    pub value: f64,
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Reads an interactions file (see [`parse`]).
pub fn read(path: &Path) -> Result<Vec<Interaction>, EvalError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EvalError::Io { path: path.display().to_string(), reason: e.to_string() })?;
    parse(&text)
}

/// Parses interactions CSV: the [`HEADER`] line, then one `user,item,value,timestamp_ms` row per
/// line. Fields may be double-quoted (with `""` for a quote inside); blank lines are skipped.
/// Errors name the line and the field.
pub fn parse(text: &str) -> Result<Vec<Interaction>, EvalError> {
    let mut lines = text.lines().enumerate();
    let header = loop {
        match lines.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break l,
            None => return Ok(Vec::new()),
        }
    };
    let header_fields = split_fields(header.trim_start_matches('\u{feff}'), 1)?;
    let expected: Vec<&str> = HEADER.split(',').collect();
    if header_fields.iter().map(|f| f.trim()).ne(expected.iter().copied()) {
        return Err(EvalError::Parse { line: 1, reason: format!("the header must be `{HEADER}`, found `{header}`") });
    }
    let mut out = Vec::new();
    for (index, line) in lines {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_fields(line, number)?;
        let [user, item, value, at] = fields.as_slice() else {
            return Err(EvalError::Parse {
                line: number,
                reason: format!("expected 4 fields, found {}", fields.len()),
            });
        };
        let field_err =
            |field: &str, reason: String| EvalError::Parse { line: number, reason: format!("{field}: {reason}") };
        let user = user.trim();
        let item = item.trim();
        if user.is_empty() {
            return Err(field_err("user", "must not be empty".into()));
        }
        if item.is_empty() {
            return Err(field_err("item", "must not be empty".into()));
        }
        let value: f64 = value.trim().parse().map_err(|e| field_err("value", format!("not a number ({e})")))?;
        if !value.is_finite() {
            return Err(field_err("value", "must be finite".into()));
        }
        let at_ms: i64 = at.trim().parse().map_err(|e| field_err("timestamp_ms", format!("not an integer ({e})")))?;
        out.push(Interaction { user: user.to_string(), item: item.to_string(), value, at_ms });
    }
    Ok(out)
}

/// Splits one CSV line into fields, honouring double quotes.
fn split_fields(line: &str, number: usize) -> Result<Vec<String>, EvalError> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(EvalError::Parse { line: number, reason: "unterminated quoted field".into() });
    }
    fields.push(field);
    Ok(fields)
}

/// Renders interactions as CSV with the [`HEADER`]; fields holding a comma or a quote are
/// quoted.
pub fn to_csv(interactions: &[Interaction]) -> String {
    let mut out = String::with_capacity(interactions.len() * 32 + HEADER.len() + 1);
    out.push_str(HEADER);
    out.push('\n');
    for i in interactions {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{},{},{},{}", quote(&i.user), quote(&i.item), i.value, i.at_ms);
    }
    out
}

/// Writes interactions to `path` as CSV (see [`to_csv`]).
pub fn write(path: &Path, interactions: &[Interaction]) -> Result<(), EvalError> {
    std::fs::write(path, to_csv(interactions))
        .map_err(|e| EvalError::Io { path: path.display().to_string(), reason: e.to_string() })
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Merges repeated (user, item) pairs into one interaction, as the model does with a user's
/// ratings of one item: the latest one (by timestamp, then by position in the file) wins. The
/// first occurrence's position is kept, so the order stays deterministic.
pub fn dedup(interactions: Vec<Interaction>) -> Vec<Interaction> {
    let mut index: HashMap<(String, String), usize> = HashMap::with_capacity(interactions.len());
    let mut out: Vec<Interaction> = Vec::with_capacity(interactions.len());
    for i in interactions {
        match index.get(&(i.user.clone(), i.item.clone())) {
            Some(&at) => {
                let kept = &mut out[at];
                if i.at_ms >= kept.at_ms {
                    kept.value = i.value;
                    kept.at_ms = i.at_ms;
                }
            }
            None => {
                index.insert((i.user.clone(), i.item.clone()), out.len());
                out.push(i);
            }
        }
    }
    out
}

/// A small deterministic generator (SplitMix64): the same seed gives the same data and split
/// on every platform and every version of the `rand` crate.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Starts the sequence at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a uniform float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Returns a uniform integer in [0, n); `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n.max(1)
    }
}

/// Parameters of the synthetic generator. Users and items are split into `clusters` groups;
/// a user's interactions come from their own group's items with probability `1 - noise` and
/// from the whole catalogue otherwise, each draw weighted by a Zipf popularity skew, so a few
/// items are popular everywhere while the co-occurrence structure stays per cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Synthetic {
    /// Number of users (`u0`, `u1`, ...).
    pub users: usize,
    /// Number of items (`I00000`, ...).
    pub items: usize,
    /// Number of user/item clusters.
    pub clusters: usize,
    /// Interactions per user: uniform in this inclusive range.
    pub per_user: (usize, usize),
    /// Share of interactions drawn from the whole catalogue instead of the user's cluster.
    pub noise: f64,
    /// Zipf exponent of the item popularity (0 = uniform).
    pub skew: f64,
    /// The seed: the same parameters and seed give the same interactions.
    pub seed: u64,
}

impl Synthetic {
    /// The generator's defaults for `users` users: 2 items per user (at least 200), 8
    /// clusters, 10..40 interactions per user, 20% noise, Zipf skew 0.8.
    pub fn with_users(users: usize, seed: u64) -> Self {
        Self { users, items: (users * 2).max(200), clusters: 8, per_user: (10, 40), noise: 0.2, skew: 0.8, seed }
    }

    /// Returns the item id of index `i`.
    pub fn item_id(i: usize) -> String {
        format!("I{i:05}")
    }

    /// Returns the cluster that item index `i` belongs to.
    pub fn item_cluster(&self, i: usize) -> usize {
        i % self.clusters.max(1)
    }

    /// Returns the cluster that user index `u` belongs to.
    pub fn user_cluster(&self, u: usize) -> usize {
        u % self.clusters.max(1)
    }

    /// Generates the interactions: one per (user, item) pair, ratings 4-5 inside the user's
    /// cluster and 1-3 outside it, timestamps increasing per user.
    pub fn generate(&self) -> Vec<Interaction> {
        let clusters = self.clusters.max(1);
        let items = self.items.max(clusters);
        let mut rng = SplitMix64::new(self.seed);
        // Popularity rank is a random permutation of the items, so popular items fall in
        // every cluster.
        let mut rank: Vec<usize> = (0..items).collect();
        for i in (1..items).rev() {
            let j = rng.below(i + 1);
            rank.swap(i, j);
        }
        let weight: Vec<f64> = (0..items).map(|i| 1.0 / ((rank[i] + 1) as f64).powf(self.skew)).collect();
        let sampler = |members: &[usize]| -> Vec<(usize, f64)> {
            let mut acc = 0.0;
            members
                .iter()
                .map(|&i| {
                    acc += weight[i];
                    (i, acc)
                })
                .collect()
        };
        let all: Vec<usize> = (0..items).collect();
        let everything = sampler(&all);
        let per_cluster: Vec<Vec<(usize, f64)>> = (0..clusters)
            .map(|c| {
                let members: Vec<usize> = (0..items).filter(|&i| i % clusters == c).collect();
                sampler(&members)
            })
            .collect();
        let draw = |rng: &mut SplitMix64, table: &[(usize, f64)]| -> usize {
            let total = table.last().map_or(0.0, |t| t.1);
            let x = rng.next_f64() * total;
            let at = table.partition_point(|t| t.1 <= x).min(table.len() - 1);
            table[at].0
        };
        let (lo, hi) = (self.per_user.0.min(self.per_user.1), self.per_user.1);
        let start_ms: i64 = 1_700_000_000_000;
        let mut out = Vec::new();
        for u in 0..self.users {
            let cluster = u % clusters;
            let wanted = (lo + rng.below(hi - lo + 1)).min(items);
            let mut taken = std::collections::HashSet::new();
            let mut at_ms = start_ms + rng.below(86_400_000) as i64;
            // Bounded attempts: a tiny cluster may not hold `wanted` distinct items.
            for _ in 0..wanted * 20 {
                if taken.len() >= wanted {
                    break;
                }
                let in_cluster = rng.next_f64() >= self.noise;
                let item = if in_cluster { draw(&mut rng, &per_cluster[cluster]) } else { draw(&mut rng, &everything) };
                if !taken.insert(item) {
                    continue;
                }
                let value =
                    if item % clusters == cluster { 4.0 + rng.below(2) as f64 } else { 1.0 + rng.below(3) as f64 };
                at_ms += 60_000 + rng.below(3_600_000) as i64;
                out.push(Interaction { user: format!("u{u}"), item: Self::item_id(item), value, at_ms });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips_with_quotes() {
        let rows = vec![
            Interaction { user: "a,b".into(), item: "say \"hi\"".into(), value: 4.5, at_ms: 12 },
            Interaction { user: "u2".into(), item: "I1".into(), value: 1.0, at_ms: -3 },
        ];
        assert_eq!(parse(&to_csv(&rows)).unwrap(), rows);
    }

    #[test]
    fn parse_names_the_line_and_field() {
        let err = parse("user,item,value,timestamp_ms\nu,i,x,1\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("value"), "{err}");
        assert!(parse("user,item,rating\n").is_err());
        assert!(parse("user,item,value,timestamp_ms\nu,i,1\n").is_err());
        assert!(parse("user,item,value,timestamp_ms\n,i,1,1\n").is_err());
        assert!(parse("user,item,value,timestamp_ms\n\"u,i,1,1\n").is_err());
    }

    #[test]
    fn dedup_keeps_the_latest_value() {
        let i = |u: &str, it: &str, v: f64, t: i64| Interaction { user: u.into(), item: it.into(), value: v, at_ms: t };
        let out = dedup(vec![i("u", "a", 1.0, 5), i("u", "b", 1.0, 1), i("u", "a", 2.0, 3), i("u", "b", 4.0, 1)]);
        assert_eq!(out, vec![i("u", "a", 1.0, 5), i("u", "b", 4.0, 1)]);
    }

    #[test]
    fn synthetic_is_deterministic_and_clustered() {
        // 100 items per cluster: room for every user's 10..40 draws inside their cluster.
        let s = Synthetic { items: 800, ..Synthetic::with_users(80, 7) };
        let a = s.generate();
        assert_eq!(a, s.generate());
        assert_ne!(a, Synthetic { seed: 8, ..s.clone() }.generate());
        let in_cluster = a
            .iter()
            .filter(|i| {
                let u: usize = i.user[1..].parse().unwrap();
                let it: usize = i.item[1..].parse().unwrap();
                s.user_cluster(u) == s.item_cluster(it)
            })
            .count();
        // 80% drawn in-cluster plus 1/8 of the noise.
        assert!(in_cluster as f64 > 0.75 * a.len() as f64, "{in_cluster}/{}", a.len());
    }
}
