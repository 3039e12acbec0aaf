//! The offline evaluation: metrics equal hand-computed values on a tiny fixture, our item-item
//! model clearly beats popularity on synthetic data with planted structure, and the written
//! split is exactly the evaluated data.

use std::collections::HashSet;
use std::path::PathBuf;

use meshwork_recommendation::eval::data::{self, Interaction};
use meshwork_recommendation::eval::metrics::RankingMetrics;
use meshwork_recommendation::eval::models::Recommender;
use meshwork_recommendation::eval::split::{Split, SplitKind};
use meshwork_recommendation::eval::{self, EvalArgs, OURS, POPULARITY};

fn row(user: &str, item: &str, value: f64, at_ms: i64) -> Interaction {
    Interaction { user: user.into(), item: item.into(), value, at_ms }
}

fn set<'a>(items: &[&'a str]) -> HashSet<&'a str> {
    items.iter().copied().collect()
}

fn close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-9, "actual {actual}, expected {expected}");
}

// Hand computation at k = 3, with gains g(i) = 1 / log2(i + 2) = 1, 0.63093, 0.5:
// - A: [x, y, z] against {x, z}: hits at ranks 0 and 2; min(k, |T|) = 2.
//   AP = (1/1 + 2/3) / 2 = 0.83333; DCG = 1 + 0.5; IDCG = 1 + 0.63093; nDCG = 0.91972;
//   recall = 2/2.
// - B: [p, q, r] against {r, s, t, w}: one hit at rank 2; min(k, |T|) = 3.
//   AP = (1/3) / 3 = 0.11111; nDCG = 0.5 / (1 + 0.63093 + 0.5) = 0.23464; recall = 1/4.
// - C: [a] against {b}: nothing; min(k, |T|) = 1.
// precision = (2 + 1 + 0) / (2 + 3 + 1) = 0.5 (implicit's denominator); MAP = 0.31481;
// nDCG = 0.38479; recall = 0.41667; coverage = 7 recommended / 10 train items.
#[test]
fn metrics_equal_hand_computed_values() {
    let mut m = RankingMetrics::new(3);
    m.add_user(&["x", "y", "z"], &set(&["x", "z"]));
    m.add_user(&["p", "q", "r", "beyond-k"], &set(&["r", "s", "t", "w"]));
    m.add_user(&["a"], &set(&["b"]));
    // A user without test items is not evaluated, as in implicit.
    m.add_user(&["x"], &HashSet::new());
    let v = m.finish(10);
    assert_eq!(v.users, 3);
    close(v.precision, 0.5);
    close(v.map, ((1.0 + 2.0 / 3.0) / 2.0 + 1.0 / 9.0) / 3.0);
    close(v.map, 0.314_814_814_814_814_8);
    close(v.ndcg, 0.384_786_717_386_522);
    close(v.recall, (1.0 + 0.25) / 3.0);
    close(v.coverage, 0.7);
}

/// Recommends fixed lists, minus what the evaluation says the user has seen.
struct Fixed(Vec<(&'static str, Vec<&'static str>)>);

impl Recommender for Fixed {
    fn recommend(&self, user: &str, k: usize, seen: &HashSet<&str>) -> Vec<String> {
        self.0
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, items)| items.iter().filter(|i| !seen.contains(**i)).take(k).map(|i| i.to_string()).collect())
            .unwrap_or_default()
    }
}

#[test]
fn evaluate_excludes_train_items_and_scores_test_users_only() {
    let split = Split {
        train: vec![row("A", "seen", 1.0, 0), row("B", "x", 1.0, 0), row("C", "q", 1.0, 0)],
        test: vec![row("A", "x", 1.0, 1), row("B", "y", 1.0, 1)],
    };
    // A's "seen" is a train item: the recommender drops it, so x moves to rank 0.
    let model = Fixed(vec![("A", vec!["seen", "x", "q"]), ("B", vec!["z", "y"]), ("C", vec!["x"])]);
    let r = eval::evaluate("fixed", &model, Default::default(), &split, 2);
    // A: [x, q], x at rank 0 (1 hit of min(2, 1)); B: [z, y], y at rank 1; C has no test
    // items and is not asked.
    assert_eq!(r.metrics.users, 2);
    close(r.metrics.precision, 1.0);
    close(r.metrics.map, (1.0 + 0.5) / 2.0);
    close(r.metrics.ndcg, (1.0 + 1.0 / 3f64.log2()) / 2.0);
    // Recommended {x, q, z, y} over train items {seen, x, q}.
    close(r.metrics.coverage, 4.0 / 3.0);
}

#[test]
fn item_item_clearly_beats_popularity_on_planted_clusters() {
    let mut args = EvalArgs::for_synthetic(300);
    args.seed = 7;
    let report = eval::run(&args).expect("evaluation runs");
    let ours = report.result(OURS).expect("our line").metrics;
    let popular = report.result(POPULARITY).expect("popularity line").metrics;
    assert!(ours.users > 250, "{report}");
    assert!(ours.precision > 2.0 * popular.precision, "ours should clearly beat popularity:\n{report}");
    assert!(ours.ndcg > popular.ndcg && ours.map > popular.map && ours.recall > popular.recall);
    assert!(ours.coverage > 3.0 * popular.coverage, "{report}");
    // The table names every metric at k.
    let table = report.to_string();
    for column in ["precision@10", "recall@10", "ndcg@10", "map@10", "coverage"] {
        assert!(table.contains(column), "{table}");
    }

    // The time split runs on the same data, and the structure still shows.
    args.split = SplitKind::Time;
    let report = eval::run(&args).expect("time split runs");
    let ours = report.result(OURS).expect("our line").metrics;
    let popular = report.result(POPULARITY).expect("popularity line").metrics;
    assert!(ours.precision > 1.5 * popular.precision, "{report}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshwork-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn written_split_is_the_evaluated_data_and_runs_are_deterministic() {
    let dir = scratch("split");
    let generated = data::Synthetic::with_users(60, 3).generate();
    let file = dir.join("interactions.csv");
    data::write(&file, &generated).expect("write interactions");

    let mut args = EvalArgs::for_file(&file);
    args.write_split = Some(dir.join("split"));
    let first = eval::run(&args).expect("evaluation runs");
    let train = data::read(&dir.join("split/train.csv")).expect("train.csv");
    let test = data::read(&dir.join("split/test.csv")).expect("test.csv");
    assert_eq!((train.len(), test.len()), (first.train, first.test));
    let mut union: Vec<_> = train.iter().chain(&test).cloned().collect();
    let mut expected = data::dedup(generated);
    let key = |i: &Interaction| (i.user.clone(), i.item.clone());
    union.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(union, expected);

    let again = eval::run(&args).expect("evaluation runs again");
    for (a, b) in first.results.iter().zip(&again.results) {
        assert_eq!(a.metrics, b.metrics);
    }
    // Binary weights are what the written train file carries.
    args.weight = eval::Weight::Binary;
    eval::run(&args).expect("binary run");
    let train = data::read(&dir.join("split/train.csv")).expect("train.csv");
    assert!(train.iter().all(|i| i.value == 1.0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let dir = scratch("bad");
    let file = dir.join("bad.csv");
    std::fs::write(&file, "user,item,value,timestamp_ms\nu1,i1,5,1\nu1,i2,five,2\n").unwrap();
    let err = eval::run(&EvalArgs::for_file(&file)).unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("value"), "{err}");

    std::fs::write(&file, "user,item,value,timestamp_ms\nu1,i1,0,1\n").unwrap();
    let err = eval::run(&EvalArgs::for_file(&file)).unwrap_err().to_string();
    assert!(err.contains("--weight"), "{err}");

    let err = eval::run(&EvalArgs::for_file(dir.join("missing.csv"))).unwrap_err();
    assert!(err.to_string().contains("missing.csv"), "{err}");

    let mut args = EvalArgs::for_synthetic(10);
    args.k = 0;
    assert!(eval::run(&args).unwrap_err().to_string().contains("--k"));
    args.k = 10;
    args.test_fraction = 1.0;
    assert!(eval::run(&args).unwrap_err().to_string().contains("--test-fraction"));
    let _ = std::fs::remove_dir_all(&dir);
}
