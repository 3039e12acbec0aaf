//! The current state of an order as a fold of its events, pure: [`apply`] one event to the
//! order before it, [`fold`] a whole history. The store keeps a snapshot of the fold for fast
//! reads, written in the same transaction as each event, so the two never disagree; a history
//! that does not fold (a gap, a move from a state the order was not in) is corrupt.

use crate::model::{EventBody, EventRecord, OrderRecord};
use crate::state::State;

/// Why a history does not fold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    /// No events at all.
    #[error("an order history has no events")]
    Empty,
    /// The first event is not the creation.
    #[error("order {order_id}: the first event (version {version}) is not its creation")]
    NotCreatedFirst { order_id: String, version: i64 },
    /// A second creation.
    #[error("order {order_id}: created again at version {version}")]
    CreatedAgain { order_id: String, version: i64 },
    /// Versions do not follow each other.
    #[error("order {order_id}: expected version {expected}, found {found}")]
    VersionGap { order_id: String, expected: i64, found: i64 },
    /// An event of another order.
    #[error("order {order_id}: an event of order {other} in its history")]
    OtherOrder { order_id: String, other: String },
    /// A state change from a state the order was not in.
    #[error("order {order_id}: version {version} moves from {from} but the order was {current}")]
    StateMismatch { order_id: String, version: i64, from: State, current: State },
}

/// Returns the order after `event`, given the order before it (`None` before the creation).
pub fn apply(order: Option<OrderRecord>, event: &EventRecord) -> Result<OrderRecord, FoldError> {
    let Some(mut order) = order else {
        let EventBody::Created { user_id, lines, currency, address, reservation_id, checkout_id } = &event.body else {
            return Err(FoldError::NotCreatedFirst { order_id: event.order_id.clone(), version: event.version });
        };
        if event.version != 1 {
            return Err(FoldError::VersionGap { order_id: event.order_id.clone(), expected: 1, found: event.version });
        }
        return Ok(OrderRecord {
            order_id: event.order_id.clone(),
            user_id: user_id.clone(),
            state: State::Created,
            total_minor: lines.iter().map(|l| l.quantity.saturating_mul(l.unit_price_minor)).sum(),
            lines: lines.clone(),
            currency: currency.clone(),
            address: address.as_ref().clone(),
            reservation_id: reservation_id.clone(),
            payment_id: String::new(),
            checkout_id: checkout_id.clone(),
            version: 1,
            reason: String::new(),
            create_ms: event.time_ms,
            update_ms: event.time_ms,
            delivery_ms: 0,
            refunded_minor: 0,
            cancelled_from: None,
            refunded: false,
            restocked: false,
        });
    };
    if event.order_id != order.order_id {
        return Err(FoldError::OtherOrder { order_id: order.order_id, other: event.order_id.clone() });
    }
    if event.version != order.version + 1 {
        return Err(FoldError::VersionGap {
            order_id: order.order_id,
            expected: order.version + 1,
            found: event.version,
        });
    }
    match &event.body {
        EventBody::Created { .. } => {
            return Err(FoldError::CreatedAgain { order_id: order.order_id, version: event.version });
        }
        EventBody::StateChanged { from, to, reason, payment_id } => {
            if *from != order.state {
                return Err(FoldError::StateMismatch {
                    order_id: order.order_id,
                    version: event.version,
                    from: *from,
                    current: order.state,
                });
            }
            order.state = *to;
            // The last reason given stays shown (a return's reason through RETURNED).
            if !reason.is_empty() {
                order.reason = reason.clone();
            }
            match to {
                State::Confirmed => order.payment_id = payment_id.clone(),
                State::Delivered => order.delivery_ms = event.time_ms,
                State::Cancelled => order.cancelled_from = Some(*from),
                _ => {}
            }
        }
        EventBody::Refunded { amount, .. } => {
            order.refunded_minor = order.refunded_minor.saturating_add(*amount);
            order.refunded = true;
        }
        EventBody::Restocked { .. } => order.restocked = true,
    }
    order.version = event.version;
    order.update_ms = event.time_ms;
    Ok(order)
}

/// Returns the order that `events` (oldest first) make.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a EventRecord>) -> Result<OrderRecord, FoldError> {
    let mut order = None;
    for event in events {
        order = Some(apply(order, event)?);
    }
    order.ok_or(FoldError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Line;

    fn event(version: i64, time_ms: i64, body: EventBody) -> EventRecord {
        EventRecord { order_id: "ord_a".into(), version, sequence: version as u64 * 10, time_ms, body }
    }

    fn created() -> EventRecord {
        event(
            1,
            100,
            EventBody::Created {
                user_id: "u1".into(),
                lines: vec![
                    Line { sku: "AAA".into(), title: "a".into(), quantity: 2, unit_price_minor: 150 },
                    Line { sku: "BBB".into(), title: "b".into(), quantity: 1, unit_price_minor: 99 },
                ],
                currency: "USD".into(),
                address: Box::default(),
                reservation_id: "res_1".into(),
                checkout_id: String::new(),
            },
        )
    }

    fn moved(version: i64, time_ms: i64, from: State, to: State, reason: &str, payment: &str) -> EventRecord {
        event(version, time_ms, EventBody::StateChanged { from, to, reason: reason.into(), payment_id: payment.into() })
    }

    #[test]
    fn a_cancelled_paid_order() {
        let history = vec![
            created(),
            moved(2, 200, State::Created, State::Confirmed, "", "pay_1"),
            moved(3, 300, State::Confirmed, State::Packed, "", ""),
            moved(4, 400, State::Packed, State::Cancelled, "changed my mind", ""),
            event(5, 500, EventBody::Refunded { payment_id: "pay_1".into(), amount: 399 }),
            event(6, 600, EventBody::Restocked { units: 3 }),
        ];
        let order = fold(&history).unwrap();
        assert_eq!(order.state, State::Cancelled);
        assert_eq!(order.total_minor, 399);
        assert_eq!(order.version, 6);
        assert_eq!(order.payment_id, "pay_1");
        assert_eq!(order.reason, "changed my mind");
        assert_eq!(order.cancelled_from, Some(State::Packed));
        assert_eq!(order.refunded_minor, 399);
        assert!(order.refunded && order.restocked);
        assert_eq!((order.create_ms, order.update_ms), (100, 600));
        // Folding step by step gives the same as folding at once.
        let mut step = None;
        for e in &history {
            step = Some(apply(step, e).unwrap());
        }
        assert_eq!(step.unwrap(), order);
    }

    #[test]
    fn delivery_time_and_reasons_stay() {
        let history = vec![
            created(),
            moved(2, 2, State::Created, State::Confirmed, "", "pay_1"),
            moved(3, 3, State::Confirmed, State::Packed, "", ""),
            moved(4, 4, State::Packed, State::Shipped, "", ""),
            moved(5, 5, State::Shipped, State::Delivered, "", ""),
            moved(6, 6, State::Delivered, State::ReturnRequested, "too small", ""),
            moved(7, 7, State::ReturnRequested, State::Returned, "", ""),
        ];
        let order = fold(&history).unwrap();
        assert_eq!(order.state, State::Returned);
        assert_eq!(order.delivery_ms, 5);
        assert_eq!(order.reason, "too small");
        assert_eq!(order.cancelled_from, None);
    }

    #[test]
    fn broken_histories_do_not_fold() {
        assert_eq!(fold(&[]), Err(FoldError::Empty));
        let first = moved(1, 1, State::Created, State::Confirmed, "", "");
        assert!(matches!(fold(&[first]), Err(FoldError::NotCreatedFirst { .. })));
        let gap = vec![created(), moved(3, 3, State::Created, State::Confirmed, "", "p")];
        assert!(matches!(fold(&gap), Err(FoldError::VersionGap { expected: 2, found: 3, .. })));
        let wrong_from = vec![created(), moved(2, 2, State::Packed, State::Shipped, "", "")];
        assert!(matches!(fold(&wrong_from), Err(FoldError::StateMismatch { .. })));
        let mut again = created();
        again.version = 2;
        assert!(matches!(fold(&[created(), again]), Err(FoldError::CreatedAgain { .. })));
        let mut other = moved(2, 2, State::Created, State::Confirmed, "", "p");
        other.order_id = "ord_b".into();
        assert!(matches!(fold(&[created(), other]), Err(FoldError::OtherOrder { .. })));
    }
}
