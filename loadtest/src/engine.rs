//! The load loop: `concurrency` workers, each sending one call at a time on one of the shared
//! connections (worker i uses connection i mod connections). Workers take request numbers
//! from one counter; with a schedule, request k is due at `schedule.offset(k)` and a worker
//! that takes it late measures latency from when it was due (no coordinated omission). Each
//! worker keeps its own stats; they are merged once at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;

use crate::Error;
use crate::payload::{Metadata, Payload};
use crate::schedule::Schedule;
use crate::stats::Stats;
use crate::status;
use crate::template::CallData;
use crate::transport::{CallTarget, Connection, h2_failure, unary};

/// Keys a scenario call picks from per request: uniformly, over a Zipf distribution, or each
/// in turn.
#[derive(Debug, Clone)]
pub struct KeyPicker {
    keys: Vec<String>,
    /// Cumulative probabilities (Zipf), empty for uniform.
    cdf: Vec<f64>,
    /// The next key's position when keys are taken in turn (shared by every worker's clone).
    next: Option<Arc<AtomicUsize>>,
}

impl KeyPicker {
    /// Picks uniformly from `keys`.
    pub fn uniform(keys: Vec<String>) -> KeyPicker {
        KeyPicker { keys, cdf: Vec::new(), next: None }
    }

    /// Takes the keys in the order given, each once before any is taken again (a key that can
    /// be used only once, such as a cart to check out).
    pub fn sequential(keys: Vec<String>) -> KeyPicker {
        KeyPicker { keys, cdf: Vec::new(), next: Some(Arc::new(AtomicUsize::new(0))) }
    }

    /// Picks the key of rank r (from 1, in the order given) with probability proportional to
    /// 1 / r^exponent.
    pub fn zipf(keys: Vec<String>, exponent: f64) -> KeyPicker {
        let weights: Vec<f64> = (1..=keys.len()).map(|r| 1.0 / (r as f64).powf(exponent)).collect();
        let sum: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / sum;
                acc
            })
            .collect();
        KeyPicker { keys, cdf, next: None }
    }

    /// Returns one key (`None` when there are no keys).
    pub fn pick(&self, rng: &mut impl Rng) -> Option<&str> {
        if self.keys.is_empty() {
            return None;
        }
        let i = if let Some(next) = &self.next {
            next.fetch_add(1, Ordering::Relaxed) % self.keys.len()
        } else if self.cdf.is_empty() {
            rng.random_range(0..self.keys.len())
        } else {
            let u: f64 = rng.random();
            self.cdf.partition_point(|c| *c < u).min(self.keys.len() - 1)
        };
        Some(&self.keys[i])
    }
}

/// One call of the run: a `--call`, or one entry of a scenario's mix.
#[derive(Debug, Clone)]
pub struct Op {
    /// Name in reports (the method name, or the scenario entry's name).
    pub name: String,
    /// URI and fixed headers.
    pub target: CallTarget,
    /// Request bodies.
    pub payload: Payload,
    /// Call metadata.
    pub metadata: Metadata,
    /// Share of the mix (relative to the other ops' weights).
    pub weight: u32,
    /// Keys for `{{.Key}}`.
    pub keys: Option<Arc<KeyPicker>>,
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many calls.
    Count(u64),
    /// After this long.
    Duration(Duration),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `host:port` of the target.
    pub addr: String,
    /// The calls, picked by weight per request.
    pub ops: Vec<Op>,
    /// Workers (calls in flight at most).
    pub concurrency: usize,
    /// h2 connections shared by the workers.
    pub connections: usize,
    /// When to stop.
    pub stop: Stop,
    /// Request rate over time; `None` sends as fast as the workers go.
    pub schedule: Option<Schedule>,
    /// Deadline of one call.
    pub timeout: Duration,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// Why a run ended, as ghz reports it in `endReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// All `-n` calls done (or the schedule ended).
    Normal,
    /// `-z` elapsed.
    Timeout,
}

impl EndReason {
    /// ghz's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Normal => "normal",
            EndReason::Timeout => "timeout",
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Merged stats of every worker.
    pub stats: Stats,
    /// Wall time from the first call to the end of the run.
    pub total: Duration,
    /// When the run started.
    pub started: SystemTime,
    /// Why it ended.
    pub end_reason: EndReason,
}

struct Shared {
    plan: Plan,
    next: AtomicU64,
    done: AtomicU64,
    start: Instant,
    deadline: Option<Instant>,
    cumulative_weights: Vec<u64>,
}

/// Runs `plan` against its target.
///
/// The work is split over one OS thread per core (at most one per connection), each with a
/// current-thread runtime that owns some connections and the workers using them: a call, its
/// connection's driver and its worker never hop between threads.
pub async fn run(plan: Plan) -> Result<RunResult, Error> {
    if plan.ops.is_empty() {
        return Err(Error::Config("nothing to call".into()));
    }
    let connections = plan.connections.max(1);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(connections).max(1);
    let template = Stats::new(plan.ops.len())?;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), Error>>();
    let mut go = Vec::with_capacity(threads);
    let mut finished = Vec::with_capacity(threads);
    for t in 0..threads {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<Arc<Shared>>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Stats>();
        let part = Part {
            addr: plan.addr.clone(),
            connections: (0..connections).filter(|c| c % threads == t).collect(),
            total_connections: connections,
            concurrency: plan.concurrency.max(1),
            template: template.clone(),
        };
        let ready = ready_tx.clone();
        std::thread::Builder::new()
            .name(format!("meshwork-load-{t}"))
            .spawn(move || part.run(ready, go_rx, done_tx))
            .map_err(Error::Runtime)?;
        go.push(go_tx);
        finished.push(done_rx);
    }
    drop(ready_tx);
    for _ in 0..threads {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(Error::Config("a load thread ended before starting".into())),
        }
    }

    let mut acc = 0u64;
    let cumulative_weights = plan
        .ops
        .iter()
        .map(|o| {
            acc += u64::from(o.weight.max(1));
            acc
        })
        .collect();
    let started = SystemTime::now();
    let start = Instant::now();
    let deadline = match plan.stop {
        Stop::Duration(d) => Some(start + d),
        Stop::Count(_) => None,
    };
    let progress = plan.progress;
    let shared = Arc::new(Shared {
        plan,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        start,
        deadline,
        cumulative_weights,
    });
    tracing::debug!(workers = shared.plan.concurrency, connections, threads, "load run starting");
    for tx in &go {
        let _ = tx.send(Arc::clone(&shared));
    }
    let bar = progress.then(|| {
        crate::progress::spawn(shared.plan.stop, start, Arc::clone(&shared) as Arc<dyn crate::progress::Done>)
    });
    let mut stats = template;
    for done in finished {
        match done.await {
            Ok(s) => stats.merge(&s),
            Err(_) => tracing::error!("a load thread ended without its stats"),
        }
    }
    let end = Instant::now();
    if let Some(bar) = bar {
        bar.finish().await;
    }
    // With -z the workers stop only because the duration is up (under --rps the last call
    // may be sent, and answered, a moment before the deadline): that is ghz's "timeout".
    let (total, end_reason) = match shared.deadline {
        Some(d) => (end.min(d) - start, EndReason::Timeout),
        None => (end - start, EndReason::Normal),
    };
    Ok(RunResult { stats, total, started, end_reason })
}

/// What one load thread runs: some connections and the workers assigned to them.
struct Part {
    addr: String,
    connections: Vec<usize>,
    total_connections: usize,
    concurrency: usize,
    template: Stats,
}

impl Part {
    fn run(
        self,
        ready: tokio::sync::mpsc::UnboundedSender<Result<(), Error>>,
        go: std::sync::mpsc::Receiver<Arc<Shared>>,
        done: tokio::sync::oneshot::Sender<Stats>,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(Error::Runtime(e)));
                return;
            }
        };
        let opened = runtime.block_on(async {
            let mut conns = Vec::with_capacity(self.connections.len());
            for id in &self.connections {
                conns.push((*id, Connection::open(&self.addr).await?));
            }
            Ok::<_, Error>(conns)
        });
        let conns = match opened {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        // Every worker's stats are allocated before the clock starts.
        let Part { total_connections, concurrency, template, .. } = self;
        let mine: Vec<(usize, Arc<Connection>, Stats)> = (0..concurrency)
            .filter_map(|id| {
                let wanted = id % total_connections;
                conns.iter().find(|(c, _)| *c == wanted).map(|(_, conn)| (id, Arc::clone(conn), template.clone()))
            })
            .collect();
        let _ = ready.send(Ok(()));
        // Waits (blocking this thread only) for the common start.
        let Ok(shared) = go.recv() else { return };
        let stats = runtime.block_on(async move {
            let mut workers = JoinSet::new();
            for (id, conn, stats) in mine {
                workers.spawn(worker(id, Arc::clone(&shared), conn, stats));
            }
            let mut stats = template;
            while let Some(joined) = workers.join_next().await {
                match joined {
                    Ok(s) => stats.merge(&s),
                    Err(e) => tracing::error!(error = %e, "load worker failed"),
                }
            }
            stats
        });
        let _ = done.send(stats);
    }
}

impl crate::progress::Done for Shared {
    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

async fn worker(id: usize, shared: Arc<Shared>, conn: Arc<Connection>, mut stats: Stats) -> Stats {
    let plan = &shared.plan;
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let (mut generation, mut sender) = conn.handle().await;
    let mut scratch = String::new();
    let total_weight = shared.cumulative_weights.last().copied().unwrap_or(1);
    loop {
        let k = shared.next.fetch_add(1, Ordering::Relaxed);
        if let Stop::Count(n) = plan.stop
            && k >= n
        {
            break;
        }
        // When the call is due, and whether latency counts from then (the worker is late).
        let mut from = Instant::now();
        if let Some(schedule) = &plan.schedule {
            let Some(offset) = schedule.offset(k) else { break };
            let due = shared.start + offset;
            if shared.deadline.is_some_and(|d| due >= d) {
                break;
            }
            if due > from {
                tokio::time::sleep_until(due.into()).await;
                from = Instant::now();
            } else {
                from = due;
            }
        } else if shared.deadline.is_some_and(|d| from >= d) {
            break;
        }

        let op_index = if plan.ops.len() == 1 {
            0
        } else {
            let r = rng.random_range(0..total_weight);
            shared.cumulative_weights.partition_point(|w| *w <= r)
        };
        let op = &plan.ops[op_index];
        let key = op.keys.as_ref().and_then(|k| k.pick(&mut rng));
        let call = CallData { request_number: k, worker_id: id, key };
        let prepared = op
            .payload
            .body(call, &mut rng, &mut scratch)
            .and_then(|body| Ok((body, op.metadata.headers(call, &mut rng, &mut scratch)?)));
        let (body, extra) = match prepared {
            Ok(p) => p,
            Err(e) => {
                let now = Instant::now();
                stats.record(op_index, now - from, status::INTERNAL, &e.to_string(), now - shared.start);
                shared.done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let head = op.target.request(extra);
        let call = tokio::time::timeout(plan.timeout, unary(&mut sender, head, body, false));
        let result = match shared.deadline {
            Some(deadline) => tokio::select! {
                r = call => r,
                _ = tokio::time::sleep_until(deadline.into()) => break,
            },
            None => call.await,
        };
        let outcome = match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                let failed = h2_failure(&e);
                if e.is_io() || e.is_go_away() || e.is_library() || sender_closed(&e) {
                    match conn.reconnect(generation).await {
                        Ok((g, s)) => (generation, sender) = (g, s),
                        Err(err) => tracing::debug!(error = %err, "reconnect failed"),
                    }
                }
                failed
            }
            Err(_) => crate::transport::Outcome::failed(status::DEADLINE_EXCEEDED, "context deadline exceeded"),
        };
        let now = Instant::now();
        stats.record(op_index, now - from, outcome.code, &outcome.message, now - shared.start);
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    stats
}

fn sender_closed(e: &h2::Error) -> bool {
    // A handle whose connection task ended reports a user/library error without a reason.
    e.reason().is_none() && !e.is_reset()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks() {
        let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        let picker = KeyPicker::zipf(keys, 1.0);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut first = 0;
        for _ in 0..10_000 {
            if picker.pick(&mut rng) == Some("k0") {
                first += 1;
            }
        }
        // P(rank 1) = 1 / H(100) ~ 0.193.
        assert!((1700..2200).contains(&first), "{first}");
        assert!(KeyPicker::uniform(Vec::new()).pick(&mut rng).is_none());
        let turns = KeyPicker::sequential(vec!["a".into(), "b".into(), "c".into()]);
        let other_worker = turns.clone();
        let taken: Vec<&str> = (0..4)
            .map(|i| if i % 2 == 0 { turns.pick(&mut rng) } else { other_worker.pick(&mut rng) }.unwrap())
            .collect();
        assert_eq!(taken, ["a", "b", "c", "a"]);
    }
}
