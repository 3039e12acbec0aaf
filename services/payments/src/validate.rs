//! Field rules of every request, one function per request, checked before the store is
//! touched. Each failure is INVALID_ARGUMENT naming the proto field and the reason.

use meshwork_common::fields;
use meshwork_common::{ServiceError, ServiceResult, validate_request_id};
use meshwork_proto::pb::payments::v1 as pb;

use crate::rules::MAX_AMOUNT_MINOR;

/// Most characters in an `order_id`.
pub const MAX_ORDER_ID_CHARS: usize = 64;
/// Most characters in a refund's `reason`.
pub const MAX_REASON_CHARS: usize = 500;
/// Most characters after `tok_` in a card token.
pub const MAX_TOKEN_BODY: usize = 60;
/// Base62 characters after `pay_` in a payment id.
pub const PAYMENT_ID_CHARS: usize = 20;
/// What every payment id starts with.
pub const PAYMENT_ID_PREFIX: &str = "pay_";

/// What the simulated card network does with a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    /// The card authorizes (`tok_ok` and every other well-formed token).
    Approves,
    /// `tok_decline`: the card is declined.
    Declines,
    /// `tok_fail`: the processor is down.
    Fails,
}

/// Checks an `AuthorizeRequest` and returns what its card will do.
pub fn authorize(req: &pb::AuthorizeRequest) -> ServiceResult<Card> {
    validate_request_id(&req.request_id)?;
    order_id("order_id", &req.order_id)?;
    fields::user_id("user_id", &req.user_id)?;
    amount("amount_minor", req.amount_minor, false)?;
    fields::currency("currency", &req.currency)?;
    token(&req.payment_token)
}

/// Checks a `CaptureRequest`.
pub fn capture(req: &pb::CaptureRequest) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    payment_id(&req.payment_id)?;
    amount("amount_minor", req.amount_minor, true)
}

/// Checks a `VoidRequest`.
pub fn void(req: &pb::VoidRequest) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    payment_id(&req.payment_id)
}

/// Checks a `RefundRequest`.
pub fn refund(req: &pb::RefundRequest) -> ServiceResult<()> {
    validate_request_id(&req.request_id)?;
    payment_id(&req.payment_id)?;
    amount("amount_minor", req.amount_minor, true)?;
    fields::text("reason", &req.reason, MAX_REASON_CHARS, false)
}

/// Checks a `GetPaymentRequest`.
pub fn get(req: &pb::GetPaymentRequest) -> ServiceResult<()> {
    payment_id(&req.payment_id)
}

/// Checks a `ListPaymentsRequest` and returns its page size (the page token is checked
/// against the query by the service).
pub fn list(req: &pb::ListPaymentsRequest) -> ServiceResult<usize> {
    if !req.order_id.is_empty() {
        order_id("order_id", &req.order_id)?;
    }
    fields::page_size("page_size", req.page_size)
}

/// Checks an order id: 1-64 characters without control characters (the NUL ends it in keys).
fn order_id(field: &str, order_id: &str) -> ServiceResult<()> {
    if order_id.is_empty() {
        return Err(ServiceError::invalid(field, "required (1 to 64 characters)"));
    }
    let chars = order_id.chars().count();
    if chars > MAX_ORDER_ID_CHARS {
        return Err(ServiceError::invalid(field, format!("must be at most 64 characters, got {chars}")));
    }
    if order_id.chars().any(char::is_control) {
        return Err(ServiceError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks an amount in minor units: 1 to 100,000,000,000, or also 0 when `zero_means_all`.
fn amount(field: &str, amount: i64, zero_means_all: bool) -> ServiceResult<()> {
    let least = if zero_means_all { 0 } else { 1 };
    if amount < least || amount > MAX_AMOUNT_MINOR {
        let what = if zero_means_all { "0 (all) or 1" } else { "1" };
        return Err(ServiceError::invalid(field, format!("must be {what} to {MAX_AMOUNT_MINOR}, got {amount}")));
    }
    Ok(())
}

/// Checks a payment id: `pay_` and 20 base62 characters.
fn payment_id(payment_id: &str) -> ServiceResult<()> {
    if payment_id.is_empty() {
        return Err(ServiceError::invalid("payment_id", "required"));
    }
    if !meshwork_common::is_random_id(payment_id, PAYMENT_ID_PREFIX, PAYMENT_ID_CHARS) {
        return Err(ServiceError::invalid("payment_id", "must be pay_ followed by 20 base62 characters"));
    }
    Ok(())
}

/// Checks a card token and returns what the simulated network does with it.
fn token(token: &str) -> ServiceResult<Card> {
    if token.is_empty() {
        return Err(ServiceError::invalid("payment_token", "required (a card token such as tok_ok)"));
    }
    let well_formed = token.strip_prefix("tok_").is_some_and(|body| {
        (1..=MAX_TOKEN_BODY).contains(&body.len()) && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    if !well_formed {
        return Err(ServiceError::invalid("payment_token", "must be tok_ followed by 1-60 characters of [A-Za-z0-9_]"));
    }
    Ok(match token {
        "tok_decline" => Card::Declines,
        "tok_fail" => Card::Fails,
        _ => Card::Approves,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: ServiceResult<impl std::fmt::Debug>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(token("tok_ok").unwrap(), Card::Approves);
        assert_eq!(token("tok_visa_4242").unwrap(), Card::Approves);
        assert_eq!(token(&format!("tok_{}", "a".repeat(60))).unwrap(), Card::Approves);
        assert_eq!(token("tok_decline").unwrap(), Card::Declines);
        assert_eq!(token("tok_fail").unwrap(), Card::Fails);
        for bad in ["", "tok_", "ok", "tok-ok", "tok_a b", "TOK_ok", "tok_é"] {
            assert_eq!(field(token(bad)), "payment_token", "{bad:?}");
        }
        assert_eq!(field(token(&format!("tok_{}", "a".repeat(61)))), "payment_token");
    }

    #[test]
    fn ids_and_amounts() {
        assert!(payment_id("pay_0123456789abcdefABCD").is_ok());
        for bad in ["", "pay_", "pay_0123456789abcdefABC", "pay_0123456789abcdefABCDE", "pax_0123456789abcdefABCD"] {
            assert_eq!(field(payment_id(bad)), "payment_id", "{bad:?}");
        }
        assert!(amount("a", 0, true).is_ok());
        assert!(amount("a", 0, false).is_err());
        assert!(amount("a", -1, true).is_err());
        assert!(amount("a", MAX_AMOUNT_MINOR, false).is_ok());
        assert!(amount("a", MAX_AMOUNT_MINOR + 1, true).is_err());
        assert!(order_id("o", "o\0x").is_err());
        assert!(order_id("o", &"é".repeat(64)).is_ok());
        assert!(order_id("o", &"é".repeat(65)).is_err());
        assert_eq!(field(validate_request_id("a/b")), "request_id");
        assert!(validate_request_id("chk:1.a_b-c").is_ok());
    }
}
