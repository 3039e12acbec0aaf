//! Metric evaluation: range aggregations (`count_over_time`, `rate`, `bytes_over_time`,
//! `bytes_rate`) over each series' samples at every step, then vector aggregations (`sum`,
//! `avg`, `max`, `min`, `count` by/without labels, `topk`/`bottomk`). A series has a point at
//! a step only when its window holds at least one line, as in Loki.

use std::collections::{BTreeMap, HashMap};

use super::ast::{Grouping, MetricQuery, RangeOp, VectorOp};
use crate::labels::LabelSet;

/// A series' points: (step time in unix ns, value).
pub type Points = Vec<(i64, f64)>;

/// Evaluates `q` at `steps` (unix ns, ascending) from the matching lines of each series:
/// (timestamp, line bytes).
pub fn evaluate(
    q: &MetricQuery,
    samples: &HashMap<LabelSet, Vec<(i64, u64)>>,
    steps: &[i64],
) -> Vec<(LabelSet, Points)> {
    let mut out = match q {
        MetricQuery::Range { op, range, .. } => {
            let range_ns = i64::try_from(range.as_nanos()).unwrap_or(i64::MAX);
            let secs = range.as_secs_f64();
            let mut out = Vec::new();
            for (labels, s) in samples {
                let mut s = s.clone();
                s.sort_unstable();
                let mut prefix = Vec::with_capacity(s.len() + 1);
                prefix.push(0u64);
                for (_, b) in &s {
                    prefix.push(prefix.last().copied().unwrap_or(0) + b);
                }
                let mut points = Vec::new();
                for &t in steps {
                    // Window (t - range, t].
                    let lo = s.partition_point(|(ts, _)| *ts <= t.saturating_sub(range_ns));
                    let hi = s.partition_point(|(ts, _)| *ts <= t);
                    if hi <= lo {
                        continue;
                    }
                    let count = (hi - lo) as f64;
                    let bytes = (prefix[hi] - prefix[lo]) as f64;
                    let v = match op {
                        RangeOp::CountOverTime => count,
                        RangeOp::Rate => count / secs,
                        RangeOp::BytesOverTime => bytes,
                        RangeOp::BytesRate => bytes / secs,
                    };
                    points.push((t, v));
                }
                if !points.is_empty() {
                    out.push((labels.clone(), points));
                }
            }
            out
        }
        MetricQuery::Vector { op, grouping, inner } => {
            aggregate(*op, grouping.as_ref(), evaluate(inner, samples, steps))
        }
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn group_key(labels: &LabelSet, grouping: Option<&Grouping>) -> LabelSet {
    let pairs = match grouping {
        None => Vec::new(),
        Some(g) if g.without => labels.pairs().iter().filter(|(n, _)| !g.labels.contains(n)).cloned().collect(),
        Some(g) => labels.pairs().iter().filter(|(n, _)| g.labels.contains(n)).cloned().collect(),
    };
    LabelSet::from_sorted_unchecked(pairs)
}

fn aggregate(op: VectorOp, grouping: Option<&Grouping>, series: Vec<(LabelSet, Points)>) -> Vec<(LabelSet, Points)> {
    // (group, step) -> (series index, value) of every member with a point at that step.
    let mut by_step: BTreeMap<(LabelSet, i64), Vec<(usize, f64)>> = BTreeMap::new();
    for (i, (labels, points)) in series.iter().enumerate() {
        let key = group_key(labels, grouping);
        for &(t, v) in points {
            by_step.entry((key.clone(), t)).or_default().push((i, v));
        }
    }
    match op {
        VectorOp::TopK(k) | VectorOp::BottomK(k) => {
            let mut kept: BTreeMap<usize, Points> = BTreeMap::new();
            for ((_, t), mut members) in by_step {
                members.sort_by(|a, b| {
                    let ord = a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal);
                    if matches!(op, VectorOp::TopK(_)) { ord.reverse() } else { ord }
                });
                for (i, v) in members.into_iter().take(k) {
                    kept.entry(i).or_default().push((t, v));
                }
            }
            kept.into_iter().map(|(i, points)| (series[i].0.clone(), points)).collect()
        }
        _ => {
            let mut groups: BTreeMap<LabelSet, Points> = BTreeMap::new();
            for ((key, t), members) in by_step {
                let vals = members.iter().map(|(_, v)| *v);
                let v = match op {
                    VectorOp::Sum => vals.sum(),
                    VectorOp::Avg => vals.sum::<f64>() / members.len() as f64,
                    VectorOp::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                    VectorOp::Min => vals.fold(f64::INFINITY, f64::min),
                    VectorOp::Count => members.len() as f64,
                    VectorOp::TopK(_) | VectorOp::BottomK(_) => 0.0,
                };
                groups.entry(key).or_default().push((t, v));
            }
            groups.into_iter().collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::{Query, parse};

    fn metric(q: &str) -> MetricQuery {
        match parse(q).unwrap() {
            Query::Metric(m) => m,
            Query::Log(_) => panic!("log query"),
        }
    }

    #[test]
    fn counts_rates_and_aggregations() {
        let s = 1_000_000_000i64;
        let a = LabelSet::parse(r#"{app="x", host="a"}"#).unwrap();
        let b = LabelSet::parse(r#"{app="x", host="b"}"#).unwrap();
        let mut samples = HashMap::new();
        samples.insert(a.clone(), vec![(s, 10), (2 * s, 10), (3 * s, 5)]);
        samples.insert(b.clone(), vec![(3 * s, 1)]);
        let steps = [2 * s, 4 * s];
        let count = evaluate(&metric(r#"count_over_time({app="x"}[2s])"#), &samples, &steps);
        assert_eq!(count, vec![(a.clone(), vec![(2 * s, 2.0), (4 * s, 1.0)]), (b.clone(), vec![(4 * s, 1.0)])]);
        let bytes = evaluate(&metric(r#"bytes_rate({app="x"}[2s])"#), &samples, &steps);
        assert_eq!(bytes[0].1, vec![(2 * s, 10.0), (4 * s, 2.5)]);
        let sum = evaluate(&metric(r#"sum(count_over_time({app="x"}[2s]))"#), &samples, &steps);
        assert_eq!(sum, vec![(LabelSet::default(), vec![(2 * s, 2.0), (4 * s, 2.0)])]);
        let by = evaluate(&metric(r#"sum by (host) (count_over_time({app="x"}[10s]))"#), &samples, &[4 * s]);
        assert_eq!(by.len(), 2);
        let top = evaluate(&metric(r#"topk(1, count_over_time({app="x"}[10s]))"#), &samples, &[4 * s]);
        assert_eq!(top, vec![(a, vec![(4 * s, 3.0)])]);
        let max = evaluate(&metric(r#"max without (host) (count_over_time({app="x"}[10s]))"#), &samples, &[4 * s]);
        assert_eq!(max[0].1, vec![(4 * s, 3.0)]);
    }
}
