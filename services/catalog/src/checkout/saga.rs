//! The saga's decisions, without any I/O: which step runs next given the record, what a
//! step's failure leads to (retry, or compensate), which steps must be undone and in what
//! order, and the record changes each outcome makes. The driver ([`super::service`]) does the
//! calls and the writes; everything it decides comes from here.
//!
//! The pivot is `capture_payment`: before it, a transient failure is retried a few times and
//! then compensated, a permanent one compensated at once; after it the saga only goes
//! forward (transient failures retried until they succeed), except when the stock can no
//! longer be committed (the hold expired or was released), which refunds the capture.

use std::time::Duration;

use meshwork_proto::pb::orders::v1::OrderState;

use super::model::{Failure, SagaRecord, SagaState, Step, StepRecord, StepStatus};

/// Attempts of a step before the pivot, the first included, before the saga compensates.
pub const MAX_ATTEMPTS: u32 = 4;

/// First retry delay; doubled with each attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Longest delay between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run this step forward.
    Run(Step),
    /// Undo this step's effects.
    Undo(Step),
    /// Write the final state: COMPLETED or FAILED.
    Finish(SagaState),
}

/// What a failed step leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try it again after this long.
    Retry(Duration),
    /// Give up on it and undo what was done.
    Compensate,
}

/// Returns whether `step` comes after the pivot (the capture): from there on the saga only
/// goes forward.
pub fn after_pivot(step: Step) -> bool {
    matches!(step, Step::CommitStock | Step::ConfirmOrder | Step::ClearCart)
}

/// Returns the delay before attempt `attempts + 1`.
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

/// Returns what a failure of `step` after `attempts` attempts leads to; `transient` is
/// [`meshwork_common::ServiceError::is_transient`] of the error.
pub fn on_step_error(step: Step, transient: bool, attempts: u32) -> Decision {
    if transient && (after_pivot(step) || attempts < MAX_ATTEMPTS) {
        Decision::Retry(backoff(attempts))
    } else {
        Decision::Compensate
    }
}

/// Returns whether `s` may have had effects that the compensation must undo.
pub fn needs_undo(s: &StepRecord) -> bool {
    let maybe = s.status == StepStatus::Done
        || (s.status == StepStatus::Pending && s.attempts > 0)
        || (s.status == StepStatus::Failed && s.uncertain);
    match s.step {
        Step::ReserveStock | Step::CreateOrder | Step::AuthorizePayment => maybe,
        // Only a capture known to be done is undone (a refund): an uncertain capture is
        // settled by the void of the authorization, which fails when the payment was
        // captured after all.
        Step::CapturePayment => s.status == StepStatus::Done,
        // Committed stock goes back with the order's cancellation (orders restocks the
        // allocations of a committed reservation), so undoing it here would count it twice.
        Step::CommitStock | Step::ConfirmOrder | Step::ClearCart => false,
    }
}

/// Returns the steps the compensation still has to undo, in the order to undo them (the
/// reverse of the order they ran).
pub fn compensation_plan(rec: &SagaRecord) -> Vec<Step> {
    rec.steps.iter().rev().filter(|s| needs_undo(s) && !s.undone).map(|s| s.step).collect()
}

/// Returns what to do next with `rec`.
pub fn next_action(rec: &SagaRecord) -> Action {
    match rec.state {
        SagaState::Running => match rec.steps.iter().find(|s| s.status == StepStatus::Pending) {
            Some(s) => Action::Run(s.step),
            None => Action::Finish(SagaState::Completed),
        },
        SagaState::Compensating => match compensation_plan(rec).first() {
            Some(step) => Action::Undo(*step),
            None => Action::Finish(SagaState::Failed),
        },
        done => Action::Finish(done),
    }
}

/// Records the start of an attempt of `step` (written before the call is made).
pub fn begin_attempt(rec: &mut SagaRecord, step: Step, now_ms: i64) {
    if let Some(s) = rec.step_mut(step) {
        s.attempts = s.attempts.saturating_add(1);
        if s.start_ms == 0 {
            s.start_ms = now_ms;
        }
    }
    rec.update_ms = now_ms;
}

/// Records that `step` succeeded with `detail` (the id it produced).
pub fn step_done(rec: &mut SagaRecord, step: Step, detail: String, now_ms: i64) {
    if let Some(s) = rec.step_mut(step) {
        s.status = StepStatus::Done;
        s.detail = detail;
        s.uncertain = false;
        s.end_ms = now_ms;
    }
    rec.update_ms = now_ms;
}

/// Records a failed attempt of `step` that will be retried.
pub fn step_retrying(rec: &mut SagaRecord, step: Step, message: String, now_ms: i64) {
    if let Some(s) = rec.step_mut(step) {
        s.detail = message;
        s.uncertain = true;
    }
    rec.update_ms = now_ms;
}

/// Records that `step` failed for good (gRPC `code`, `message`; `uncertain` when the last
/// error was transient) and turns the saga to compensation: the steps not started are
/// skipped.
pub fn step_failed(rec: &mut SagaRecord, step: Step, code: i32, message: String, uncertain: bool, now_ms: i64) {
    if let Some(s) = rec.step_mut(step) {
        s.status = StepStatus::Failed;
        s.detail = message.clone();
        s.uncertain = uncertain;
        s.end_ms = now_ms;
    }
    for s in rec.steps.iter_mut().filter(|s| s.status == StepStatus::Pending && s.attempts == 0) {
        s.status = StepStatus::Skipped;
    }
    rec.failure = Some(Failure { code, step, message });
    rec.state = SagaState::Compensating;
    rec.update_ms = now_ms;
}

/// Records that `step`'s effects were undone.
pub fn step_undone(rec: &mut SagaRecord, step: Step, now_ms: i64) {
    if let Some(s) = rec.step_mut(step) {
        s.undone = true;
        s.end_ms = now_ms;
    }
    rec.update_ms = now_ms;
}

/// Returns whether the saga can go forward again because the compensation found the payment
/// captured (the void of an uncertain capture failed): true only while nothing was undone,
/// which holds because the authorization is the first step a pre-pivot compensation undoes.
pub fn can_resume_after_capture(rec: &SagaRecord) -> bool {
    rec.state == SagaState::Compensating
        && rec.step(Step::CapturePayment).is_some_and(|s| s.status != StepStatus::Done)
        && !rec.steps.iter().any(|s| s.undone)
}

/// Turns the saga forward again after the payment was found captured: the capture is done,
/// the skipped steps pending again, the failure forgotten.
pub fn resume_after_capture(rec: &mut SagaRecord, payment_id: &str, now_ms: i64) {
    step_done(rec, Step::CapturePayment, payment_id.to_string(), now_ms);
    for s in rec.steps.iter_mut() {
        if s.status == StepStatus::Skipped {
            s.status = StepStatus::Pending;
        }
        if s.step == Step::AuthorizePayment && s.status == StepStatus::Failed {
            s.status = StepStatus::Done;
        }
    }
    rec.failure = None;
    rec.state = SagaState::Running;
}

/// Returns whether an order in state `now` has been moved to `to` already: a confirmation
/// whose answer was lost may find the order CONFIRMED or, staff being quick, further on; a
/// cancellation finds it CANCELLED.
pub fn order_reached(now: OrderState, to: OrderState) -> bool {
    match to {
        OrderState::Confirmed => matches!(
            now,
            OrderState::Confirmed
                | OrderState::Packed
                | OrderState::Shipped
                | OrderState::Delivered
                | OrderState::ReturnRequested
                | OrderState::Returned
        ),
        other => now == other,
    }
}

/// Records the final state.
pub fn finish(rec: &mut SagaRecord, state: SagaState, now_ms: i64) {
    rec.state = state;
    rec.lease_until_ms = 0;
    rec.update_ms = now_ms;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::model::{AddressSnapshot, NewSaga};

    fn saga() -> SagaRecord {
        let new = NewSaga {
            checkout_id: "chk_1".into(),
            request_id: "r".into(),
            user_id: "u".into(),
            lines: Vec::new(),
            currency: "USD".into(),
            total_minor: 100,
            cart_version: 1,
            address: AddressSnapshot::default(),
            payment_token: "tok_ok".into(),
        };
        SagaRecord::new(new, "me", 0, 5_000)
    }

    fn run_ok(rec: &mut SagaRecord, step: Step) {
        assert_eq!(next_action(rec), Action::Run(step));
        begin_attempt(rec, step, 1);
        step_done(rec, step, "id".into(), 2);
    }

    #[test]
    fn the_happy_path_runs_every_step_in_order_then_completes() {
        let mut rec = saga();
        for step in Step::ALL {
            run_ok(&mut rec, step);
        }
        assert_eq!(next_action(&rec), Action::Finish(SagaState::Completed));
        assert_eq!(
            compensation_plan(&rec),
            [Step::CapturePayment, Step::AuthorizePayment, Step::CreateOrder, Step::ReserveStock]
        );
    }

    #[test]
    fn a_decline_undoes_the_order_then_the_hold_not_the_authorization() {
        let mut rec = saga();
        run_ok(&mut rec, Step::ReserveStock);
        run_ok(&mut rec, Step::CreateOrder);
        begin_attempt(&mut rec, Step::AuthorizePayment, 3);
        assert_eq!(on_step_error(Step::AuthorizePayment, false, 1), Decision::Compensate);
        step_failed(&mut rec, Step::AuthorizePayment, 9, "card declined".into(), false, 4);
        assert_eq!(rec.state, SagaState::Compensating);
        assert_eq!(rec.step(Step::CapturePayment).unwrap().status, StepStatus::Skipped);
        assert_eq!(compensation_plan(&rec), [Step::CreateOrder, Step::ReserveStock]);
        assert_eq!(next_action(&rec), Action::Undo(Step::CreateOrder));
        step_undone(&mut rec, Step::CreateOrder, 5);
        assert_eq!(next_action(&rec), Action::Undo(Step::ReserveStock));
        step_undone(&mut rec, Step::ReserveStock, 6);
        assert_eq!(next_action(&rec), Action::Finish(SagaState::Failed));
        let pb = rec.to_proto();
        assert_eq!(pb.failure.unwrap().step, "authorize_payment");
    }

    #[test]
    fn transient_failures_retry_before_the_pivot_a_few_times_and_after_it_forever() {
        for attempts in 1..MAX_ATTEMPTS {
            assert!(matches!(on_step_error(Step::AuthorizePayment, true, attempts), Decision::Retry(_)));
        }
        assert_eq!(on_step_error(Step::CapturePayment, true, MAX_ATTEMPTS), Decision::Compensate);
        assert!(matches!(on_step_error(Step::CommitStock, true, 1_000), Decision::Retry(d) if d == MAX_BACKOFF));
        assert_eq!(on_step_error(Step::CommitStock, false, 1), Decision::Compensate);
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert!(backoff(u32::MAX) <= MAX_BACKOFF);
    }

    #[test]
    fn a_step_interrupted_or_uncertain_is_undone_too() {
        // Killed while the order was being created: the order may exist.
        let mut rec = saga();
        run_ok(&mut rec, Step::ReserveStock);
        begin_attempt(&mut rec, Step::CreateOrder, 3);
        step_failed(&mut rec, Step::ReserveStock, 14, "x".into(), true, 4);
        assert_eq!(compensation_plan(&rec), [Step::CreateOrder, Step::ReserveStock]);
        // A definite failure of the reservation holds nothing.
        let mut rec = saga();
        begin_attempt(&mut rec, Step::ReserveStock, 1);
        step_failed(&mut rec, Step::ReserveStock, 9, "out of stock: SKU-1".into(), false, 2);
        assert!(compensation_plan(&rec).is_empty());
        assert_eq!(next_action(&rec), Action::Finish(SagaState::Failed));
        assert!(rec.steps[1..].iter().all(|s| s.status == StepStatus::Skipped));
    }

    #[test]
    fn an_uncertain_capture_voids_first_and_goes_forward_when_it_was_captured() {
        let mut rec = saga();
        for step in [Step::ReserveStock, Step::CreateOrder, Step::AuthorizePayment] {
            run_ok(&mut rec, step);
        }
        begin_attempt(&mut rec, Step::CapturePayment, 3);
        step_retrying(&mut rec, Step::CapturePayment, "unavailable".into(), 3);
        step_failed(&mut rec, Step::CapturePayment, 14, "unavailable".into(), true, 4);
        assert_eq!(next_action(&rec), Action::Undo(Step::AuthorizePayment));
        assert!(can_resume_after_capture(&rec));
        resume_after_capture(&mut rec, "pay_1", 5);
        assert_eq!(next_action(&rec), Action::Run(Step::CommitStock));
        assert!(rec.failure.is_none());
    }

    #[test]
    fn an_order_moved_already_counts_as_moved() {
        assert!(order_reached(OrderState::Confirmed, OrderState::Confirmed));
        assert!(order_reached(OrderState::Shipped, OrderState::Confirmed));
        assert!(!order_reached(OrderState::Created, OrderState::Confirmed));
        assert!(!order_reached(OrderState::Cancelled, OrderState::Confirmed));
        assert!(order_reached(OrderState::Cancelled, OrderState::Cancelled));
        assert!(!order_reached(OrderState::Confirmed, OrderState::Cancelled));
    }

    #[test]
    fn a_commit_that_can_no_longer_happen_refunds_then_cancels_then_releases() {
        let mut rec = saga();
        for step in [Step::ReserveStock, Step::CreateOrder, Step::AuthorizePayment, Step::CapturePayment] {
            run_ok(&mut rec, step);
        }
        begin_attempt(&mut rec, Step::CommitStock, 5);
        step_failed(&mut rec, Step::CommitStock, 9, "reservation expired".into(), false, 6);
        assert_eq!(
            compensation_plan(&rec),
            [Step::CapturePayment, Step::AuthorizePayment, Step::CreateOrder, Step::ReserveStock]
        );
        assert!(!can_resume_after_capture(&rec));
        finish(&mut rec, SagaState::Failed, 7);
        assert_eq!(next_action(&rec), Action::Finish(SagaState::Failed));
    }
}
