//! Who may act as whom, pure: a request names its acting user, and a call carrying the
//! gateway's verified identity must be that user (or hold the `admin` role). An anonymous call
//! is taken at its word (the development gateway lets anonymous calls through).

use meshwork_common::caller::{ADMIN_ROLE, Caller};
use meshwork_common::{ServiceError, ServiceResult};

/// Checks that `caller` may act as `user`.
pub fn acting(caller: Option<&Caller>, user: &str) -> ServiceResult<()> {
    match caller {
        None => Ok(()),
        Some(c) if c.subject == user || c.is_admin() => Ok(()),
        Some(c) => Err(ServiceError::PermissionDenied(format!(
            "acting as {user:?} needs to be {user:?} or hold the role \"{ADMIN_ROLE}\"; \"{}\" is neither",
            c.subject.escape_debug()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_act_as_themselves_admins_as_anyone() {
        let alice = Caller { subject: "alice".into(), roles: vec![] };
        let root = Caller { subject: "root".into(), roles: vec![ADMIN_ROLE.into()] };
        assert!(acting(None, "bob").is_ok());
        assert!(acting(Some(&alice), "alice").is_ok());
        assert_eq!(acting(Some(&alice), "bob").unwrap_err().code(), tonic::Code::PermissionDenied);
        assert!(acting(Some(&root), "bob").is_ok());
    }
}
