//! The saga's I/O: the record in the store, the owner's lease, and the calls to carts,
//! inventory, orders and payments through the mesh. Every decision comes from
//! [`super::saga`]; this module carries them out.
//!
//! Ownership: a saga is driven by one process at a time, the one whose id is in the record's
//! `owner` with a `lease_until_ms` in the future. Every write of the record is conditional on
//! the version the driver last wrote, and renews the lease; while a call is in flight the
//! lease is renewed every [`RENEW_EVERY`]. A driver whose write conflicts lost the saga (its
//! lease ran out and another process took over) and stops. The recovery task of every replica
//! takes over sagas whose lease ran out (a crashed or stalled owner) and drives them to the
//! end.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::idempotency::{Claim, ClaimGuard, DEFAULT_TTL, Fingerprint, Idempotency};
use meshwork_common::mesh::{CallContext, MeshClient};
use meshwork_common::{Clock, EventLog, Record};
use meshwork_proto::pb::catalog::v1::carts_client::CartsClient;
use meshwork_proto::pb::catalog::v1::{
    Cart, ClearCartRequest, GetCartRequest, PlaceOrderRequest, PlaceOrderResponse, RemoveItemRequest, UpdateItemRequest,
};
use meshwork_proto::pb::inventory::v1::inventory_client::InventoryClient;
use meshwork_proto::pb::inventory::v1::{
    CommitReservationRequest, ReleaseReservationRequest, ReserveLine, ReserveRequest,
};
use meshwork_proto::pb::orders::v1::orders_client::OrdersClient;
use meshwork_proto::pb::orders::v1::{
    CreateOrderRequest, GetOrderRequest, OrderLine, OrderState, TransitionOrderRequest,
};
use meshwork_proto::pb::payments::v1::payments_client::PaymentsClient;
use meshwork_proto::pb::payments::v1::{
    AuthorizeRequest, CaptureRequest, GetPaymentRequest, ListPaymentsRequest, PaymentStatus, RefundRequest, VoidRequest,
};
use meshwork_storage::{Condition, Direction, DynStore, KeyRange, Mutation, StoreError, Txn, scan_all};
use prost::Message;
use rand::Rng;
use tracing::Instrument;

use super::keys;
use super::model::{AllocationSnapshot, LineSnapshot, NewSaga, SagaRecord, SagaState, Step, StepStatus};
use super::saga::{self, Action, Decision};
use super::validate::ID_CHARS;

/// How long a driver's lease on a saga holds without renewal.
pub const LEASE: Duration = Duration::from_secs(5);

/// How often a driver renews its lease while a call is in flight.
pub const RENEW_EVERY: Duration = Duration::from_millis(1500);

/// How often the recovery task looks for sagas whose owner is gone.
pub const RECOVER_EVERY: Duration = Duration::from_secs(1);

/// Longest time one call of a step may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an inventory hold lasts: far longer than a checkout takes, so that it only
/// expires when a saga was abandoned.
pub const HOLD_TTL: Duration = Duration::from_secs(15 * 60);

/// How long a duplicate PlaceOrder waits for the first call's answer when it set no deadline.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// How often a caller waiting for a saga driven elsewhere looks at its record.
const POLL: Duration = Duration::from_millis(100);

/// Why a driver stopped before the end.
#[derive(Debug)]
enum Stop {
    /// Another process took the saga over (this driver's lease ran out).
    Lost,
    /// The store failed.
    Failed(ServiceError),
}

impl From<ServiceError> for Stop {
    fn from(e: ServiceError) -> Self {
        Stop::Failed(e)
    }
}

/// A saga record held by this process, with the version of its last write.
struct Owned {
    rec: SagaRecord,
    version: u64,
}

/// What a step produced.
#[derive(Debug, Default)]
struct Produced {
    detail: String,
    reservation: Option<(String, Vec<AllocationSnapshot>)>,
    order_id: Option<String>,
    payment_id: Option<String>,
}

impl Produced {
    fn detail(detail: impl Into<String>) -> Self {
        Produced { detail: detail.into(), ..Produced::default() }
    }

    fn apply(self, rec: &mut SagaRecord) -> String {
        if let Some((id, allocations)) = self.reservation {
            rec.reservation_id = id;
            rec.allocations = allocations;
        }
        if let Some(id) = self.order_id {
            rec.order_id = id;
        }
        if let Some(id) = self.payment_id {
            rec.payment_id = id;
        }
        self.detail
    }
}

/// What undoing a step found.
#[derive(Debug)]
enum Undone {
    /// Its effects are gone (or it had none).
    Done,
    /// The void of the authorization found the payment captured: the saga went past its
    /// pivot after all.
    Captured(String),
}

/// How the calls of one drive are stamped: the deadline and trace of the PlaceOrder call
/// while it lasts, then (the caller gone, the saga not finished) the trace alone with
/// [`STEP_TIMEOUT`] per call.
#[derive(Debug, Clone)]
pub struct Calls {
    cx: CallContext,
}

impl Calls {
    /// Calls made on behalf of an incoming call.
    pub fn of(cx: CallContext) -> Self {
        Calls { cx }
    }

    /// Calls made by background work (recovery).
    pub fn background() -> Self {
        Calls { cx: CallContext::background() }
    }

    fn request<T: Clone>(&self, message: T) -> tonic::Request<T> {
        let (sent, timeout) = match self.cx.remaining() {
            None => (self.cx.outgoing(message.clone()), STEP_TIMEOUT),
            Some(left) if left > Duration::from_millis(20) => {
                (self.cx.outgoing(message.clone()), left.min(STEP_TIMEOUT))
            }
            // The caller is gone but the saga goes on: keep its trace, not its deadline.
            Some(_) => (CallContext::background().outgoing(message.clone()), STEP_TIMEOUT),
        };
        // `outgoing` fails only once a deadline has passed, which the branches above rule
        // out but for a race of a few milliseconds: then the call goes without the trace.
        let mut request = sent.unwrap_or_else(|_| tonic::Request::new(message));
        request.set_timeout(timeout);
        request
    }
}

/// Returns a new checkout id: `chk_` and 20 random base62 characters.
pub fn new_checkout_id() -> String {
    meshwork_common::random_id("chk_", ID_CHARS)
}

/// Checkout's state shared by the gRPC service and the recovery task.
pub struct Checkouts {
    store: DynStore,
    clock: Arc<dyn Clock>,
    mesh: MeshClient,
    events: EventLog,
    idem: Idempotency,
    /// This process's id in the records it owns.
    owner: String,
}

impl std::fmt::Debug for Checkouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkouts").field("owner", &self.owner).finish_non_exhaustive()
    }
}

fn upstream(service: &'static str) -> impl Fn(tonic::Status) -> ServiceError {
    move |status| ServiceError::from_upstream(service, &status)
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn jitter(d: Duration) -> Duration {
    let half = u64::try_from(d.as_millis() / 2).unwrap_or(0);
    d + Duration::from_millis(rand::rng().random_range(0..=half))
}

impl Checkouts {
    /// Returns the checkouts kept in `store`, calling other services through `mesh`.
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, mesh: MeshClient) -> Self {
        let owner = new_checkout_id().replacen("chk_", "drv_", 1);
        Checkouts {
            events: EventLog::new(store.clone(), "catalog").with_clock(clock.clone()),
            idem: Idempotency::new(store.clone(), keys::IDEMPOTENCY_SERVICE).with_clock(clock.clone()),
            store,
            clock,
            mesh,
            owner,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn lease_ms() -> i64 {
        i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX)
    }

    /// Returns the record of `checkout_id` (NOT_FOUND when there is none).
    pub async fn get(&self, checkout_id: &str) -> ServiceResult<SagaRecord> {
        match self.store.get(&keys::checkout(checkout_id)).await? {
            Some(found) => Ok(SagaRecord::decode(&found.value)?),
            None => Err(ServiceError::not_found(format!("checkout {checkout_id:?}"))),
        }
    }

    // ---- PlaceOrder -------------------------------------------------------------------

    /// Runs PlaceOrder (validated, caller checked): answers the checkout of `req.request_id`,
    /// starting it when it is new. The saga runs in a task of its own, so that it finishes
    /// even when the caller gives up; a caller whose deadline passes gets DEADLINE_EXCEEDED
    /// and the answer when it sends the same request again.
    pub async fn place_order(
        self: &Arc<Self>,
        req: PlaceOrderRequest,
        cx: CallContext,
    ) -> ServiceResult<PlaceOrderResponse> {
        let wait = cx.remaining_or(DEFAULT_WAIT);
        let guard = match self.idem.claim::<PlaceOrderResponse>(&req.request_id, Fingerprint::of(&req), wait).await? {
            Claim::Done(answer) => return Ok(answer),
            Claim::Owned(guard) => guard,
        };
        let this = self.clone();
        let calls = Calls::of(cx.clone());
        let run = async move { this.run_claimed(guard, req, calls).await }.instrument(tracing::Span::current());
        let task = tokio::spawn(run);
        let joined = match cx.remaining() {
            Some(left) => match tokio::time::timeout(left, task).await {
                Ok(joined) => joined,
                Err(_) => {
                    return Err(ServiceError::DeadlineExceeded(
                        "the checkout is still running; send the same request_id again for its answer".into(),
                    ));
                }
            },
            None => task.await,
        };
        joined.map_err(|e| ServiceError::Internal(format!("checkout task failed: {e}")))?
    }

    /// The owner of the claim on a request id: finds or starts its checkout, sees it to the
    /// end and records the answer.
    async fn run_claimed(
        self: Arc<Self>,
        guard: ClaimGuard,
        req: PlaceOrderRequest,
        calls: Calls,
    ) -> ServiceResult<PlaceOrderResponse> {
        match self.checkout_for(&req, &calls).await {
            Ok(rec) => {
                let answer = PlaceOrderResponse { checkout: Some(rec.to_proto()) };
                if let Err(e) = guard.complete(&answer).await {
                    // The claim was taken over meanwhile; the new owner answers the same record.
                    tracing::warn!(error = %e, "checkout answer not recorded");
                }
                Ok(answer)
            }
            Err(e) => {
                // Nothing is lost by giving the claim up: a retry finds the checkout through
                // its request mapping, or starts afresh when none was created.
                if let Err(release) = guard.release().await {
                    tracing::warn!(error = %release, "idempotency claim not released");
                }
                Err(e)
            }
        }
    }

    async fn checkout_for(&self, req: &PlaceOrderRequest, calls: &Calls) -> ServiceResult<SagaRecord> {
        // A takeover of a claim whose owner died: its checkout may exist already.
        if let Some(found) = self.store.get(&keys::request(&req.request_id)).await? {
            let checkout_id = String::from_utf8_lossy(&found.value).into_owned();
            return self.run_to_end(&checkout_id, calls).await;
        }
        let cart = self.read_cart(&req.user_id, calls).await?;
        if cart.lines.is_empty() {
            return Err(ServiceError::FailedPrecondition(format!(
                "the cart of user {:?} is empty: nothing to check out",
                req.user_id
            )));
        }
        let new = NewSaga {
            checkout_id: new_checkout_id(),
            request_id: req.request_id.clone(),
            user_id: req.user_id.clone(),
            lines: cart
                .lines
                .iter()
                .map(|l| LineSnapshot {
                    sku: l.sku.clone(),
                    title: l.title.clone(),
                    quantity: l.quantity,
                    unit_price_minor: l.unit_price_minor,
                })
                .collect(),
            currency: cart.currency.clone(),
            total_minor: cart.subtotal_minor,
            cart_version: cart.version,
            address: req.shipping_address.as_ref().map(Into::into).unwrap_or_default(),
            payment_token: req.payment_token.clone(),
        };
        let now = self.now();
        let rec = SagaRecord::new(new, &self.owner, now, now.saturating_add(Self::lease_ms()));
        let checkout_id = rec.checkout_id.clone();
        let created = self
            .store
            .write(
                vec![
                    Condition::Absent(keys::request(&req.request_id)),
                    Condition::Absent(keys::checkout(&checkout_id)),
                ],
                vec![
                    Mutation::put(keys::checkout(&checkout_id), rec.encode()?),
                    Mutation::put(keys::open(&checkout_id), Vec::new()),
                    Mutation::put_with_ttl(
                        keys::request(&req.request_id),
                        checkout_id.clone().into_bytes(),
                        DEFAULT_TTL,
                    ),
                ],
            )
            .await;
        match created {
            Ok(version) => {
                tracing::info!(checkout_id, user_id = %req.user_id, "checkout started");
                match self.drive(Owned { rec, version }, calls).await {
                    Ok(rec) => Ok(rec),
                    Err(Stop::Lost) => self.run_to_end(&checkout_id, calls).await,
                    Err(Stop::Failed(e)) => Err(e),
                }
            }
            Err(StoreError::Conflict { .. }) => match self.store.get(&keys::request(&req.request_id)).await? {
                Some(found) => self.run_to_end(&String::from_utf8_lossy(&found.value), calls).await,
                None => Err(ServiceError::Aborted("checkout id collision; retry".into())),
            },
            Err(e) => Err(e.into()),
        }
    }

    async fn read_cart(&self, user_id: &str, calls: &Calls) -> ServiceResult<Cart> {
        let mut carts = CartsClient::new(self.mesh.channel());
        let answer = carts
            .get_cart(calls.request(GetCartRequest { user_id: user_id.to_string() }))
            .await
            .map_err(upstream("carts"))?;
        answer.into_inner().cart.ok_or_else(|| ServiceError::Internal("carts answered no cart".into()))
    }

    /// Returns the finished record of `checkout_id`: drives it when its owner's lease ran out,
    /// otherwise waits for its owner (until the caller's deadline).
    async fn run_to_end(&self, checkout_id: &str, calls: &Calls) -> ServiceResult<SagaRecord> {
        let deadline = calls.cx.deadline();
        loop {
            let Some(found) = self.store.get(&keys::checkout(checkout_id)).await? else {
                return Err(ServiceError::not_found(format!("checkout {checkout_id:?}")));
            };
            let rec = SagaRecord::decode(&found.value)?;
            if rec.state.is_final() {
                return Ok(rec);
            }
            if rec.lease_until_ms <= self.now() {
                if let Some(owned) = self.take_over(rec, found.version).await? {
                    match self.drive(owned, calls).await {
                        Ok(rec) => return Ok(rec),
                        Err(Stop::Lost) => continue,
                        Err(Stop::Failed(e)) => return Err(e),
                    }
                }
                continue;
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() + POLL >= d) {
                return Err(ServiceError::DeadlineExceeded(format!(
                    "checkout {checkout_id} is still running; ask again for its answer"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Makes this process the saga's owner, if the record is still at `version`.
    async fn take_over(&self, mut rec: SagaRecord, version: u64) -> ServiceResult<Option<Owned>> {
        let previous = std::mem::take(&mut rec.owner);
        rec.owner = self.owner.clone();
        rec.lease_until_ms = self.now().saturating_add(Self::lease_ms());
        let key = keys::checkout(&rec.checkout_id);
        match self
            .store
            .write(vec![Condition::Version(key.clone(), version)], vec![Mutation::put(key, rec.encode()?)])
            .await
        {
            Ok(version) => {
                tracing::info!(checkout_id = %rec.checkout_id, previous, "took over an abandoned checkout saga");
                Ok(Some(Owned { rec, version }))
            }
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    // ---- the record ---------------------------------------------------------------------

    /// Writes the record (renewing the lease), if this driver still owns it.
    async fn save(&self, owned: &mut Owned) -> Result<(), Stop> {
        owned.rec.owner = self.owner.clone();
        owned.rec.lease_until_ms = self.now().saturating_add(Self::lease_ms());
        let key = keys::checkout(&owned.rec.checkout_id);
        let value = owned.rec.encode().map_err(ServiceError::from)?;
        let mut attempt = 0u32;
        loop {
            let write = self
                .store
                .write(
                    vec![Condition::Version(key.clone(), owned.version)],
                    vec![Mutation::put(key.clone(), value.clone())],
                )
                .await;
            match write {
                Ok(version) => {
                    owned.version = version;
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => return Err(Stop::Lost),
                Err(e) if e.is_retryable() && attempt < saga::MAX_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(jitter(saga::backoff(attempt))).await;
                }
                Err(e) => return Err(Stop::Failed(e.into())),
            }
        }
    }

    /// Writes the final record with its event, and takes it off the index of open sagas.
    async fn finalize(&self, owned: &mut Owned) -> Result<(), Stop> {
        let key = keys::checkout(&owned.rec.checkout_id);
        let value = owned.rec.encode().map_err(ServiceError::from)?;
        let event = match owned.rec.state {
            SagaState::Completed => "checkout.completed",
            _ => "checkout.failed",
        };
        let payload = owned.rec.to_proto().encode_to_vec();
        let mut attempt = 0u32;
        loop {
            let tx = Txn::new(self.store.clone());
            tx.require(Condition::Version(key.clone(), owned.version));
            tx.put(key.clone(), value.clone());
            tx.delete(keys::open(&owned.rec.checkout_id));
            self.events.append(&tx, event, payload.clone()).await?;
            match tx.commit().await {
                Ok(version) => {
                    owned.version = version;
                    tracing::info!(checkout_id = %owned.rec.checkout_id, event, "checkout finished");
                    return Ok(());
                }
                Err(e) if e.is_retryable() => {
                    // A conflict on the event log's head is another append; on the record, a
                    // takeover.
                    match self.store.get(&key).await {
                        Ok(Some(found)) if found.version != owned.version => return Err(Stop::Lost),
                        _ => {}
                    }
                    attempt = attempt.saturating_add(1);
                    if attempt > 50 {
                        return Err(Stop::Failed(e.into()));
                    }
                    tokio::time::sleep(jitter(saga::backoff(attempt.min(4)))).await;
                }
                Err(e) => return Err(Stop::Failed(e.into())),
            }
        }
    }

    /// Renews the lease while `work` runs; stops when the saga was taken over.
    async fn leased<F: Future>(&self, owned: &mut Owned, work: F) -> Result<F::Output, Stop> {
        tokio::pin!(work);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                _ = tick.tick() => self.save(owned).await?,
            }
        }
    }

    // ---- driving ------------------------------------------------------------------------

    /// Drives an owned saga to COMPLETED or FAILED.
    async fn drive(&self, mut owned: Owned, calls: &Calls) -> Result<SagaRecord, Stop> {
        let mut undo_attempts = 0u32;
        loop {
            let now = self.now();
            match saga::next_action(&owned.rec) {
                Action::Finish(state) => {
                    saga::finish(&mut owned.rec, state, now);
                    self.finalize(&mut owned).await?;
                    return Ok(owned.rec);
                }
                Action::Run(step) => {
                    // Written before the call: a process killed now leaves a record that says
                    // this step may have happened.
                    saga::begin_attempt(&mut owned.rec, step, now);
                    self.save(&mut owned).await?;
                    let snapshot = owned.rec.clone();
                    let result = self.leased(&mut owned, self.run_step(step, &snapshot, calls)).await?;
                    let now = self.now();
                    match result {
                        Ok(produced) => {
                            let detail = produced.apply(&mut owned.rec);
                            saga::step_done(&mut owned.rec, step, detail, now);
                        }
                        Err(e) => {
                            let attempts = owned.rec.step(step).map_or(1, |s| s.attempts);
                            tracing::info!(checkout_id = %owned.rec.checkout_id, step = step.name(), attempts, error = %e, "checkout step failed");
                            match saga::on_step_error(step, e.is_transient(), attempts) {
                                Decision::Retry(delay) => {
                                    saga::step_retrying(&mut owned.rec, step, e.to_string(), now);
                                    self.leased(&mut owned, tokio::time::sleep(jitter(delay))).await?;
                                }
                                Decision::Compensate => {
                                    let code = e.code() as i32;
                                    saga::step_failed(&mut owned.rec, step, code, e.to_string(), e.is_transient(), now);
                                }
                            }
                        }
                    }
                }
                Action::Undo(step) => {
                    owned.rec.update_ms = now;
                    self.save(&mut owned).await?;
                    let snapshot = owned.rec.clone();
                    let result = self.leased(&mut owned, self.undo_step(step, &snapshot, calls)).await?;
                    let now = self.now();
                    match result {
                        Ok(Undone::Captured(payment_id)) if saga::can_resume_after_capture(&owned.rec) => {
                            tracing::info!(checkout_id = %owned.rec.checkout_id, "payment found captured: going forward");
                            owned.rec.payment_id = payment_id.clone();
                            saga::resume_after_capture(&mut owned.rec, &payment_id, now);
                        }
                        Ok(_) => {
                            undo_attempts = 0;
                            saga::step_undone(&mut owned.rec, step, now);
                        }
                        Err(e) => {
                            // Compensations are retried until they succeed.
                            undo_attempts = undo_attempts.saturating_add(1);
                            tracing::info!(checkout_id = %owned.rec.checkout_id, step = step.name(), error = %e, "compensation failed; retrying");
                            let delay = jitter(saga::backoff(undo_attempts));
                            self.leased(&mut owned, tokio::time::sleep(delay)).await?;
                        }
                    }
                }
            }
        }
    }

    async fn run_step(&self, step: Step, rec: &SagaRecord, calls: &Calls) -> ServiceResult<Produced> {
        match step {
            Step::ReserveStock => self.reserve(rec, calls).await,
            Step::CreateOrder => {
                let order_id = self.create_order(rec, calls).await?;
                Ok(Produced { detail: order_id.clone(), order_id: Some(order_id), ..Produced::default() })
            }
            Step::AuthorizePayment => {
                let mut payments = PaymentsClient::new(self.mesh.channel());
                let answer = payments
                    .authorize(calls.request(AuthorizeRequest {
                        request_id: rec.request_id_of(step),
                        order_id: rec.order_id.clone(),
                        user_id: rec.user_id.clone(),
                        amount_minor: rec.total_minor,
                        currency: rec.currency.clone(),
                        payment_token: rec.payment_token.clone(),
                    }))
                    .await
                    .map_err(upstream("payments"))?;
                let payment_id = answer.into_inner().payment.map(|p| p.payment_id).unwrap_or_default();
                Ok(Produced { detail: payment_id.clone(), payment_id: Some(payment_id), ..Produced::default() })
            }
            Step::CapturePayment => {
                let mut payments = PaymentsClient::new(self.mesh.channel());
                payments
                    .capture(calls.request(CaptureRequest {
                        request_id: rec.request_id_of(step),
                        payment_id: rec.payment_id.clone(),
                        amount_minor: 0,
                    }))
                    .await
                    .map_err(upstream("payments"))?;
                Ok(Produced::detail(rec.payment_id.clone()))
            }
            Step::CommitStock => {
                let mut inventory = InventoryClient::new(self.mesh.channel());
                inventory
                    .commit_reservation(
                        calls.request(CommitReservationRequest { reservation_id: rec.reservation_id.clone() }),
                    )
                    .await
                    .map_err(upstream("inventory"))?;
                Ok(Produced::detail(rec.reservation_id.clone()))
            }
            Step::ConfirmOrder => self.confirm(rec, calls).await,
            Step::ClearCart => Ok(Produced::detail(self.clear_cart(rec, calls).await)),
        }
    }

    async fn reserve(&self, rec: &SagaRecord, calls: &Calls) -> ServiceResult<Produced> {
        let mut inventory = InventoryClient::new(self.mesh.channel());
        let answer = inventory
            .reserve(
                calls.request(ReserveRequest {
                    request_id: rec.request_id_of(Step::ReserveStock),
                    lines: rec
                        .lines
                        .iter()
                        .map(|l| ReserveLine { sku: l.sku.clone(), quantity: l.quantity, location: String::new() })
                        .collect(),
                    ttl: Some(prost_types::Duration {
                        seconds: i64::try_from(HOLD_TTL.as_secs()).unwrap_or(i64::MAX),
                        nanos: 0,
                    }),
                    reference: rec.checkout_id.clone(),
                }),
            )
            .await
            .map_err(upstream("inventory"))?;
        let reservation = answer
            .into_inner()
            .reservation
            .ok_or_else(|| ServiceError::Internal("inventory answered no reservation".into()))?;
        let allocations = reservation
            .allocations
            .iter()
            .map(|a| AllocationSnapshot { sku: a.sku.clone(), location: a.location.clone(), quantity: a.quantity })
            .collect();
        Ok(Produced {
            detail: reservation.reservation_id.clone(),
            reservation: Some((reservation.reservation_id, allocations)),
            ..Produced::default()
        })
    }

    async fn create_order(&self, rec: &SagaRecord, calls: &Calls) -> ServiceResult<String> {
        let mut orders = OrdersClient::new(self.mesh.channel());
        let answer = orders
            .create_order(
                calls.request(CreateOrderRequest {
                    request_id: rec.request_id_of(Step::CreateOrder),
                    user_id: rec.user_id.clone(),
                    lines: rec
                        .lines
                        .iter()
                        .map(|l| OrderLine {
                            sku: l.sku.clone(),
                            title: l.title.clone(),
                            quantity: l.quantity,
                            unit_price_minor: l.unit_price_minor,
                        })
                        .collect(),
                    currency: rec.currency.clone(),
                    shipping_address: Some((&rec.address).into()),
                    reservation_id: rec.reservation_id.clone(),
                    checkout_id: rec.checkout_id.clone(),
                }),
            )
            .await
            .map_err(upstream("orders"))?;
        answer
            .into_inner()
            .order
            .map(|o| o.order_id)
            .ok_or_else(|| ServiceError::Internal("orders answered no order".into()))
    }

    /// Moves the order to `to`; a refusal because it is there already (or, for CONFIRMED,
    /// beyond) counts as done.
    async fn transition(
        &self,
        order_id: &str,
        to: OrderState,
        reason: String,
        payment_id: String,
        calls: &Calls,
    ) -> ServiceResult<()> {
        let mut orders = OrdersClient::new(self.mesh.channel());
        let moved = orders
            .transition_order(calls.request(TransitionOrderRequest {
                order_id: order_id.to_string(),
                to: to as i32,
                expected_version: 0,
                reason,
                payment_id,
            }))
            .await;
        match moved {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                let order = orders
                    .get_order(calls.request(GetOrderRequest { order_id: order_id.to_string() }))
                    .await
                    .map_err(upstream("orders"))?
                    .into_inner()
                    .order
                    .unwrap_or_default();
                let now = OrderState::try_from(order.state).unwrap_or(OrderState::Unspecified);
                if saga::order_reached(now, to) { Ok(()) } else { Err(ServiceError::from_upstream("orders", &status)) }
            }
            Err(status) => Err(ServiceError::from_upstream("orders", &status)),
        }
    }

    async fn confirm(&self, rec: &SagaRecord, calls: &Calls) -> ServiceResult<Produced> {
        self.transition(&rec.order_id, OrderState::Confirmed, String::new(), rec.payment_id.clone(), calls).await?;
        Ok(Produced::detail(rec.order_id.clone()))
    }

    /// Takes the checked-out lines out of the cart: all of it when it did not change since
    /// the snapshot, else line by line (leaving what was added meanwhile). Best effort: the
    /// answer is the step's detail, never a failure.
    async fn clear_cart(&self, rec: &SagaRecord, calls: &Calls) -> String {
        let mut carts = CartsClient::new(self.mesh.channel());
        let user_id = rec.user_id.clone();
        let cleared = carts
            .clear_cart(
                calls.request(ClearCartRequest { user_id: user_id.clone(), expected_version: rec.cart_version }),
            )
            .await;
        match cleared {
            Ok(_) => return "cart cleared".into(),
            Err(status) if status.code() == tonic::Code::Aborted => {}
            Err(status) => return format!("cart not cleared: {}", status.message()),
        }
        let cart = match self.read_cart(&user_id, calls).await {
            Ok(cart) => cart,
            Err(e) => return format!("cart not cleared: {e}"),
        };
        let mut problems = Vec::new();
        for line in &rec.lines {
            let Some(now) = cart.lines.iter().find(|l| l.sku == line.sku) else { continue };
            let result = if now.quantity <= line.quantity {
                carts
                    .remove_item(calls.request(RemoveItemRequest { user_id: user_id.clone(), sku: line.sku.clone() }))
                    .await
                    .map(|_| ())
            } else {
                carts
                    .update_item(calls.request(UpdateItemRequest {
                        user_id: user_id.clone(),
                        sku: line.sku.clone(),
                        quantity: now.quantity - line.quantity,
                    }))
                    .await
                    .map(|_| ())
            };
            if let Err(status) = result {
                problems.push(format!("{}: {}", line.sku, status.message()));
            }
        }
        if problems.is_empty() {
            "checked-out lines removed (the cart changed meanwhile)".into()
        } else {
            format!("cart partly cleared: {}", problems.join("; "))
        }
    }

    // ---- compensations ------------------------------------------------------------------

    fn cancel_reason(rec: &SagaRecord) -> String {
        let why = match &rec.failure {
            Some(f) => format!("checkout {} failed at {}: {}", rec.checkout_id, f.step.name(), f.message),
            None => format!("checkout {} failed", rec.checkout_id),
        };
        truncate(&why, 500)
    }

    async fn undo_step(&self, step: Step, rec: &SagaRecord, calls: &Calls) -> ServiceResult<Undone> {
        let reason = Self::cancel_reason(rec);
        match step {
            Step::ReserveStock => {
                let reservation_id = if rec.reservation_id.is_empty() {
                    // The reservation's outcome is unknown: asking again with the same
                    // request_id answers it (or makes it, to be released right away).
                    match self.reserve(rec, calls).await {
                        Ok(produced) => produced.reservation.map(|(id, _)| id).unwrap_or_default(),
                        Err(e) if e.is_transient() => return Err(e),
                        Err(_) => return Ok(Undone::Done),
                    }
                } else {
                    rec.reservation_id.clone()
                };
                let mut inventory = InventoryClient::new(self.mesh.channel());
                let released = inventory
                    .release_reservation(calls.request(ReleaseReservationRequest { reservation_id, reason }))
                    .await
                    .map_err(upstream("inventory"));
                Self::settled(released.map(|_| ()), step, rec)
            }
            Step::CreateOrder => {
                let order_id = if rec.order_id.is_empty() {
                    match self.create_order(rec, calls).await {
                        Ok(id) => id,
                        Err(e) if e.is_transient() => return Err(e),
                        Err(_) => return Ok(Undone::Done),
                    }
                } else {
                    rec.order_id.clone()
                };
                let cancelled = self.transition(&order_id, OrderState::Cancelled, reason, String::new(), calls).await;
                Self::settled(cancelled, step, rec)
            }
            Step::AuthorizePayment => self.void(rec, calls).await,
            Step::CapturePayment => {
                let mut payments = PaymentsClient::new(self.mesh.channel());
                let refunded = payments
                    .refund(calls.request(RefundRequest {
                        request_id: format!("{}:refund", rec.checkout_id),
                        payment_id: rec.payment_id.clone(),
                        amount_minor: 0,
                        reason,
                    }))
                    .await
                    .map_err(upstream("payments"));
                match refunded {
                    Err(ServiceError::FailedPrecondition(_)) => {
                        let payment = self.payment(&rec.payment_id, calls).await?;
                        if payment.status != PaymentStatus::Refunded as i32 {
                            tracing::error!(checkout_id = %rec.checkout_id, payment_id = %rec.payment_id, status = payment.status, "captured payment could not be refunded");
                        }
                        Ok(Undone::Done)
                    }
                    other => Self::settled(other.map(|_| ()), step, rec),
                }
            }
            // Committed stock goes back with the order's cancellation (see `saga::needs_undo`).
            Step::CommitStock | Step::ConfirmOrder | Step::ClearCart => Ok(Undone::Done),
        }
    }

    /// Turns the answer of a compensation into its outcome: a transient error is retried; a
    /// permanent one cannot be fixed by retrying and is logged.
    fn settled(result: ServiceResult<()>, step: Step, rec: &SagaRecord) -> ServiceResult<Undone> {
        match result {
            Ok(()) => Ok(Undone::Done),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                tracing::warn!(checkout_id = %rec.checkout_id, step = step.name(), error = %e, "compensation refused; nothing more to undo");
                Ok(Undone::Done)
            }
        }
    }

    async fn payment(
        &self,
        payment_id: &str,
        calls: &Calls,
    ) -> ServiceResult<meshwork_proto::pb::payments::v1::Payment> {
        let mut payments = PaymentsClient::new(self.mesh.channel());
        payments
            .get_payment(calls.request(GetPaymentRequest { payment_id: payment_id.to_string() }))
            .await
            .map_err(upstream("payments"))?
            .into_inner()
            .payment
            .ok_or_else(|| ServiceError::Internal("payments answered no payment".into()))
    }

    /// Voids the authorization (every authorization of the order when its id is unknown). A
    /// payment found captured is reported: the saga went past its pivot after all.
    async fn void(&self, rec: &SagaRecord, calls: &Calls) -> ServiceResult<Undone> {
        if rec.step(Step::CapturePayment).is_some_and(|s| s.status == StepStatus::Done) {
            // The refund of the capture gave the money back; there is no authorization left.
            return Ok(Undone::Done);
        }
        let mut payments = PaymentsClient::new(self.mesh.channel());
        let payment_ids = if !rec.payment_id.is_empty() {
            vec![rec.payment_id.clone()]
        } else if rec.order_id.is_empty() {
            return Ok(Undone::Done);
        } else {
            let listed = payments
                .list_payments(calls.request(ListPaymentsRequest {
                    order_id: rec.order_id.clone(),
                    page_size: 100,
                    page_token: String::new(),
                }))
                .await
                .map_err(upstream("payments"))?;
            listed.into_inner().payments.into_iter().map(|p| p.payment_id).collect()
        };
        for payment_id in payment_ids {
            let voided = payments
                .void(calls.request(VoidRequest {
                    request_id: format!("{}:void:{payment_id}", rec.checkout_id),
                    payment_id: payment_id.clone(),
                }))
                .await
                .map_err(upstream("payments"));
            match voided {
                Ok(_) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    let payment = self.payment(&payment_id, calls).await?;
                    let status = PaymentStatus::try_from(payment.status).unwrap_or(PaymentStatus::Unspecified);
                    match status {
                        PaymentStatus::Voided => {}
                        PaymentStatus::Captured | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded => {
                            return Ok(Undone::Captured(payment_id));
                        }
                        _ => {
                            tracing::warn!(checkout_id = %rec.checkout_id, payment_id, error = %e, "authorization could not be voided");
                        }
                    }
                }
            }
        }
        Ok(Undone::Done)
    }

    // ---- recovery -----------------------------------------------------------------------

    /// Runs forever: at start and every [`RECOVER_EVERY`], takes over the unfinished sagas
    /// whose owner's lease ran out and drives each to its end in a task of its own.
    pub async fn recovery_task(self: Arc<Self>) {
        loop {
            if let Err(e) = self.recover_once().await {
                tracing::warn!(error = %e, "checkout recovery scan failed");
            }
            tokio::time::sleep(RECOVER_EVERY).await;
        }
    }

    /// Looks once at every unfinished saga; returns how many were taken over.
    pub async fn recover_once(self: &Arc<Self>) -> ServiceResult<usize> {
        let open = scan_all(&self.store, KeyRange::prefix(keys::OPEN_PREFIX), Direction::Forward).await?;
        let mut taken = 0;
        for entry in open {
            let Some(checkout_id) = keys::open_id(&entry.key) else { continue };
            let found = self.store.get(&keys::checkout(checkout_id)).await?;
            let Some(found) = found else {
                // An index entry without its record cannot be: they are written together.
                self.drop_index(&entry.key, entry.version).await;
                continue;
            };
            let rec = SagaRecord::decode(&found.value)?;
            if rec.state.is_final() {
                self.drop_index(&entry.key, entry.version).await;
                continue;
            }
            if rec.lease_until_ms > self.now() {
                continue;
            }
            if let Some(owned) = self.take_over(rec, found.version).await? {
                taken += 1;
                let this = self.clone();
                let span = tracing::info_span!("checkout.recover", checkout_id = %owned.rec.checkout_id);
                tokio::spawn(
                    async move {
                        match this.drive(owned, &Calls::background()).await {
                            Ok(rec) => tracing::info!(state = ?rec.state, "recovered checkout finished"),
                            Err(Stop::Lost) => tracing::info!("recovered checkout taken over by another process"),
                            Err(Stop::Failed(e)) => tracing::warn!(error = %e, "recovered checkout stopped"),
                        }
                    }
                    .instrument(span),
                );
            }
        }
        Ok(taken)
    }

    async fn drop_index(&self, key: &[u8], version: u64) {
        let delete = Mutation::delete(key.to_vec());
        if let Err(e) = self.store.write(vec![Condition::Version(key.to_vec(), version)], vec![delete]).await {
            tracing::debug!(error = %e, "stale checkout index entry not removed");
        }
    }
}
