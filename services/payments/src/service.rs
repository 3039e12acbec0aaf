//! The payments domain over the Store, independent of gRPC: authorize, capture, void, refund,
//! read and list. Every call that moves money runs through [`Idempotency::transact`]: the
//! payment's change, its idempotency record and its event in the payments [`EventLog`] are one
//! atomic write, so a retried `request_id` answers the first answer and concurrent calls on
//! one payment serialize on its key (the rules of [`crate::rules`] then hold under any
//! interleaving). Failure and latency injection ([`Config`]) act before anything is read or
//! written, so an injected failure changes nothing and a retry may succeed.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use meshwork_common::caller::Caller;
use meshwork_common::paging::{PageToken, fingerprint};
use meshwork_common::settings::Settings;
use meshwork_common::{Clock, EventLog, Fingerprint, Idempotency, Record, ServiceError, ServiceResult};
use meshwork_proto::pb::payments::v1 as pb;
use meshwork_storage::{Condition, Direction, DynStore, KeyRange, Txn};
use prost::Message;
use rand::Rng;

use crate::keys;
use crate::model::PaymentRecord;
use crate::rules::{Ledger, RuleError};
use crate::validate::{self, Card, PAYMENT_ID_CHARS, PAYMENT_ID_PREFIX};

/// Payment records read at once when listing.
const LIST_READ_CONCURRENCY: usize = 16;

/// Event types of the payments log (the payload is the payment after the change, a prost
/// `meshwork.payments.v1.Payment`).
pub mod event_types {
    /// A payment was authorized (created).
    pub const AUTHORIZED: &str = "payment.authorized";
    /// A payment was captured.
    pub const CAPTURED: &str = "payment.captured";
    /// A payment was voided.
    pub const VOIDED: &str = "payment.voided";
    /// Part or the rest of a payment was refunded.
    pub const REFUNDED: &str = "payment.refunded";
}

/// Tunables of the simulator: injected failures and latency.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Share of Authorize/Capture/Void/Refund calls that fail with UNAVAILABLE before doing
    /// anything, 0.0 to 1.0.
    pub failure_rate: f64,
    /// Added before every Authorize/Capture/Void/Refund.
    pub latency: Duration,
}

impl Config {
    /// Reads `payments.failure_rate` and `payments.latency_ms` (the `meshwork up` flags); a
    /// rate outside 0..=1 is clamped into it.
    pub fn from_settings(settings: &Settings) -> Config {
        let rate: f64 = settings.get_or("payments.failure_rate", 0.0);
        let failure_rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
        Config { failure_rate, latency: Duration::from_millis(settings.get_or("payments.latency_ms", 0u64)) }
    }
}

impl From<RuleError> for ServiceError {
    fn from(e: RuleError) -> Self {
        ServiceError::FailedPrecondition(e.to_string())
    }
}

/// The payment processor simulator.
pub struct Payments {
    store: DynStore,
    clock: Arc<dyn Clock>,
    idempotency: Idempotency,
    events: EventLog,
    config: Config,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Payments {
    /// Returns the service on `store`, timed by `clock`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, config: Config) -> Self {
        Payments {
            idempotency: Idempotency::new(store.clone(), keys::SERVICE).with_clock(clock.clone()),
            events: EventLog::new(store.clone(), keys::SERVICE).with_clock(clock.clone()),
            store,
            clock,
            config,
        }
    }

    /// Returns the payments event log.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// Holds the request's amount on its card: a new AUTHORIZED payment. A declined card is
    /// FAILED_PRECONDITION and a failing processor UNAVAILABLE, both storing nothing.
    pub async fn authorize(&self, req: &pb::AuthorizeRequest, caller: Option<&Caller>) -> ServiceResult<pb::Payment> {
        let card = validate::authorize(req)?;
        may_act_for(caller, &req.user_id)?;
        self.inject().await?;
        match card {
            Card::Approves => {}
            Card::Declines => return Err(ServiceError::FailedPrecondition("card declined (tok_decline)".into())),
            Card::Fails => {
                return Err(ServiceError::Unavailable("the card processor is unavailable (tok_fail); retry".into()));
            }
        }
        let token_last4: String = {
            let chars: Vec<char> = req.payment_token.chars().collect();
            chars[chars.len().saturating_sub(4)..].iter().collect()
        };
        self.idempotency
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                let token_last4 = token_last4.clone();
                Box::pin(async move {
                    let now = self.clock.now_ms();
                    // A fresh id each attempt; the condition makes a (practically impossible)
                    // collision a conflict, which reruns this body with another id.
                    let payment_id = new_payment_id();
                    let key = keys::payment(&payment_id);
                    tx.require(Condition::Absent(key.clone()));
                    let ledger = Ledger::authorized(req.amount_minor);
                    let mut record = PaymentRecord {
                        payment_id: payment_id.clone(),
                        order_id: req.order_id.clone(),
                        user_id: req.user_id.clone(),
                        currency: req.currency.clone(),
                        authorized_minor: ledger.authorized_minor,
                        captured_minor: ledger.captured_minor,
                        refunded_minor: ledger.refunded_minor,
                        status: ledger.status,
                        token_last4,
                        create_time_ms: now,
                        update_time_ms: now,
                        version: 1,
                        sequence: 0,
                    };
                    let payment = record.to_proto();
                    record.sequence = self.events.append(&tx, event_types::AUTHORIZED, payment.encode_to_vec()).await?;
                    tx.put(key, record.encode()?);
                    tx.put(keys::by_time(record.sequence), payment_id.clone().into_bytes());
                    tx.put(keys::by_order(&record.order_id, record.sequence), payment_id.into_bytes());
                    Ok(payment)
                })
            })
            .await
    }

    /// Takes at most the authorized amount (0: all of it) from an AUTHORIZED payment, once.
    pub async fn capture(&self, req: &pb::CaptureRequest, caller: Option<&Caller>) -> ServiceResult<pb::Payment> {
        validate::capture(req)?;
        self.inject().await?;
        self.owned(&req.payment_id, caller).await?;
        self.idempotency
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                Box::pin(async move {
                    let record = self.load_in(&tx, &req.payment_id).await?;
                    let next = record.ledger().capture(req.amount_minor)?;
                    self.save(&tx, record.with_ledger(next, self.clock.now_ms()), event_types::CAPTURED).await
                })
            })
            .await
    }

    /// Cancels an AUTHORIZED payment; a VOIDED one is answered unchanged.
    pub async fn void(&self, req: &pb::VoidRequest, caller: Option<&Caller>) -> ServiceResult<pb::Payment> {
        validate::void(req)?;
        self.inject().await?;
        self.owned(&req.payment_id, caller).await?;
        self.idempotency
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                Box::pin(async move {
                    let record = self.load_in(&tx, &req.payment_id).await?;
                    match record.ledger().void()? {
                        Some(next) => {
                            self.save(&tx, record.with_ledger(next, self.clock.now_ms()), event_types::VOIDED).await
                        }
                        None => Ok(record.to_proto()),
                    }
                })
            })
            .await
    }

    /// Gives back at most what is captured and not refunded (0: all of that).
    pub async fn refund(&self, req: &pb::RefundRequest, caller: Option<&Caller>) -> ServiceResult<pb::Payment> {
        validate::refund(req)?;
        self.inject().await?;
        self.owned(&req.payment_id, caller).await?;
        self.idempotency
            .transact(&req.request_id, Fingerprint::of(req), |tx| {
                Box::pin(async move {
                    let record = self.load_in(&tx, &req.payment_id).await?;
                    let (next, _) = record.ledger().refund(req.amount_minor)?;
                    self.save(&tx, record.with_ledger(next, self.clock.now_ms()), event_types::REFUNDED).await
                })
            })
            .await
    }

    /// Returns one payment.
    pub async fn get(&self, req: &pb::GetPaymentRequest, caller: Option<&Caller>) -> ServiceResult<pb::Payment> {
        validate::get(req)?;
        Ok(self.owned(&req.payment_id, caller).await?.to_proto())
    }

    /// Returns a page of one order's payments (or of every payment), oldest first, and the
    /// token of the next page (empty at the end). A caller without the admin role sees only
    /// their own payments.
    pub async fn list(
        &self,
        req: &pb::ListPaymentsRequest,
        caller: Option<&Caller>,
    ) -> ServiceResult<(Vec<pb::Payment>, String)> {
        let page_size = validate::list(req)?;
        let prefix =
            if req.order_id.is_empty() { keys::by_time_prefix() } else { keys::by_order_prefix(&req.order_id) };
        let query = fingerprint(&[b"payments", &prefix]);
        let mut range = KeyRange::prefix(prefix.clone());
        if let Some(token) = PageToken::decode(&req.page_token, query)? {
            if !token.resume_key.starts_with(&prefix) {
                return Err(ServiceError::invalid("page_token", "is not a token returned by this query"));
            }
            range.start = Bound::Included(token.resume_key);
        }
        // One entry more than the page shows whether another page follows.
        let mut entries = self.store.scan(range, page_size + 1, Direction::Forward).await?.entries;
        let next = if entries.len() > page_size {
            let resume_key = entries.swap_remove(page_size).key;
            entries.truncate(page_size);
            PageToken { resume_key, fingerprint: query }.encode()
        } else {
            String::new()
        };
        let records: Vec<Option<PaymentRecord>> = futures::stream::iter(entries)
            .map(|entry| async move {
                let payment_id = String::from_utf8(entry.value)
                    .map_err(|_| ServiceError::Internal("a payments index entry is not UTF-8".into()))?;
                self.load(&payment_id).await
            })
            .buffered(LIST_READ_CONCURRENCY)
            .try_collect()
            .await?;
        let payments = records
            .into_iter()
            .flatten()
            .filter(|r| caller.is_none_or(|c| c.is_admin() || c.subject == r.user_id))
            .map(|r| r.to_proto())
            .collect();
        Ok((payments, next))
    }

    /// Sleeps the configured latency, then fails the configured share of calls.
    async fn inject(&self) -> ServiceResult<()> {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        if self.config.failure_rate > 0.0 && rand::rng().random_bool(self.config.failure_rate) {
            tracing::debug!(rate = self.config.failure_rate, "injected failure");
            return Err(ServiceError::Unavailable("injected failure".into()));
        }
        Ok(())
    }

    /// Returns the payment `payment_id` if `caller` may act on it: NOT_FOUND when there is
    /// none, PERMISSION_DENIED when it is someone else's and the caller is no admin.
    async fn owned(&self, payment_id: &str, caller: Option<&Caller>) -> ServiceResult<PaymentRecord> {
        let record = self.load(payment_id).await?.ok_or_else(|| not_found(payment_id))?;
        // A payment's user never changes, so this check outside the transaction holds in it.
        may_act_for(caller, &record.user_id)?;
        Ok(record)
    }

    /// Reads a payment record.
    async fn load(&self, payment_id: &str) -> ServiceResult<Option<PaymentRecord>> {
        match self.store.get(&keys::payment(payment_id)).await? {
            Some(v) => Ok(Some(PaymentRecord::decode(&v.value)?)),
            None => Ok(None),
        }
    }

    /// Reads a payment record through `tx`.
    async fn load_in(&self, tx: &Txn, payment_id: &str) -> ServiceResult<PaymentRecord> {
        match tx.get(&keys::payment(payment_id)).await? {
            Some(v) => Ok(PaymentRecord::decode(&v.value)?),
            None => Err(not_found(payment_id)),
        }
    }

    /// Buffers `record` and its event of `event_type` in `tx`; returns its wire form.
    async fn save(&self, tx: &Txn, record: PaymentRecord, event_type: &str) -> ServiceResult<pb::Payment> {
        let payment = record.to_proto();
        self.events.append(tx, event_type, payment.encode_to_vec()).await?;
        tx.put(keys::payment(&record.payment_id), record.encode()?);
        Ok(payment)
    }
}

/// Succeeds when the call is anonymous, by `user_id` itself, or by an admin.
fn may_act_for(caller: Option<&Caller>, user_id: &str) -> ServiceResult<()> {
    match caller {
        Some(c) if c.subject != user_id && !c.is_admin() => Err(ServiceError::PermissionDenied(format!(
            "{:?} may not act on payments of {:?}: that needs the admin role",
            c.subject, user_id
        ))),
        _ => Ok(()),
    }
}

fn not_found(payment_id: &str) -> ServiceError {
    ServiceError::not_found(format!("payment {payment_id:?}"))
}

/// Returns a new random payment id: `pay_` and 20 base62 characters (about 119 bits).
fn new_payment_id() -> String {
    meshwork_common::random_id(PAYMENT_ID_PREFIX, PAYMENT_ID_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_ids_are_well_formed_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_payment_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            validate::get(&pb::GetPaymentRequest { payment_id: id.clone() }).unwrap();
        }
    }

    #[test]
    fn settings_are_read_and_clamped() {
        let s = Settings::default().with("payments.failure_rate", "0.25").with("payments.latency_ms", "20");
        assert_eq!(Config::from_settings(&s), Config { failure_rate: 0.25, latency: Duration::from_millis(20) });
        let s = Settings::default().with("payments.failure_rate", "7");
        assert_eq!(Config::from_settings(&s).failure_rate, 1.0);
        assert_eq!(Config::from_settings(&Settings::default()), Config::default());
    }

    #[test]
    fn only_the_owner_or_an_admin_acts_for_a_user() {
        let alice = Caller { subject: "alice".into(), roles: vec![] };
        let admin = Caller { subject: "root".into(), roles: vec!["admin".into()] };
        assert!(may_act_for(None, "bob").is_ok());
        assert!(may_act_for(Some(&alice), "alice").is_ok());
        assert!(may_act_for(Some(&admin), "bob").is_ok());
        assert!(matches!(may_act_for(Some(&alice), "bob"), Err(ServiceError::PermissionDenied(_))));
    }
}
