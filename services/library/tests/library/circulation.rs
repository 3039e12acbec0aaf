//! Checkout, return and renewal: the last-copy race (20 members, two replicas) has exactly one
//! winner; a member at the
//! loan limit (also when racing for several copies at once) or owing over the threshold cannot
//! borrow, with the reason named; a renewal is refused while holds wait and after two
//! renewals; a repeated `request_id` answers the first answer.

use std::sync::Arc;

use meshwork_proto::pb::library::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::*;

const RACERS: usize = 20;

async fn the_last_copy_goes_to_exactly_one_member(backend: Backend) {
    let clock = clock();
    let root = root("race");
    let mut r = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let isbn = isbn(1);
    add_title(&mut r.client, &isbn, "Dune", &["Frank Herbert"], &["science fiction"]).await;
    add_copy(&mut r.client, "DUNE-1", &isbn, 2000).await;
    add_copy(&mut r.client, "DUNE-2", &isbn, 2000).await;
    register(&mut r.client, "first", pb::MemberType::Adult).await;
    checkout(&mut r.client, "first", "DUNE-1").await.expect("the first copy");
    for i in 0..RACERS {
        register(&mut r.client, &format!("racer-{i}"), pb::MemberType::Adult).await;
    }

    // Two replicas on one store, half of the racers on each.
    let second = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let racers = (0..RACERS).map(|i| {
        let mut client = if i % 2 == 0 { r.client.clone() } else { second.client.clone() };
        tokio::spawn(async move { (i, checkout(&mut client, &format!("racer-{i}"), "DUNE-2").await) })
    });
    let mut winners = Vec::new();
    for racer in racers {
        let (i, outcome) = racer.await.expect("racer task");
        match outcome {
            Ok(answer) => {
                assert_eq!(answer.copy.as_ref().map(|c| c.borrower.clone()), Some(format!("racer-{i}")));
                winners.push(i);
            }
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(status.message().contains("on loan"), "{}", status.message());
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    let winner = format!("racer-{}", winners[0]);
    assert_eq!(copy(&mut r.client, "DUNE-2").await.borrower, winner);
    let title = r.client.get_title(pb::GetTitleRequest { isbn: isbn.clone() }).await.unwrap().into_inner();
    let counts = title.title.unwrap();
    assert_eq!((counts.total_copies, counts.available_copies), (2, 0));
    for i in 0..RACERS {
        let loans = account(&mut r.client, &format!("racer-{i}")).await.loans.len();
        assert_eq!(loans, usize::from(winners[0] == i), "racer-{i}'s loans");
    }
    // The winner returns it: back on the shelf, borrowable again.
    let back = give_back(&mut r.client, "DUNE-2").await;
    assert_eq!((back.borrower.as_str(), back.fine_charged_minor), (winner.as_str(), 0));
    assert_eq!(back.copy.unwrap().status, pb::CopyStatus::Available as i32);
}

async fn loan_limit_and_fine_threshold_refuse_with_the_reason(backend: Backend) {
    let clock = clock();
    let root = root("limits");
    let mut r = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let isbn = isbn(2);
    add_title(&mut r.client, &isbn, "Anthology", &["Many"], &[]).await;
    for i in 0..8 {
        add_copy(&mut r.client, &format!("ANTH-{i}"), &isbn, 5000).await;
    }
    register(&mut r.client, "student", pb::MemberType::Student).await;

    // A student (limit 5) grabs 7 copies at once: exactly 5 loans.
    let grabs = (0..7).map(|i| {
        let mut client = r.client.clone();
        tokio::spawn(async move { checkout(&mut client, "student", &format!("ANTH-{i}")).await })
    });
    let mut refused = 0;
    let mut lent = Vec::new();
    for grab in grabs {
        match grab.await.expect("task") {
            Ok(answer) => lent.push(answer.copy.unwrap().barcode),
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(status.message().contains("loan limit reached"), "{}", status.message());
                refused += 1;
            }
        }
    }
    assert_eq!((lent.len(), refused), (5, 2));
    let acct = account(&mut r.client, "student").await;
    assert_eq!(acct.loans.len(), 5);
    assert!(acct.borrowing_blocked.contains("loan limit"), "{}", acct.borrowing_blocked);

    // Back under the limit, then 14 + 51 days later the fines (10 a day) are 510 > 500.
    give_back(&mut r.client, &lent[0]).await;
    for barcode in &lent[2..] {
        give_back(&mut r.client, barcode).await;
    }
    clock.advance(14 * DAY + 51 * DAY);
    let acct = account(&mut r.client, "student").await;
    assert_eq!((acct.fines_accruing_minor, acct.fines_owed_minor), (510, 510));
    let refused = checkout(&mut r.client, "student", "ANTH-7").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("fines owed (510) exceed the limit of 500"), "{}", refused.message());
    // Returned, the fine is charged; paying 10 brings the member to the threshold: may borrow.
    assert_eq!(give_back(&mut r.client, &lent[1]).await.fine_charged_minor, 510);
    let pay = |amount: i64| pb::PayFineRequest {
        request_id: rid("pay"),
        member_id: "student".into(),
        amount_minor: amount,
        currency: "USD".into(),
    };
    assert_eq!(r.client.pay_fine(pay(10)).await.unwrap().into_inner().fines_owed_minor, 500);
    checkout(&mut r.client, "student", "ANTH-7").await.expect("owing exactly the threshold is allowed");
}

async fn renewal_is_refused_while_holds_wait(backend: Backend) {
    let clock = clock();
    let root = root("renew");
    let mut r = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let isbn = isbn(3);
    add_title(&mut r.client, &isbn, "Popular", &["Someone"], &[]).await;
    add_copy(&mut r.client, "POP-1", &isbn, 1500).await;
    register(&mut r.client, "reader", pb::MemberType::Student).await;
    register(&mut r.client, "waiter", pb::MemberType::Adult).await;
    let loan = checkout(&mut r.client, "reader", "POP-1").await.unwrap().loan.unwrap();
    let due0 = loan.due_time.unwrap().seconds;

    let first = renew(&mut r.client, "reader", "POP-1").await.expect("first renewal").loan.unwrap();
    assert_eq!((first.renewals, first.due_time.unwrap().seconds), (1, due0 + 14 * 24 * 3600));

    let hold = place_hold(&mut r.client, "waiter", &isbn).await;
    assert_eq!((hold.state, hold.queue_position), (pb::HoldState::Waiting as i32, 1));
    let refused = renew(&mut r.client, "reader", "POP-1").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("1 hold(s) waiting"), "{}", refused.message());
    assert_eq!(copy(&mut r.client, "POP-1").await.renewals, 1, "the refusal changed nothing");

    r.client
        .cancel_hold(pb::CancelHoldRequest { member_id: "waiter".into(), isbn: isbn.clone() })
        .await
        .expect("cancel hold");
    let second = renew(&mut r.client, "reader", "POP-1").await.expect("second renewal").loan.unwrap();
    assert_eq!(second.renewals, 2);
    let third = renew(&mut r.client, "reader", "POP-1").await.unwrap_err();
    assert_eq!(third.code(), Code::FailedPrecondition);
    assert!(third.message().contains("renewed 2 times already"), "{}", third.message());
    // Someone else's loan cannot be renewed.
    let other = renew(&mut r.client, "waiter", "POP-1").await.unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);
}

async fn a_repeated_request_id_answers_the_first_answer(backend: Backend) {
    let clock = clock();
    let root = root("idem");
    let mut r = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let isbn = isbn(4);
    add_title(&mut r.client, &isbn, "Once", &["A"], &[]).await;
    add_copy(&mut r.client, "ONCE-1", &isbn, 100).await;
    register(&mut r.client, "m", pb::MemberType::Adult).await;
    let req = pb::CheckoutRequest { request_id: "same-id".into(), member_id: "m".into(), barcode: "ONCE-1".into() };
    let first = r.client.checkout(req.clone()).await.unwrap().into_inner();
    clock.advance(1000);
    let again = r.client.checkout(req.clone()).await.unwrap().into_inner();
    assert_eq!(first, again);
    assert_eq!(account(&mut r.client, "m").await.loans.len(), 1);
    let other = pb::CheckoutRequest { barcode: "ONCE-2".into(), ..req };
    assert_eq!(r.client.checkout(other).await.unwrap_err().code(), Code::AlreadyExists);
}

on_every_backend!(
    the_last_copy_goes_to_exactly_one_member,
    loan_limit_and_fine_threshold_refuse_with_the_reason,
    renewal_is_refused_while_holds_wait,
    a_repeated_request_id_answers_the_first_answer,
);
