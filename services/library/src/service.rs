//! The library's operations over the store. Every change is one read-modify-write transaction
//! (the `work` module gathers the title, copy and member records it reads and writes them
//! back in one conditional commit), so two members checking out the last copy at once cannot
//! both get it: the second commit finds the copy changed, reruns, and sees it on loan. The calls that create
//! something or move a copy or money take a `request_id` ([`Idempotency`]): a retry answers the
//! first answer.
//!
//! Holds: a title's queue lives in the title record. A copy that comes back (returned, added,
//! released by a cancelled or missed hold) goes to the first waiting hold, set aside until a
//! pickup deadline indexed under `<root>/pickups/` ([`crate::keys`]), or back on the shelf; so
//! no copy is AVAILABLE while a hold of its title waits. A missed pickup passes the copy on:
//! every replica's sweeper scans the due deadlines ([`Library::sweep_once`]), and every
//! transaction (and read) that meets a title with a due deadline settles it first, so the
//! outcome never depends on when the sweeper last ran.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meshwork_common::caller::Caller;
use meshwork_common::clock::Clock;
use meshwork_common::idempotency::{Fingerprint, Idempotency};
use meshwork_common::record::Record;
use meshwork_common::{ServiceError, ServiceResult};
use meshwork_proto::pb::library::v1 as pb;
use meshwork_storage::{Direction, DynStore, KeyRange, transact};

use crate::keys::{Keys, ROOT};
use crate::model::{CopyRecord, CopyStatus, HoldEntry, LoanEntry, MemberRecord, TitleRecord};
use crate::policy::{self, MAX_RENEWALS};
use crate::search::SearchIndex;
use crate::validate;
use crate::work::{Work, copy_not_found, has_due_pickup, member_not_found, orphan_copy, title_not_found};

/// Roles that may act as library staff (and for any member).
pub const STAFF_ROLES: [&str; 2] = ["admin", "librarian"];

/// Most copies of one title.
pub const MAX_COPIES_PER_TITLE: usize = 1_000;
/// Most holds queued on one title.
pub const MAX_HOLDS_PER_TITLE: usize = 1_000;
/// Copies or titles read at once for one answer.
const READ_CONCURRENCY: usize = 16;

/// Tunables of one library deployment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Key root (`library`); tests use one of their own.
    pub root: String,
    /// The currency of replacement costs and fines (ISO 4217).
    pub currency: String,
    /// How often each replica looks for missed pickups.
    pub sweep_interval: Duration,
    /// Most due pickups handled per sweep.
    pub sweep_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: ROOT.to_string(),
            currency: "USD".to_string(),
            sweep_interval: Duration::from_secs(1),
            sweep_batch: 100,
        }
    }
}

/// Fails with PERMISSION_DENIED unless the caller is anonymous (the dev gateway) or staff.
fn authorize_staff(caller: Option<&Caller>) -> ServiceResult<()> {
    match caller {
        Some(c) if !is_staff(c) => Err(ServiceError::PermissionDenied(format!(
            "this needs role \"librarian\" or \"admin\"; \"{}\" has neither",
            c.subject.escape_debug()
        ))),
        _ => Ok(()),
    }
}

fn is_staff(caller: &Caller) -> bool {
    STAFF_ROLES.iter().any(|r| caller.has_role(r))
}

/// Fails with PERMISSION_DENIED unless the caller is anonymous, the member, or staff.
fn authorize_member(caller: Option<&Caller>, member_id: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if c.subject != member_id && !is_staff(c) => Err(ServiceError::PermissionDenied(format!(
            "acting for member {member_id:?} needs role \"librarian\" or \"admin\"; \"{}\" is neither",
            c.subject.escape_debug()
        ))),
        _ => Ok(()),
    }
}

/// The library's domain logic.
pub struct Library {
    store: DynStore,
    clock: Arc<dyn Clock>,
    keys: Keys,
    idem: Idempotency,
    config: Config,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("root", &self.keys.root()).finish_non_exhaustive()
    }
}

impl Library {
    /// Returns the library on `store`, timed by `clock`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: Config) -> Self {
        let keys = Keys::new(&config.root);
        let idem = Idempotency::new(store.clone(), &config.root).with_clock(clock.clone());
        Library { store, clock, keys, idem, config }
    }

    /// Returns the keys of this deployment.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Returns the store.
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// AddTitle.
    pub async fn add_title(
        &self,
        req: pb::AddTitleRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::AddTitleResponse> {
        let input = validate::add_title(&req)?;
        authorize_staff(caller)?;
        self.idem
            .transact(&req.request_id, Fingerprint::of(&req), |tx| {
                let input = input.clone();
                Box::pin(async move {
                    let key = self.keys.title(&input.isbn);
                    if tx.get(&key).await?.is_some() {
                        return Err(ServiceError::AlreadyExists { what: format!("title {}", input.isbn) });
                    }
                    let record = TitleRecord {
                        isbn: input.isbn,
                        title: input.title,
                        authors: input.authors,
                        subjects: input.subjects,
                        copies: Vec::new(),
                        shelf: Vec::new(),
                        holds: Vec::new(),
                        create_time_ms: self.clock.now_ms(),
                    };
                    tx.put(key, record.encode()?);
                    Ok(pb::AddTitleResponse { title: Some(record.to_proto()) })
                })
            })
            .await
    }

    /// AddCopy.
    pub async fn add_copy(
        &self,
        req: pb::AddCopyRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::AddCopyResponse> {
        let input = validate::add_copy(&req, &self.config.currency)?;
        authorize_staff(caller)?;
        self.idem
            .transact(&req.request_id, Fingerprint::of(&req), |tx| {
                let input = input.clone();
                Box::pin(async move {
                    let now = self.clock.now_ms();
                    let mut w = Work::new(tx, self.keys.clone());
                    let mut title = w.title(&input.isbn).await?.ok_or_else(|| title_not_found(&input.isbn))?;
                    if w.copy(&input.barcode).await?.is_some() {
                        return Err(ServiceError::AlreadyExists { what: format!("copy {:?}", input.barcode) });
                    }
                    if title.copies.len() >= MAX_COPIES_PER_TITLE {
                        return Err(ServiceError::ResourceExhausted(format!(
                            "title {} has {MAX_COPIES_PER_TITLE} copies, the most allowed",
                            title.isbn
                        )));
                    }
                    w.expire_pickups(&mut title, now).await?;
                    w.put_copy(CopyRecord {
                        barcode: input.barcode.clone(),
                        isbn: input.isbn,
                        branch: input.branch,
                        status: CopyStatus::Available,
                        replacement_cost_minor: input.replacement_cost_minor,
                        currency: input.currency,
                        borrower: String::new(),
                        due_ms: 0,
                        renewals: 0,
                        hold_for: String::new(),
                        pickup_deadline_ms: 0,
                        create_time_ms: now,
                    });
                    title.copies.push(input.barcode.clone());
                    w.hand_on(&mut title, &input.barcode, now).await?;
                    w.put_title(title);
                    w.flush()?;
                    let copy = w.copy(&input.barcode).await?.ok_or_else(|| copy_not_found(&input.barcode))?;
                    Ok(pb::AddCopyResponse { copy: Some(copy.to_proto()) })
                })
            })
            .await
    }

    /// RegisterMember.
    pub async fn register_member(
        &self,
        req: pb::RegisterMemberRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::RegisterMemberResponse> {
        let input = validate::register_member(&req)?;
        authorize_staff(caller)?;
        self.idem
            .transact(&req.request_id, Fingerprint::of(&req), |tx| {
                let input = input.clone();
                Box::pin(async move {
                    let key = self.keys.member(&input.member_id);
                    if tx.get(&key).await?.is_some() {
                        return Err(ServiceError::AlreadyExists { what: format!("member {:?}", input.member_id) });
                    }
                    let record = MemberRecord {
                        member_id: input.member_id,
                        name: input.name,
                        member_type: input.member_type,
                        create_time_ms: self.clock.now_ms(),
                        loans: Vec::new(),
                        holds: Vec::new(),
                        fines_charged_minor: 0,
                        fines_paid_minor: 0,
                    };
                    tx.put(key, record.encode()?);
                    Ok(pb::RegisterMemberResponse { member: Some(record.to_proto()) })
                })
            })
            .await
    }

    /// Checkout.
    pub async fn checkout(
        &self,
        req: pb::CheckoutRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::CheckoutResponse> {
        validate::checkout(&req)?;
        authorize_member(caller, &req.member_id)?;
        self.idem
            .transact(&req.request_id, Fingerprint::of(&req), |tx| {
                let req = req.clone();
                Box::pin(async move {
                    let now = self.clock.now_ms();
                    let mut w = Work::new(tx, self.keys.clone());
                    let copy = w.copy(&req.barcode).await?.ok_or_else(|| copy_not_found(&req.barcode))?;
                    let mut title = w.title(&copy.isbn).await?.ok_or_else(|| orphan_copy(&copy))?;
                    if w.member(&req.member_id).await?.is_none() {
                        return Err(member_not_found(&req.member_id));
                    }
                    w.expire_pickups(&mut title, now).await?;
                    let mut copy = w.copy(&req.barcode).await?.ok_or_else(|| copy_not_found(&req.barcode))?;
                    match copy.status {
                        CopyStatus::Available => {}
                        CopyStatus::OnHoldShelf if copy.hold_for == req.member_id => {
                            // The member picks up their hold: it leaves the queue.
                            if let Some(index) = title.holds.iter().position(|h| h.member_id == req.member_id) {
                                w.remove_hold(&mut title, index, now, false).await?;
                            }
                        }
                        CopyStatus::OnHoldShelf => {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "copy {:?} is on the hold shelf for another member",
                                req.barcode
                            )));
                        }
                        CopyStatus::OnLoan if copy.borrower == req.member_id => {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "copy {:?} is already on loan to member {:?}",
                                req.barcode, req.member_id
                            )));
                        }
                        status => {
                            return Err(ServiceError::FailedPrecondition(format!(
                                "copy {:?} is {}",
                                req.barcode,
                                status.describe()
                            )));
                        }
                    }
                    let mut member = w.member(&req.member_id).await?.ok_or_else(|| member_not_found(&req.member_id))?;
                    if let Some(reason) = member.borrowing_blocked(now) {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "member {:?} cannot borrow: {reason}",
                            req.member_id
                        )));
                    }
                    let rules = policy::policy(member.member_type);
                    let loan = LoanEntry {
                        barcode: copy.barcode.clone(),
                        isbn: title.isbn.clone(),
                        title: title.title.clone(),
                        checkout_ms: now,
                        due_ms: rules.due_from(now),
                        renewals: 0,
                        fine_per_day_minor: rules.fine_per_day_minor,
                        fine_cap_minor: copy.replacement_cost_minor,
                        charged_minor: 0,
                    };
                    member.loans.push(loan.clone());
                    copy.clear_circulation();
                    copy.status = CopyStatus::OnLoan;
                    copy.borrower = req.member_id.clone();
                    copy.due_ms = loan.due_ms;
                    title.shelf.retain(|b| *b != copy.barcode);
                    w.put_member(member);
                    w.put_copy(copy.clone());
                    w.put_title(title);
                    w.flush()?;
                    Ok(pb::CheckoutResponse { loan: Some(loan.to_proto(now)), copy: Some(copy.to_proto()) })
                })
            })
            .await
    }

    /// Return.
    pub async fn return_copy(
        &self,
        req: pb::ReturnRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::ReturnResponse> {
        validate::return_copy(&req)?;
        self.idem
            .transact(&req.request_id, Fingerprint::of(&req), |tx| {
                let req = req.clone();
                Box::pin(async move {
                    let now = self.clock.now_ms();
                    let mut w = Work::new(tx, self.keys.clone());
                    let copy = w.copy(&req.barcode).await?.ok_or_else(|| copy_not_found(&req.barcode))?;
                    if copy.status != CopyStatus::OnLoan {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "copy {:?} is not on loan (it is {})",
                            req.barcode,
                            copy.status.describe()
                        )));
                    }
                    authorize_member(caller, &copy.borrower)?;
                    let mut title = w.title(&copy.isbn).await?.ok_or_else(|| orphan_copy(&copy))?;
                    w.expire_pickups(&mut title, now).await?;
                    let borrower = copy.borrower.clone();
                    let mut fine = 0;
                    if let Some(mut member) = w.member(&borrower).await? {
                        if let Some(index) = member.loans.iter().position(|l| l.barcode == req.barcode) {
                            let loan = member.loans.remove(index);
                            fine = loan.accruing(now);
                            member.fines_charged_minor = member.fines_charged_minor.saturating_add(fine);
                        }
                        w.put_member(member);
                    }
                    w.hand_on(&mut title, &req.barcode, now).await?;
                    w.put_title(title);
                    w.flush()?;
                    let copy = w.copy(&req.barcode).await?.ok_or_else(|| copy_not_found(&req.barcode))?;
                    Ok(pb::ReturnResponse { copy: Some(copy.to_proto()), borrower, fine_charged_minor: fine })
                })
            })
            .await
    }

    /// Renew.
    pub async fn renew(&self, req: pb::RenewRequest, caller: Option<&Caller>) -> ServiceResult<pb::RenewResponse> {
        validate::renew(&req)?;
        authorize_member(caller, &req.member_id)?;
        self.idem
            .transact(&req.request_id, Fingerprint::of(&req), |tx| {
                let req = req.clone();
                Box::pin(async move {
                    let now = self.clock.now_ms();
                    let mut w = Work::new(tx, self.keys.clone());
                    let mut copy = w.copy(&req.barcode).await?.ok_or_else(|| copy_not_found(&req.barcode))?;
                    if w.member(&req.member_id).await?.is_none() {
                        return Err(member_not_found(&req.member_id));
                    }
                    if copy.status != CopyStatus::OnLoan || copy.borrower != req.member_id {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "copy {:?} is not on loan to member {:?}",
                            req.barcode, req.member_id
                        )));
                    }
                    let mut title = w.title(&copy.isbn).await?.ok_or_else(|| orphan_copy(&copy))?;
                    w.expire_pickups(&mut title, now).await?;
                    let waiting = title.holds_waiting();
                    if waiting > 0 {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "cannot renew: {waiting} hold(s) waiting for title {}",
                            title.isbn
                        )));
                    }
                    let mut member = w.member(&req.member_id).await?.ok_or_else(|| member_not_found(&req.member_id))?;
                    let rules = policy::policy(member.member_type);
                    let Some(loan) = member.loans.iter_mut().find(|l| l.barcode == req.barcode) else {
                        return Err(ServiceError::Internal(format!(
                            "copy {:?} is on loan to {:?} but not in their loans",
                            req.barcode, req.member_id
                        )));
                    };
                    if loan.renewals >= MAX_RENEWALS {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "cannot renew: renewed {} times already (at most {MAX_RENEWALS})",
                            loan.renewals
                        )));
                    }
                    // An overdue loan's fine so far is charged, and the new period runs from now.
                    let fine = loan.accruing(now);
                    loan.charged_minor = loan.charged_minor.saturating_add(fine);
                    loan.due_ms = rules.due_from(loan.due_ms.max(now));
                    loan.renewals += 1;
                    let loan = loan.clone();
                    member.fines_charged_minor = member.fines_charged_minor.saturating_add(fine);
                    copy = w.copy(&req.barcode).await?.ok_or_else(|| copy_not_found(&req.barcode))?;
                    copy.due_ms = loan.due_ms;
                    copy.renewals = loan.renewals;
                    w.put_member(member);
                    w.put_copy(copy);
                    w.put_title(title);
                    w.flush()?;
                    Ok(pb::RenewResponse { loan: Some(loan.to_proto(now)) })
                })
            })
            .await
    }

    /// PlaceHold.
    pub async fn place_hold(
        &self,
        req: pb::PlaceHoldRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::PlaceHoldResponse> {
        let isbn = validate::place_hold(&req)?;
        authorize_member(caller, &req.member_id)?;
        self.idem
            .transact(&req.request_id, Fingerprint::of(&req), |tx| {
                let (req, isbn) = (req.clone(), isbn.clone());
                Box::pin(async move {
                    let now = self.clock.now_ms();
                    let mut w = Work::new(tx, self.keys.clone());
                    let mut title = w.title(&isbn).await?.ok_or_else(|| title_not_found(&isbn))?;
                    if w.member(&req.member_id).await?.is_none() {
                        return Err(member_not_found(&req.member_id));
                    }
                    w.expire_pickups(&mut title, now).await?;
                    let mut member = w.member(&req.member_id).await?.ok_or_else(|| member_not_found(&req.member_id))?;
                    if member.holds.contains(&isbn) {
                        return Err(ServiceError::AlreadyExists {
                            what: format!("hold of member {:?} on title {isbn}", req.member_id),
                        });
                    }
                    if member.loans.iter().any(|l| l.isbn == isbn) {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "member {:?} has a copy of title {isbn} on loan already",
                            req.member_id
                        )));
                    }
                    let limit = policy::policy(member.member_type).hold_limit;
                    if member.holds.len() >= limit {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "member {:?} cannot place a hold: hold limit reached ({limit} holds)",
                            req.member_id
                        )));
                    }
                    if title.holds.len() >= MAX_HOLDS_PER_TITLE {
                        return Err(ServiceError::ResourceExhausted(format!(
                            "title {isbn} has {MAX_HOLDS_PER_TITLE} holds, the most allowed"
                        )));
                    }
                    member.holds.push(isbn.clone());
                    w.put_member(member);
                    title.holds.push(HoldEntry {
                        member_id: req.member_id.clone(),
                        placed_ms: now,
                        barcode: None,
                        pickup_deadline_ms: 0,
                    });
                    // A copy on the shelf is set aside at once (no other hold waits, or it
                    // would not be on the shelf).
                    if let Some(barcode) = title.shelf.first().cloned() {
                        w.hand_on(&mut title, &barcode, now).await?;
                    }
                    let index = title.holds.len() - 1;
                    let hold = title.hold_proto(index);
                    w.put_title(title);
                    w.flush()?;
                    Ok(pb::PlaceHoldResponse { hold })
                })
            })
            .await
    }

    /// CancelHold.
    pub async fn cancel_hold(
        &self,
        req: pb::CancelHoldRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::CancelHoldResponse> {
        let isbn = validate::cancel_hold(&req)?;
        authorize_member(caller, &req.member_id)?;
        transact(&self.store, |tx| {
            let (req, isbn) = (req.clone(), isbn.clone());
            Box::pin(async move {
                let now = self.clock.now_ms();
                let mut w = Work::new(tx, self.keys.clone());
                let mut title = w.title(&isbn).await?.ok_or_else(|| title_not_found(&isbn))?;
                w.expire_pickups(&mut title, now).await?;
                let Some(index) = title.holds.iter().position(|h| h.member_id == req.member_id) else {
                    return Err(ServiceError::not_found(format!("hold of member {:?} on title {isbn}", req.member_id)));
                };
                w.remove_hold(&mut title, index, now, true).await?;
                w.put_title(title);
                w.flush()?;
                Ok(pb::CancelHoldResponse {})
            })
        })
        .await
    }

    /// PayFine.
    pub async fn pay_fine(
        &self,
        req: pb::PayFineRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::PayFineResponse> {
        validate::pay_fine(&req, &self.config.currency)?;
        authorize_member(caller, &req.member_id)?;
        self.idem
            .transact(&req.request_id, Fingerprint::of(&req), |tx| {
                let req = req.clone();
                Box::pin(async move {
                    let now = self.clock.now_ms();
                    let mut w = Work::new(tx, self.keys.clone());
                    let mut member = w.member(&req.member_id).await?.ok_or_else(|| member_not_found(&req.member_id))?;
                    let balance = member.balance();
                    if req.amount_minor > balance {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "the payment ({}) exceeds the charged fines not yet paid ({balance}); fines still \
                             accruing are charged when the copy is returned or renewed",
                            req.amount_minor
                        )));
                    }
                    member.fines_paid_minor = member.fines_paid_minor.saturating_add(req.amount_minor);
                    let owed = member.owed(now);
                    w.put_member(member);
                    w.flush()?;
                    Ok(pb::PayFineResponse { fines_owed_minor: owed })
                })
            })
            .await
    }

    /// Reads a title, settling a due pickup first (so a read never shows a missed pickup as
    /// still waiting).
    async fn read_title(&self, isbn: &str) -> ServiceResult<Option<TitleRecord>> {
        for _ in 0..4 {
            let Some(found) = self.store.get(&self.keys.title(isbn)).await? else { return Ok(None) };
            let title = TitleRecord::decode(&found.value)?;
            if !has_due_pickup(&title, self.clock.now_ms()) {
                return Ok(Some(title));
            }
            self.settle(isbn, None).await?;
        }
        Err(ServiceError::Unavailable(format!("title {isbn} keeps changing; retry")))
    }

    /// GetTitle. A caller who is neither staff nor anonymous sees the queue's positions but
    /// only their own member id in it.
    pub async fn get_title(
        &self,
        req: pb::GetTitleRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::GetTitleResponse> {
        let isbn = validate::get_title(&req)?;
        let title = self.read_title(&isbn).await?.ok_or_else(|| title_not_found(&isbn))?;
        let mut copies: Vec<pb::Copy> = futures::stream::iter(title.copies.clone())
            .map(|barcode| async move {
                match self.store.get(&self.keys.copy(&barcode)).await? {
                    Some(found) => Ok::<_, ServiceError>(Some(CopyRecord::decode(&found.value)?.to_proto())),
                    None => Ok(None),
                }
            })
            .buffer_unordered(READ_CONCURRENCY)
            .filter_map(|r| async move { r.transpose() })
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<ServiceResult<Vec<_>>>()?;
        copies.sort_by(|a, b| a.barcode.cmp(&b.barcode));
        let mut holds: Vec<pb::Hold> = (0..title.holds.len()).filter_map(|i| title.hold_proto(i)).collect();
        if let Some(c) = caller.filter(|c| !is_staff(c)) {
            for hold in holds.iter_mut().filter(|h| h.member_id != c.subject) {
                hold.member_id.clear();
            }
        }
        Ok(pb::GetTitleResponse { title: Some(title.to_proto()), copies, holds })
    }

    /// GetCopy.
    pub async fn get_copy(&self, req: pb::GetCopyRequest) -> ServiceResult<pb::GetCopyResponse> {
        validate::get_copy(&req)?;
        for _ in 0..4 {
            let found =
                self.store.get(&self.keys.copy(&req.barcode)).await?.ok_or_else(|| copy_not_found(&req.barcode))?;
            let copy = CopyRecord::decode(&found.value)?;
            if copy.status == CopyStatus::OnHoldShelf && copy.pickup_deadline_ms <= self.clock.now_ms() {
                self.settle(&copy.isbn, None).await?;
                continue;
            }
            return Ok(pb::GetCopyResponse { copy: Some(copy.to_proto()) });
        }
        Err(ServiceError::Unavailable(format!("copy {:?} keeps changing; retry", req.barcode)))
    }

    /// MemberAccount.
    pub async fn member_account(
        &self,
        req: pb::MemberAccountRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<pb::MemberAccountResponse> {
        validate::member_account(&req)?;
        authorize_member(caller, &req.member_id)?;
        let read_member = || async {
            let found = self
                .store
                .get(&self.keys.member(&req.member_id))
                .await?
                .ok_or_else(|| member_not_found(&req.member_id))?;
            Ok::<_, ServiceError>(MemberRecord::decode(&found.value)?)
        };
        let mut member = read_member().await?;
        // Settling a missed pickup removes that hold from the member: read the titles first,
        // then the member again.
        let mut titles = BTreeMap::new();
        for isbn in &member.holds {
            if let Some(title) = self.read_title(isbn).await? {
                titles.insert(isbn.clone(), title);
            }
        }
        let settled = titles.values().any(|t| !t.holds.iter().any(|h| h.member_id == req.member_id));
        if settled {
            member = read_member().await?;
        }
        let now = self.clock.now_ms();
        let mut loans: Vec<pb::Loan> = member.loans.iter().map(|l| l.to_proto(now)).collect();
        loans.sort_by_key(|l| (l.due_time.map(|t| t.seconds), l.barcode.clone()));
        let holds = member
            .holds
            .iter()
            .filter_map(|isbn| {
                let title = titles.get(isbn)?;
                let index = title.holds.iter().position(|h| h.member_id == req.member_id)?;
                title.hold_proto(index)
            })
            .collect();
        let rules = policy::policy(member.member_type);
        let (charged, accruing) = (member.balance(), member.accruing(now));
        Ok(pb::MemberAccountResponse {
            member: Some(member.to_proto()),
            loans,
            holds,
            fines_charged_minor: charged,
            fines_accruing_minor: accruing,
            fines_owed_minor: charged.saturating_add(accruing),
            currency: self.config.currency.clone(),
            loan_limit: rules.loan_limit as i32,
            max_owed_minor: rules.max_owed_minor,
            borrowing_blocked: member.borrowing_blocked(now).unwrap_or_default(),
        })
    }

    /// SearchCatalog: the index's ranked ISBNs, with each title read from the store for its
    /// current availability.
    pub async fn search(
        &self,
        index: &SearchIndex,
        req: pb::SearchCatalogRequest,
    ) -> ServiceResult<pb::SearchCatalogResponse> {
        let params = validate::search_catalog(&req)?;
        let found = index.search(params).await?;
        let hits: Vec<Option<pb::SearchHit>> = futures::stream::iter(found.hits)
            .map(|(isbn, score)| async move {
                let Some(stored) = self.store.get(&self.keys.title(&isbn)).await? else { return Ok(None) };
                let title = TitleRecord::decode(&stored.value)?.to_proto();
                Ok::<_, ServiceError>(Some(pb::SearchHit { title: Some(title), score }))
            })
            .buffered(READ_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<ServiceResult<_>>()?;
        // A title deleted since the index saw it is left out.
        let hits = hits.into_iter().flatten().collect();
        Ok(pb::SearchCatalogResponse { hits, total_size: found.total as i64, next_page_token: found.next_page_token })
    }

    /// Settles the missed pickups of title `isbn` in one transaction; `index_key`, a due
    /// deadline entry the sweeper found, is deleted when no hold stands behind it any more.
    pub async fn settle(&self, isbn: &str, index_key: Option<Vec<u8>>) -> ServiceResult<usize> {
        transact(&self.store, |tx| {
            let index_key = index_key.clone();
            Box::pin(async move {
                let now = self.clock.now_ms();
                let mut w = Work::new(tx.clone(), self.keys.clone());
                let Some(mut title) = w.title(isbn).await? else {
                    if let Some(key) = index_key {
                        tx.delete(key);
                    }
                    return Ok(0);
                };
                let expired = w.expire_pickups(&mut title, now).await?;
                if let Some(key) = index_key {
                    let live = title
                        .holds
                        .iter()
                        .any(|h| !h.is_waiting() && self.keys.pickup(h.pickup_deadline_ms, isbn, &h.member_id) == key);
                    if !live {
                        tx.delete(key);
                    }
                }
                if expired > 0 {
                    w.put_title(title);
                    w.flush()?;
                }
                Ok(expired)
            })
        })
        .await
    }

    /// Passes on the copies whose pickup deadline has come: one page of the due deadline index.
    /// Returns how many index entries it handled.
    pub async fn sweep_once(&self) -> ServiceResult<usize> {
        let now = self.clock.now_ms();
        let range = KeyRange::between(self.keys.pickups_prefix(), self.keys.pickups_after(now));
        let page = self.store.scan(range, self.config.sweep_batch, Direction::Forward).await?;
        let handled = page.entries.len();
        for entry in page.entries {
            match self.keys.pickup_isbn(&entry.key).map(str::to_string) {
                Some(isbn) => {
                    self.settle(&isbn, Some(entry.key)).await?;
                }
                None => {
                    self.store.write(vec![], vec![meshwork_storage::Mutation::delete(entry.key)]).await?;
                }
            }
        }
        Ok(handled)
    }

    /// Runs [`Library::sweep_once`] every sweep interval until the task is aborted.
    pub async fn sweep_task(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "library pickup sweep failed");
            }
        }
    }
}
