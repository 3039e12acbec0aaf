//! Offline evaluation (`meshwork recommend-eval`): loads interactions (a CSV file or the
//! synthetic generator), splits them into train and test (random or by time), fits our
//! item-item model and a popularity baseline on train, and scores each model's top-k against
//! test with implicit's ranking metrics (precision@k, recall@k, nDCG@k, MAP@k) plus catalogue
//! coverage. `--write-split DIR` writes the exact train/test files that
//! `scripts/recommend_peer.py` feeds to `implicit`, so BENCHMARKS compares like with like.
//!
//! Ratings are implicit feedback: a rated item is a positive interaction whose confidence is
//! the rating (`--weight value`, the default, which is how the service itself weighs a
//! review: `ModelConfig::rating_scale` 1), or every interaction weighs 1 (`--weight binary`).
//! Nothing is predicted for unrated items and every held-out rating, low or high, counts as a
//! hit. The weight is applied before the split, so `train.csv` carries exactly the matrix the
//! models learn from.

pub mod data;
pub mod metrics;
pub mod models;
pub mod split;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::model::ModelConfig;
use data::Synthetic;
use metrics::{MetricValues, RankingMetrics};
use models::{Popularity, Recommender};
use split::SplitKind;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// An interactions file is malformed.
    #[error("line {line}: {reason}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// An argument is out of range.
    #[error("--{field}: {reason}")]
    Invalid {
        /// The flag.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
}

/// How interactions weigh in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weight {
    /// Every interaction weighs 1.
    Binary,
    /// The interaction's value (a rating) is its weight; it must be positive.
    Value,
}

/// The flags of `meshwork recommend-eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Interactions CSV (`user,item,value,timestamp_ms` with that header).
    #[arg(long, value_name = "FILE", conflicts_with = "synthetic", required_unless_present = "synthetic")]
    pub interactions: Option<PathBuf>,
    /// Generates synthetic interactions for this many users instead of reading a file.
    #[arg(long, value_name = "USERS")]
    pub synthetic: Option<usize>,
    /// How to split train from test.
    #[arg(long, value_enum, default_value_t = SplitKind::Random)]
    pub split: SplitKind,
    /// Share of interactions held out for test (per interaction for random, per user for
    /// time); in (0, 1).
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Cut-off of the ranking metrics; 1..=1000.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Seed of the synthetic generator and of the random split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Writes train.csv and test.csv here, for scripts/recommend_peer.py.
    #[arg(long, value_name = "DIR")]
    pub write_split: Option<PathBuf>,
    /// Neighbours kept per item by our model (the model's default when absent).
    #[arg(long)]
    pub neighbours: Option<usize>,
    /// How interactions weigh in training.
    #[arg(long, value_enum, default_value_t = Weight::Value)]
    pub weight: Weight,
}

impl EvalArgs {
    /// Arguments for a file, with every other flag at its default.
    pub fn for_file(path: impl Into<PathBuf>) -> Self {
        Self { interactions: Some(path.into()), synthetic: None, ..Self::for_synthetic(1) }
    }

    /// Arguments for the synthetic generator with `users` users, every other flag at its
    /// default.
    pub fn for_synthetic(users: usize) -> Self {
        Self {
            interactions: None,
            synthetic: Some(users),
            split: SplitKind::Random,
            test_fraction: 0.2,
            k: 10,
            seed: 42,
            write_split: None,
            neighbours: None,
            weight: Weight::Value,
        }
    }

    fn validate(&self) -> Result<(), EvalError> {
        let invalid = |field, reason: &str| Err(EvalError::Invalid { field, reason: reason.to_string() });
        if self.interactions.is_none() && self.synthetic.is_none() {
            return invalid("interactions", "give --interactions FILE or --synthetic USERS");
        }
        if self.interactions.is_some() && self.synthetic.is_some() {
            return invalid("synthetic", "give either --interactions or --synthetic");
        }
        if matches!(self.synthetic, Some(0)) {
            return invalid("synthetic", "must be at least 1 user");
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return invalid("test-fraction", "must be in (0, 1)");
        }
        if !(1..=1000).contains(&self.k) {
            return invalid("k", "must be in 1..=1000");
        }
        if matches!(self.neighbours, Some(0)) {
            return invalid("neighbours", "must be at least 1");
        }
        Ok(())
    }
}

/// One model's line of the report.
#[derive(Debug, Clone)]
pub struct ModelResult {
    /// The model's name.
    pub model: String,
    /// Its metrics.
    pub metrics: MetricValues,
    /// Time to fit on train.
    pub fit: Duration,
    /// Time to recommend for every test user.
    pub recommend: Duration,
}

/// The outcome of an evaluation: the data's shape and one line per model.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where the data came from.
    pub source: String,
    /// Interactions after merging repeated user-item pairs.
    pub interactions: usize,
    /// Distinct users.
    pub users: usize,
    /// Distinct items.
    pub items: usize,
    /// The split used.
    pub split: SplitKind,
    /// The held-out share.
    pub test_fraction: f64,
    /// Train interactions.
    pub train: usize,
    /// Test interactions.
    pub test: usize,
    /// The metrics' cut-off.
    pub k: usize,
    /// Neighbours per item of our model.
    pub neighbours: usize,
    /// The training weight.
    pub weight: Weight,
    /// One line per model, ours first.
    pub results: Vec<ModelResult>,
}

impl Report {
    /// Returns the line of `model`, if it was evaluated.
    pub fn result(&self, model: &str) -> Option<&ModelResult> {
        self.results.iter().find(|r| r.model == model)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let split = match self.split {
            SplitKind::Random => "random",
            SplitKind::Time => "time",
        };
        let weight = match self.weight {
            Weight::Binary => "binary",
            Weight::Value => "value",
        };
        writeln!(
            f,
            "data: {} ({} interactions, {} users, {} items)",
            self.source, self.interactions, self.users, self.items
        )?;
        writeln!(
            f,
            "split: {split}, test fraction {}: {} train, {} test; k = {}; weight {weight}; \
             neighbours {}; {} test users",
            self.test_fraction,
            self.train,
            self.test,
            self.k,
            self.neighbours,
            self.results.first().map_or(0, |r| r.metrics.users)
        )?;
        let k = self.k;
        writeln!(
            f,
            "{:<22} {:>12} {:>10} {:>10} {:>10} {:>9} {:>10} {:>10}",
            "model",
            format!("precision@{k}"),
            format!("recall@{k}"),
            format!("ndcg@{k}"),
            format!("map@{k}"),
            "coverage",
            "fit",
            "recommend"
        )?;
        for r in &self.results {
            let m = &r.metrics;
            writeln!(
                f,
                "{:<22} {:>12.4} {:>10.4} {:>10.4} {:>10.4} {:>9.4} {:>9.2}s {:>9.2}s",
                r.model,
                m.precision,
                m.recall,
                m.ndcg,
                m.map,
                m.coverage,
                r.fit.as_secs_f64(),
                r.recommend.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

/// Name of our model's line in the report.
pub const OURS: &str = "meshwork item-item";
/// Name of the popularity baseline's line.
pub const POPULARITY: &str = "popularity";

/// Runs an evaluation: loads or generates the data, splits it, optionally writes the split,
/// fits and scores our model and the popularity baseline.
pub fn run(args: &EvalArgs) -> Result<Report, EvalError> {
    args.validate()?;
    let (source, raw) = match (&args.interactions, args.synthetic) {
        (Some(path), _) => (path.display().to_string(), data::read(path)?),
        (None, Some(users)) => (
            format!("synthetic, {users} users, seed {}", args.seed),
            Synthetic::with_users(users, args.seed).generate(),
        ),
        // validate() has ruled this out already.
        (None, None) => {
            return Err(EvalError::Invalid {
                field: "interactions",
                reason: "give --interactions FILE or --synthetic USERS".into(),
            });
        }
    };
    let mut all = data::dedup(raw);
    if all.is_empty() {
        return Err(EvalError::Invalid { field: "interactions", reason: "no interactions".into() });
    }
    match args.weight {
        Weight::Binary => {
            for i in &mut all {
                i.value = 1.0;
            }
        }
        Weight::Value => {
            if let Some(bad) = all.iter().find(|i| i.value <= 0.0) {
                return Err(EvalError::Invalid {
                    field: "weight",
                    reason: format!(
                        "value weights must be positive, found {} for user {} item {} \
                         (use --weight binary)",
                        bad.value, bad.user, bad.item
                    ),
                });
            }
        }
    }
    let users: HashSet<&str> = all.iter().map(|i| i.user.as_str()).collect();
    let items: HashSet<&str> = all.iter().map(|i| i.item.as_str()).collect();
    let (users, items) = (users.len(), items.len());
    let split = split::split(&all, args.split, args.test_fraction, args.seed);
    if let Some(dir) = &args.write_split {
        std::fs::create_dir_all(dir)
            .map_err(|e| EvalError::Io { path: dir.display().to_string(), reason: e.to_string() })?;
        data::write(&dir.join("train.csv"), &split.train)?;
        data::write(&dir.join("test.csv"), &split.test)?;
    }
    let mut config = ModelConfig::default();
    if let Some(n) = args.neighbours {
        config.neighbours = n;
    }
    let neighbours = config.neighbours;

    let mut results = Vec::new();
    let started = Instant::now();
    let ours = models::ItemItem::fit(&split.train, config);
    results.push(evaluate(OURS, &ours, started.elapsed(), &split, args.k));
    let started = Instant::now();
    let popularity = Popularity::fit(&split.train);
    results.push(evaluate(POPULARITY, &popularity, started.elapsed(), &split, args.k));
    Ok(Report {
        source,
        interactions: all.len(),
        users,
        items,
        split: args.split,
        test_fraction: args.test_fraction,
        train: split.train.len(),
        test: split.test.len(),
        k: args.k,
        neighbours,
        weight: args.weight,
        results,
    })
}

/// Scores `model` on every user with test items: its top-k, excluding the user's train items,
/// against the user's test items.
pub fn evaluate(name: &str, model: &dyn Recommender, fit: Duration, split: &split::Split, k: usize) -> ModelResult {
    let mut seen: HashMap<&str, HashSet<&str>> = HashMap::new();
    for i in &split.train {
        seen.entry(&i.user).or_default().insert(&i.item);
    }
    let mut test: HashMap<&str, HashSet<&str>> = HashMap::new();
    for i in &split.test {
        test.entry(&i.user).or_default().insert(&i.item);
    }
    let train_items: HashSet<&str> = split.train.iter().map(|i| i.item.as_str()).collect();
    let mut users: Vec<&str> = test.keys().copied().collect();
    users.sort_unstable();
    let empty = HashSet::new();
    let mut metrics = RankingMetrics::new(k);
    let started = Instant::now();
    for user in users {
        let recs = model.recommend(user, k, seen.get(user).unwrap_or(&empty));
        if let Some(t) = test.get(user) {
            metrics.add_user(&recs, t);
        }
    }
    ModelResult {
        model: name.to_string(),
        metrics: metrics.finish(train_items.len()),
        fit,
        recommend: started.elapsed(),
    }
}
