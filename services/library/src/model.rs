//! The library's stored records (versioned JSON, [`Record`]) and their API forms. A title
//! carries its copies' barcodes, the barcodes on the shelf and its holds queue; a copy its
//! status and the current loan or hold shelf details; a member its loans (with what their
//! fines need: due time, rate, cap), its holds and its fine balance.

use meshwork_common::fields::timestamp_opt;
use meshwork_common::record::Record;
use meshwork_proto::pb::library::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::policy;

/// A member type (see [`crate::policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MemberType {
    Student,
    Adult,
    Staff,
}

impl MemberType {
    /// Returns the type of an API value, or `None` for UNSPECIFIED or an unknown number.
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::MemberType::try_from(value).ok()? {
            pb::MemberType::Student => Some(MemberType::Student),
            pb::MemberType::Adult => Some(MemberType::Adult),
            pb::MemberType::Staff => Some(MemberType::Staff),
            pb::MemberType::Unspecified => None,
        }
    }

    /// Returns the API value.
    pub fn to_proto(self) -> pb::MemberType {
        match self {
            MemberType::Student => pb::MemberType::Student,
            MemberType::Adult => pb::MemberType::Adult,
            MemberType::Staff => pb::MemberType::Staff,
        }
    }
}

/// Where a copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CopyStatus {
    Available,
    OnLoan,
    OnHoldShelf,
    Lost,
    Withdrawn,
}

impl CopyStatus {
    /// Returns the API value.
    pub fn to_proto(self) -> pb::CopyStatus {
        match self {
            CopyStatus::Available => pb::CopyStatus::Available,
            CopyStatus::OnLoan => pb::CopyStatus::OnLoan,
            CopyStatus::OnHoldShelf => pb::CopyStatus::OnHoldShelf,
            CopyStatus::Lost => pb::CopyStatus::Lost,
            CopyStatus::Withdrawn => pb::CopyStatus::Withdrawn,
        }
    }

    /// Returns how the status reads in an error message.
    pub fn describe(self) -> &'static str {
        match self {
            CopyStatus::Available => "available",
            CopyStatus::OnLoan => "on loan",
            CopyStatus::OnHoldShelf => "on the hold shelf",
            CopyStatus::Lost => "lost",
            CopyStatus::Withdrawn => "withdrawn",
        }
    }
}

/// One hold in a title's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldEntry {
    pub member_id: String,
    pub placed_ms: i64,
    /// The copy set aside for it (READY_FOR_PICKUP); `None` while it waits.
    #[serde(default)]
    pub barcode: Option<String>,
    /// When the copy set aside passes on (0 while it waits).
    #[serde(default)]
    pub pickup_deadline_ms: i64,
}

impl HoldEntry {
    /// Returns whether the hold still waits for a copy.
    pub fn is_waiting(&self) -> bool {
        self.barcode.is_none()
    }
}

/// A title: `<root>/titles/<isbn13>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TitleRecord {
    pub isbn: String,
    pub title: String,
    pub authors: Vec<String>,
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Every copy's barcode, in the order added.
    #[serde(default)]
    pub copies: Vec<String>,
    /// The AVAILABLE copies' barcodes, longest on the shelf first.
    #[serde(default)]
    pub shelf: Vec<String>,
    /// The holds queue, first first.
    #[serde(default)]
    pub holds: Vec<HoldEntry>,
    pub create_time_ms: i64,
}

impl Record for TitleRecord {
    const KIND: &'static str = "library title record";
}

impl TitleRecord {
    /// Returns how many holds still wait for a copy.
    pub fn holds_waiting(&self) -> usize {
        self.holds.iter().filter(|h| h.is_waiting()).count()
    }

    /// Returns the API form with its availability counts.
    pub fn to_proto(&self) -> pb::Title {
        pb::Title {
            isbn: self.isbn.clone(),
            title: self.title.clone(),
            authors: self.authors.clone(),
            subjects: self.subjects.clone(),
            total_copies: self.copies.len() as i32,
            available_copies: self.shelf.len() as i32,
            holds_waiting: self.holds_waiting() as i32,
            create_time: timestamp_opt(self.create_time_ms),
        }
    }

    /// Returns the API form of the hold at `index` of the queue.
    pub fn hold_proto(&self, index: usize) -> Option<pb::Hold> {
        let hold = self.holds.get(index)?;
        let state = if hold.is_waiting() { pb::HoldState::Waiting } else { pb::HoldState::ReadyForPickup };
        Some(pb::Hold {
            member_id: hold.member_id.clone(),
            isbn: self.isbn.clone(),
            title: self.title.clone(),
            state: state as i32,
            queue_position: index as i32 + 1,
            placed_time: timestamp_opt(hold.placed_ms),
            barcode: hold.barcode.clone().unwrap_or_default(),
            pickup_deadline: timestamp_opt(hold.pickup_deadline_ms),
        })
    }
}

/// A copy: `<root>/copies/<barcode>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRecord {
    pub barcode: String,
    pub isbn: String,
    pub branch: String,
    pub status: CopyStatus,
    pub replacement_cost_minor: i64,
    pub currency: String,
    /// ON_LOAN: the borrower.
    #[serde(default)]
    pub borrower: String,
    /// ON_LOAN: the due time.
    #[serde(default)]
    pub due_ms: i64,
    /// ON_LOAN: renewals so far.
    #[serde(default)]
    pub renewals: u32,
    /// ON_HOLD_SHELF: the member it is set aside for.
    #[serde(default)]
    pub hold_for: String,
    /// ON_HOLD_SHELF: when it passes on.
    #[serde(default)]
    pub pickup_deadline_ms: i64,
    pub create_time_ms: i64,
}

impl Record for CopyRecord {
    const KIND: &'static str = "library copy record";
}

impl CopyRecord {
    /// Returns the API form.
    pub fn to_proto(&self) -> pb::Copy {
        pb::Copy {
            barcode: self.barcode.clone(),
            isbn: self.isbn.clone(),
            branch: self.branch.clone(),
            status: self.status.to_proto() as i32,
            replacement_cost_minor: self.replacement_cost_minor,
            currency: self.currency.clone(),
            borrower: self.borrower.clone(),
            due_time: timestamp_opt(self.due_ms),
            hold_for: self.hold_for.clone(),
            pickup_deadline: timestamp_opt(self.pickup_deadline_ms),
            renewals: self.renewals as i32,
        }
    }

    /// Clears the loan and hold shelf details (the copy is about to get a new status).
    pub fn clear_circulation(&mut self) {
        self.borrower.clear();
        self.due_ms = 0;
        self.renewals = 0;
        self.hold_for.clear();
        self.pickup_deadline_ms = 0;
    }
}

/// One loan of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanEntry {
    pub barcode: String,
    pub isbn: String,
    pub title: String,
    pub checkout_ms: i64,
    pub due_ms: i64,
    pub renewals: u32,
    /// Fine per overdue day, fixed at checkout from the member's policy.
    pub fine_per_day_minor: i64,
    /// The copy's replacement cost: the most this loan's fines come to.
    pub fine_cap_minor: i64,
    /// Fines of this loan charged already (at an overdue renewal).
    #[serde(default)]
    pub charged_minor: i64,
}

impl LoanEntry {
    /// Returns the fine accrued and not yet charged at `now_ms`.
    pub fn accruing(&self, now_ms: i64) -> i64 {
        policy::fine(
            policy::overdue_days(self.due_ms, now_ms),
            self.fine_per_day_minor,
            self.fine_cap_minor,
            self.charged_minor,
        )
    }

    /// Returns the API form at `now_ms`.
    pub fn to_proto(&self, now_ms: i64) -> pb::Loan {
        pb::Loan {
            barcode: self.barcode.clone(),
            isbn: self.isbn.clone(),
            title: self.title.clone(),
            checkout_time: timestamp_opt(self.checkout_ms),
            due_time: timestamp_opt(self.due_ms),
            renewals: self.renewals as i32,
            overdue_days: policy::overdue_days(self.due_ms, now_ms).min(i64::from(i32::MAX)) as i32,
            fine_accrued_minor: self.accruing(now_ms),
        }
    }
}

/// A member: `<root>/members/<member_id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: String,
    pub name: String,
    pub member_type: MemberType,
    pub create_time_ms: i64,
    #[serde(default)]
    pub loans: Vec<LoanEntry>,
    /// ISBNs of the titles the member holds, in the order placed.
    #[serde(default)]
    pub holds: Vec<String>,
    /// Every fine charged so far.
    #[serde(default)]
    pub fines_charged_minor: i64,
    /// Every payment so far.
    #[serde(default)]
    pub fines_paid_minor: i64,
}

impl Record for MemberRecord {
    const KIND: &'static str = "library member record";
}

impl MemberRecord {
    /// Returns the charged fines not yet paid.
    pub fn balance(&self) -> i64 {
        self.fines_charged_minor.saturating_sub(self.fines_paid_minor)
    }

    /// Returns the fines accruing on current loans at `now_ms`.
    pub fn accruing(&self, now_ms: i64) -> i64 {
        self.loans.iter().map(|l| l.accruing(now_ms)).fold(0, i64::saturating_add)
    }

    /// Returns everything owed at `now_ms`: the balance and what accrues.
    pub fn owed(&self, now_ms: i64) -> i64 {
        self.balance().saturating_add(self.accruing(now_ms))
    }

    /// Returns why the member may not borrow at `now_ms`, if so.
    pub fn borrowing_blocked(&self, now_ms: i64) -> Option<String> {
        policy::borrowing_blocked(&policy::policy(self.member_type), self.loans.len(), self.owed(now_ms))
    }

    /// Returns the API form.
    pub fn to_proto(&self) -> pb::Member {
        pb::Member {
            member_id: self.member_id.clone(),
            name: self.name.clone(),
            r#type: self.member_type.to_proto() as i32,
            create_time: timestamp_opt(self.create_time_ms),
        }
    }
}
