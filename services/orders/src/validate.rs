//! Field rules of every orders request, one function per request, checked before anything
//! touches the store: INVALID_ARGUMENT naming the field (`lines[2].quantity`) and the reason.

use std::collections::HashSet;

use meshwork_common::{ServiceError, ServiceResult, fields, validate_request_id};
use meshwork_proto::pb::orders::v1 as pb;
use pb::watch_orders_request::Target;

use crate::state::State;

/// Most lines in an order.
pub const MAX_LINES: usize = 100;
/// Most units of one line.
pub const MAX_QUANTITY: i64 = 999;
/// Highest unit price, in minor units.
pub const MAX_UNIT_PRICE_MINOR: i64 = 100_000_000_000;
/// Most characters of a reason.
pub const MAX_REASON_CHARS: usize = 500;
/// Most characters of a line's title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Most characters of a checkout id.
pub const MAX_CHECKOUT_ID_CHARS: usize = 64;

/// Checks a server-assigned id: `prefix` and 20 base62 characters.
fn assigned_id(field: &str, id: &str, prefix: &str, what: &str) -> ServiceResult<()> {
    if id.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if !meshwork_common::is_random_id(id, prefix, 20) {
        return Err(ServiceError::invalid(field, format!("{id:?} is not {what} ({prefix} and 20 base62 characters)")));
    }
    Ok(())
}

/// Checks an order id: `ord_` and 20 base62 characters.
pub fn order_id(field: &str, id: &str) -> ServiceResult<()> {
    assigned_id(field, id, "ord_", "an order id")
}

/// Checks a reservation id of the inventory service: `res_` and 20 base62 characters.
pub fn reservation_id(field: &str, id: &str) -> ServiceResult<()> {
    assigned_id(field, id, "res_", "a reservation id")
}

/// Checks a payment id of the payments service: `pay_` and 20 base62 characters.
pub fn payment_id(field: &str, id: &str) -> ServiceResult<()> {
    assigned_id(field, id, "pay_", "a payment id")
}

/// Returns the state an `OrderState` number stands for; UNSPECIFIED and unknown numbers are
/// INVALID_ARGUMENT on `field`.
pub fn state(field: &str, value: i32) -> ServiceResult<State> {
    match pb::OrderState::try_from(value) {
        Ok(pb::OrderState::Unspecified) => {
            Err(ServiceError::invalid(field, "required: a state such as ORDER_STATE_CONFIRMED"))
        }
        Ok(s) => Ok(crate::wire::state_from_pb(s).unwrap_or(State::Created)),
        Err(_) => Err(ServiceError::invalid(field, format!("{value} is not an OrderState"))),
    }
}

fn limited(field: &str, value: &str, min: usize, max: usize) -> ServiceResult<()> {
    let n = value.chars().count();
    if n < min || n > max {
        let reason = if n == 0 { "required".to_string() } else { format!("must be {min}-{max} characters, got {n}") };
        return Err(ServiceError::invalid(field, reason));
    }
    if value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks a CreateOrder request.
pub fn create(req: &pb::CreateOrderRequest) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    fields::user_id("user_id", &req.user_id)?;
    if req.lines.is_empty() {
        return Err(ServiceError::invalid("lines", "required: 1 to 100 lines"));
    }
    if req.lines.len() > MAX_LINES {
        return Err(ServiceError::invalid("lines", format!("at most {MAX_LINES} lines, got {}", req.lines.len())));
    }
    let mut skus = HashSet::with_capacity(req.lines.len());
    for (i, line) in req.lines.iter().enumerate() {
        let field = |name: &str| format!("lines[{i}].{name}");
        fields::sku(&field("sku"), &line.sku)?;
        if !skus.insert(line.sku.as_str()) {
            return Err(ServiceError::invalid(field("sku"), format!("{} appears twice: one line per sku", line.sku)));
        }
        fields::text(&field("title"), &line.title, MAX_TITLE_CHARS, false)?;
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(ServiceError::invalid(
                field("quantity"),
                format!("must be 1 to {MAX_QUANTITY}, got {}", line.quantity),
            ));
        }
        if !(0..=MAX_UNIT_PRICE_MINOR).contains(&line.unit_price_minor) {
            return Err(ServiceError::invalid(
                field("unit_price_minor"),
                format!("must be 0 to {MAX_UNIT_PRICE_MINOR}, got {}", line.unit_price_minor),
            ));
        }
    }
    fields::currency("currency", &req.currency)?;
    fields::address("shipping_address", req.shipping_address.as_ref())?;
    if !req.reservation_id.is_empty() {
        reservation_id("reservation_id", &req.reservation_id)?;
    }
    limited("checkout_id", &req.checkout_id, 0, MAX_CHECKOUT_ID_CHARS)?;
    Ok(())
}

/// Checks a TransitionOrder request and returns the target state.
pub fn transition(req: &pb::TransitionOrderRequest) -> ServiceResult<State> {
    order_id("order_id", &req.order_id)?;
    let to = state("to", req.to)?;
    if to == State::Created {
        return Err(ServiceError::invalid("to", "an order cannot move back to ORDER_STATE_CREATED"));
    }
    if req.expected_version < 0 {
        return Err(ServiceError::invalid("expected_version", "must not be negative (0 skips the check)"));
    }
    fields::text("reason", &req.reason, MAX_REASON_CHARS, to.needs_reason())?;
    if to == State::Confirmed {
        payment_id("payment_id", &req.payment_id)?;
    } else if !req.payment_id.is_empty() {
        return Err(ServiceError::invalid("payment_id", "only for a move to ORDER_STATE_CONFIRMED"));
    }
    Ok(to)
}

/// Checks a ListOrders request and returns the page size.
pub fn list(req: &pb::ListOrdersRequest) -> ServiceResult<usize> {
    fields::user_id("user_id", &req.user_id)?;
    fields::page_size("page_size", req.page_size)
}

/// Checks a WatchOrders request and returns its target.
pub fn watch(req: &pb::WatchOrdersRequest) -> ServiceResult<Target> {
    match &req.target {
        None => Err(ServiceError::invalid("target", "required: user_id or order_id")),
        Some(Target::UserId(user)) => {
            fields::user_id("user_id", user)?;
            Ok(Target::UserId(user.clone()))
        }
        Some(Target::OrderId(id)) => {
            order_id("order_id", id)?;
            Ok(Target::OrderId(id.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: ServiceError) -> String {
        match err {
            ServiceError::InvalidArgument { field, .. } => field,
            other => panic!("not INVALID_ARGUMENT: {other}"),
        }
    }

    fn good() -> pb::CreateOrderRequest {
        pb::CreateOrderRequest {
            request_id: "r1".into(),
            user_id: "u1".into(),
            lines: vec![pb::OrderLine { sku: "SKU-1".into(), title: "t".into(), quantity: 1, unit_price_minor: 5 }],
            currency: "EUR".into(),
            shipping_address: Some(pb::Address {
                name: "n".into(),
                line1: "l".into(),
                line2: String::new(),
                city: "c".into(),
                region: String::new(),
                postal_code: "1".into(),
                country: "DE".into(),
            }),
            reservation_id: String::new(),
            checkout_id: String::new(),
        }
    }

    #[test]
    fn create_requests() {
        assert!(create(&good()).is_ok());
        type Edit = Box<dyn Fn(&mut pb::CreateOrderRequest)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("request_id", Box::new(|r| r.request_id.clear())),
            ("request_id", Box::new(|r| r.request_id = "a b".into())),
            ("request_id", Box::new(|r| r.request_id = "r".repeat(65))),
            ("user_id", Box::new(|r| r.user_id = "x".repeat(129))),
            ("lines", Box::new(|r| r.lines.clear())),
            (
                "lines",
                Box::new(|r| {
                    r.lines = (0..101)
                        .map(|i| pb::OrderLine { sku: format!("S{i:03}"), quantity: 1, ..Default::default() })
                        .collect()
                }),
            ),
            ("lines[0].sku", Box::new(|r| r.lines[0].sku = "lower".into())),
            ("lines[1].sku", Box::new(|r| r.lines.push(r.lines[0].clone()))),
            ("lines[0].quantity", Box::new(|r| r.lines[0].quantity = -1)),
            ("lines[0].quantity", Box::new(|r| r.lines[0].quantity = 1000)),
            ("lines[0].unit_price_minor", Box::new(|r| r.lines[0].unit_price_minor = -5)),
            ("lines[0].title", Box::new(|r| r.lines[0].title = "t".repeat(201))),
            ("currency", Box::new(|r| r.currency = "usd".into())),
            ("shipping_address", Box::new(|r| r.shipping_address = None)),
            ("shipping_address.country", Box::new(|r| r.shipping_address.as_mut().unwrap().country = "de".into())),
            (
                "shipping_address.postal_code",
                Box::new(|r| r.shipping_address.as_mut().unwrap().postal_code = "1".repeat(21)),
            ),
            ("reservation_id", Box::new(|r| r.reservation_id = "res_short".into())),
            ("checkout_id", Box::new(|r| r.checkout_id = "c".repeat(65))),
        ];
        for (field, mutate) in cases {
            let mut r = good();
            mutate(&mut r);
            assert_eq!(field_of(create(&r).unwrap_err()), field);
        }
    }

    #[test]
    fn transition_requests() {
        let ok = pb::TransitionOrderRequest {
            order_id: "ord_0123456789abcdefghij".into(),
            to: pb::OrderState::Packed as i32,
            ..Default::default()
        };
        assert_eq!(transition(&ok).unwrap(), State::Packed);
        let bad = |f: &dyn Fn(&mut pb::TransitionOrderRequest)| {
            let mut r = ok.clone();
            f(&mut r);
            field_of(transition(&r).unwrap_err())
        };
        assert_eq!(bad(&|r| r.order_id = "ord_x".into()), "order_id");
        assert_eq!(bad(&|r| r.to = 99), "to");
        assert_eq!(bad(&|r| r.to = 0), "to");
        assert_eq!(bad(&|r| r.to = pb::OrderState::Created as i32), "to");
        assert_eq!(bad(&|r| r.expected_version = -1), "expected_version");
        assert_eq!(bad(&|r| r.to = pb::OrderState::Cancelled as i32), "reason");
        assert_eq!(bad(&|r| r.reason = "r".repeat(501)), "reason");
        assert_eq!(bad(&|r| r.to = pb::OrderState::Confirmed as i32), "payment_id");
        assert_eq!(bad(&|r| r.payment_id = "pay_0123456789abcdefghij".into()), "payment_id");
    }
}
