//! The circulation rules, purely: what a member type may borrow and for how long, what an
//! overdue day costs, and how much a member may owe and still borrow (the policy table), and
//! the fine arithmetic. Fines accrue per overdue day, a part of a day counting as a day, and
//! the fine of one loan never exceeds the copy's replacement cost.

use crate::model::MemberType;

/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * 3600 * 1000;

/// How long a copy set aside for a hold waits on the hold shelf.
pub const PICKUP_DAYS: i64 = 3;

/// How many times a loan may be renewed.
pub const MAX_RENEWALS: u32 = 2;

/// The rules of one member type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Most copies on loan at once.
    pub loan_limit: usize,
    /// Days of a loan (and of each renewal).
    pub loan_days: i64,
    /// Fine per overdue day, in minor units.
    pub fine_per_day_minor: i64,
    /// A member owing more than this may not borrow, in minor units.
    pub max_owed_minor: i64,
    /// Most holds queued at once.
    pub hold_limit: usize,
}

/// Returns the policy of a member type.
pub fn policy(member_type: MemberType) -> Policy {
    match member_type {
        MemberType::Student => {
            Policy { loan_limit: 5, loan_days: 14, fine_per_day_minor: 10, max_owed_minor: 500, hold_limit: 5 }
        }
        MemberType::Adult => {
            Policy { loan_limit: 10, loan_days: 21, fine_per_day_minor: 25, max_owed_minor: 1_000, hold_limit: 10 }
        }
        MemberType::Staff => {
            Policy { loan_limit: 25, loan_days: 28, fine_per_day_minor: 5, max_owed_minor: 5_000, hold_limit: 25 }
        }
    }
}

impl Policy {
    /// Returns the due time of a loan (or renewal) starting at `from_ms`.
    pub fn due_from(&self, from_ms: i64) -> i64 {
        from_ms.saturating_add(self.loan_days * DAY_MS)
    }
}

/// Returns the days a loan due at `due_ms` is overdue at `now_ms`: 0 until the due time, then
/// one for each started day.
pub fn overdue_days(due_ms: i64, now_ms: i64) -> i64 {
    if now_ms <= due_ms { 0 } else { (now_ms - due_ms + DAY_MS - 1) / DAY_MS }
}

/// Returns the fine of a loan overdue `days` days at `rate` per day, of which `already` was
/// charged before (at a renewal), so that the loan's fines together stay within `cap`.
pub fn fine(days: i64, rate: i64, cap: i64, already: i64) -> i64 {
    days.saturating_mul(rate).min(cap.saturating_sub(already)).max(0)
}

/// Why a member may not borrow now, or `None` when they may.
pub fn borrowing_blocked(policy: &Policy, loans: usize, owed_minor: i64) -> Option<String> {
    if loans >= policy.loan_limit {
        return Some(format!("loan limit reached: {loans} of {} loans", policy.loan_limit));
    }
    if owed_minor > policy.max_owed_minor {
        return Some(format!("fines owed ({owed_minor}) exceed the limit of {}", policy.max_owed_minor));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_orders_member_types() {
        let (s, a, t) = (policy(MemberType::Student), policy(MemberType::Adult), policy(MemberType::Staff));
        assert!(s.loan_limit < a.loan_limit && a.loan_limit < t.loan_limit);
        assert!(s.loan_days < a.loan_days && a.loan_days < t.loan_days);
        assert!(s.max_owed_minor < a.max_owed_minor && a.max_owed_minor < t.max_owed_minor);
        assert_eq!(s.due_from(0), 14 * DAY_MS);
    }

    #[test]
    fn overdue_days_count_started_days() {
        let due = 10 * DAY_MS;
        assert_eq!(overdue_days(due, due - 1), 0);
        assert_eq!(overdue_days(due, due), 0);
        assert_eq!(overdue_days(due, due + 1), 1);
        assert_eq!(overdue_days(due, due + DAY_MS), 1);
        assert_eq!(overdue_days(due, due + DAY_MS + 1), 2);
        assert_eq!(overdue_days(due, due + 30 * DAY_MS), 30);
    }

    #[test]
    fn fines_are_capped_at_the_replacement_cost() {
        assert_eq!(fine(0, 25, 1000, 0), 0);
        assert_eq!(fine(3, 25, 1000, 0), 75);
        assert_eq!(fine(40, 25, 1000, 0), 1000);
        assert_eq!(fine(40, 25, 1000, 400), 600, "earlier charges count towards the cap");
        assert_eq!(fine(40, 25, 1000, 1200), 0);
        assert_eq!(fine(i64::MAX, 25, 1000, 0), 1000, "no overflow");
    }

    #[test]
    fn blocks_name_their_reason() {
        let p = policy(MemberType::Student);
        assert_eq!(borrowing_blocked(&p, 4, 500), None);
        assert!(borrowing_blocked(&p, 5, 0).unwrap().contains("loan limit"));
        assert!(borrowing_blocked(&p, 0, 501).unwrap().contains("fines owed"));
    }
}
