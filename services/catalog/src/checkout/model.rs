//! The stored saga record of one checkout (`catalog/checkouts/<checkout_id>`): what the cart
//! held when the checkout started, every step's status, attempts and times, the ids the steps
//! produced, the failure, and the owner's lease. It is written before each step, so whoever
//! picks the saga up after a crash knows exactly what may have happened.

use serde::{Deserialize, Serialize};

use meshwork_common::Record;
use meshwork_common::fields::{timestamp, timestamp_opt};
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_proto::pb::orders::v1::Address;

/// The saga's steps, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    ReserveStock,
    CreateOrder,
    AuthorizePayment,
    CapturePayment,
    CommitStock,
    ConfirmOrder,
    ClearCart,
}

impl Step {
    /// Every step in the order it runs. Stock is committed before the order is confirmed, so
    /// that a CONFIRMED order always has its stock committed.
    pub const ALL: [Step; 7] = [
        Step::ReserveStock,
        Step::CreateOrder,
        Step::AuthorizePayment,
        Step::CapturePayment,
        Step::CommitStock,
        Step::ConfirmOrder,
        Step::ClearCart,
    ];

    /// Returns the step's name as the API shows it.
    pub fn name(self) -> &'static str {
        match self {
            Step::ReserveStock => "reserve_stock",
            Step::CreateOrder => "create_order",
            Step::AuthorizePayment => "authorize_payment",
            Step::CapturePayment => "capture_payment",
            Step::CommitStock => "commit_stock",
            Step::ConfirmOrder => "confirm_order",
            Step::ClearCart => "clear_cart",
        }
    }

    /// Returns the suffix of the deterministic `request_id` the step sends (`<checkout_id>:<suffix>`).
    pub fn request_suffix(self) -> &'static str {
        match self {
            Step::ReserveStock => "reserve",
            Step::CreateOrder => "order",
            Step::AuthorizePayment => "authorize",
            Step::CapturePayment => "capture",
            Step::CommitStock => "commit",
            Step::ConfirmOrder => "confirm",
            Step::ClearCart => "clear",
        }
    }
}

/// Where the saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    Running,
    Compensating,
    Completed,
    Failed,
}

impl SagaState {
    /// Returns whether the saga is finished (nothing more will be done).
    pub fn is_final(self) -> bool {
        matches!(self, SagaState::Completed | SagaState::Failed)
    }

    fn to_proto(self) -> pb::CheckoutState {
        match self {
            SagaState::Running => pb::CheckoutState::Running,
            SagaState::Compensating => pb::CheckoutState::Compensating,
            SagaState::Completed => pb::CheckoutState::Completed,
            SagaState::Failed => pb::CheckoutState::Failed,
        }
    }
}

/// Where one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not run yet, or being run (`attempts` > 0: its outcome may be unknown).
    Pending,
    Done,
    Failed,
    /// Not needed: the saga failed before it.
    Skipped,
}

/// One step of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    pub status: StepStatus,
    /// What it produced, or why its last attempt failed.
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub start_ms: i64,
    #[serde(default)]
    pub end_ms: i64,
    /// Set once its effects (if it may have had any) were undone by its compensation.
    #[serde(default)]
    pub undone: bool,
    /// Set when its last attempt ended without a definite answer (a transient error), so
    /// it may have taken effect.
    #[serde(default)]
    pub uncertain: bool,
}

impl StepRecord {
    fn new(step: Step) -> Self {
        StepRecord {
            step,
            status: StepStatus::Pending,
            detail: String::new(),
            attempts: 0,
            start_ms: 0,
            end_ms: 0,
            undone: false,
            uncertain: false,
        }
    }
}

/// One cart line as it was when the checkout started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineSnapshot {
    pub sku: String,
    pub title: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// Where a reservation holds units (kept for the audit trail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationSnapshot {
    pub sku: String,
    pub location: String,
    pub quantity: i64,
}

/// The shipping address, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressSnapshot {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    pub city: String,
    #[serde(default)]
    pub region: String,
    pub postal_code: String,
    pub country: String,
}

impl From<&Address> for AddressSnapshot {
    fn from(a: &Address) -> Self {
        AddressSnapshot {
            name: a.name.clone(),
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        }
    }
}

impl From<&AddressSnapshot> for Address {
    fn from(a: &AddressSnapshot) -> Self {
        Address {
            name: a.name.clone(),
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        }
    }
}

/// Why a saga failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// gRPC code of the failing step's error.
    pub code: i32,
    pub step: Step,
    pub message: String,
}

/// The saga record of one checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaRecord {
    pub checkout_id: String,
    pub request_id: String,
    pub user_id: String,
    pub state: SagaState,
    /// One per [`Step::ALL`], in that order.
    pub steps: Vec<StepRecord>,
    pub lines: Vec<LineSnapshot>,
    pub currency: String,
    pub total_minor: i64,
    /// The cart's version when its lines were read.
    pub cart_version: i64,
    pub address: AddressSnapshot,
    pub payment_token: String,
    #[serde(default)]
    pub reservation_id: String,
    #[serde(default)]
    pub allocations: Vec<AllocationSnapshot>,
    #[serde(default)]
    pub order_id: String,
    #[serde(default)]
    pub payment_id: String,
    #[serde(default)]
    pub failure: Option<Failure>,
    /// The process driving the saga, and until when its lease holds (ms).
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub lease_until_ms: i64,
    pub create_ms: i64,
    pub update_ms: i64,
}

impl Record for SagaRecord {
    const KIND: &'static str = "checkout saga record";
}

/// What the record is made from.
#[derive(Debug, Clone)]
pub struct NewSaga {
    pub checkout_id: String,
    pub request_id: String,
    pub user_id: String,
    pub lines: Vec<LineSnapshot>,
    pub currency: String,
    pub total_minor: i64,
    pub cart_version: i64,
    pub address: AddressSnapshot,
    pub payment_token: String,
}

impl SagaRecord {
    /// Returns a RUNNING saga with every step pending, owned by `owner` until `lease_until_ms`.
    pub fn new(new: NewSaga, owner: &str, now_ms: i64, lease_until_ms: i64) -> Self {
        SagaRecord {
            checkout_id: new.checkout_id,
            request_id: new.request_id,
            user_id: new.user_id,
            state: SagaState::Running,
            steps: Step::ALL.iter().map(|s| StepRecord::new(*s)).collect(),
            lines: new.lines,
            currency: new.currency,
            total_minor: new.total_minor,
            cart_version: new.cart_version,
            address: new.address,
            payment_token: new.payment_token,
            reservation_id: String::new(),
            allocations: Vec::new(),
            order_id: String::new(),
            payment_id: String::new(),
            failure: None,
            owner: owner.to_string(),
            lease_until_ms,
            create_ms: now_ms,
            update_ms: now_ms,
        }
    }

    /// Returns the record of `step`.
    pub fn step(&self, step: Step) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.step == step)
    }

    /// Returns the record of `step`, to change it.
    pub fn step_mut(&mut self, step: Step) -> Option<&mut StepRecord> {
        self.steps.iter_mut().find(|s| s.step == step)
    }

    /// Returns the `request_id` `step` sends: derived from the checkout id, so that a retried
    /// or resumed step is answered by the same operation instead of doing it twice.
    pub fn request_id_of(&self, step: Step) -> String {
        format!("{}:{}", self.checkout_id, step.request_suffix())
    }

    /// Returns the API form of the record.
    pub fn to_proto(&self) -> pb::CheckoutRecord {
        let failed = self.state == SagaState::Failed || self.state == SagaState::Compensating;
        pb::CheckoutRecord {
            checkout_id: self.checkout_id.clone(),
            user_id: self.user_id.clone(),
            state: self.state.to_proto() as i32,
            steps: self.steps.iter().map(|s| step_to_proto(s, failed)).collect(),
            order_id: self.order_id.clone(),
            reservation_id: self.reservation_id.clone(),
            payment_id: self.payment_id.clone(),
            total_minor: self.total_minor,
            currency: self.currency.clone(),
            failure: self.failure.as_ref().map(|f| pb::CheckoutFailure {
                code: f.code,
                step: f.step.name().to_string(),
                message: f.message.clone(),
            }),
            create_time: Some(timestamp(self.create_ms)),
            update_time: Some(timestamp(self.update_ms)),
        }
    }
}

fn step_to_proto(s: &StepRecord, failed: bool) -> pb::CheckoutStep {
    let status = match s.status {
        StepStatus::Done if s.undone => pb::StepStatus::Compensated,
        StepStatus::Done => pb::StepStatus::Done,
        StepStatus::Failed => pb::StepStatus::Failed,
        StepStatus::Skipped => pb::StepStatus::Skipped,
        // A step left pending in a failed saga was never run (or its unknown outcome undone).
        StepStatus::Pending if failed && s.undone => pb::StepStatus::Compensated,
        StepStatus::Pending => pb::StepStatus::Pending,
    };
    pb::CheckoutStep {
        name: s.step.name().to_string(),
        status: status as i32,
        detail: s.detail.clone(),
        attempts: i32::try_from(s.attempts).unwrap_or(i32::MAX),
        start_time: timestamp_opt(s.start_ms),
        end_time: timestamp_opt(s.end_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_show_their_steps() {
        let new = NewSaga {
            checkout_id: "chk_x".into(),
            request_id: "r1".into(),
            user_id: "u".into(),
            lines: vec![LineSnapshot { sku: "SKU-1".into(), title: "t".into(), quantity: 2, unit_price_minor: 5 }],
            currency: "USD".into(),
            total_minor: 10,
            cart_version: 3,
            address: AddressSnapshot::default(),
            payment_token: "tok_ok".into(),
        };
        let rec = SagaRecord::new(new, "me", 1_000, 6_000);
        let back = SagaRecord::decode(&rec.encode().unwrap()).unwrap();
        assert_eq!(back, rec);
        let pb = rec.to_proto();
        let names: Vec<_> = pb.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "reserve_stock",
                "create_order",
                "authorize_payment",
                "capture_payment",
                "commit_stock",
                "confirm_order",
                "clear_cart"
            ]
        );
        assert!(pb.steps.iter().all(|s| s.status == pb::StepStatus::Pending as i32 && s.start_time.is_none()));
        assert_eq!(rec.request_id_of(Step::CapturePayment), "chk_x:capture");
        assert_eq!(pb.state, pb::CheckoutState::Running as i32);
    }
}
