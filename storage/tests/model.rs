//! Model-based property tests: random sequences of put, delete, compare-and-set (on version,
//! absence and value), batches and scans run against a backend and against a `BTreeMap` model,
//! and every answer must match the model's: values, versions (the revision each write
//! returned), conflicts, invalid batches, and scan pages in both directions. The memory and the
//! embedded (fjall) backends run it here; etcd is left to the conformance suite, whose cluster
//! is too slow for hundreds of random sequences.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use meshwork_storage::embedded::EmbeddedStore;
use meshwork_storage::memory::MemoryStore;
use meshwork_storage::{Condition, Direction, DynStore, KeyRange, Mutation, StoreError};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

/// Keys from a small alphabet, so that sequences hit the same keys often.
fn key(g: &mut Gen) -> Vec<u8> {
    let len = 1 + usize::arbitrary(g) % 2;
    (0..len).map(|_| *g.choose(b"abc\xff").unwrap_or(&b'a')).collect()
}

fn value(g: &mut Gen) -> Vec<u8> {
    let len = usize::arbitrary(g) % 4;
    (0..len).map(|_| *g.choose(b"xyz").unwrap_or(&b'x')).collect()
}

/// How a compare-and-set states its condition.
#[derive(Clone, Debug)]
enum Cas {
    /// `Version` with the key's current version (or 1 when absent), plus this offset.
    Version(u64),
    Absent,
    /// `ValueEquals` with the current value when true, else with this other value.
    Value(bool, Vec<u8>),
}

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Cas(Vec<u8>, Cas, Vec<u8>),
    /// Mutations (`None` deletes) under conditions (key, whether to state it truthfully).
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>, Vec<(Vec<u8>, bool)>),
    Get(Vec<u8>),
    Scan {
        start: Option<Vec<u8>>,
        end: Option<Vec<u8>>,
        limit: usize,
        reverse: bool,
    },
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 12 {
            0..=2 => Op::Put(key(g), value(g)),
            3 => Op::Delete(key(g)),
            4 | 5 => {
                let cas = match u8::arbitrary(g) % 3 {
                    0 => Cas::Version(u64::arbitrary(g) % 2),
                    1 => Cas::Absent,
                    _ => Cas::Value(bool::arbitrary(g), value(g)),
                };
                Op::Cas(key(g), cas, value(g))
            }
            6 | 7 => {
                let n = 1 + usize::arbitrary(g) % 4;
                let muts = (0..n).map(|_| (key(g), bool::arbitrary(g).then(|| value(g)))).collect();
                let conds = (0..usize::arbitrary(g) % 3).map(|_| (key(g), u8::arbitrary(g) % 4 != 0)).collect();
                Op::Batch(muts, conds)
            }
            8 => Op::Get(key(g)),
            _ => Op::Scan {
                start: bool::arbitrary(g).then(|| key(g)),
                end: bool::arbitrary(g).then(|| key(g)),
                limit: 1 + usize::arbitrary(g) % 5,
                reverse: bool::arbitrary(g),
            },
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(std::iter::empty())
    }
}

/// The model: each key's value and version, and the last revision a write returned.
#[derive(Default)]
struct Model {
    data: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    revision: u64,
}

impl Model {
    /// The condition a `Batch` states for `key`: the truth when `truthful`, else a false one.
    fn condition(&self, key: &[u8], truthful: bool) -> Condition {
        match (self.data.get(key), truthful) {
            (Some((_, version)), true) => Condition::Version(key.to_vec(), *version),
            (Some((_, version)), false) => Condition::Version(key.to_vec(), version + 1),
            (None, true) => Condition::Absent(key.to_vec()),
            (None, false) => Condition::Version(key.to_vec(), 1),
        }
    }

    fn holds(&self, c: &Condition) -> bool {
        match c {
            Condition::Absent(k) => !self.data.contains_key(k),
            Condition::Version(k, v) => self.data.get(k).is_some_and(|(_, version)| version == v),
            Condition::ValueEquals(k, v) => self.data.get(k).is_some_and(|(value, _)| value == v),
        }
    }
}

/// Runs one write on the store and the model; returns a description of a mismatch.
async fn write(store: &DynStore, model: &mut Model, conds: Vec<Condition>, muts: Vec<Mutation>) -> Result<(), String> {
    let got = store.write(conds.clone(), muts.clone()).await;
    let mut keys: Vec<&[u8]> = muts.iter().map(Mutation::key).collect();
    keys.sort();
    let duplicate = keys.windows(2).any(|w| w[0] == w[1]);
    match got {
        Err(StoreError::Invalid(_)) if duplicate => Ok(()),
        _ if duplicate => Err(format!("a batch changing a key twice answered {got:?}")),
        Err(StoreError::Conflict { .. }) if !conds.iter().all(|c| model.holds(c)) => Ok(()),
        Ok(rev) if conds.iter().all(|c| model.holds(c)) => {
            if muts.is_empty() || rev <= model.revision {
                return Err(format!("revision {rev} after {}", model.revision));
            }
            model.revision = rev;
            for m in muts {
                match m {
                    Mutation::Put { key, value, .. } => {
                        model.data.insert(key, (value, rev));
                    }
                    Mutation::Delete { key } => {
                        model.data.remove(&key);
                    }
                }
            }
            Ok(())
        }
        other => Err(format!("write {conds:?} {muts:?} answered {other:?}")),
    }
}

async fn step(store: &DynStore, model: &mut Model, op: Op) -> Result<(), String> {
    match op {
        Op::Put(k, v) => write(store, model, vec![], vec![Mutation::put(k, v)]).await,
        Op::Delete(k) => write(store, model, vec![], vec![Mutation::delete(k)]).await,
        Op::Cas(k, cas, v) => {
            let current = model.data.get(&k).cloned();
            let cond = match cas {
                Cas::Version(offset) => Condition::Version(k.clone(), current.map_or(1, |(_, ver)| ver) + offset),
                Cas::Absent => Condition::Absent(k.clone()),
                Cas::Value(true, other) => Condition::ValueEquals(k.clone(), current.map_or(other, |(val, _)| val)),
                Cas::Value(false, other) => Condition::ValueEquals(k.clone(), other),
            };
            write(store, model, vec![cond], vec![Mutation::put(k, v)]).await
        }
        Op::Batch(muts, conds) => {
            let conds = conds.iter().map(|(k, truthful)| model.condition(k, *truthful)).collect();
            let muts = muts.into_iter().map(|(k, v)| match v {
                Some(v) => Mutation::put(k, v),
                None => Mutation::delete(k),
            });
            write(store, model, conds, muts.collect()).await
        }
        Op::Get(k) => {
            let got = store.get(&k).await.map_err(|e| e.to_string())?.map(|v| (v.value, v.version));
            let want = model.data.get(&k).cloned();
            if got == want { Ok(()) } else { Err(format!("get {k:?}: {got:?}, model {want:?}")) }
        }
        Op::Scan { start, end, limit, reverse } => {
            let range = KeyRange {
                start: start.map_or(Bound::Unbounded, Bound::Included),
                end: end.map_or(Bound::Unbounded, Bound::Excluded),
            };
            let direction = if reverse { Direction::Reverse } else { Direction::Forward };
            let mut want: Vec<(Vec<u8>, Vec<u8>, u64)> = model
                .data
                .iter()
                .filter(|(k, _)| range.contains(k))
                .map(|(k, (v, ver))| (k.clone(), v.clone(), *ver))
                .collect();
            if reverse {
                want.reverse();
            }
            let page = store.scan(range.clone(), limit, direction).await.map_err(|e| e.to_string())?;
            let got: Vec<_> = page.entries.into_iter().map(|e| (e.key, e.value, e.version)).collect();
            let shown =
                || format!("scan {range:?} limit {limit} {direction:?}: {got:?} next {:?}, model {want:?}", page.next);
            let first = &want[..want.len().min(limit)];
            // A page holds the first `limit` entries; `next` is there exactly when more remain
            // (a full page may point at an empty rest).
            let next_ok = match want.len().cmp(&limit) {
                std::cmp::Ordering::Less => page.next.is_none(),
                std::cmp::Ordering::Equal => true,
                std::cmp::Ordering::Greater => page.next.is_some(),
            };
            if got == first && next_ok { Ok(()) } else { Err(shown()) }
        }
    }
}

/// The backend under test.
#[derive(Clone, Copy)]
enum Backend {
    Memory,
    Embedded,
}

fn run(ops: Vec<Op>, backend: Backend) -> TestResult {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut model = Model::default();
    runtime.block_on(async {
        let store: DynStore = match backend {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::Embedded => Arc::new(EmbeddedStore::open(dir.path()).await.expect("open the embedded store")),
        };
        for (i, op) in ops.into_iter().enumerate() {
            if let Err(e) = step(&store, &mut model, op).await {
                return TestResult::error(format!("step {i}: {e}"));
            }
        }
        TestResult::passed()
    })
}

#[test]
fn memory_backend_follows_the_model() {
    fn prop(ops: Vec<Op>) -> TestResult {
        run(ops, Backend::Memory)
    }
    QuickCheck::new().tests(300).rng(Gen::new(40)).quickcheck(prop as fn(Vec<Op>) -> TestResult);
}

#[test]
fn embedded_backend_follows_the_model() {
    fn prop(ops: Vec<Op>) -> TestResult {
        run(ops, Backend::Embedded)
    }
    QuickCheck::new().tests(40).rng(Gen::new(40)).quickcheck(prop as fn(Vec<Op>) -> TestResult);
}
