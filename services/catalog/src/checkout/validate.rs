//! Checks of Checkout's requests, before anything is read or written: INVALID_ARGUMENT naming
//! the field and the reason.

use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::fields;
use meshwork_common::validate_request_id;
use meshwork_proto::pb::catalog::v1::{GetCheckoutRequest, PlaceOrderRequest};

/// Characters of the random part of a checkout id.
pub const ID_CHARS: usize = 20;

/// Checks a PlaceOrder request.
pub fn place_order(req: &PlaceOrderRequest) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    fields::user_id("user_id", &req.user_id)?;
    fields::address("shipping_address", req.shipping_address.as_ref())?;
    payment_token(&req.payment_token)
}

/// Checks a card token: `tok_` and 1-60 characters of `[A-Za-z0-9_]`.
fn payment_token(token: &str) -> ServiceResult<()> {
    let ok = token.strip_prefix("tok_").is_some_and(|rest| {
        (1..=60).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    if token.is_empty() {
        return Err(ServiceError::invalid("payment_token", "required"));
    }
    if !ok {
        return Err(ServiceError::invalid("payment_token", "must be tok_ and 1-60 characters of [A-Za-z0-9_]"));
    }
    Ok(())
}

/// Checks a GetCheckout request.
pub fn get_checkout(req: &GetCheckoutRequest) -> ServiceResult<()> {
    checkout_id(&req.checkout_id)
}

/// Checks a checkout id: `chk_` and 20 base62 characters.
pub fn checkout_id(id: &str) -> ServiceResult<()> {
    if id.is_empty() {
        return Err(ServiceError::invalid("checkout_id", "required"));
    }
    let ok = id
        .strip_prefix("chk_")
        .is_some_and(|rest| rest.len() == ID_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !ok {
        return Err(ServiceError::invalid("checkout_id", "must be chk_ and 20 base62 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use meshwork_proto::pb::orders::v1::Address;

    use super::*;

    fn good() -> PlaceOrderRequest {
        PlaceOrderRequest {
            request_id: "req-1".into(),
            user_id: "alice".into(),
            shipping_address: Some(Address {
                name: "Alice".into(),
                line1: "1 Main St".into(),
                line2: String::new(),
                city: "Springfield".into(),
                region: String::new(),
                postal_code: "12345".into(),
                country: "US".into(),
            }),
            payment_token: "tok_ok".into(),
        }
    }

    fn field_of(req: &PlaceOrderRequest) -> String {
        match place_order(req) {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    type Case = (fn(&mut PlaceOrderRequest), &'static str);

    #[test]
    fn place_order_names_the_bad_field() {
        assert!(place_order(&good()).is_ok());
        let cases: Vec<Case> = vec![
            (|r| r.request_id.clear(), "request_id"),
            (|r| r.request_id = "a b".into(), "request_id"),
            (|r| r.request_id = "x".repeat(65), "request_id"),
            (|r| r.user_id.clear(), "user_id"),
            (|r| r.user_id = "u".repeat(129), "user_id"),
            (|r| r.shipping_address = None, "shipping_address"),
            (|r| r.shipping_address.as_mut().unwrap().name.clear(), "shipping_address.name"),
            (|r| r.shipping_address.as_mut().unwrap().city = "c".repeat(101), "shipping_address.city"),
            (|r| r.shipping_address.as_mut().unwrap().postal_code = "1".repeat(21), "shipping_address.postal_code"),
            (|r| r.shipping_address.as_mut().unwrap().country = "us".into(), "shipping_address.country"),
            (|r| r.shipping_address.as_mut().unwrap().country = "USA".into(), "shipping_address.country"),
            (|r| r.payment_token.clear(), "payment_token"),
            (|r| r.payment_token = "card_1".into(), "payment_token"),
            (|r| r.payment_token = "tok_".into(), "payment_token"),
            (|r| r.payment_token = "tok_a-b".into(), "payment_token"),
            (|r| r.payment_token = format!("tok_{}", "a".repeat(61)), "payment_token"),
        ];
        for (mutate, field) in cases {
            let mut req = good();
            mutate(&mut req);
            assert_eq!(field_of(&req), field, "{req:?}");
        }
    }

    #[test]
    fn checkout_ids_are_chk_and_20_base62() {
        assert!(checkout_id("chk_0123456789abcdefghij").is_ok());
        for bad in ["", "chk_", "chk_0123456789abcdefghi", "ord_0123456789abcdefghij", "chk_0123456789abcdefghi-"] {
            assert!(checkout_id(bad).is_err(), "{bad}");
        }
    }
}
