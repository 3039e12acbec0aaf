//! The money and state rules of a payment, as pure functions over its amounts (no store, no
//! gRPC): a capture takes at most the authorized amount and happens once, a void cancels only
//! an uncaptured authorization (voiding a voided one changes nothing), refunds give back at most
//! what was captured and not yet refunded. Each rule answers the new amounts or says why not.

use serde::{Deserialize, Serialize};

/// Most minor units one payment may hold (the proto's 100,000,000,000).
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000;

/// Where a payment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Money held, not taken.
    Authorized,
    /// Money taken, nothing refunded.
    Captured,
    /// Part of the captured amount refunded.
    PartiallyRefunded,
    /// The whole captured amount refunded.
    Refunded,
    /// The authorization was cancelled before capture.
    Voided,
}

impl Status {
    /// Returns the name of the status as the proto spells it (`AUTHORIZED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Authorized => "AUTHORIZED",
            Status::Captured => "CAPTURED",
            Status::PartiallyRefunded => "PARTIALLY_REFUNDED",
            Status::Refunded => "REFUNDED",
            Status::Voided => "VOIDED",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a rule refused a change (FAILED_PRECONDITION on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The payment is not in a status the operation accepts.
    #[error("payment is {status}; {operation} needs a payment that is {needs}")]
    WrongStatus { status: Status, operation: &'static str, needs: &'static str },
    /// A capture asked for more than was authorized.
    #[error("capture of {requested} exceeds the authorized amount {authorized}")]
    CaptureExceedsAuthorized { requested: i64, authorized: i64 },
    /// A refund asked for more than is captured and not yet refunded.
    #[error(
        "refund of {requested} exceeds the refundable amount {refundable} (captured {captured}, refunded {refunded})"
    )]
    RefundExceedsRefundable { requested: i64, refundable: i64, captured: i64, refunded: i64 },
}

/// The amounts and status of a payment: what the rules read and change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    pub status: Status,
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
}

impl Ledger {
    /// Returns a fresh authorization of `amount_minor` (validated by the caller: 1 to
    /// [`MAX_AMOUNT_MINOR`]).
    pub fn authorized(amount_minor: i64) -> Ledger {
        Ledger { status: Status::Authorized, authorized_minor: amount_minor, captured_minor: 0, refunded_minor: 0 }
    }

    /// Returns what is captured and not yet refunded.
    pub fn refundable(&self) -> i64 {
        self.captured_minor - self.refunded_minor
    }

    /// Captures `requested` minor units (0 = the whole authorization). Only an AUTHORIZED
    /// payment may be captured, once; what is not captured is released.
    pub fn capture(&self, requested: i64) -> Result<Ledger, RuleError> {
        if self.status != Status::Authorized {
            return Err(RuleError::WrongStatus { status: self.status, operation: "capture", needs: "AUTHORIZED" });
        }
        let amount = if requested == 0 { self.authorized_minor } else { requested };
        if amount > self.authorized_minor {
            return Err(RuleError::CaptureExceedsAuthorized { requested: amount, authorized: self.authorized_minor });
        }
        Ok(Ledger { status: Status::Captured, captured_minor: amount, ..*self })
    }

    /// Voids the authorization. Returns `None` when the payment is VOIDED already (a no-op).
    pub fn void(&self) -> Result<Option<Ledger>, RuleError> {
        match self.status {
            Status::Authorized => Ok(Some(Ledger { status: Status::Voided, ..*self })),
            Status::Voided => Ok(None),
            status => Err(RuleError::WrongStatus { status, operation: "void", needs: "AUTHORIZED (or VOIDED)" }),
        }
    }

    /// Refunds `requested` minor units (0 = all that is refundable) of a CAPTURED or
    /// PARTIALLY_REFUNDED payment. Returns the new ledger and the amount refunded.
    pub fn refund(&self, requested: i64) -> Result<(Ledger, i64), RuleError> {
        if !matches!(self.status, Status::Captured | Status::PartiallyRefunded) {
            return Err(RuleError::WrongStatus {
                status: self.status,
                operation: "refund",
                needs: "CAPTURED or PARTIALLY_REFUNDED",
            });
        }
        let refundable = self.refundable();
        let amount = if requested == 0 { refundable } else { requested };
        if amount > refundable {
            return Err(RuleError::RefundExceedsRefundable {
                requested: amount,
                refundable,
                captured: self.captured_minor,
                refunded: self.refunded_minor,
            });
        }
        let refunded_minor = self.refunded_minor + amount;
        let status = if refunded_minor == self.captured_minor { Status::Refunded } else { Status::PartiallyRefunded };
        Ok((Ledger { status, refunded_minor, ..*self }, amount))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_takes_at_most_the_authorization_once() {
        let auth = Ledger::authorized(1000);
        let full = auth.capture(0).unwrap();
        assert_eq!((full.status, full.captured_minor), (Status::Captured, 1000));
        let part = auth.capture(400).unwrap();
        assert_eq!((part.status, part.captured_minor, part.authorized_minor), (Status::Captured, 400, 1000));
        let over = auth.capture(1001).unwrap_err();
        assert_eq!(over, RuleError::CaptureExceedsAuthorized { requested: 1001, authorized: 1000 });
        assert!(over.to_string().contains("1001") && over.to_string().contains("1000"));
        let again = full.capture(1).unwrap_err();
        assert!(again.to_string().contains("CAPTURED"), "{again}");
    }

    #[test]
    fn void_only_before_capture_and_twice_is_a_no_op() {
        let auth = Ledger::authorized(500);
        let voided = auth.void().unwrap().unwrap();
        assert_eq!(voided.status, Status::Voided);
        assert_eq!(voided.void().unwrap(), None);
        assert!(voided.capture(0).unwrap_err().to_string().contains("VOIDED"));
        assert!(voided.refund(0).unwrap_err().to_string().contains("VOIDED"));
        let captured = auth.capture(0).unwrap();
        assert!(captured.void().unwrap_err().to_string().contains("payment is CAPTURED"));
    }

    #[test]
    fn refunds_never_exceed_the_capture() {
        let captured = Ledger::authorized(1000).capture(600).unwrap();
        assert!(Ledger::authorized(10).refund(1).unwrap_err().to_string().contains("AUTHORIZED"));
        let (part, n) = captured.refund(200).unwrap();
        assert_eq!((part.status, part.refunded_minor, n), (Status::PartiallyRefunded, 200, 200));
        let over = part.refund(401).unwrap_err();
        assert_eq!(
            over,
            RuleError::RefundExceedsRefundable { requested: 401, refundable: 400, captured: 600, refunded: 200 }
        );
        let (rest, n) = part.refund(0).unwrap();
        assert_eq!((rest.status, rest.refunded_minor, n), (Status::Refunded, 600, 400));
        assert!(rest.refund(0).unwrap_err().to_string().contains("REFUNDED"));
        let (exact, _) = captured.refund(600).unwrap();
        assert_eq!(exact.status, Status::Refunded);
    }

    #[test]
    fn any_sequence_of_operations_keeps_the_invariants() {
        // A small exhaustive walk: every sequence of up to 5 operations from a set of amounts.
        fn walk(l: Ledger, depth: u32) {
            assert!(0 <= l.refunded_minor && l.refunded_minor <= l.captured_minor);
            assert!(l.captured_minor <= l.authorized_minor);
            if depth == 0 {
                return;
            }
            for amount in [0, 1, 299, 300, 301] {
                if let Ok(next) = l.capture(amount) {
                    walk(next, depth - 1);
                }
                if let Ok((next, n)) = l.refund(amount) {
                    assert_eq!(next.refunded_minor, l.refunded_minor + n);
                    walk(next, depth - 1);
                }
            }
            if let Ok(Some(next)) = l.void() {
                walk(next, depth - 1);
            }
        }
        walk(Ledger::authorized(300), 5);
    }
}
