//! The recommendation model, pure and in memory: item-item collaborative filtering as
//! `implicit`'s `CosineRecommender` / `ItemItemRecommender` do it, maintained incrementally.
//!
//! Every (user, item) pair has one weight, an order-independent function of what was observed
//! for it: the strongest signal wins (view 1, cart 2, purchase 4, a rating its value, by
//! default), a rating replaced by the same user's later one (by time). Items are the columns
//! of the user-item matrix; the similarity of two items is the cosine of their columns,
//! `dot(i, j) / (|i| |j|)`. The model keeps, per item, its co-occurrence row (the non-zero
//! dot products with other items), its squared norm and its top `neighbours` (K) most similar
//! items. A user's score for an item `j` is `sum over the user's items i of w(u, i) *
//! sim(i, j)`, counting `j` only where it is among `i`'s top K (the item-item matrix `W` of
//! `implicit`, where scores are `user_items @ W`).
//!
//! A changed weight `w(u, i)` touches only what depends on it: the dot products of `i` with
//! the user's other items, the norm of `i`, and so the similarities `sim(i, *)`. Row `i` is
//! marked for a rescan; a row `j` that lists `i` among its neighbours, or that `i` may now
//! enter, is updated in place when that is exact (the entry moved up, or the row lists all its
//! co-occurring items), and marked for a rescan otherwise (an entry dropped while better
//! candidates may wait outside the list). [`ItemItemModel::refresh`] rescans the marked rows;
//! until then queries compute a marked row on the fly, so every answer is exact at all times.
//! Weights that are multiples of a power of two (the defaults, half-star ratings) keep every
//! dot product and norm exact in `f64`, so the incremental model equals a rebuild from the same
//! events in any order bit for bit; [`ItemItemModel::differences`] compares two models.
//!
//! Beside the similarity the model keeps popularity for cold start (the number of users with
//! a non-zero weight per item), counts of observed interactions per kind, activity per time
//! bucket for trending, and each item's category.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet};

/// The knobs of the model; every one has a default.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Top neighbours kept per item (default 20, like `implicit`'s `ItemItemRecommender` K).
    pub neighbours: usize,
    /// Weight of a view (default 1).
    pub view_weight: f64,
    /// Weight of a cart addition (default 2).
    pub cart_weight: f64,
    /// Weight of a purchase (default 4).
    pub purchase_weight: f64,
    /// A rating's weight is its value times this (default 1: a 5-star rating weighs 5).
    pub rating_scale: f64,
    /// Width of the trending time buckets in milliseconds (default one minute).
    pub trending_bucket_ms: i64,
    /// How far back from an item's newest activity its buckets are kept (default 31 days;
    /// Trending's longest window is 30).
    pub trending_retention_ms: i64,
    /// When a user has fewer than `k` scored items, fill the answer with popular items
    /// (default true).
    pub fill_with_popular: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            neighbours: 20,
            view_weight: 1.0,
            cart_weight: 2.0,
            purchase_weight: 4.0,
            rating_scale: 1.0,
            trending_bucket_ms: 60_000,
            trending_retention_ms: 31 * 24 * 3_600_000,
            fill_with_popular: true,
        }
    }
}

/// What a user did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InteractionKind {
    /// Looked at it.
    View,
    /// Put it in a cart.
    Cart,
    /// Bought it.
    Purchase,
    /// Rated it (the value is the rating).
    Rating,
}

impl InteractionKind {
    /// All kinds, in the order of [`ItemItemModel::interaction_counts`].
    pub const ALL: [InteractionKind; 4] =
        [InteractionKind::View, InteractionKind::Cart, InteractionKind::Purchase, InteractionKind::Rating];

    fn index(self) -> usize {
        match self {
            InteractionKind::View => 0,
            InteractionKind::Cart => 1,
            InteractionKind::Purchase => 2,
            InteractionKind::Rating => 3,
        }
    }

    /// The verb for reasons: "because you bought X".
    pub fn verb(self) -> &'static str {
        match self {
            InteractionKind::View => "viewed",
            InteractionKind::Cart => "added to your cart",
            InteractionKind::Purchase => "bought",
            InteractionKind::Rating => "rated",
        }
    }
}

/// One item of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The item.
    pub item: String,
    /// Higher is better.
    pub score: f64,
    /// For a user's recommendation: the user's item that contributed most. For a similar
    /// item: the item asked about. None for popularity.
    pub because: Option<String>,
}

/// Which of a user's items a recommendation leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclude {
    /// Nothing: items the user knows may come back.
    Nothing,
    /// Items the user bought.
    Purchased,
    /// Every item the user interacted with.
    Seen,
}

/// The options of [`ItemItemModel::recommend_with`].
#[derive(Debug, Clone, Copy)]
pub struct Filter<'a> {
    /// Which of the user's items to leave out.
    pub exclude: Exclude,
    /// Only items of this category path or below it.
    pub category: Option<&'a str>,
}

/// An answer of [`ItemItemModel::recommend_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The items, best first.
    pub items: Vec<Scored>,
    /// True when the user had no history to score from (popularity only).
    pub cold_start: bool,
}

/// Sizes of a model, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelStats {
    /// Items known (interacted with or catalogued).
    pub items: usize,
    /// Users known.
    pub users: usize,
    /// Non-zero (user, item) weights.
    pub weights: usize,
    /// Co-occurring item pairs (each counted once).
    pub pairs: usize,
    /// Rows waiting for a rescan.
    pub dirty: usize,
}

/// Whether `category` lies under the category path `prefix` (equal to it or below it); any
/// category does when `prefix` is None.
pub fn in_category(category: Option<&str>, prefix: Option<&str>) -> bool {
    match prefix {
        None => true,
        Some(p) => category.is_some_and(|c| c == p || (c.starts_with(p) && c.as_bytes().get(p.len()) == Some(&b'/'))),
    }
}

/// What is known of one (user, item) pair.
#[derive(Debug, Clone, Default, PartialEq)]
struct Cell {
    views: u64,
    carts: u64,
    purchases: u64,
    /// The latest observed rating: (time, value); the greater pair wins, so arrival order
    /// does not matter.
    rating: Option<(i64, f64)>,
    /// Orders of the item that count as purchases (from the orders' log).
    orders: u64,
    /// The user's published review rating (from the ratings' log).
    review: Option<f64>,
    /// The weight, a function of the fields above.
    weight: f64,
}

impl Cell {
    fn weight(&self, c: &ModelConfig) -> f64 {
        let mut w: f64 = 0.0;
        if self.views > 0 {
            w = w.max(c.view_weight);
        }
        if self.carts > 0 {
            w = w.max(c.cart_weight);
        }
        if self.purchases > 0 || self.orders > 0 {
            w = w.max(c.purchase_weight);
        }
        for r in self.rating.map(|(_, v)| v).into_iter().chain(self.review) {
            w = w.max(r * c.rating_scale);
        }
        if w.is_finite() && w > 0.0 { w } else { 0.0 }
    }

    fn purchased(&self) -> bool {
        self.purchases > 0 || self.orders > 0
    }

    /// The strongest kind of signal, for reasons.
    fn strongest(&self, c: &ModelConfig) -> InteractionKind {
        let mut best = (0.0, InteractionKind::View);
        let rating = self.rating.map(|(_, v)| v).into_iter().chain(self.review).fold(0.0_f64, f64::max);
        for (present, w, kind) in [
            (self.views > 0, c.view_weight, InteractionKind::View),
            (self.carts > 0, c.cart_weight, InteractionKind::Cart),
            (self.purchased(), c.purchase_weight, InteractionKind::Purchase),
            (rating > 0.0, rating * c.rating_scale, InteractionKind::Rating),
        ] {
            if present && w >= best.0 {
                best = (w, kind);
            }
        }
        best.1
    }
}

#[derive(Debug, Clone, Default)]
struct Item {
    name: String,
    category: Option<String>,
    /// Non-zero dot products with other items.
    cooc: HashMap<u32, f64>,
    /// Squared norm of the item's column.
    norm2: f64,
    /// Top neighbours, best first (valid unless the row is dirty).
    list: Vec<(u32, f64)>,
    /// Rows whose list holds this item (maintained with the lists).
    listed_in: HashSet<u32>,
    dirty: bool,
    /// Users with a non-zero weight.
    support: u64,
    /// Observed interactions per kind.
    counts: [u64; 4],
    /// Activity per time bucket.
    activity: BTreeMap<i64, f64>,
}

#[derive(Debug, Clone, Default)]
struct User {
    cells: HashMap<u32, Cell>,
}

/// The item-item model. See the module documentation.
#[derive(Debug, Clone)]
pub struct ItemItemModel {
    config: ModelConfig,
    items: Vec<Item>,
    item_ids: HashMap<String, u32>,
    users: Vec<User>,
    user_ids: HashMap<String, u32>,
    dirty: Vec<u32>,
}

/// Orders candidates: higher similarity first, then the item name.
fn better(a: (f64, &str), b: (f64, &str)) -> bool {
    match a.0.total_cmp(&b.0) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => a.1 < b.1,
    }
}

impl ItemItemModel {
    /// Returns an empty model.
    pub fn new(config: ModelConfig) -> Self {
        ItemItemModel {
            config,
            items: Vec::new(),
            item_ids: HashMap::new(),
            users: Vec::new(),
            user_ids: HashMap::new(),
            dirty: Vec::new(),
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn item_id(&mut self, item: &str) -> u32 {
        if let Some(&id) = self.item_ids.get(item) {
            return id;
        }
        let id = self.items.len() as u32;
        self.items.push(Item { name: item.to_string(), ..Item::default() });
        self.item_ids.insert(item.to_string(), id);
        id
    }

    fn user_id(&mut self, user: &str) -> u32 {
        if let Some(&id) = self.user_ids.get(user) {
            return id;
        }
        let id = self.users.len() as u32;
        self.users.push(User::default());
        self.user_ids.insert(user.to_string(), id);
        id
    }

    fn bucket(&self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.config.trending_bucket_ms.max(1))
    }

    /// Adds `amount` to the item's activity at `at_ms`, keeping only the buckets within the
    /// retention of its newest one. What is kept is the same whatever the order of the
    /// additions: exactly the buckets not older than the newest minus the retention.
    fn add_activity(&mut self, item: u32, at_ms: i64, amount: f64) {
        let bucket = self.bucket(at_ms);
        let keep = self.config.trending_retention_ms.max(0) / self.config.trending_bucket_ms.max(1);
        let activity = &mut self.items[item as usize].activity;
        let newest = activity.last_key_value().map_or(bucket, |(k, _)| (*k).max(bucket));
        let cutoff = newest.saturating_sub(keep);
        if bucket < cutoff {
            return;
        }
        let slot = activity.entry(bucket).or_insert(0.0);
        *slot += amount;
        if *slot == 0.0 {
            activity.remove(&bucket);
        }
        if activity.first_key_value().is_some_and(|(k, _)| *k < cutoff) {
            *activity = activity.split_off(&cutoff);
        }
    }

    /// One interaction; `value` is the rating (1..5) for Rating, else ignored or a count.
    pub fn observe(&mut self, user: &str, item: &str, kind: InteractionKind, value: f64, at_ms: i64) {
        let (u, i) = (self.user_id(user), self.item_id(item));
        self.items[i as usize].counts[kind.index()] += 1;
        let activity = match kind {
            InteractionKind::View | InteractionKind::Rating => self.config.view_weight,
            InteractionKind::Cart => self.config.cart_weight,
            InteractionKind::Purchase => self.config.purchase_weight,
        };
        self.add_activity(i, at_ms, activity);
        self.update_cell(u, i, |cell| match kind {
            InteractionKind::View => cell.views += 1,
            InteractionKind::Cart => cell.carts += 1,
            InteractionKind::Purchase => cell.purchases += 1,
            InteractionKind::Rating => {
                if value.is_finite() && value > 0.0 {
                    let new = (at_ms, value);
                    let keep = match cell.rating {
                        None => true,
                        Some(old) => new.0 > old.0 || (new.0 == old.0 && new.1 > old.1),
                    };
                    if keep {
                        cell.rating = Some(new);
                    }
                }
            }
        });
    }

    /// Counts one more (`delta` 1) or one fewer (`delta` -1) order of `item` by `user` as a
    /// purchase (the orders' log: confirmed, then cancelled or returned). Counts never go
    /// below zero. An added order counts as purchase activity at `at_ms`.
    pub fn adjust_order_purchase(&mut self, user: &str, item: &str, delta: i64, at_ms: i64) {
        let (u, i) = (self.user_id(user), self.item_id(item));
        if delta > 0 {
            self.add_activity(i, at_ms, self.config.purchase_weight * delta as f64);
        }
        self.update_cell(u, i, |cell| {
            cell.orders =
                if delta >= 0 { cell.orders + delta as u64 } else { cell.orders.saturating_sub(delta.unsigned_abs()) }
        });
    }

    /// Sets (`Some(rating)`) or removes (`None`) the published review rating of `item` by
    /// `user` (the ratings' log: an edit replaces it, leaving PUBLISHED removes it). A new or
    /// changed rating counts as activity at `at_ms`.
    pub fn set_review(&mut self, user: &str, item: &str, rating: Option<f64>, at_ms: i64) {
        let (u, i) = (self.user_id(user), self.item_id(item));
        let rating = rating.filter(|r| r.is_finite() && *r > 0.0);
        let before = self.users[u as usize].cells.get(&i).and_then(|c| c.review);
        if rating.is_some() && rating != before {
            self.add_activity(i, at_ms, self.config.view_weight);
        }
        self.update_cell(u, i, |cell| cell.review = rating);
    }

    /// Sets the category path of `item` (None: unknown).
    pub fn set_category(&mut self, item: &str, category: Option<&str>) {
        let i = self.item_id(item);
        self.items[i as usize].category = category.map(str::to_string);
    }

    /// Returns the category path of `item`, if known.
    pub fn category(&self, item: &str) -> Option<&str> {
        self.item_ids.get(item).and_then(|&i| self.items[i as usize].category.as_deref())
    }

    /// Changes the cell of (u, i) with `change` and propagates a changed weight.
    fn update_cell(&mut self, u: u32, i: u32, change: impl FnOnce(&mut Cell)) {
        let cell = self.users[u as usize].cells.entry(i).or_default();
        let old = cell.weight;
        change(cell);
        let new = cell.weight(&self.config);
        cell.weight = new;
        if *cell == Cell::default() {
            self.users[u as usize].cells.remove(&i);
        }
        if new != old {
            self.reweigh(u, i, old, new);
        }
    }

    /// Propagates the change of w(u, i) from `old` to `new`.
    fn reweigh(&mut self, u: u32, i: u32, old: f64, new: f64) {
        let basket: Vec<(u32, f64)> = self.users[u as usize]
            .cells
            .iter()
            .filter(|(j, c)| **j != i && c.weight > 0.0)
            .map(|(j, c)| (*j, c.weight))
            .collect();
        let increased = new > old;
        // Rows whose entry for `i` may move so that their list changes (see the module doc).
        let mut touch: Vec<u32> = if increased {
            self.items[i as usize].listed_in.iter().copied().collect()
        } else {
            self.items[i as usize].cooc.keys().copied().collect()
        };
        for &(j, wj) in &basket {
            let delta = (new - old) * wj;
            for (a, b) in [(i, j), (j, i)] {
                let row = &mut self.items[a as usize].cooc;
                let slot = row.entry(b).or_insert(0.0);
                *slot += delta;
                if *slot == 0.0 {
                    row.remove(&b);
                }
            }
            touch.push(j);
        }
        let item = &mut self.items[i as usize];
        item.norm2 += new * new - old * old;
        if new == 0.0 && item.cooc.is_empty() {
            // Exact zero, as a rebuild would have it.
            item.norm2 = 0.0;
        }
        if old == 0.0 && new > 0.0 {
            item.support += 1;
        } else if old > 0.0 && new == 0.0 {
            item.support = item.support.saturating_sub(1);
        }
        self.mark_dirty(i);
        touch.sort_unstable();
        touch.dedup();
        for j in touch {
            if j != i {
                self.touch(j, i);
            }
        }
    }

    fn mark_dirty(&mut self, i: u32) {
        let item = &mut self.items[i as usize];
        if !item.dirty {
            item.dirty = true;
            self.dirty.push(i);
        }
    }

    fn sim(&self, a: u32, b: u32) -> Option<f64> {
        let dot = *self.items[a as usize].cooc.get(&b)?;
        let denom = (self.items[a as usize].norm2 * self.items[b as usize].norm2).sqrt();
        (denom > 0.0).then(|| dot / denom)
    }

    fn name(&self, i: u32) -> &str {
        &self.items[i as usize].name
    }

    /// Updates row `j` after `sim(j, i)` changed (nothing else in row `j` did).
    fn touch(&mut self, j: u32, i: u32) {
        if self.items[j as usize].dirty {
            return;
        }
        let k = self.config.neighbours;
        let now = self.sim(j, i);
        let row = &self.items[j as usize];
        let pos = row.list.iter().position(|(x, _)| *x == i);
        match (pos, now) {
            (Some(p), Some(s)) if s >= row.list[p].1 => {
                self.items[j as usize].list[p].1 = s;
                self.sort_list(j);
            }
            (Some(p), now) => {
                let cooc_before = row.cooc.len() + usize::from(now.is_none());
                if row.list.len() < k || cooc_before <= k {
                    // The list holds every co-occurring item: the change is exact in place.
                    match now {
                        Some(s) => self.items[j as usize].list[p].1 = s,
                        None => {
                            self.items[j as usize].list.remove(p);
                            self.items[i as usize].listed_in.remove(&j);
                        }
                    }
                    self.sort_list(j);
                } else {
                    self.mark_dirty(j);
                }
            }
            (None, Some(s)) => {
                if k == 0 {
                    return;
                }
                if row.list.len() < k {
                    self.items[j as usize].list.push((i, s));
                    self.items[i as usize].listed_in.insert(j);
                    self.sort_list(j);
                } else if let Some(&(last, last_sim)) = row.list.last()
                    && better((s, self.name(i)), (last_sim, self.name(last)))
                {
                    let list = &mut self.items[j as usize].list;
                    list.pop();
                    list.push((i, s));
                    self.items[last as usize].listed_in.remove(&j);
                    self.items[i as usize].listed_in.insert(j);
                    self.sort_list(j);
                }
            }
            (None, None) => {}
        }
    }

    fn sort_list(&mut self, j: u32) {
        let mut list = std::mem::take(&mut self.items[j as usize].list);
        list.sort_by(|a, b| self.order(*a, *b));
        self.items[j as usize].list = list;
    }

    fn order(&self, a: (u32, f64), b: (u32, f64)) -> Ordering {
        b.1.total_cmp(&a.1).then_with(|| self.name(a.0).cmp(self.name(b.0)))
    }

    /// Returns the top `k` neighbours of row `i`, computed from its co-occurrence row.
    fn scan(&self, i: u32, k: usize) -> Vec<(u32, f64)> {
        let mut all: Vec<(u32, f64)> =
            self.items[i as usize].cooc.keys().filter_map(|&j| self.sim(i, j).map(|s| (j, s))).collect();
        if all.len() > k && k > 0 {
            all.select_nth_unstable_by(k - 1, |a, b| self.order(*a, *b));
        }
        all.truncate(k);
        all.sort_by(|a, b| self.order(*a, *b));
        all
    }

    /// Rescans every row marked since the last refresh, so that queries read stored lists.
    /// Queries are exact without it (they compute a marked row on the fly), only slower.
    pub fn refresh(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        let k = self.config.neighbours;
        for j in dirty {
            let fresh = self.scan(j, k);
            let old = std::mem::replace(&mut self.items[j as usize].list, fresh);
            for (x, _) in old {
                self.items[x as usize].listed_in.remove(&j);
            }
            for n in 0..self.items[j as usize].list.len() {
                let x = self.items[j as usize].list[n].0;
                self.items[x as usize].listed_in.insert(j);
            }
            self.items[j as usize].dirty = false;
        }
    }

    /// Returns the top `k` neighbours of item `i`, from its stored list when that is valid and
    /// long enough.
    fn neighbours(&self, i: u32, k: usize) -> std::borrow::Cow<'_, [(u32, f64)]> {
        let item = &self.items[i as usize];
        if !item.dirty && (k <= item.list.len() || item.list.len() == item.cooc.len()) {
            let n = k.min(item.list.len());
            return std::borrow::Cow::Borrowed(&item.list[..n]);
        }
        std::borrow::Cow::Owned(self.scan(i, k))
    }

    /// Returns the user's top `k` items, excluding the items the user interacted with when
    /// `exclude_seen`. A user without history gets the most popular items.
    pub fn recommend(&self, user: &str, k: usize, exclude_seen: bool) -> Vec<Scored> {
        let exclude = if exclude_seen { Exclude::Seen } else { Exclude::Nothing };
        self.recommend_with(user, k, Filter { exclude, category: None }).items
    }

    /// [`ItemItemModel::recommend`] with a [`Filter`]: which of the user's items to leave
    /// out and an optional category. Scored items come first; when there are fewer than `k`
    /// (and the configuration says so), popular items of the category that the user has not
    /// interacted with fill the rest with score 0.
    pub fn recommend_with(&self, user: &str, k: usize, filter: Filter<'_>) -> Recommendation {
        let cells = self.user_ids.get(user).map(|&u| &self.users[u as usize].cells);
        let mut basket: Vec<(u32, f64)> = cells
            .map(|c| c.iter().filter(|(_, c)| c.weight > 0.0).map(|(i, c)| (*i, c.weight)).collect())
            .unwrap_or_default();
        // A fixed order of summation, so that equal models give bit-equal scores.
        basket.sort_by(|a, b| self.name(a.0).cmp(self.name(b.0)));
        let excluded = |j: u32| -> bool {
            let Some(cell) = cells.and_then(|c| c.get(&j)) else { return false };
            match filter.exclude {
                Exclude::Nothing => false,
                Exclude::Purchased => cell.purchased(),
                Exclude::Seen => cell.weight > 0.0,
            }
        };
        let seen = |j: u32| cells.and_then(|c| c.get(&j)).is_some_and(|c| c.weight > 0.0);
        let wanted = |j: u32| !excluded(j) && in_category(self.items[j as usize].category.as_deref(), filter.category);
        // item -> (score, best contributor, its contribution)
        let mut scores: HashMap<u32, (f64, u32, f64)> = HashMap::new();
        let k_neighbours = self.config.neighbours;
        for &(i, wi) in &basket {
            for &(j, s) in self.neighbours(i, k_neighbours).iter() {
                if !wanted(j) {
                    continue;
                }
                let c = wi * s;
                let entry = scores.entry(j).or_insert((0.0, i, f64::NEG_INFINITY));
                entry.0 += c;
                if better((c, self.name(i)), (entry.2, self.name(entry.1))) {
                    entry.1 = i;
                    entry.2 = c;
                }
            }
        }
        let mut ranked: Vec<(u32, f64, u32)> = scores.into_iter().map(|(j, (s, by, _))| (j, s, by)).collect();
        self.top(&mut ranked, k, |r| (r.0, r.1));
        let mut items: Vec<Scored> = ranked
            .iter()
            .map(|&(j, s, by)| Scored {
                item: self.name(j).to_string(),
                score: s,
                because: Some(self.name(by).to_string()),
            })
            .collect();
        let cold_start = basket.is_empty();
        if items.len() < k && (self.config.fill_with_popular || cold_start) {
            let have: HashSet<&str> = items.iter().map(|s| s.item.as_str()).collect();
            let more: Vec<Scored> = self
                // Popularity is for discovery: it never brings back an item the user knows.
                .popular_where(k, |j| wanted(j) && !seen(j) && !have.contains(self.name(j)))
                .into_iter()
                .take(k - items.len())
                .map(|p| Scored { score: if cold_start { p.score } else { 0.0 }, ..p })
                .collect();
            items.extend(more);
        }
        Recommendation { items, cold_start }
    }

    /// Keeps the best `k` of `rows` by (score, item name), sorted best first.
    fn top<T>(&self, rows: &mut Vec<T>, k: usize, key: impl Fn(&T) -> (u32, f64)) {
        let cmp = |a: &T, b: &T| self.order(key(a), key(b));
        if rows.len() > k && k > 0 {
            rows.select_nth_unstable_by(k - 1, cmp);
        }
        rows.truncate(k);
        rows.sort_by(cmp);
    }

    /// Returns the `k` items most similar to `item` (cosine, best first), each with `because`
    /// set to `item`. Empty for an unknown item.
    pub fn similar(&self, item: &str, k: usize) -> Vec<Scored> {
        let Some(&i) = self.item_ids.get(item) else { return Vec::new() };
        self.neighbours(i, k)
            .iter()
            .map(|&(j, s)| Scored { item: self.name(j).to_string(), score: s, because: Some(item.to_string()) })
            .collect()
    }

    /// Returns the `k` most popular items: most users with a non-zero weight first, then by
    /// name. The score is that number of users.
    pub fn popular(&self, k: usize) -> Vec<Scored> {
        self.popular_where(k, |_| true)
    }

    /// [`ItemItemModel::popular`] within a category path (None: all).
    pub fn popular_in(&self, category: Option<&str>, k: usize) -> Vec<Scored> {
        self.popular_where(k, |j| in_category(self.items[j as usize].category.as_deref(), category))
    }

    fn popular_where(&self, k: usize, keep: impl Fn(u32) -> bool) -> Vec<Scored> {
        let mut rows: Vec<(u32, f64)> = (0..self.items.len() as u32)
            .filter(|&j| self.items[j as usize].support > 0 && keep(j))
            .map(|j| (j, self.items[j as usize].support as f64))
            .collect();
        self.top(&mut rows, k, |r| *r);
        rows.into_iter().map(|(j, s)| Scored { item: self.name(j).to_string(), score: s, because: None }).collect()
    }

    /// Returns the `k` items with the most activity at or after `since_ms` (weighted: views
    /// and ratings 1, carts 2, purchases 4 by default), within a category path (None: all).
    pub fn trending(&self, category: Option<&str>, since_ms: i64, k: usize) -> Vec<Scored> {
        let from = self.bucket(since_ms);
        let mut rows: Vec<(u32, f64)> = (0..self.items.len() as u32)
            .filter(|&j| in_category(self.items[j as usize].category.as_deref(), category))
            .filter_map(|j| {
                let sum: f64 = self.items[j as usize].activity.range(from..).map(|(_, v)| v).sum();
                (sum > 0.0).then_some((j, sum))
            })
            .collect();
        self.top(&mut rows, k, |r| *r);
        rows.into_iter().map(|(j, s)| Scored { item: self.name(j).to_string(), score: s, because: None }).collect()
    }

    /// Returns the weight of (user, item): 0 when nothing counts.
    pub fn weight(&self, user: &str, item: &str) -> f64 {
        self.cell(user, item).map_or(0.0, |c| c.weight)
    }

    fn cell(&self, user: &str, item: &str) -> Option<&Cell> {
        let u = *self.user_ids.get(user)?;
        let i = *self.item_ids.get(item)?;
        self.users[u as usize].cells.get(&i)
    }

    /// Returns the strongest kind of signal of (user, item), for reasons.
    pub fn strongest_kind(&self, user: &str, item: &str) -> Option<InteractionKind> {
        self.cell(user, item).filter(|c| c.weight > 0.0).map(|c| c.strongest(&self.config))
    }

    /// Returns how many interactions of each kind ([`InteractionKind::ALL`] order) were
    /// observed for `item` with [`ItemItemModel::observe`].
    pub fn interaction_counts(&self, item: &str) -> [u64; 4] {
        self.item_ids.get(item).map_or([0; 4], |&i| self.items[i as usize].counts)
    }

    /// Returns the number of users with a non-zero weight on `item`.
    pub fn support(&self, item: &str) -> u64 {
        self.item_ids.get(item).map_or(0, |&i| self.items[i as usize].support)
    }

    /// Returns the sizes of the model.
    pub fn stats(&self) -> ModelStats {
        ModelStats {
            items: self.items.len(),
            users: self.users.len(),
            weights: self.users.iter().map(|u| u.cells.values().filter(|c| c.weight > 0.0).count()).sum(),
            pairs: self.items.iter().map(|i| i.cooc.len()).sum::<usize>() / 2,
            dirty: self.dirty.len(),
        }
    }

    /// Returns up to `limit` human-readable differences between this model and `other`
    /// (weights, counts, norms, co-occurrences, neighbour lists and their similarities,
    /// popularity, activity, categories), similarities compared within `1e-9`. Empty when the
    /// two models are the same. Items and users with nothing recorded count as absent.
    pub fn differences(&self, other: &ItemItemModel, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        let mut names: Vec<&str> = self.item_ids.keys().chain(other.item_ids.keys()).map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let empty = Item::default();
        for name in names {
            if out.len() >= limit {
                out.truncate(limit);
                return out;
            }
            let a = self.item_ids.get(name).map_or(&empty, |&i| &self.items[i as usize]);
            let b = other.item_ids.get(name).map_or(&empty, |&i| &other.items[i as usize]);
            if a.category != b.category {
                out.push(format!("{name}: category {:?} vs {:?}", a.category, b.category));
            }
            if a.support != b.support || a.counts != b.counts {
                out.push(format!(
                    "{name}: support/counts {} {:?} vs {} {:?}",
                    a.support, a.counts, b.support, b.counts
                ));
            }
            if !close(a.norm2, b.norm2) {
                out.push(format!("{name}: norm² {} vs {}", a.norm2, b.norm2));
            }
            if a.activity.len() != b.activity.len()
                || a.activity.iter().zip(&b.activity).any(|((ka, va), (kb, vb))| ka != kb || !close(*va, *vb))
            {
                out.push(format!("{name}: activity differs"));
            }
            let cooc_a: BTreeMap<&str, f64> = a.cooc.iter().map(|(j, v)| (self.name(*j), *v)).collect();
            let cooc_b: BTreeMap<&str, f64> = b.cooc.iter().map(|(j, v)| (other.name(*j), *v)).collect();
            if cooc_a.len() != cooc_b.len()
                || cooc_a.iter().zip(&cooc_b).any(|((ka, va), (kb, vb))| ka != kb || !close(*va, *vb))
            {
                out.push(format!("{name}: co-occurrences {cooc_a:?} vs {cooc_b:?}"));
            }
            let k = self.config.neighbours;
            let list_a: Vec<(String, f64)> = self
                .item_ids
                .get(name)
                .map(|&i| self.neighbours(i, k).iter().map(|(j, s)| (self.name(*j).to_string(), *s)).collect())
                .unwrap_or_default();
            let list_b: Vec<(String, f64)> = other
                .item_ids
                .get(name)
                .map(|&i| other.neighbours(i, k).iter().map(|(j, s)| (other.name(*j).to_string(), *s)).collect())
                .unwrap_or_default();
            if list_a.len() != list_b.len() || list_a.iter().zip(&list_b).any(|(x, y)| x.0 != y.0 || !close(x.1, y.1)) {
                out.push(format!("{name}: neighbours {list_a:?} vs {list_b:?}"));
            }
        }
        let mut users: Vec<&str> = self.user_ids.keys().chain(other.user_ids.keys()).map(String::as_str).collect();
        users.sort_unstable();
        users.dedup();
        for user in users {
            if out.len() >= limit {
                out.truncate(limit);
                return out;
            }
            let row = |m: &ItemItemModel| -> BTreeMap<String, Cell> {
                m.user_ids
                    .get(user)
                    .map(|&u| {
                        m.users[u as usize].cells.iter().map(|(i, c)| (m.name(*i).to_string(), c.clone())).collect()
                    })
                    .unwrap_or_default()
            };
            let (ra, rb) = (row(self), row(other));
            if ra != rb {
                out.push(format!("user {user}: {ra:?} vs {rb:?}"));
            }
        }
        out.truncate(limit);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use InteractionKind::*;

    /// Cosine over the weights, computed naively from the user-item matrix.
    fn brute_similar(m: &ItemItemModel, item: &str, k: usize) -> Vec<(String, f64)> {
        let mut columns: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        for (user, &u) in &m.user_ids {
            for (i, c) in &m.users[u as usize].cells {
                if c.weight > 0.0 {
                    columns.entry(m.name(*i).to_string()).or_default().insert(user.clone(), c.weight);
                }
            }
        }
        let Some(col) = columns.get(item) else { return vec![] };
        let norm = |c: &BTreeMap<String, f64>| c.values().map(|w| w * w).sum::<f64>().sqrt();
        let mut out: Vec<(String, f64)> = columns
            .iter()
            .filter(|(name, _)| name.as_str() != item)
            .filter_map(|(name, other)| {
                let dot: f64 = col.iter().filter_map(|(u, w)| other.get(u).map(|v| w * v)).sum();
                (dot != 0.0).then(|| (name.clone(), dot / (norm(col) * norm(other))))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(k);
        out
    }

    #[test]
    fn neighbours_of_a_tiny_matrix_are_the_hand_computed_cosines() {
        // Purchases (weight 4): alice A B C, bob A B, carol B C, dave D.
        let mut m = ItemItemModel::new(ModelConfig::default());
        for (u, items) in [("alice", "ABC"), ("bob", "AB"), ("carol", "BC"), ("dave", "D")] {
            for c in items.chars() {
                m.observe(u, &format!("SKU-{c}"), Purchase, 0.0, 0);
            }
        }
        // A = {alice, bob}, B = {alice, bob, carol}, C = {alice, carol}: binary columns (all 4s).
        // cos(A,B) = 2/sqrt(2*3) = 0.8165, cos(A,C) = 1/2, cos(B,C) = 2/sqrt(6).
        let a = m.similar("SKU-A", 10);
        assert_eq!(a.iter().map(|s| s.item.as_str()).collect::<Vec<_>>(), ["SKU-B", "SKU-C"]);
        assert!((a[0].score - 2.0 / 6f64.sqrt()).abs() < 1e-12);
        assert!((a[1].score - 0.5).abs() < 1e-12);
        let b = m.similar("SKU-B", 10);
        // A and C tie at 2/sqrt(6): the name breaks the tie.
        assert_eq!(b.iter().map(|s| s.item.as_str()).collect::<Vec<_>>(), ["SKU-A", "SKU-C"]);
        assert!(m.similar("SKU-D", 10).is_empty());
        // bob (A, B) gets C: 4 * cos(A,C) + 4 * cos(B,C), the larger part from B.
        let r = m.recommend("bob", 5, true);
        assert_eq!(r[0].item, "SKU-C");
        assert!((r[0].score - (4.0 * 0.5 + 4.0 * 2.0 / 6f64.sqrt())).abs() < 1e-12);
        assert_eq!(r[0].because.as_deref(), Some("SKU-B"));
        // The rest is filled with popular items (D: one user) at score 0.
        assert_eq!(r.iter().map(|s| s.item.as_str()).collect::<Vec<_>>(), ["SKU-C", "SKU-D"]);
        assert_eq!(r[1].score, 0.0);
        // K = 1 keeps one neighbour per item.
        let mut k1 = ItemItemModel::new(ModelConfig { neighbours: 1, ..ModelConfig::default() });
        for (u, items) in [("alice", "ABC"), ("bob", "AB"), ("carol", "BC")] {
            for c in items.chars() {
                k1.observe(u, &format!("SKU-{c}"), Purchase, 0.0, 0);
            }
        }
        assert_eq!(k1.similar("SKU-C", 1)[0].item, "SKU-B");
    }

    #[test]
    fn the_strongest_signal_is_the_weight_and_a_later_rating_replaces_an_earlier_one() {
        let mut m = ItemItemModel::new(ModelConfig::default());
        m.observe("u", "SKU-1", View, 0.0, 1);
        assert_eq!(m.weight("u", "SKU-1"), 1.0);
        m.observe("u", "SKU-1", Purchase, 0.0, 2);
        m.observe("u", "SKU-1", View, 0.0, 3);
        assert_eq!(m.weight("u", "SKU-1"), 4.0);
        assert_eq!(m.strongest_kind("u", "SKU-1"), Some(Purchase));
        m.observe("v", "SKU-1", Rating, 5.0, 10);
        m.observe("v", "SKU-1", Rating, 2.0, 20);
        m.observe("v", "SKU-1", Rating, 4.5, 15);
        assert_eq!(m.weight("v", "SKU-1"), 2.0);
        assert_eq!(m.interaction_counts("SKU-1"), [2, 0, 1, 3]);
        assert_eq!(m.support("SKU-1"), 2);
        m.set_review("v", "SKU-1", Some(3.0), 30);
        assert_eq!(m.weight("v", "SKU-1"), 3.0);
        m.set_review("v", "SKU-1", None, 40);
        assert_eq!(m.weight("v", "SKU-1"), 2.0);
        m.adjust_order_purchase("w", "SKU-1", 1, 50);
        m.adjust_order_purchase("w", "SKU-1", 1, 50);
        m.adjust_order_purchase("w", "SKU-1", -1, 60);
        assert_eq!(m.weight("w", "SKU-1"), 4.0);
        m.adjust_order_purchase("w", "SKU-1", -1, 60);
        assert_eq!(m.weight("w", "SKU-1"), 0.0);
        assert_eq!(m.support("SKU-1"), 2);
    }

    #[test]
    fn cold_start_users_get_popularity_within_the_category() {
        let mut m = ItemItemModel::new(ModelConfig::default());
        m.set_category("TV-1", Some("electronics/tv"));
        m.set_category("TV-2", Some("electronics/tv"));
        m.set_category("EAR-1", Some("electronics/audio"));
        m.set_category("SOCK-1", Some("clothing"));
        for (u, item) in [
            ("a", "TV-1"),
            ("b", "TV-1"),
            ("c", "TV-1"),
            ("a", "TV-2"),
            ("b", "SOCK-1"),
            ("c", "SOCK-1"),
            ("d", "SOCK-1"),
        ] {
            m.observe(u, item, View, 0.0, 0);
        }
        m.observe("a", "EAR-1", Cart, 0.0, 0);
        let r = m.recommend_with("newcomer", 3, Filter { exclude: Exclude::Purchased, category: Some("electronics") });
        assert!(r.cold_start);
        let items: Vec<_> = r.items.iter().map(|s| (s.item.as_str(), s.score)).collect();
        assert_eq!(items, [("TV-1", 3.0), ("EAR-1", 1.0), ("TV-2", 1.0)]);
        assert_eq!(m.recommend("newcomer", 1, true)[0].item, "SOCK-1");
        assert_eq!(m.popular_in(Some("electronics/tv"), 10).len(), 2);
        assert!(m.popular_in(Some("electro"), 10).is_empty(), "a category is a whole path segment");
    }

    #[test]
    fn trending_counts_activity_in_the_window() {
        let mut m = ItemItemModel::new(ModelConfig::default());
        m.observe("a", "OLD-1", Purchase, 0.0, 0);
        m.observe("a", "NEW-1", View, 0.0, 3_600_000);
        m.observe("b", "NEW-1", View, 0.0, 3_600_000);
        m.observe("b", "NEW-2", Cart, 0.0, 3_700_000);
        m.observe("c", "NEW-2", View, 0.0, 3_700_000);
        let t = m.trending(None, 3_600_000, 10);
        assert_eq!(t.iter().map(|s| (s.item.as_str(), s.score)).collect::<Vec<_>>(), [("NEW-2", 3.0), ("NEW-1", 2.0)]);
        assert_eq!(m.trending(None, 0, 1)[0].item, "OLD-1");
        // Buckets older than the retention before an item's newest activity go, in any order.
        let config = ModelConfig { trending_retention_ms: 120_000, ..ModelConfig::default() };
        let events = [0, 60_000, 200_000, 30_000, 260_000, 100_000];
        let mut forward = ItemItemModel::new(config.clone());
        let mut backward = ItemItemModel::new(config);
        for (a, b) in events.iter().zip(events.iter().rev()) {
            forward.observe("u", "T-1", View, 0.0, *a);
            backward.observe("u", "T-1", View, 0.0, *b);
        }
        assert_eq!(forward.trending(None, 0, 1)[0].score, 2.0, "buckets 3 and 4 are kept (the newest is 4)");
        assert_eq!(forward.differences(&backward, 5), Vec::<String>::new());
    }

    #[test]
    fn exclusion_keeps_viewed_items_unless_all_seen_are_excluded() {
        let mut m = ItemItemModel::new(ModelConfig::default());
        for u in ["a", "b"] {
            m.observe(u, "X-1", Purchase, 0.0, 0);
            m.observe(u, "Y-1", Purchase, 0.0, 0);
        }
        m.observe("c", "X-1", Purchase, 0.0, 0);
        m.observe("c", "Y-1", View, 0.0, 0);
        let purchased = m.recommend_with("c", 5, Filter { exclude: Exclude::Purchased, category: None });
        assert_eq!(purchased.items[0].item, "Y-1");
        assert_eq!(purchased.items[0].because.as_deref(), Some("X-1"));
        assert!(m.recommend("c", 5, true).iter().all(|s| s.item != "Y-1" && s.item != "X-1"));
        assert!(m.recommend("c", 5, false).iter().any(|s| s.item == "X-1"));
        // Popularity fills only with items the user does not know: d viewed Z-1 alone.
        m.observe("d", "Z-1", View, 0.0, 0);
        let d = m.recommend_with("d", 5, Filter { exclude: Exclude::Purchased, category: None });
        assert_eq!(d.items.iter().map(|s| s.item.as_str()).collect::<Vec<_>>(), ["X-1", "Y-1"]);
    }

    /// A random stream of events of all kinds, including rating replacements and removals.
    #[derive(Debug, Clone)]
    enum Ev {
        Observe(String, String, InteractionKind, f64, i64),
        Order(String, String, i64, i64),
        Review(String, String, Option<f64>, i64),
    }

    fn apply(m: &mut ItemItemModel, e: &Ev) {
        match e {
            Ev::Observe(u, i, k, v, t) => m.observe(u, i, *k, *v, *t),
            Ev::Order(u, i, d, t) => m.adjust_order_purchase(u, i, *d, *t),
            Ev::Review(u, i, r, t) => m.set_review(u, i, *r, *t),
        }
    }

    fn observations(rng: &mut StdRng, n: usize, users: usize, items: usize) -> Vec<Ev> {
        (0..n)
            .map(|t| {
                // Skewed item popularity, so that lists fill and truncate.
                let item = format!("I-{}", (rng.random::<f64>().powi(2) * items as f64) as usize);
                let user = format!("u{}", rng.random_range(0..users));
                let kind = InteractionKind::ALL[rng.random_range(0..4)];
                let value = f64::from(rng.random_range(2..=10i32)) / 2.0;
                Ev::Observe(user, item, kind, value, t as i64 * 1000)
            })
            .collect()
    }

    #[test]
    fn incremental_equals_a_rebuild_in_any_order_and_the_brute_force_cosine() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..4 {
            let config = ModelConfig { neighbours: [1, 3, 5, 20][round], ..ModelConfig::default() };
            let events = observations(&mut rng, 3000, 60, 80);
            let mut incremental = ItemItemModel::new(config.clone());
            for (n, e) in events.iter().enumerate() {
                apply(&mut incremental, e);
                if n % 97 == 0 {
                    incremental.refresh();
                }
            }
            let mut shuffled = events.clone();
            shuffled.shuffle(&mut rng);
            let mut rebuilt = ItemItemModel::new(config.clone());
            for e in &shuffled {
                apply(&mut rebuilt, e);
            }
            // Before and after refreshing: lazily computed rows equal stored ones.
            assert_eq!(incremental.differences(&rebuilt, 5), Vec::<String>::new());
            incremental.refresh();
            rebuilt.refresh();
            assert_eq!(incremental.differences(&rebuilt, 5), Vec::<String>::new());
            for i in 0..80 {
                let item = format!("I-{i}");
                let got: Vec<(String, f64)> =
                    incremental.similar(&item, config.neighbours).into_iter().map(|s| (s.item, s.score)).collect();
                let want = brute_similar(&incremental, &item, config.neighbours);
                assert_eq!(got.len(), want.len(), "{item}");
                for (g, w) in got.iter().zip(&want) {
                    assert!((g.1 - w.1).abs() < 1e-9, "{item}: {got:?} vs {want:?}");
                }
            }
            for u in 0..60 {
                let user = format!("u{u}");
                assert_eq!(incremental.recommend(&user, 10, true), rebuilt.recommend(&user, 10, true));
            }
        }
    }

    #[test]
    fn removals_and_replacements_keep_incremental_equal_to_rebuild() {
        // Orders confirmed then cancelled, reviews published, edited and withdrawn, applied in
        // log order incrementally (refreshing now and then) and replayed into a fresh model.
        let mut rng = StdRng::seed_from_u64(11);
        let mut events = observations(&mut rng, 1000, 40, 50);
        let mut open: Vec<(String, String)> = Vec::new();
        for t in 0..2000i64 {
            let user = format!("u{}", rng.random_range(0..40));
            let item = format!("I-{}", (rng.random::<f64>().powi(2) * 50.0) as usize);
            match rng.random_range(0..4) {
                0 => {
                    events.push(Ev::Order(user.clone(), item.clone(), 1, t));
                    open.push((user, item));
                }
                1 if !open.is_empty() => {
                    let (u, i) = open.swap_remove(rng.random_range(0..open.len()));
                    events.push(Ev::Order(u, i, -1, t));
                }
                2 => events.push(Ev::Review(user, item, Some(f64::from(rng.random_range(1..=5i32))), t)),
                _ => events.push(Ev::Review(user, item, None, t)),
            }
        }
        let config = ModelConfig { neighbours: 4, ..ModelConfig::default() };
        let mut incremental = ItemItemModel::new(config.clone());
        for (n, e) in events.iter().enumerate() {
            apply(&mut incremental, e);
            if n % 13 == 0 {
                incremental.refresh();
            }
        }
        let mut rebuilt = ItemItemModel::new(config);
        for e in &events {
            apply(&mut rebuilt, e);
        }
        rebuilt.refresh();
        assert_eq!(incremental.differences(&rebuilt, 5), Vec::<String>::new());
        for i in 0..50 {
            let item = format!("I-{i}");
            let got: Vec<(String, f64)> =
                incremental.similar(&item, 4).into_iter().map(|s| (s.item, s.score)).collect();
            let want = brute_similar(&incremental, &item, 4);
            assert_eq!(got.iter().map(|g| &g.0).collect::<Vec<_>>(), want.iter().map(|w| &w.0).collect::<Vec<_>>());
        }
    }

    #[test]
    fn differences_names_what_differs() {
        let mut a = ItemItemModel::new(ModelConfig::default());
        let mut b = ItemItemModel::new(ModelConfig::default());
        a.observe("u", "SKU-1", View, 0.0, 0);
        a.observe("u", "SKU-2", View, 0.0, 0);
        b.observe("u", "SKU-1", View, 0.0, 0);
        let d = a.differences(&b, 10);
        assert!(d.iter().any(|l| l.starts_with("SKU-2")), "{d:?}");
        assert!(d.iter().any(|l| l.starts_with("user u")), "{d:?}");
        assert_eq!(a.differences(&b, 1).len(), 1);
    }
}
