//! Conversions between the stored records and the wire types of `meshwork.orders.v1`, and
//! [`fold_history`]: the fold of an order's history as `GetOrderHistory` returns it, so that a
//! client (or a test) can rebuild an order from its events alone.

use meshwork_common::fields::timestamp;
use meshwork_common::fields::timestamp_opt;
use meshwork_proto::pb::orders::v1 as pb;

use crate::fold::{self, FoldError};
use crate::model::{Address, EventBody, EventRecord, Line, OrderRecord};
use crate::state::State;

/// Returns the wire state of `s`.
pub fn state_to_pb(s: State) -> pb::OrderState {
    match s {
        State::Created => pb::OrderState::Created,
        State::Confirmed => pb::OrderState::Confirmed,
        State::Packed => pb::OrderState::Packed,
        State::Shipped => pb::OrderState::Shipped,
        State::Delivered => pb::OrderState::Delivered,
        State::Cancelled => pb::OrderState::Cancelled,
        State::ReturnRequested => pb::OrderState::ReturnRequested,
        State::Returned => pb::OrderState::Returned,
    }
}

/// Returns the state of a wire state; `None` for UNSPECIFIED.
pub fn state_from_pb(s: pb::OrderState) -> Option<State> {
    Some(match s {
        pb::OrderState::Unspecified => return None,
        pb::OrderState::Created => State::Created,
        pb::OrderState::Confirmed => State::Confirmed,
        pb::OrderState::Packed => State::Packed,
        pb::OrderState::Shipped => State::Shipped,
        pb::OrderState::Delivered => State::Delivered,
        pb::OrderState::Cancelled => State::Cancelled,
        pb::OrderState::ReturnRequested => State::ReturnRequested,
        pb::OrderState::Returned => State::Returned,
    })
}

/// Returns the lines of a (validated) request.
pub fn lines_from_pb(lines: &[pb::OrderLine]) -> Vec<Line> {
    lines
        .iter()
        .map(|l| Line {
            sku: l.sku.clone(),
            title: l.title.clone(),
            quantity: l.quantity,
            unit_price_minor: l.unit_price_minor,
        })
        .collect()
}

/// Returns the address of a (validated) request.
pub fn address_from_pb(a: Option<&pb::Address>) -> Address {
    a.map(|a| Address {
        name: a.name.clone(),
        line1: a.line1.clone(),
        line2: a.line2.clone(),
        city: a.city.clone(),
        region: a.region.clone(),
        postal_code: a.postal_code.clone(),
        country: a.country.clone(),
    })
    .unwrap_or_default()
}

/// Returns the wire form of an order.
pub fn order_to_pb(o: &OrderRecord) -> pb::Order {
    pb::Order {
        order_id: o.order_id.clone(),
        user_id: o.user_id.clone(),
        state: state_to_pb(o.state) as i32,
        lines: o
            .lines
            .iter()
            .map(|l| pb::OrderLine {
                sku: l.sku.clone(),
                title: l.title.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
            })
            .collect(),
        currency: o.currency.clone(),
        total_minor: o.total_minor,
        shipping_address: Some(pb::Address {
            name: o.address.name.clone(),
            line1: o.address.line1.clone(),
            line2: o.address.line2.clone(),
            city: o.address.city.clone(),
            region: o.address.region.clone(),
            postal_code: o.address.postal_code.clone(),
            country: o.address.country.clone(),
        }),
        reservation_id: o.reservation_id.clone(),
        payment_id: o.payment_id.clone(),
        checkout_id: o.checkout_id.clone(),
        version: o.version,
        reason: o.reason.clone(),
        create_time: Some(timestamp(o.create_ms)),
        update_time: Some(timestamp(o.update_ms)),
        delivery_time: timestamp_opt(o.delivery_ms),
        refunded_minor: o.refunded_minor,
    }
}

/// Returns the wire form of `event`, given the order right after it.
pub fn event_to_pb(event: &EventRecord, after: &OrderRecord) -> pb::OrderEvent {
    let (kind, from, to, reason, amount) = match &event.body {
        EventBody::Created { .. } => (pb::OrderEventType::OrderCreated, None, Some(State::Created), String::new(), 0),
        EventBody::StateChanged { from, to, reason, .. } => {
            (pb::OrderEventType::StateChanged, Some(*from), Some(*to), reason.clone(), 0)
        }
        EventBody::Refunded { amount, .. } => (pb::OrderEventType::Refunded, None, None, String::new(), *amount),
        EventBody::Restocked { units } => (pb::OrderEventType::Restocked, None, None, String::new(), *units),
    };
    let wire = |s: Option<State>| s.map(|s| state_to_pb(s) as i32).unwrap_or(0);
    pb::OrderEvent {
        sequence: event.sequence,
        order_id: event.order_id.clone(),
        user_id: after.user_id.clone(),
        version: event.version,
        r#type: kind as i32,
        from: wire(from),
        to: wire(to),
        reason,
        time: Some(timestamp(event.time_ms)),
        order: Some(order_to_pb(after)),
        amount,
    }
}

/// Returns the wire forms of an order's events (oldest first), each with the order after it.
pub fn history_to_pb(events: &[EventRecord]) -> Result<Vec<pb::OrderEvent>, FoldError> {
    let mut order = None;
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let after = fold::apply(order, event)?;
        out.push(event_to_pb(event, &after));
        order = Some(after);
    }
    Ok(out)
}

fn ms(ts: &Option<prost_types::Timestamp>) -> i64 {
    ts.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000)).unwrap_or(0)
}

/// Returns the stored form of a wire event (what [`event_to_pb`] made), reading from the
/// order it carries only what the event itself stands for: a creation's order, a
/// confirmation's payment id and a refund's payment id.
pub fn event_from_pb(e: &pb::OrderEvent) -> Result<EventRecord, String> {
    let order = e.order.as_ref();
    let state = |v: i32, what: &str| {
        pb::OrderState::try_from(v)
            .ok()
            .and_then(state_from_pb)
            .ok_or_else(|| format!("event {}: bad {what} state {v}", e.version))
    };
    let body = match pb::OrderEventType::try_from(e.r#type) {
        Ok(pb::OrderEventType::OrderCreated) => {
            let o = order.ok_or_else(|| format!("event {}: a creation without its order", e.version))?;
            EventBody::Created {
                user_id: o.user_id.clone(),
                lines: lines_from_pb(&o.lines),
                currency: o.currency.clone(),
                address: Box::new(address_from_pb(o.shipping_address.as_ref())),
                reservation_id: o.reservation_id.clone(),
                checkout_id: o.checkout_id.clone(),
            }
        }
        Ok(pb::OrderEventType::StateChanged) => {
            let to = state(e.to, "to")?;
            let payment_id = if to == State::Confirmed {
                order.map(|o| o.payment_id.clone()).unwrap_or_default()
            } else {
                String::new()
            };
            EventBody::StateChanged { from: state(e.from, "from")?, to, reason: e.reason.clone(), payment_id }
        }
        Ok(pb::OrderEventType::Refunded) => EventBody::Refunded {
            payment_id: order.map(|o| o.payment_id.clone()).unwrap_or_default(),
            amount: e.amount,
        },
        Ok(pb::OrderEventType::Restocked) => EventBody::Restocked { units: e.amount },
        _ => return Err(format!("event {}: unknown type {}", e.version, e.r#type)),
    };
    Ok(EventRecord {
        order_id: e.order_id.clone(),
        version: e.version,
        sequence: e.sequence,
        time_ms: ms(&e.time),
        body,
    })
}

/// Returns the order that a `GetOrderHistory` answer folds to: its current state rebuilt
/// from its events alone.
pub fn fold_history(events: &[pb::OrderEvent]) -> Result<pb::Order, String> {
    let records = events.iter().map(event_from_pb).collect::<Result<Vec<_>, _>>()?;
    fold::fold(&records).map(|o| order_to_pb(&o)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_both_ways() {
        for s in State::ALL {
            assert_eq!(state_from_pb(state_to_pb(s)), Some(s));
            assert_eq!(state_to_pb(s).as_str_name(), format!("ORDER_STATE_{}", s.name()));
        }
        assert_eq!(state_from_pb(pb::OrderState::Unspecified), None);
    }

    #[test]
    fn a_history_survives_the_wire() {
        let events = vec![
            EventRecord {
                order_id: "ord_a".into(),
                version: 1,
                sequence: 4,
                time_ms: 1_700_000_000_123,
                body: EventBody::Created {
                    user_id: "u".into(),
                    lines: vec![Line { sku: "AAA".into(), title: "t".into(), quantity: 3, unit_price_minor: 7 }],
                    currency: "USD".into(),
                    address: Box::new(Address { country: "FR".into(), ..Address::default() }),
                    reservation_id: "res_r".into(),
                    checkout_id: "chk".into(),
                },
            },
            EventRecord {
                order_id: "ord_a".into(),
                version: 2,
                sequence: 9,
                time_ms: 1_700_000_000_200,
                body: EventBody::StateChanged {
                    from: State::Created,
                    to: State::Confirmed,
                    reason: String::new(),
                    payment_id: "pay_p".into(),
                },
            },
            EventRecord {
                order_id: "ord_a".into(),
                version: 3,
                sequence: 12,
                time_ms: 1_700_000_000_300,
                body: EventBody::StateChanged {
                    from: State::Confirmed,
                    to: State::Cancelled,
                    reason: "no".into(),
                    payment_id: String::new(),
                },
            },
            EventRecord {
                order_id: "ord_a".into(),
                version: 4,
                sequence: 13,
                time_ms: 1_700_000_000_400,
                body: EventBody::Refunded { payment_id: "pay_p".into(), amount: 21 },
            },
        ];
        let wire = history_to_pb(&events).unwrap();
        let back: Vec<EventRecord> = wire.iter().map(|e| event_from_pb(e).unwrap()).collect();
        assert_eq!(back, events);
        let folded = fold_history(&wire).unwrap();
        assert_eq!(Some(&folded), wire.last().unwrap().order.as_ref());
        assert_eq!(folded.refunded_minor, 21);
        assert_eq!(folded.total_minor, 21);
    }
}
