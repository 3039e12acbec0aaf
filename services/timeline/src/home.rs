//! The merge of one home-timeline page: the inbox (pushed posts) and the pulled posts of
//! celebrities (and, past the end of the inbox, of everyone followed), each a newest-first
//! list of post ids below the cursor, cut to a page. Pure, so that the cursor rules are
//! tested without a store.
//!
//! Why the cursor is stable: ids are time-ordered and every source is read strictly below the
//! cursor (the last id of the previous page), so posts that arrive between pages have larger
//! ids and can neither shift nor repeat the next page. Why nothing is skipped: each source
//! returns its newest `limit >= page size` ids below the cursor; an id it left out is older
//! than all of those, so at least a page of ids of the union is newer than it, and it comes
//! on a later page.

use std::collections::BTreeSet;

/// One source's newest-first ids below the cursor, and how many were asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub ids: Vec<u64>,
    pub limit: usize,
}

/// A merged page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Newest first, no duplicates, at most the page size.
    pub ids: Vec<u64>,
    /// Whether a next page may hold more.
    pub more: bool,
}

/// Returns the newest `size` distinct ids of all sources and whether more may follow.
pub fn merge(sources: &[Source], size: usize) -> Page {
    let all: BTreeSet<u64> = sources.iter().flat_map(|s| s.ids.iter().copied()).collect();
    let ids: Vec<u64> = all.iter().rev().take(size).copied().collect();
    let truncated = sources.iter().any(|s| s.ids.len() >= s.limit);
    Page { more: !ids.is_empty() && (all.len() > size || truncated), ids }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(ids: &[u64], limit: usize) -> Source {
        Source { ids: ids.to_vec(), limit }
    }

    #[test]
    fn pages_merge_dedup_and_order() {
        let page = merge(&[src(&[9, 7, 5], 4), src(&[8, 7, 1], 3)], 3);
        assert_eq!(page.ids, vec![9, 8, 7]);
        assert!(page.more);
        let last = merge(&[src(&[2], 4), src(&[1], 3)], 3);
        assert_eq!(last.ids, vec![2, 1]);
        assert!(!last.more);
        assert!(!merge(&[src(&[], 4)], 3).more);
    }

    #[test]
    fn paging_a_union_with_a_cursor_skips_and_repeats_nothing() {
        // Three authors' posts; the reader pages with size 4, each source cut to its limit.
        let authors: Vec<Vec<u64>> =
            vec![(1..60).step_by(3).collect(), (2..60).step_by(5).collect(), (3..60).step_by(7).collect()];
        let want: BTreeSet<u64> = authors.iter().flatten().copied().collect();
        let mut seen = Vec::new();
        let mut cursor = u64::MAX;
        loop {
            let sources: Vec<Source> = authors
                .iter()
                .map(|a| {
                    let mut below: Vec<u64> = a.iter().copied().filter(|id| *id < cursor).collect();
                    below.sort_unstable_by(|x, y| y.cmp(x));
                    below.truncate(4);
                    src(&below, 4)
                })
                .collect();
            let page = merge(&sources, 4);
            seen.extend(page.ids.iter().copied());
            match (page.more, page.ids.last()) {
                (true, Some(last)) => cursor = *last,
                _ => break,
            }
        }
        assert!(seen.windows(2).all(|w| w[0] > w[1]), "strictly newest first: {seen:?}");
        assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), want);
    }
}
