//! The stored payment record (JSON through the kit's [`Record`] encoding) and its wire form.

use meshwork_common::Record;
use meshwork_common::fields::timestamp;
use meshwork_proto::pb::payments::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::rules::{Ledger, Status};

/// One payment as stored under [`crate::keys::payment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub payment_id: String,
    pub order_id: String,
    pub user_id: String,
    pub currency: String,
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub status: Status,
    pub token_last4: String,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
    /// Increases by one with every change (1 when authorized).
    pub version: i64,
    /// The sequence of the `payment.authorized` event, which orders the indexes.
    pub sequence: u64,
}

impl Record for PaymentRecord {
    const KIND: &'static str = "payment record";
}

impl PaymentRecord {
    /// Returns the amounts and status the rules work on.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            status: self.status,
            authorized_minor: self.authorized_minor,
            captured_minor: self.captured_minor,
            refunded_minor: self.refunded_minor,
        }
    }

    /// Returns this record changed to `ledger` at `now_ms`, one version on.
    pub fn with_ledger(&self, ledger: Ledger, now_ms: i64) -> PaymentRecord {
        PaymentRecord {
            status: ledger.status,
            authorized_minor: ledger.authorized_minor,
            captured_minor: ledger.captured_minor,
            refunded_minor: ledger.refunded_minor,
            update_time_ms: now_ms,
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// Returns the payment as the API shows it.
    pub fn to_proto(&self) -> pb::Payment {
        pb::Payment {
            payment_id: self.payment_id.clone(),
            order_id: self.order_id.clone(),
            user_id: self.user_id.clone(),
            currency: self.currency.clone(),
            authorized_minor: self.authorized_minor,
            captured_minor: self.captured_minor,
            refunded_minor: self.refunded_minor,
            status: status_to_proto(self.status) as i32,
            token_last4: self.token_last4.clone(),
            create_time: Some(timestamp(self.create_time_ms)),
            update_time: Some(timestamp(self.update_time_ms)),
            version: self.version,
        }
    }
}

/// Returns the proto enum value of `status`.
pub fn status_to_proto(status: Status) -> pb::PaymentStatus {
    match status {
        Status::Authorized => pb::PaymentStatus::Authorized,
        Status::Captured => pb::PaymentStatus::Captured,
        Status::PartiallyRefunded => pb::PaymentStatus::PartiallyRefunded,
        Status::Refunded => pb::PaymentStatus::Refunded,
        Status::Voided => pb::PaymentStatus::Voided,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = PaymentRecord {
            payment_id: "pay_abc".into(),
            order_id: "o".into(),
            user_id: "u".into(),
            currency: "USD".into(),
            authorized_minor: 10,
            captured_minor: 5,
            refunded_minor: 1,
            status: Status::PartiallyRefunded,
            token_last4: "k_ok".into(),
            create_time_ms: 1,
            update_time_ms: 2,
            version: 3,
            sequence: 9,
        };
        assert_eq!(PaymentRecord::decode(&r.encode().unwrap()).unwrap(), r);
        let p = r.to_proto();
        assert_eq!(p.status, pb::PaymentStatus::PartiallyRefunded as i32);
        assert_eq!(p.update_time.unwrap().nanos, 2_000_000);
    }
}
