//! The orders service's domain operations over the store, independent of gRPC: creating an
//! order (idempotent by `request_id`), moving it through the state machine with optimistic
//! concurrency, reading it, its history and a user's orders, following the event log, and
//! completing the effects of cancellations and returns.
//!
//! Every change is one event and one store transaction: the event under
//! `orders/history/<id>/<version>`, the same event appended to the orders' event log
//! (transactional outbox; its sequence is the event's), and the new snapshot (the fold of the
//! history, for fast reads). The snapshot's version is what `expected_version` is checked
//! against, and two concurrent transitions conflict on it: one commits, the other re-reads,
//! finds a newer version and is ABORTED.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::caller::Caller;
use meshwork_common::mesh::CallContext;
use meshwork_common::paging::{PageToken, fingerprint};
use meshwork_common::{
    Clock, EventLog, Fingerprint, Idempotency, MeshClient, Record, ServiceContext, ServiceError, ServiceResult,
};
use meshwork_proto::pb::orders::v1 as pb;
use meshwork_proto::pb::payments::v1 as pay;
use meshwork_storage::{Direction, DynStore, KeyRange, Txn, scan_all, transact};
use pay::payments_client::PaymentsClient;
use pb::watch_orders_request::Target;
use prost::Message;

use crate::effects::{self, Plan};
use crate::fold;
use crate::model::{EventBody, EventRecord, OrderRecord};
use crate::state::{self, State};
use crate::{access, keys, validate, wire};

/// Tunables of the orders service.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long after delivery a return may be requested.
    pub return_window: Duration,
    /// Whether TransitionOrder runs a cancellation's or return's effects right after its
    /// commit (so its answer usually shows them).
    pub inline_effects: bool,
    /// Whether the event-log consumer that completes effects left undone runs.
    pub effects_consumer: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            return_window: Duration::from_millis(state::RETURN_WINDOW_MS as u64),
            inline_effects: true,
            effects_consumer: true,
        }
    }
}

/// Name of the consumer that completes effects.
pub const EFFECTS_CONSUMER: &str = "effects";

/// Orders read concurrently for one ListOrders page.
const LIST_CONCURRENCY: usize = 16;

/// The orders service.
pub struct Orders {
    store: DynStore,
    clock: Arc<dyn Clock>,
    log: EventLog,
    idem: Idempotency,
    mesh: MeshClient,
    config: Config,
}

/// Returns a new order id: `ord_` and 20 random base62 characters.
pub fn new_order_id() -> String {
    meshwork_common::random_id("ord_", 20)
}

fn corrupt(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

impl Orders {
    /// Returns the service on `ctx`'s store, clock and mesh.
    pub fn new(ctx: &ServiceContext, config: Config) -> Self {
        Orders {
            store: ctx.store.clone(),
            clock: ctx.clock.clone(),
            log: EventLog::new(ctx.store.clone(), keys::SERVICE).with_clock(ctx.clock.clone()),
            idem: Idempotency::new(ctx.store.clone(), keys::SERVICE).with_clock(ctx.clock.clone()),
            mesh: ctx.mesh.clone(),
            config,
        }
    }

    /// Returns the orders' event log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Returns the snapshot of `order_id`, or NOT_FOUND.
    async fn load(&self, order_id: &str) -> ServiceResult<OrderRecord> {
        match self.store.get(&keys::order(order_id)).await? {
            Some(v) => Ok(OrderRecord::decode(&v.value)?),
            None => Err(ServiceError::not_found(format!("order {order_id}"))),
        }
    }

    /// Reads the snapshot of `order_id` through `tx`, or NOT_FOUND.
    async fn load_in(tx: &Txn, order_id: &str) -> ServiceResult<OrderRecord> {
        match tx.get(&keys::order(order_id)).await? {
            Some(v) => Ok(OrderRecord::decode(&v.value)?),
            None => Err(ServiceError::not_found(format!("order {order_id}"))),
        }
    }

    /// Buffers `event` in `tx`: its history entry, its event-log entry and the new snapshot.
    /// Returns the order after it.
    async fn append(
        &self,
        tx: &Txn,
        before: Option<OrderRecord>,
        mut event: EventRecord,
    ) -> ServiceResult<OrderRecord> {
        let after = fold::apply(before, &event).map_err(corrupt)?;
        // The log entry carries the wire event (its sequence is the log's own, set on read).
        let payload = wire::event_to_pb(&event, &after).encode_to_vec();
        event.sequence = self.log.append(tx, event.body.log_type(), payload).await?;
        tx.put(keys::history(&event.order_id, event.version), event.encode()?);
        tx.put(keys::order(&after.order_id), after.encode()?);
        Ok(after)
    }

    /// Creates an order in CREATED; the same `request_id` with the same request answers the
    /// same order.
    pub async fn create(&self, caller: Option<&Caller>, req: pb::CreateOrderRequest) -> ServiceResult<pb::Order> {
        validate::create(&req)?;
        access::may_create(caller, &req.user_id)?;
        let fp = Fingerprint::of(&req);
        let req = &req;
        let answer: pb::CreateOrderResponse = self
            .idem
            .transact(&req.request_id, fp, |tx| {
                Box::pin(async move {
                    let order_id = new_order_id();
                    // Reading the key makes the commit require it absent (20 random base62
                    // characters do not collide, but a collision must never overwrite).
                    if tx.get(&keys::order(&order_id)).await?.is_some() {
                        return Err(ServiceError::Aborted("order id collision; retry".into()));
                    }
                    let now = self.clock.now_ms();
                    let event = EventRecord {
                        order_id: order_id.clone(),
                        version: 1,
                        sequence: 0,
                        time_ms: now,
                        body: EventBody::Created {
                            user_id: req.user_id.clone(),
                            lines: wire::lines_from_pb(&req.lines),
                            currency: req.currency.clone(),
                            address: Box::new(wire::address_from_pb(req.shipping_address.as_ref())),
                            reservation_id: req.reservation_id.clone(),
                            checkout_id: req.checkout_id.clone(),
                        },
                    };
                    let order = self.append(&tx, None, event).await?;
                    tx.put(keys::by_user(&req.user_id, now, &order_id), Vec::new());
                    Ok(pb::CreateOrderResponse { order: Some(wire::order_to_pb(&order)) })
                })
            })
            .await?;
        answer.order.ok_or_else(|| ServiceError::Internal("recorded CreateOrder answer without an order".into()))
    }

    /// Returns one order.
    pub async fn get(&self, caller: Option<&Caller>, order_id: &str) -> ServiceResult<pb::Order> {
        validate::order_id("order_id", order_id)?;
        let order = self.load(order_id).await?;
        access::may_read(caller, &order.user_id)?;
        Ok(wire::order_to_pb(&order))
    }

    /// Returns a page of a user's orders, newest first, and the next page's token.
    pub async fn list(
        &self,
        caller: Option<&Caller>,
        req: &pb::ListOrdersRequest,
    ) -> ServiceResult<(Vec<pb::Order>, String)> {
        let size = validate::list(req)?;
        let fp = fingerprint(&[b"orders", req.user_id.as_bytes()]);
        let token = PageToken::decode(&req.page_token, fp)?;
        access::may_read(caller, &req.user_id)?;
        let mut range = KeyRange::prefix(keys::by_user_prefix(&req.user_id));
        if let Some(token) = token {
            if !range.contains(&token.resume_key) {
                return Err(ServiceError::invalid("page_token", "is not a token returned by this query"));
            }
            range.start = std::ops::Bound::Included(token.resume_key);
        }
        // One entry more than the page shows whether another page follows.
        let mut entries = self.store.scan(range, size + 1, Direction::Forward).await?.entries;
        let next = if entries.len() > size {
            let resume_key = entries.swap_remove(size).key;
            entries.truncate(size);
            PageToken { resume_key, fingerprint: fp }.encode()
        } else {
            String::new()
        };
        let ids: Vec<String> =
            entries.iter().filter_map(|e| keys::order_id_of_index(&e.key)).map(str::to_string).collect();
        let loaded: Vec<ServiceResult<OrderRecord>> = futures::stream::iter(ids)
            .map(|id| async move { self.load(&id).await })
            .buffered(LIST_CONCURRENCY)
            .collect()
            .await;
        let mut orders = Vec::with_capacity(loaded.len());
        for order in loaded {
            match order {
                Ok(o) => orders.push(wire::order_to_pb(&o)),
                // An index entry is written with its order; a missing order is skipped.
                Err(ServiceError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((orders, next))
    }

    /// Returns every event of an order, oldest first, each with the order after it.
    pub async fn history(&self, caller: Option<&Caller>, order_id: &str) -> ServiceResult<Vec<pb::OrderEvent>> {
        validate::order_id("order_id", order_id)?;
        let order = self.load(order_id).await?;
        access::may_read(caller, &order.user_id)?;
        let entries =
            scan_all(&self.store, KeyRange::prefix(keys::history_prefix(order_id)), Direction::Forward).await?;
        let events = entries.iter().map(|e| EventRecord::decode(&e.value)).collect::<Result<Vec<_>, _>>()?;
        wire::history_to_pb(&events).map_err(corrupt)
    }

    /// Checks that `payment_id` is a captured payment in the order's currency.
    async fn verify_payment(&self, cx: &CallContext, order: &OrderRecord, payment_id: &str) -> ServiceResult<()> {
        let mut payments = PaymentsClient::new(self.mesh.channel());
        let payment = payments
            .get_payment(cx.outgoing(pay::GetPaymentRequest { payment_id: payment_id.to_string() })?)
            .await
            .map_err(|s| ServiceError::from_upstream("payments", &s))?
            .into_inner()
            .payment
            .ok_or_else(|| ServiceError::Internal("payments answered no payment".into()))?;
        if payment.status != pay::PaymentStatus::Captured as i32 {
            let status = pay::PaymentStatus::try_from(payment.status).map(|s| s.as_str_name()).unwrap_or("unknown");
            return Err(ServiceError::FailedPrecondition(format!(
                "payment {payment_id} is {status}: an order is confirmed with a captured payment"
            )));
        }
        if payment.currency != order.currency {
            return Err(ServiceError::FailedPrecondition(format!(
                "payment {payment_id} is in {}, the order in {}",
                payment.currency, order.currency
            )));
        }
        Ok(())
    }

    /// Moves an order to another state and, for a cancellation or a return, completes what it
    /// gives back (refund, restock) before answering when it can; the effects consumer
    /// completes them otherwise.
    pub async fn transition(
        &self,
        caller: Option<&Caller>,
        cx: &CallContext,
        req: &pb::TransitionOrderRequest,
    ) -> ServiceResult<pb::Order> {
        let to = validate::transition(req)?;
        let seen = self.load(&req.order_id).await?;
        access::may_transition(caller, &seen.user_id, to)?;
        if to == State::Confirmed && seen.state == State::Created {
            self.verify_payment(cx, &seen, &req.payment_id).await?;
        }
        let window_ms = i64::try_from(self.config.return_window.as_millis()).unwrap_or(i64::MAX);
        let order = transact(&self.store, |tx| {
            Box::pin(async move {
                let order = Self::load_in(&tx, &req.order_id).await?;
                if req.expected_version != 0 && order.version != req.expected_version {
                    return Err(ServiceError::Aborted(format!(
                        "order {} is at version {}, not {} (it changed since it was read)",
                        order.order_id, order.version, req.expected_version
                    )));
                }
                let now = self.clock.now_ms();
                state::check(order.state, to, order.delivery_ms, now, window_ms)
                    .map_err(|e| ServiceError::FailedPrecondition(format!("order {}: {e}", order.order_id)))?;
                let event = EventRecord {
                    order_id: order.order_id.clone(),
                    version: order.version + 1,
                    sequence: 0,
                    time_ms: now,
                    body: EventBody::StateChanged {
                        from: order.state,
                        to,
                        reason: req.reason.clone(),
                        payment_id: if to == State::Confirmed { req.payment_id.clone() } else { String::new() },
                    },
                };
                self.append(&tx, Some(order), event).await
            })
        })
        .await?;
        if self.config.inline_effects && !effects::plan(&order).is_empty() {
            match self.complete_effects(cx, &order.order_id).await {
                Ok(Some(done)) => return Ok(wire::order_to_pb(&done)),
                Ok(None) => {}
                // Committed all the same: the consumer finishes the effects.
                Err(e) => tracing::warn!(error = %e, order_id = %order.order_id, "order effects left to the consumer"),
            }
        }
        Ok(wire::order_to_pb(&order))
    }

    /// Records an effect's event unless one of its kind is recorded already (the other path
    /// got there first); returns the order after.
    async fn record_effect(&self, order_id: &str, body: EventBody) -> ServiceResult<OrderRecord> {
        let body = &body;
        transact(&self.store, |tx| {
            Box::pin(async move {
                let order = Self::load_in(&tx, order_id).await?;
                let done = match body {
                    EventBody::Refunded { .. } => order.refunded,
                    EventBody::Restocked { .. } => order.restocked,
                    _ => false,
                };
                if done {
                    return Ok(order);
                }
                let now = self.clock.now_ms().max(order.update_ms);
                let event = EventRecord {
                    order_id: order.order_id.clone(),
                    version: order.version + 1,
                    sequence: 0,
                    time_ms: now,
                    body: body.clone(),
                };
                self.append(&tx, Some(order), event).await
            })
        })
        .await
    }

    /// Runs the effects due for `order_id` (see [`effects::plan`]) and records each as an
    /// event. Returns the order after them, or `None` when nothing was due. Every effect is
    /// tried; the first failure is returned.
    pub async fn complete_effects(&self, cx: &CallContext, order_id: &str) -> ServiceResult<Option<OrderRecord>> {
        let order = self.load(order_id).await?;
        let Plan { refund, put_back } = effects::plan(&order);
        if refund.is_none() && put_back.is_none() {
            return Ok(None);
        }
        let mut latest = order.clone();
        let mut first_error = None;
        if let Some(payment_id) = refund {
            match effects::refund(&self.mesh, cx, &order, &payment_id).await {
                Ok(amount) => {
                    latest = self.record_effect(order_id, EventBody::Refunded { payment_id, amount }).await?;
                }
                Err(e) => first_error = Some(e),
            }
        }
        if let Some(reservation_id) = put_back {
            match effects::put_back(&self.mesh, cx, &order, &reservation_id).await {
                Ok(units) => latest = self.record_effect(order_id, EventBody::Restocked { units }).await?,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(Some(latest)),
        }
    }

    /// Follows the orders' event log from its checkpoint and completes the effects of every
    /// cancellation and return (those a crash between commit and effect left undone).
    /// Transient failures are retried on the same event; a permanent one (a payment that
    /// cannot be refunded) is logged and passed, so that it does not hold back the rest.
    pub async fn run_effects_consumer(&self) -> ServiceResult<()> {
        let consumer = self.log.consumer(EFFECTS_CONSUMER);
        consumer
            .run(|event| {
                Box::pin(async move {
                    let wire = match pb::OrderEvent::decode(event.payload.as_slice()) {
                        Ok(w) => w,
                        Err(e) => {
                            tracing::error!(error = %e, sequence = event.sequence, "undecodable order event passed");
                            return Ok(());
                        }
                    };
                    let gives_back = wire.r#type == pb::OrderEventType::StateChanged as i32
                        && (wire.to == pb::OrderState::Cancelled as i32 || wire.to == pb::OrderState::Returned as i32);
                    if !gives_back {
                        return Ok(());
                    }
                    match self.complete_effects(&CallContext::background(), &wire.order_id).await {
                        Ok(_) => Ok(()),
                        Err(e) if e.is_transient() => Err(e),
                        Err(e) => {
                            tracing::error!(error = %e, order_id = %wire.order_id, "order effects failed for good");
                            Ok(())
                        }
                    }
                })
            })
            .await
    }

    /// Returns the events of a user's or an order's orders from `from_sequence` on (0: from
    /// now on), then live, each with its log sequence.
    pub async fn watch(
        &self,
        caller: Option<&Caller>,
        req: &pb::WatchOrdersRequest,
    ) -> ServiceResult<BoxStream<'static, ServiceResult<pb::OrderEvent>>> {
        let target = validate::watch(req)?;
        match &target {
            Target::UserId(user) => access::may_read(caller, user)?,
            Target::OrderId(id) => access::may_read(caller, &self.load(id).await?.user_id)?,
        }
        let from = match req.from_sequence {
            0 => self.log.head().await? + 1,
            n => n,
        };
        let stream = self.log.follow(from).filter_map(move |item| {
            let target = target.clone();
            async move {
                let event = match item {
                    Ok(event) => event,
                    Err(e) => return Some(Err(e)),
                };
                let mut wire = match pb::OrderEvent::decode(event.payload.as_slice()) {
                    Ok(w) => w,
                    Err(e) => return Some(Err(corrupt(format!("undecodable order event {}: {e}", event.sequence)))),
                };
                let wanted = match &target {
                    Target::UserId(user) => wire.user_id == *user,
                    Target::OrderId(id) => wire.order_id == *id,
                };
                wanted.then(|| {
                    wire.sequence = event.sequence;
                    Ok(wire)
                })
            }
        });
        Ok(Box::pin(stream))
    }
}
