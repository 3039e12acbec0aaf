//! What a cancellation or a return gives back, and the calls that do it. [`plan`] is pure:
//! from an order's snapshot it says which effects are due and not yet recorded (a REFUNDED
//! or RESTOCKED event). [`refund`] and [`put_back`] make the calls through the mesh with
//! deterministic `request_id`s, so running them again (the transition's own follow-up and the
//! event-log consumer may both run, a crash may repeat one) never refunds or restocks twice.
//!
//! - Cancelled from CREATED: the reservation's hold is released.
//! - Cancelled from CONFIRMED or PACKED, and RETURNED: the payment is refunded in full and the
//!   items go back to stock where the reservation took them from (AdjustStock RESTOCK per
//!   location); a reservation that was never committed is released instead.

use std::collections::BTreeMap;

use inv::inventory_client::InventoryClient;
use meshwork_common::mesh::CallContext;
use meshwork_common::{MeshClient, ServiceError, ServiceResult};
use meshwork_proto::pb::inventory::v1 as inv;
use meshwork_proto::pb::payments::v1 as pay;
use pay::payments_client::PaymentsClient;
use tonic::Code;

use crate::model::OrderRecord;
use crate::state::State;

/// The effects due for an order and not yet recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Refund this payment in full.
    pub refund: Option<String>,
    /// Put back the items of this reservation (release or restock).
    pub put_back: Option<String>,
}

impl Plan {
    /// Returns whether nothing is due.
    pub fn is_empty(&self) -> bool {
        self.refund.is_none() && self.put_back.is_none()
    }
}

/// Returns the effects due for `order` that no event records yet.
pub fn plan(order: &OrderRecord) -> Plan {
    let (refund_due, put_back_due) = match (order.state, order.cancelled_from) {
        (State::Cancelled, Some(State::Created)) => (false, true),
        (State::Cancelled, Some(State::Confirmed | State::Packed)) => (true, true),
        (State::Returned, _) => (true, true),
        _ => (false, false),
    };
    Plan {
        refund: (refund_due && !order.refunded && !order.payment_id.is_empty()).then(|| order.payment_id.clone()),
        put_back: (put_back_due && !order.restocked && !order.reservation_id.is_empty())
            .then(|| order.reservation_id.clone()),
    }
}

/// The base62 part of an order id: request ids sent to other services keep to
/// `[A-Za-z0-9.:-]`.
fn id_part(order_id: &str) -> &str {
    order_id.strip_prefix("ord_").unwrap_or(order_id)
}

/// Returns the `request_id` of an order's refund.
pub fn refund_request_id(order_id: &str) -> String {
    format!("ord-refund:{}", id_part(order_id))
}

/// Returns the `request_id` of an order's restock of `sku` at `location` (hashed: a sku and
/// a location may be 40 characters each, a request id at most 64).
pub fn restock_request_id(order_id: &str, sku: &str, location: &str) -> String {
    let h = fnv64(format!("{sku}\u{0}{location}").as_bytes());
    format!("ord-restock:{}:{h:016x}", id_part(order_id))
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Why the order gives things back, for notes and refund reasons.
fn why(order: &OrderRecord) -> String {
    match order.state {
        State::Returned => format!("order {} returned", order.order_id),
        _ => format!("order {} cancelled", order.order_id),
    }
}

/// Refunds `payment_id` in full for `order` and returns the amount the order has not yet
/// counted as refunded. A payment refunded already (by an earlier attempt) counts as done.
pub async fn refund(mesh: &MeshClient, cx: &CallContext, order: &OrderRecord, payment_id: &str) -> ServiceResult<i64> {
    let mut payments = PaymentsClient::new(mesh.channel());
    let request = pay::RefundRequest {
        request_id: refund_request_id(&order.order_id),
        payment_id: payment_id.to_string(),
        amount_minor: 0,
        reason: why(order),
    };
    let payment = match payments.refund(cx.outgoing(request)?).await {
        Ok(answer) => answer.into_inner().payment,
        Err(status) if status.code() == Code::FailedPrecondition => {
            // Nothing left to refund: fine if it is all refunded, else a real refusal.
            let got = payments
                .get_payment(cx.outgoing(pay::GetPaymentRequest { payment_id: payment_id.to_string() })?)
                .await
                .map_err(|s| ServiceError::from_upstream("payments", &s))?
                .into_inner()
                .payment;
            match got {
                Some(p) if p.status == pay::PaymentStatus::Refunded as i32 => Some(p),
                _ => return Err(ServiceError::from_upstream("payments", &status)),
            }
        }
        Err(status) => return Err(ServiceError::from_upstream("payments", &status)),
    };
    let refunded = payment.map(|p| p.refunded_minor).unwrap_or(0);
    Ok((refunded - order.refunded_minor).max(0))
}

/// Puts back the items of `reservation_id` for `order` and returns the units: a committed
/// reservation's allocations are restocked at their locations, a held one is released (a
/// released or expired one is answered again). Safe to repeat.
pub async fn put_back(
    mesh: &MeshClient,
    cx: &CallContext,
    order: &OrderRecord,
    reservation_id: &str,
) -> ServiceResult<i64> {
    let mut inventory = InventoryClient::new(mesh.channel());
    let upstream = |s: tonic::Status| ServiceError::from_upstream("inventory", &s);
    // Twice at most: a hold committed between the read and the release is restocked instead.
    for _ in 0..2 {
        let reservation = inventory
            .get_reservation(cx.outgoing(inv::GetReservationRequest { reservation_id: reservation_id.to_string() })?)
            .await
            .map_err(upstream)?
            .into_inner()
            .reservation
            .ok_or_else(|| ServiceError::Internal("inventory answered no reservation".into()))?;
        // One adjustment per (sku, location), so a request id never stands for two.
        let mut places: BTreeMap<(String, String), i64> = BTreeMap::new();
        for a in &reservation.allocations {
            *places.entry((a.sku.clone(), a.location.clone())).or_default() += a.quantity;
        }
        let units: i64 = places.values().sum();
        if reservation.state == inv::ReservationState::Committed as i32 {
            for ((sku, location), quantity) in places {
                let request = inv::AdjustStockRequest {
                    request_id: restock_request_id(&order.order_id, &sku, &location),
                    sku,
                    location,
                    delta: quantity,
                    reason: inv::AdjustReason::Restock as i32,
                    note: why(order),
                };
                inventory.adjust_stock(cx.outgoing(request)?).await.map_err(upstream)?;
            }
            return Ok(units);
        }
        let release = inv::ReleaseReservationRequest { reservation_id: reservation_id.to_string(), reason: why(order) };
        match inventory.release_reservation(cx.outgoing(release)?).await {
            Ok(_) => return Ok(units),
            Err(status) if status.code() == Code::FailedPrecondition => continue,
            Err(status) => return Err(upstream(status)),
        }
    }
    Err(ServiceError::Aborted(format!("reservation {reservation_id} kept changing while being put back")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Address;

    fn order(state: State, cancelled_from: Option<State>) -> OrderRecord {
        OrderRecord {
            order_id: "ord_0123456789abcdefghij".into(),
            user_id: "u".into(),
            state,
            lines: vec![],
            currency: "USD".into(),
            total_minor: 10,
            address: Address::default(),
            reservation_id: "res_r".into(),
            payment_id: "pay_p".into(),
            checkout_id: String::new(),
            version: 3,
            reason: String::new(),
            create_ms: 0,
            update_ms: 0,
            delivery_ms: 0,
            refunded_minor: 0,
            cancelled_from,
            refunded: false,
            restocked: false,
        }
    }

    #[test]
    fn what_is_due() {
        let full = Plan { refund: Some("pay_p".into()), put_back: Some("res_r".into()) };
        assert_eq!(plan(&order(State::Cancelled, Some(State::Confirmed))), full);
        assert_eq!(plan(&order(State::Cancelled, Some(State::Packed))), full);
        assert_eq!(plan(&order(State::Returned, None)), full);
        let mut unpaid = order(State::Cancelled, Some(State::Created));
        unpaid.payment_id.clear();
        assert_eq!(plan(&unpaid), Plan { refund: None, put_back: Some("res_r".into()) });
        for s in
            [State::Created, State::Confirmed, State::Packed, State::Shipped, State::Delivered, State::ReturnRequested]
        {
            assert!(plan(&order(s, None)).is_empty(), "{s}");
        }
        let mut done = order(State::Returned, None);
        done.refunded = true;
        assert_eq!(plan(&done), Plan { refund: None, put_back: Some("res_r".into()) });
        done.restocked = true;
        assert!(plan(&done).is_empty());
        let mut no_reservation = order(State::Returned, None);
        no_reservation.reservation_id.clear();
        assert_eq!(plan(&no_reservation).put_back, None);
    }

    #[test]
    fn request_ids_are_deterministic_short_and_plain() {
        let id = "ord_0123456789abcdefghij";
        assert_eq!(refund_request_id(id), "ord-refund:0123456789abcdefghij");
        let long = "A".repeat(40);
        let r = restock_request_id(id, &long, &"a".repeat(40));
        assert!(r.len() <= 64, "{r}");
        assert_eq!(r, restock_request_id(id, &long, &"a".repeat(40)));
        assert_ne!(restock_request_id(id, "AB", "c"), restock_request_id(id, "A", "Bc"));
        assert!(r.bytes().all(|b| b.is_ascii_alphanumeric() || b".:-".contains(&b)));
    }
}
