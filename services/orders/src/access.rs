//! Who may read or move an order, pure. An anonymous call is allowed (the dev gateway lets
//! anonymous calls through); a verified caller may act on its own orders, an `admin` on
//! anyone's, and staff with the `orders` role may read anyone's and do the warehouse work
//! (PACKED, SHIPPED, DELIVERED) on them.

use meshwork_common::caller::{ADMIN_ROLE, Caller};
use meshwork_common::{ServiceError, ServiceResult};

use crate::state::State;

/// The role of warehouse and support staff.
pub const STAFF_ROLE: &str = "orders";

/// Checks that `caller` may read the orders of `owner`.
pub fn may_read(caller: Option<&Caller>, owner: &str) -> ServiceResult<()> {
    match caller {
        None => Ok(()),
        Some(c) if c.subject == owner || c.is_admin() || c.has_role(STAFF_ROLE) => Ok(()),
        Some(c) => Err(ServiceError::PermissionDenied(format!(
            "the orders of another user need the role \"{ADMIN_ROLE}\" or \"{STAFF_ROLE}\"; \"{}\" has neither",
            c.subject.escape_debug()
        ))),
    }
}

/// Checks that `caller` may create orders for `owner`.
pub fn may_create(caller: Option<&Caller>, owner: &str) -> ServiceResult<()> {
    match caller {
        None => Ok(()),
        Some(c) if c.subject == owner || c.is_admin() => Ok(()),
        Some(c) => Err(ServiceError::PermissionDenied(format!(
            "an order for another user needs the role \"{ADMIN_ROLE}\"; \"{}\" lacks it",
            c.subject.escape_debug()
        ))),
    }
}

/// Checks that `caller` may move an order of `owner` to `to`.
pub fn may_transition(caller: Option<&Caller>, owner: &str, to: State) -> ServiceResult<()> {
    match caller {
        None => Ok(()),
        Some(c) if c.subject == owner || c.is_admin() => Ok(()),
        Some(c) if to.is_staff_work() && c.has_role(STAFF_ROLE) => Ok(()),
        Some(c) => {
            let roles = if to.is_staff_work() {
                format!("the role \"{ADMIN_ROLE}\" or \"{STAFF_ROLE}\"")
            } else {
                format!("the role \"{ADMIN_ROLE}\"")
            };
            Err(ServiceError::PermissionDenied(format!(
                "moving another user's order to {to} needs {roles}; \"{}\" lacks it",
                c.subject.escape_debug()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(subject: &str, roles: &[&str]) -> Caller {
        Caller { subject: subject.into(), roles: roles.iter().map(|r| r.to_string()).collect() }
    }

    #[test]
    fn owners_admins_staff_and_anonymous() {
        let alice = caller("alice", &[]);
        let admin = caller("root", &["admin"]);
        let staff = caller("sam", &["orders"]);
        assert!(may_read(None, "alice").is_ok());
        assert!(may_read(Some(&alice), "alice").is_ok());
        assert!(may_read(Some(&alice), "bob").is_err());
        assert!(may_read(Some(&admin), "bob").is_ok());
        assert!(may_read(Some(&staff), "bob").is_ok());
        assert!(may_create(Some(&staff), "bob").is_err());
        assert!(may_create(Some(&admin), "bob").is_ok());
        for to in [State::Packed, State::Shipped, State::Delivered] {
            assert!(may_transition(Some(&staff), "bob", to).is_ok());
        }
        for to in [State::Confirmed, State::Cancelled, State::ReturnRequested, State::Returned] {
            assert!(may_transition(Some(&staff), "bob", to).is_err());
            assert!(may_transition(Some(&admin), "bob", to).is_ok());
            assert!(may_transition(Some(&alice), "alice", to).is_ok());
        }
        let err = may_transition(Some(&alice), "bob", State::Cancelled).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }
}
