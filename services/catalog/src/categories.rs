//! Category paths and the category tree: a path is 1-5 segments of `[a-z0-9-]{1,40}` joined
//! by `/` (`electronics/audio/headphones`). A product counts in its category and in every
//! ancestor, so a category's count is its ACTIVE products "in this category and below".
//! Pure functions, unit-tested; the counts themselves are kept in the store by `products`.

use std::collections::BTreeMap;

use meshwork_proto::pb::catalog::v1 as pb;

/// Most segments in a category path.
pub const MAX_SEGMENTS: usize = 5;
/// Most characters in one segment.
pub const MAX_SEGMENT_CHARS: usize = 40;

/// Why a category path is malformed (the reason of an INVALID_ARGUMENT).
pub fn path_error(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("required: 1-5 segments of [a-z0-9-]{1,40} joined by /".into());
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return Some(format!("has {} segments, at most {MAX_SEGMENTS}", segments.len()));
    }
    for segment in segments {
        if segment.is_empty() {
            return Some("has an empty segment (no leading, trailing or double /)".into());
        }
        if segment.len() > MAX_SEGMENT_CHARS {
            return Some(format!("segment {segment:?} is longer than {MAX_SEGMENT_CHARS} characters"));
        }
        if !segment.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Some(format!("segment {segment:?} must match [a-z0-9-]{{1,40}}"));
        }
    }
    None
}

/// Returns `path` and its ancestors, shortest first: `a/b/c` -> `a`, `a/b`, `a/b/c`.
pub fn ancestors(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, b) in path.bytes().enumerate() {
        if b == b'/' {
            out.push(path[..i].to_string());
        }
    }
    if !path.is_empty() {
        out.push(path.to_string());
    }
    out
}

/// Returns the last segment of `path`.
pub fn name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Returns the change of each category's ACTIVE count when a product moves from `before`
/// to `after` (each `Some(category)` when the product is ACTIVE there), without zero entries.
pub fn count_deltas(before: Option<&str>, after: Option<&str>) -> BTreeMap<String, i64> {
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    for path in before.map(ancestors).unwrap_or_default() {
        *deltas.entry(path).or_default() -= 1;
    }
    for path in after.map(ancestors).unwrap_or_default() {
        *deltas.entry(path).or_default() += 1;
    }
    deltas.retain(|_, d| *d != 0);
    deltas
}

/// Builds the tree under `parent` (empty for the top level) from the counts of every
/// category below it (`(path, count)`, any order): the direct children of `parent`, each with
/// its own subtree, sorted by path.
pub fn tree(parent: &str, counts: &[(String, i64)]) -> Vec<pb::Category> {
    let depth = if parent.is_empty() { 0 } else { parent.split('/').count() };
    let mut nodes: BTreeMap<&str, i64> = BTreeMap::new();
    for (path, count) in counts {
        nodes.insert(path.as_str(), *count);
    }
    build(depth, parent, &nodes)
}

fn build(depth: usize, parent: &str, nodes: &BTreeMap<&str, i64>) -> Vec<pb::Category> {
    nodes
        .iter()
        .filter(|(path, _)| {
            path.split('/').count() == depth + 1 && (parent.is_empty() || path.starts_with(&format!("{parent}/")))
        })
        .map(|(path, count)| pb::Category {
            path: path.to_string(),
            name: name(path).to_string(),
            product_count: *count,
            children: build(depth + 1, path, nodes),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_segment_by_segment() {
        assert_eq!(path_error("electronics/audio/headphones"), None);
        assert_eq!(path_error("a-1/b2"), None);
        assert!(path_error("").is_some());
        assert!(path_error("a//b").is_some());
        assert!(path_error("/a").is_some());
        assert!(path_error("a/").is_some());
        assert!(path_error("A").is_some());
        assert!(path_error("a b").is_some());
        assert!(path_error("a/b/c/d/e/f").is_some());
        assert_eq!(path_error("a/b/c/d/e"), None);
        assert!(path_error(&"x".repeat(41)).is_some());
        assert_eq!(path_error(&"x".repeat(40)), None);
    }

    #[test]
    fn ancestors_and_names() {
        assert_eq!(ancestors("a/b/c"), vec!["a", "a/b", "a/b/c"]);
        assert_eq!(ancestors("a"), vec!["a"]);
        assert!(ancestors("").is_empty());
        assert_eq!(name("a/b/c"), "c");
        assert_eq!(name("a"), "a");
    }

    #[test]
    fn count_deltas_move_only_what_changes() {
        let moved = count_deltas(Some("a/b/c"), Some("a/b/d"));
        assert_eq!(moved, BTreeMap::from([("a/b/c".to_string(), -1), ("a/b/d".to_string(), 1)]));
        let archived = count_deltas(Some("a/b"), None);
        assert_eq!(archived, BTreeMap::from([("a".to_string(), -1), ("a/b".to_string(), -1)]));
        assert!(count_deltas(Some("a"), Some("a")).is_empty());
        assert!(count_deltas(None, None).is_empty());
    }

    #[test]
    fn the_tree_nests_children_under_the_parent() {
        let counts =
            [("a", 3), ("a/b", 2), ("a/b/c", 1), ("a/d", 1), ("ab", 5), ("z", 1)].map(|(p, c)| (p.to_string(), c));
        let top = tree("", &counts);
        assert_eq!(top.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(), vec!["a", "ab", "z"]);
        assert_eq!(top[0].children.len(), 2);
        assert_eq!(top[0].children[0].children[0].path, "a/b/c");
        assert_eq!(top[0].children[0].children[0].name, "c");
        let under_a = tree("a", &counts[1..4]);
        assert_eq!(
            under_a.iter().map(|c| (c.path.as_str(), c.product_count)).collect::<Vec<_>>(),
            vec![("a/b", 2), ("a/d", 1)]
        );
    }
}
