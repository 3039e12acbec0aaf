//! The idempotency helper against real stores (memory, embedded fjall, a 3-member etcd
//! cluster): a repeated `request_id` returns the first answer and writes once, also when 32
//! identical calls race; a reused id with a different request is ALREADY_EXISTS; in the claim
//! mode a concurrent duplicate waits for the first answer, and an expired claim is taken over.

mod support;

use std::sync::Arc;
use std::time::Duration;

use meshwork_common::idempotency::{Claim, Fingerprint, Idempotency};
use meshwork_common::{ManualClock, ServiceError};
use meshwork_storage::{DynStore, transact};
use support::Backend;
use tonic::Code;

#[derive(Clone, PartialEq, prost::Message)]
struct CreateThing {
    #[prost(string, tag = "1")]
    request_id: String,
    #[prost(string, tag = "2")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Thing {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, tag = "2")]
    name: String,
}

fn code(e: ServiceError) -> Code {
    tonic::Status::from(e).code()
}

/// Reads the effect counter.
async fn effects(store: &DynStore, key: &[u8]) -> u64 {
    store.get(key).await.unwrap().map(|v| u64::from_be_bytes(v.value.try_into().unwrap())).unwrap_or(0)
}

/// The operation under test: counts one effect in the store and answers with the count.
async fn create(idem: &Idempotency, counter: &[u8], req: &CreateThing) -> Result<Thing, ServiceError> {
    idem.transact(&req.request_id, req, |tx| {
        let name = req.name.clone();
        Box::pin(async move {
            let n = tx.get(counter).await?.map(|v| u64::from_be_bytes(v.value.try_into().unwrap())).unwrap_or(0) + 1;
            tx.put(counter.to_vec(), n.to_be_bytes().to_vec());
            Ok(Thing { id: n, name })
        })
    })
    .await
}

async fn repeats_return_the_first_answer(backend: Backend) {
    let store = backend.store;
    let service = support::unique("idem");
    let idem = Idempotency::new(store.clone(), &service);
    let counter = format!("{service}/effects").into_bytes();
    let req = CreateThing { request_id: "req-1".into(), name: "a".into() };

    let first = create(&idem, &counter, &req).await.unwrap();
    let second = create(&idem, &counter, &req).await.unwrap();
    assert_eq!(first, Thing { id: 1, name: "a".into() });
    assert_eq!(second, first, "the recorded answer, not a new one");
    assert_eq!(effects(&store, &counter).await, 1, "written once");
    assert!(store.get(&idem.key("req-1")).await.unwrap().is_some(), "recorded under <service>/requests/<id>");
    assert!(idem.key("req-1").starts_with(format!("{service}/requests/").as_bytes()));

    // The same id with a different request: ALREADY_EXISTS, nothing written.
    let other = CreateThing { request_id: "req-1".into(), name: "b".into() };
    let err = create(&idem, &counter, &other).await.unwrap_err();
    assert_eq!(code(err), Code::AlreadyExists);
    assert_eq!(effects(&store, &counter).await, 1);

    // A bad request_id is refused before anything runs.
    for bad in ["", &"x".repeat(65)] {
        let req = CreateThing { request_id: bad.to_string(), name: "a".into() };
        let err = create(&idem, &counter, &req).await.unwrap_err();
        assert!(matches!(&err, ServiceError::InvalidArgument { field, .. } if field == "request_id"), "{err}");
    }
    assert_eq!(effects(&store, &counter).await, 1);

    // A failing operation records nothing: the retry runs it.
    let failing = CreateThing { request_id: "req-2".into(), name: "f".into() };
    let err = idem
        .transact(&failing.request_id, &failing, |_tx| {
            Box::pin(async { Err::<Thing, _>(ServiceError::FailedPrecondition("not now".into())) })
        })
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::FailedPrecondition);
    assert_eq!(create(&idem, &counter, &failing).await.unwrap().id, 2);

    // Composed into a service's own transaction with `run_in_txn`, keyed by a given digest.
    let digest = Fingerprint::digest(b"canonical form");
    for _ in 0..2 {
        let answer: Thing = transact(&store, |tx| {
            let idem = idem.clone();
            let counter = counter.clone();
            Box::pin(async move {
                let effect = async {
                    let n = effects_in(&tx, &counter).await + 1;
                    tx.put(counter.clone(), n.to_be_bytes().to_vec());
                    Ok(Thing { id: n, name: "c".into() })
                };
                idem.run_in_txn(&tx, "req-3", digest, effect).await
            })
        })
        .await
        .unwrap();
        assert_eq!(answer.id, 3);
    }
    assert_eq!(effects(&store, &counter).await, 3);
}

async fn effects_in(tx: &meshwork_storage::Txn, key: &[u8]) -> u64 {
    tx.get(key).await.unwrap().map(|v| u64::from_be_bytes(v.value.try_into().unwrap())).unwrap_or(0)
}

async fn concurrent_duplicates_write_once(backend: Backend) {
    let store = backend.store;
    let service = support::unique("idem-race");
    let idem = Idempotency::new(store.clone(), &service);
    let counter = format!("{service}/effects").into_bytes();
    let req = CreateThing { request_id: "same".into(), name: "raced".into() };
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (idem, counter, req) = (idem.clone(), counter.clone(), req.clone());
            tokio::spawn(async move { create(&idem, &counter, &req).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    assert_eq!(effects(&store, &counter).await, 1, "exactly one effect");
    assert!(answers.iter().all(|a| *a == Thing { id: 1, name: "raced".into() }), "{answers:?}");
}

async fn a_duplicate_waits_for_the_claimed_answer(backend: Backend) {
    let store = backend.store;
    let idem = Idempotency::new(store.clone(), &support::unique("idem-claim"));
    let req = CreateThing { request_id: "saga-1".into(), name: "checkout".into() };
    let Claim::Owned(guard) = idem.claim::<Thing>("saga-1", &req, Duration::from_secs(5)).await.unwrap() else {
        panic!("the first call must own the claim");
    };
    let waiter = {
        let (idem, req) = (idem.clone(), req.clone());
        tokio::spawn(async move { idem.claim::<Thing>("saga-1", &req, Duration::from_secs(20)).await })
    };
    // Still waiting while the owner runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the duplicate must wait for the first answer");
    // Meanwhile a different request under the id is refused at once, and a duplicate with no
    // time left gives up.
    let other = CreateThing { request_id: "saga-1".into(), name: "other".into() };
    let err = idem.claim::<Thing>("saga-1", &other, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(code(err), Code::AlreadyExists);
    let err = idem.claim::<Thing>("saga-1", &req, Duration::from_millis(100)).await.unwrap_err();
    assert_eq!(code(err), Code::DeadlineExceeded);

    let answer = Thing { id: 42, name: "paid".into() };
    guard.complete(&answer).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("waiter woke up").unwrap().unwrap() {
        Claim::Done(got) => assert_eq!(got, answer),
        Claim::Owned(_) => panic!("the duplicate must get the first answer, not run again"),
    }
    match idem.claim::<Thing>("saga-1", &req, Duration::ZERO).await.unwrap() {
        Claim::Done(got) => assert_eq!(got, answer),
        Claim::Owned(_) => panic!("answered already"),
    }
    // The in-transaction mode sees the same record.
    let replay: Result<Thing, _> =
        idem.transact("saga-1", &req, |_tx| Box::pin(async { panic!("must not run again") })).await;
    assert_eq!(replay.unwrap(), answer);
}

async fn concurrent_claims_run_the_operation_once(backend: Backend) {
    let store = backend.store;
    let service = support::unique("idem-claims");
    let idem = Idempotency::new(store.clone(), &service);
    let counter = format!("{service}/effects").into_bytes();
    let req = CreateThing { request_id: "saga-race".into(), name: "n".into() };
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (idem, store, counter, req) = (idem.clone(), store.clone(), counter.clone(), req.clone());
            tokio::spawn(async move {
                match idem.claim::<Thing>(&req.request_id, &req, Duration::from_secs(20)).await.unwrap() {
                    Claim::Done(answer) => answer,
                    Claim::Owned(guard) => {
                        // The long operation: an effect, outside calls (here: time), the answer.
                        let n = effects(&store, &counter).await + 1;
                        store
                            .write(vec![], vec![meshwork_storage::Mutation::put(counter, n.to_be_bytes().to_vec())])
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let answer = Thing { id: n, name: "ran".into() };
                        guard.complete(&answer).await.unwrap();
                        answer
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Thing { id: 1, name: "ran".into() });
    }
    assert_eq!(effects(&store, &counter).await, 1, "one owner ran the operation");
}

async fn an_expired_claim_is_taken_over(backend: Backend) {
    let store = backend.store;
    let clock = ManualClock::new(1_000_000);
    let idem = Idempotency::new(store.clone(), &support::unique("idem-expiry"))
        .with_lease(Duration::from_secs(30))
        .with_clock(Arc::new(clock.clone()));
    let req = CreateThing { request_id: "saga-2".into(), name: "x".into() };
    let Claim::Owned(dead_owner) = idem.claim::<Thing>("saga-2", &req, Duration::ZERO).await.unwrap() else {
        panic!("first claim");
    };
    // Within the lease a duplicate waits (here: no time to wait).
    let err = idem.claim::<Thing>("saga-2", &req, Duration::from_millis(50)).await.unwrap_err();
    assert_eq!(code(err), Code::DeadlineExceeded);
    // The owner died; its lease runs out; the next call takes over.
    clock.advance(31_000);
    let Claim::Owned(successor) = idem.claim::<Thing>("saga-2", &req, Duration::ZERO).await.unwrap() else {
        panic!("an expired claim must be taken over");
    };
    // The old owner coming back late cannot overwrite the successor's claim.
    let err = dead_owner.complete(&Thing { id: 1, name: "late".into() }).await.unwrap_err();
    assert_eq!(code(err), Code::Aborted);
    let answer = Thing { id: 2, name: "successor".into() };
    successor.complete(&answer).await.unwrap();
    match idem.claim::<Thing>("saga-2", &req, Duration::ZERO).await.unwrap() {
        Claim::Done(got) => assert_eq!(got, answer),
        Claim::Owned(_) => panic!("answered already"),
    }

    // A released claim (the operation failed) lets the next call run it again.
    let req3 = CreateThing { request_id: "saga-3".into(), name: "y".into() };
    let Claim::Owned(guard) = idem.claim::<Thing>("saga-3", &req3, Duration::ZERO).await.unwrap() else {
        panic!("first claim");
    };
    guard.release().await.unwrap();
    assert!(matches!(idem.claim::<Thing>("saga-3", &req3, Duration::ZERO).await.unwrap(), Claim::Owned(_)));
}

use meshwork_test_support::on_every_backend;

on_every_backend!(
    repeats_return_the_first_answer,
    concurrent_duplicates_write_once,
    a_duplicate_waits_for_the_claimed_answer,
    concurrent_claims_run_the_operation_once,
    an_expired_claim_is_taken_over,
);
