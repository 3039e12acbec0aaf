//! The event log against real stores (memory, embedded fjall, a 3-member etcd cluster):
//! concurrent appenders get a gapless sequence with every event once and atomic with its state
//! change; a consumer sees every event in order across the scan/watch hand-off; a consumer
//! killed mid-way and restarted from its checkpoint loses nothing; the lag gauge moves;
//! trimming keeps what consumers still need; a reader whose watch history was compacted
//! scans again without a gap; appenders of one process queue for the head instead of retrying.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meshwork_common::ManualClock;
use meshwork_common::events::{Event, EventLog};
use meshwork_storage::memory::MemoryStore;
use meshwork_storage::{DynStore, KeyRange, transact};
use meshwork_telemetry::metrics::EVENT_CONSUMER_LAG;
use support::Backend;
use tokio::sync::{Semaphore, mpsc};

const WAIT: Duration = Duration::from_secs(30);

/// Appends `n` events, each with a state change in the same transaction.
async fn append_n(log: &EventLog, store: &DynStore, tag: &str, n: usize) {
    for i in 0..n {
        append_with_state(log, store, &format!("{tag}:{i}")).await;
    }
}

async fn append_with_state(log: &EventLog, store: &DynStore, what: &str) -> u64 {
    let state_key = format!("{}/state/{what}", log.service()).into_bytes();
    transact(store, |tx| {
        let state_key = state_key.clone();
        Box::pin(async move {
            tx.put(state_key, b"done".to_vec());
            log.append(&tx, "thing.done", what.as_bytes().to_vec()).await
        })
    })
    .await
    .unwrap()
}

/// Starts consumer `name` in a task; every event it handles is sent on the returned channel.
fn start_consumer(log: &EventLog, name: &str) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<Event>) {
    start_gated_consumer(log, name, None)
}

/// [`start_consumer`] whose handler first takes a permit of `gate` (when given): it handles
/// as many events as permits were added, then holds the next one in hand.
fn start_gated_consumer(
    log: &EventLog,
    name: &str,
    gate: Option<Arc<Semaphore>>,
) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let consumer = log.consumer(name);
    let task = tokio::spawn(async move {
        consumer
            .run(|event| {
                let (tx, gate) = (tx.clone(), gate.clone());
                Box::pin(async move {
                    if let Some(gate) = gate {
                        gate.acquire().await.unwrap().forget();
                    }
                    let _ = tx.send(event);
                    Ok(())
                })
            })
            .await
            .unwrap();
    });
    (task, rx)
}

async fn receive(rx: &mut mpsc::UnboundedReceiver<Event>, n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(event)) => out.push(event),
            _ => panic!("only {} of {n} events arrived", out.len()),
        }
    }
    out
}

fn sequences(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.sequence).collect()
}

async fn concurrent_appenders_get_a_gapless_sequence(backend: Backend) {
    let store = backend.store;
    let log = EventLog::new(store.clone(), &support::unique("ev-append"));
    let (tasks, per_task) = (8, 50);
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (log, store) = (log.clone(), store.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..per_task {
                    mine.push(append_with_state(&log, &store, &format!("{t}:{i}")).await);
                }
                mine
            })
        })
        .collect();
    let mut returned = BTreeSet::new();
    for h in handles {
        for seq in h.await.unwrap() {
            assert!(returned.insert(seq), "sequence {seq} handed out twice");
        }
    }
    let total = (tasks * per_task) as u64;
    assert_eq!(returned, (1..=total).collect(), "appenders got 1..=N");
    assert_eq!(log.head().await.unwrap(), total);

    let events = log.read(1, 10_000).await.unwrap();
    assert_eq!(sequences(&events), (1..=total).collect::<Vec<_>>(), "stored in sequence order, no gap");
    let payloads: BTreeSet<Vec<u8>> = events.iter().map(|e| e.payload.clone()).collect();
    assert_eq!(payloads.len(), total as usize, "every event once");
    for e in &events {
        assert_eq!(e.r#type, "thing.done");
        assert!(e.time_ms > 0);
        let state = format!("{}/state/{}", log.service(), String::from_utf8_lossy(&e.payload));
        assert!(store.get(state.as_bytes()).await.unwrap().is_some(), "the state change committed with its event");
    }
    let window = log.read(101, 50).await.unwrap();
    assert_eq!(sequences(&window), (101..151).collect::<Vec<_>>());
    assert!(log.read(total + 1, 10).await.unwrap().is_empty());
}

async fn a_consumer_sees_every_event_in_order(backend: Backend) {
    let store = backend.store;
    let log = EventLog::new(store.clone(), &support::unique("ev-consume"));
    append_n(&log, &store, "before", 30).await;
    let (task, mut rx) = start_consumer(&log, "projector");
    // Appended while the consumer scans and switches to its watch.
    let appender = {
        let (log, store) = (log.clone(), store.clone());
        tokio::spawn(async move { append_n(&log, &store, "during", 60).await })
    };
    let got = receive(&mut rx, 90).await;
    appender.await.unwrap();
    assert_eq!(sequences(&got), (1..=90).collect::<Vec<_>>(), "every event, in order, once");
    // And the live tail.
    append_n(&log, &store, "after", 5).await;
    assert_eq!(sequences(&receive(&mut rx, 5).await), (91..=95).collect::<Vec<_>>());
    let consumer = log.consumer("projector");
    wait_for(|| async { consumer.checkpoint().await.unwrap() == 95 }).await;
    task.abort();
    assert!(rx.try_recv().is_err(), "no event twice");
}

async fn a_restarted_consumer_loses_nothing(backend: Backend) {
    let store = backend.store;
    let log = EventLog::new(store.clone(), &support::unique("ev-restart"));
    append_n(&log, &store, "a", 40).await;

    // Killed with event 21 in hand (its handler had not finished).
    let gate = Arc::new(Semaphore::new(20));
    let (task, mut rx) = start_gated_consumer(&log, "mailer", Some(gate));
    let first = receive(&mut rx, 20).await;
    assert_eq!(sequences(&first), (1..=20).collect::<Vec<_>>());
    let consumer = log.consumer("mailer");
    wait_for(|| async { consumer.checkpoint().await.unwrap() == 20 }).await;
    task.abort();
    let _ = task.await;
    append_n(&log, &store, "b", 10).await;
    let (task, mut rx) = start_consumer(&log, "mailer");
    let rest = receive(&mut rx, 30).await;
    assert_eq!(sequences(&rest), (21..=50).collect::<Vec<_>>(), "resumes at the event it held");
    wait_for(|| async { consumer.checkpoint().await.unwrap() == 50 }).await;
    task.abort();
    let _ = task.await;

    // Killed at arbitrary moments: nothing lost, at most the event in hand repeated.
    let mut handled = 50;
    for round in 0..4 {
        append_n(&log, &store, &format!("c{round}"), 50).await;
        let (task, mut rx) = start_consumer(&log, "mailer");
        let mut seen = sequences(&receive(&mut rx, 1).await);
        tokio::time::sleep(Duration::from_millis(3 * round)).await;
        task.abort();
        let _ = task.await;
        seen.extend(std::iter::from_fn(|| rx.try_recv().ok()).map(|e| e.sequence));
        let restart = seen[0];
        assert!(restart == handled || restart == handled + 1, "restarted at {restart} after handling {handled}");
        assert_eq!(seen, (restart..restart + seen.len() as u64).collect::<Vec<_>>(), "in order, no gap");
        handled = *seen.last().unwrap();
    }
    append_n(&log, &store, "d", 10).await;
    let (task, mut rx) = start_consumer(&log, "mailer");
    let mut rest: Vec<u64> = Vec::new();
    while rest.last() != Some(&260) {
        rest.extend(sequences(&receive(&mut rx, 1).await));
    }
    task.abort();
    assert!(rest[0] == handled || rest[0] == handled + 1, "restarted at {} after handling {handled}", rest[0]);
    assert_eq!(rest, (rest[0]..=260).collect::<Vec<_>>(), "in order, no gap, through the last");
}

async fn the_lag_gauge_moves(backend: Backend) {
    let store = backend.store;
    let service = support::unique("ev-lag");
    let log = EventLog::new(store.clone(), &service);
    append_n(&log, &store, "x", 10).await;
    let gauge = EVENT_CONSUMER_LAG.with_label_values(&[service.as_str(), "slow"]);
    let gate = Arc::new(Semaphore::new(0));
    let consumer = log.consumer("slow");
    let task = {
        let gate = gate.clone();
        tokio::spawn(async move {
            consumer
                .run(|_event| {
                    let gate = gate.clone();
                    Box::pin(async move {
                        gate.acquire().await.unwrap().forget();
                        Ok(())
                    })
                })
                .await
                .unwrap();
        })
    };
    wait_for(|| async { gauge.get() == 10 }).await;
    gate.add_permits(4);
    wait_for(|| async { gauge.get() == 6 }).await;
    gate.add_permits(6);
    wait_for(|| async { gauge.get() == 0 }).await;
    assert_eq!(log.consumer("slow").lag().await.unwrap(), 0);
    let text = meshwork_telemetry::metrics::render();
    assert!(
        text.contains(&format!("meshwork_event_consumer_lag{{consumer=\"slow\",service=\"{service}\"}} 0")),
        "{text}"
    );
    task.abort();
}

async fn trimming_keeps_what_consumers_need(backend: Backend) {
    let store = backend.store;
    let clock = ManualClock::new(1_000_000);
    let log = EventLog::new(store.clone(), &support::unique("ev-trim")).with_clock(Arc::new(clock.clone()));
    assert_eq!(log.trim_consumed().await.unwrap(), 0, "no consumer, nothing trimmed");
    append_n(&log, &store, "old", 120).await;
    clock.advance(3_600_000);
    append_n(&log, &store, "new", 10).await;

    let (fast, mut rx) = start_consumer(&log, "fast");
    receive(&mut rx, 130).await;
    let fast_consumer = log.consumer("fast");
    wait_for(|| async { fast_consumer.checkpoint().await.unwrap() == 130 }).await;
    fast.abort();
    let (slow, mut rx) = start_gated_consumer(&log, "slow", Some(Arc::new(Semaphore::new(50))));
    receive(&mut rx, 50).await;
    let slow_consumer = log.consumer("slow");
    wait_for(|| async { slow_consumer.checkpoint().await.unwrap() == 50 }).await;
    slow.abort();
    let _ = slow.await;
    let slow_checkpoint = 50;

    let trimmed = log.trim_consumed().await.unwrap();
    assert_eq!(trimmed, slow_checkpoint, "up to the lowest checkpoint");
    let left = log.read(1, 1000).await.unwrap();
    assert_eq!(left.first().unwrap().sequence, slow_checkpoint + 1);
    // The slow consumer goes on where it was.
    let (slow, mut rx) = start_consumer(&log, "slow");
    let next = receive(&mut rx, 1).await;
    slow.abort();
    assert_eq!(next[0].sequence, slow_checkpoint + 1);

    // By age: the 120 old events go (those left of them), the 10 new stay.
    let by_age = log.trim_older_than(Duration::from_secs(1800)).await.unwrap();
    assert_eq!(by_age, 120 - slow_checkpoint);
    assert_eq!(sequences(&log.read(1, 1000).await.unwrap()), (121..=130).collect::<Vec<_>>());
    assert_eq!(log.head().await.unwrap(), 130, "the head is never trimmed");
    assert_eq!(append_with_state(&log, &store, "later").await, 131);
    let keys = meshwork_storage::scan_all(&store, KeyRange::prefix(format!("{}/", log.service())), Default::default())
        .await
        .unwrap();
    assert!(keys.len() > 11);
}

/// A reader whose watch falls behind a store keeping one revision of history gets a
/// `Compacted` watch error; it must scan again and still see every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_scans_again_after_compaction() {
    let store: DynStore = Arc::new(MemoryStore::with_history(1));
    let log = EventLog::new(store.clone(), "ev-compact");
    append_n(&log, &store, "first", 1).await;
    let mut follow = log.follow(1);
    let first = tokio::time::timeout(WAIT, follow.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.sequence, 1);
    // Live now; more than the watch feed buffers (1,024 revisions) while it is not read.
    append_n(&log, &store, "burst", 1500).await;
    for expected in 2..=1501 {
        let event = tokio::time::timeout(WAIT, follow.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(event.sequence, expected);
    }
}

/// A corrupt event stops a reader at that event, after the ones before it and never skipping it.
#[tokio::test]
async fn a_corrupt_event_is_an_error_in_its_place() {
    let store: DynStore = Arc::new(MemoryStore::new());
    let log = EventLog::new(store.clone(), "ev-corrupt");
    append_n(&log, &store, "x", 5).await;
    store.write(vec![], vec![meshwork_storage::Mutation::put(log.event_key(3), vec![0xff, 0xff])]).await.unwrap();
    let mut follow = log.follow(1);
    for expected in [1, 2] {
        assert_eq!(follow.next().await.unwrap().unwrap().sequence, expected);
    }
    let err = follow.next().await.unwrap().unwrap_err();
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::Internal);
    let consumer = log.consumer("stuck");
    let err = consumer.run(|_| Box::pin(async { Ok(()) })).await.unwrap_err();
    assert!(err.to_string().contains("undecodable event"), "{err}");
    assert_eq!(consumer.checkpoint().await.unwrap(), 2, "handled up to the corrupt event");
}

async fn wait_for<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "condition not reached within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

use meshwork_test_support::on_every_backend;

/// Appenders of one process queue for the log's head instead of conflicting on it: every
/// transaction body runs once (no retry), and a transaction appending twice does not wait for
/// itself.
async fn appenders_in_one_process_queue_instead_of_retrying(backend: Backend) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let store = backend.store;
    let log = EventLog::new(store.clone(), &support::unique("ev-queue"));
    let runs = Arc::new(AtomicUsize::new(0));
    let (tasks, per_task) = (8, 25);
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (log, store, runs) = (log.clone(), store.clone(), runs.clone());
            tokio::spawn(async move {
                for i in 0..per_task {
                    let state_key = format!("{}/state/{t}:{i}", log.service()).into_bytes();
                    let (log, runs) = (&log, &runs);
                    transact(&store, |tx| {
                        let state_key = state_key.clone();
                        Box::pin(async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tx.put(state_key, b"done".to_vec());
                            log.append(&tx, "thing.done", b"x".to_vec()).await
                        })
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), tasks * per_task, "a transaction body ran again after a conflict");
    assert_eq!(log.head().await.unwrap(), (tasks * per_task) as u64);

    let twice = tokio::time::timeout(
        WAIT,
        transact(&store, |tx| {
            let log = &log;
            Box::pin(async move {
                let a = log.append(&tx, "thing.done", b"a".to_vec()).await?;
                let b = log.append(&tx, "thing.done", b"b".to_vec()).await?;
                Ok::<_, meshwork_common::ServiceError>((a, b))
            })
        }),
    )
    .await
    .expect("a transaction appending twice waited for itself")
    .unwrap();
    let head = (tasks * per_task) as u64;
    assert_eq!(twice, (head + 1, head + 2));
}

on_every_backend!(
    appenders_in_one_process_queue_instead_of_retrying,
    concurrent_appenders_get_a_gapless_sequence,
    a_consumer_sees_every_event_in_order,
    a_restarted_consumer_loses_nothing,
    the_lag_gauge_moves,
    trimming_keeps_what_consumers_need,
);
