//! A Store wrapper for the kit's tests that misbehaves on demand, over any real backend: its
//! watches can drop events (a missed change) or break with an error, opening a watch can
//! fail, one read can be held after it read its value (a slow read racing a change), and
//! writes can fail or wait at a gate.

// Each test binary uses only some of the controls.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_storage::{
    Condition, Direction, DynStore, KeyRange, Limits, Mutation, Page, Result, Store, StoreError, Versioned, WatchEvent,
};
use tokio::sync::{oneshot, watch};

/// What the tests switch.
pub struct Control {
    /// Watch events are dropped while set.
    swallow: AtomicBool,
    /// Watch events dropped so far.
    swallowed: AtomicUsize,
    /// Bumped to break every open watch.
    breaks: watch::Sender<u64>,
    /// The next this many `watch` calls fail.
    failing_opens: AtomicUsize,
    /// Writes fail with UNAVAILABLE while set.
    failing_writes: AtomicBool,
    /// Writes wait while this is false.
    writes_open: watch::Sender<bool>,
    /// Writes waiting at the gate.
    writes_waiting: AtomicUsize,
    /// The next read of this key waits for the receiver after reading.
    held_get: Mutex<Option<(Vec<u8>, oneshot::Receiver<()>)>>,
}

/// The wrapper.
pub struct Flaky {
    inner: DynStore,
    pub control: Arc<Control>,
}

/// Returns `store` wrapped, and its controls.
pub fn wrap(store: DynStore) -> (DynStore, Arc<Control>) {
    let control = Arc::new(Control {
        swallow: AtomicBool::new(false),
        swallowed: AtomicUsize::new(0),
        breaks: watch::Sender::new(0),
        failing_opens: AtomicUsize::new(0),
        failing_writes: AtomicBool::new(false),
        writes_open: watch::Sender::new(true),
        writes_waiting: AtomicUsize::new(0),
        held_get: Mutex::new(None),
    });
    (Arc::new(Flaky { inner: store, control: control.clone() }), control)
}

impl Control {
    /// Drops watch events from now on (`true`) or delivers them again.
    pub fn swallow_events(&self, on: bool) {
        self.swallow.store(on, Ordering::SeqCst);
    }

    /// Returns how many watch events were dropped.
    pub fn swallowed(&self) -> usize {
        self.swallowed.load(Ordering::SeqCst)
    }

    /// Makes every open watch fail with UNAVAILABLE (and end).
    pub fn break_watches(&self) {
        self.breaks.send_modify(|n| *n += 1);
    }

    /// Makes the next `n` watch calls fail.
    pub fn fail_watch_opens(&self, n: usize) {
        self.failing_opens.store(n, Ordering::SeqCst);
    }

    /// Makes writes fail with UNAVAILABLE (`true`) or pass again.
    pub fn fail_writes(&self, on: bool) {
        self.failing_writes.store(on, Ordering::SeqCst);
    }

    /// Holds writes at a gate (`false`) or lets them through.
    pub fn open_writes(&self, open: bool) {
        self.writes_open.send_replace(open);
    }

    /// Returns how many writes wait at the gate.
    pub fn writes_waiting(&self) -> usize {
        self.writes_waiting.load(Ordering::SeqCst)
    }

    /// Makes the next read of `key` return only when the returned sender fires (or drops),
    /// with the value it read before waiting.
    pub fn hold_next_get(&self, key: &[u8]) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        *self.held_get.lock().unwrap() = Some((key.to_vec(), rx));
        tx
    }
}

#[async_trait::async_trait]
impl Store for Flaky {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        let held = {
            let mut slot = self.control.held_get.lock().unwrap();
            match slot.as_ref() {
                Some((k, _)) if k == key => slot.take().map(|(_, rx)| rx),
                _ => None,
            }
        };
        let value = self.inner.get(key).await?;
        if let Some(rx) = held {
            let _ = rx.await;
        }
        Ok(value)
    }

    async fn scan(&self, range: KeyRange, limit: usize, direction: Direction) -> Result<Page> {
        self.inner.scan(range, limit, direction).await
    }

    async fn write(&self, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Result<u64> {
        if !mutations.is_empty() {
            let mut open = self.control.writes_open.subscribe();
            if !*open.borrow() {
                self.control.writes_waiting.fetch_add(1, Ordering::SeqCst);
                let _ = open.wait_for(|o| *o).await;
                self.control.writes_waiting.fetch_sub(1, Ordering::SeqCst);
            }
            if self.control.failing_writes.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("writes failed by the test".into()));
            }
        }
        self.inner.write(conditions, mutations).await
    }

    async fn watch(&self, prefix: &[u8], from: Option<u64>) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        let failing = self.control.failing_opens.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(StoreError::Unavailable("watch refused by the test".into()));
        }
        let events = self.inner.watch(prefix, from).await?;
        let mut breaks = self.control.breaks.subscribe();
        breaks.borrow_and_update();
        let control = self.control.clone();
        let state = (events, breaks, control, false);
        Ok(Box::pin(futures::stream::unfold(state, |(mut events, mut breaks, control, done)| async move {
            if done {
                return None;
            }
            loop {
                tokio::select! {
                    _ = breaks.changed() => {
                        let broken = Err(StoreError::Unavailable("watch broken by the test".into()));
                        return Some((broken, (events, breaks, control, true)));
                    }
                    event = events.next() => match event {
                        Some(Ok(_)) if control.swallow.load(Ordering::SeqCst) => {
                            control.swallowed.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        Some(event) => return Some((event, (events, breaks, control, false))),
                        None => return None,
                    },
                }
            }
        })))
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}
