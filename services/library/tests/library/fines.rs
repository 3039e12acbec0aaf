//! Fines follow the clock: advanced day by day past the due time, a loan's fine grows by the
//! member type's daily rate until it reaches the copy's replacement cost, and stays there. A
//! return charges it; payments lower it (a repeated payment is not counted twice), and no more
//! than the charged fines can be paid.

use std::sync::Arc;

use meshwork_proto::pb::library::v1 as pb;
use meshwork_test_support::backends::Backend;
use meshwork_test_support::on_every_backend;
use tonic::Code;

use crate::support::*;

async fn fines_follow_a_clock_advanced_day_by_day(backend: Backend) {
    let clock = clock();
    let root = root("fines");
    let mut r = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let isbn = isbn(20);
    add_title(&mut r.client, &isbn, "Late", &["Tardy"], &[]).await;
    // An adult pays 25 a day; the copy costs 300 to replace: the cap is reached on day 12.
    add_copy(&mut r.client, "LATE-1", &isbn, 300).await;
    register(&mut r.client, "adult", pb::MemberType::Adult).await;
    checkout(&mut r.client, "adult", "LATE-1").await.expect("checkout");

    clock.advance(21 * DAY);
    let acct = account(&mut r.client, "adult").await;
    assert_eq!((acct.loans[0].overdue_days, acct.loans[0].fine_accrued_minor), (0, 0), "due, not overdue");
    for day in 1..=15i64 {
        clock.advance(DAY);
        let acct = account(&mut r.client, "adult").await;
        let loan = &acct.loans[0];
        let expected = (25 * day).min(300);
        assert_eq!(loan.overdue_days as i64, day);
        assert_eq!(loan.fine_accrued_minor, expected, "day {day}");
        assert_eq!(
            (acct.fines_accruing_minor, acct.fines_owed_minor, acct.fines_charged_minor),
            (expected, expected, 0)
        );
    }

    let back = give_back(&mut r.client, "LATE-1").await;
    assert_eq!(back.fine_charged_minor, 300);
    clock.advance(10 * DAY);
    let acct = account(&mut r.client, "adult").await;
    assert_eq!((acct.fines_charged_minor, acct.fines_accruing_minor, acct.fines_owed_minor), (300, 0, 300));
    assert_eq!(acct.currency, "USD");

    let pay = |request_id: &str, amount: i64| pb::PayFineRequest {
        request_id: request_id.into(),
        member_id: "adult".into(),
        amount_minor: amount,
        currency: "USD".into(),
    };
    let over = r.client.pay_fine(pay("pay-over", 301)).await.unwrap_err();
    assert_eq!(over.code(), Code::FailedPrecondition);
    assert_eq!(r.client.pay_fine(pay("pay-1", 120)).await.unwrap().into_inner().fines_owed_minor, 180);
    assert_eq!(r.client.pay_fine(pay("pay-1", 120)).await.unwrap().into_inner().fines_owed_minor, 180, "replayed");
    assert_eq!(account(&mut r.client, "adult").await.fines_owed_minor, 180);
    assert_eq!(r.client.pay_fine(pay("pay-2", 180)).await.unwrap().into_inner().fines_owed_minor, 0);
}

async fn an_overdue_renewal_charges_the_fine_so_far(backend: Backend) {
    let clock = clock();
    let root = root("renewfine");
    let mut r = replica(&backend.store, &root, Arc::new(clock.clone())).await;
    let isbn = isbn(21);
    add_title(&mut r.client, &isbn, "Slow", &["S"], &[]).await;
    add_copy(&mut r.client, "SLOW-1", &isbn, 100).await;
    register(&mut r.client, "stu", pb::MemberType::Student).await;
    checkout(&mut r.client, "stu", "SLOW-1").await.unwrap();
    clock.advance(14 * DAY + 3 * DAY);
    let renewed = renew(&mut r.client, "stu", "SLOW-1").await.unwrap().loan.unwrap();
    assert_eq!((renewed.overdue_days, renewed.fine_accrued_minor), (0, 0));
    let acct = account(&mut r.client, "stu").await;
    assert_eq!((acct.fines_charged_minor, acct.fines_accruing_minor), (30, 0));
    // Overdue again for 20 days: the loan's fines together stop at the replacement cost (100).
    clock.advance(14 * DAY + 20 * DAY);
    let acct = account(&mut r.client, "stu").await;
    assert_eq!((acct.fines_charged_minor, acct.fines_accruing_minor), (30, 70));
    assert_eq!(give_back(&mut r.client, "SLOW-1").await.fine_charged_minor, 70);
}

on_every_backend!(fines_follow_a_clock_advanced_day_by_day, an_overdue_renewal_charges_the_fine_so_far);
