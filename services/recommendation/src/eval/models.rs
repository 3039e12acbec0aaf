//! The models under evaluation, behind one small trait: the popularity baseline (items ranked
//! by how many train users interacted with them) and our item-item model
//! ([`crate::model::ItemItemModel`]), fed the train interactions as implicit feedback.

use std::collections::{HashMap, HashSet};

use super::data::Interaction;
use crate::model::{InteractionKind, ItemItemModel, ModelConfig};

/// A fitted model that ranks items for a user.
pub trait Recommender {
    /// Returns up to `k` item ids for `user`, best first, none of them in `seen` (the user's
    /// train items, as implicit's `filter_already_liked_items`).
    fn recommend(&self, user: &str, k: usize, seen: &HashSet<&str>) -> Vec<String>;
}

/// The popularity baseline: items ordered by the number of train interactions (one per
/// user-item pair after deduplication), ties broken by item id so the Python peer ranks the
/// same way.
#[derive(Debug, Clone, Default)]
pub struct Popularity {
    ranked: Vec<String>,
}

impl Popularity {
    /// Counts the train interactions per item.
    pub fn fit(train: &[Interaction]) -> Self {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for i in train {
            *counts.entry(&i.item).or_default() += 1;
        }
        let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        Self { ranked: ranked.into_iter().map(|(i, _)| i.to_string()).collect() }
    }
}

impl Recommender for Popularity {
    fn recommend(&self, _user: &str, k: usize, seen: &HashSet<&str>) -> Vec<String> {
        self.ranked.iter().filter(|i| !seen.contains(i.as_str())).take(k).cloned().collect()
    }
}

/// Our model: [`ItemItemModel`] fed every train interaction as a rating whose value is the
/// interaction's weight (1 under `--weight binary`, the rating under `--weight value`), so the
/// user-item matrix it learns is exactly the `train.csv` matrix the Python peer gives
/// implicit.
#[derive(Debug, Clone)]
pub struct ItemItem {
    model: ItemItemModel,
}

impl ItemItem {
    /// Observes every train interaction in order, then settles the neighbour lists.
    pub fn fit(train: &[Interaction], config: ModelConfig) -> Self {
        let mut model = ItemItemModel::new(config);
        for i in train {
            model.observe(&i.user, &i.item, InteractionKind::Rating, i.value, i.at_ms);
        }
        model.refresh();
        Self { model }
    }

    /// Returns the fitted model.
    pub fn model(&self) -> &ItemItemModel {
        &self.model
    }
}

impl Recommender for ItemItem {
    fn recommend(&self, user: &str, k: usize, seen: &HashSet<&str>) -> Vec<String> {
        // The model excludes what it saw of the user, which is exactly the user's train items;
        // the filter below only guards a caller that passes more.
        self.model
            .recommend(user, k + seen.len().min(k), true)
            .into_iter()
            .map(|s| s.item)
            .filter(|i| !seen.contains(i.as_str()))
            .take(k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popularity_ranks_by_count_then_id_and_skips_seen() {
        let row = |u: &str, i: &str| Interaction { user: u.into(), item: i.into(), value: 1.0, at_ms: 0 };
        let p = Popularity::fit(&[row("a", "x"), row("b", "x"), row("a", "z"), row("b", "y")]);
        assert_eq!(p.recommend("c", 3, &HashSet::new()), vec!["x", "y", "z"]);
        let seen: HashSet<&str> = ["x"].into_iter().collect();
        assert_eq!(p.recommend("a", 1, &seen), vec!["y"]);
    }
}
