//! Domain errors of every service and their one mapping to gRPC statuses (DESIGN section 8).
//! Services return [`ServiceError`]; the gRPC glue converts with `?` into [`tonic::Status`].

use meshwork_storage::StoreError;
use tonic::Code;

/// Result type of service domain logic.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// What can go wrong in a service call, independent of the transport.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    /// A request field is malformed; `field` is its proto name, `reason` says what is wrong.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The named thing does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The thing to create exists already.
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// The call carries no verified identity (or a malformed one) where one is needed.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this (not the owner, lacks a role).
    #[error("{0}")]
    PermissionDenied(String),
    /// The operation is not allowed in the current state (e.g. an illegal transition).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent change won and retries ran out.
    #[error("aborted: {0}")]
    Aborted(String),
    /// A limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The store or a dependency is unavailable; the call may be retried.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The deadline passed before the work finished.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// A bug or corrupted data: never caused by input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// Returns an INVALID_ARGUMENT for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ServiceError::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    /// Returns a NOT_FOUND for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        ServiceError::NotFound { what: what.into() }
    }

    /// Returns the error of a call to `service` (another service, through the mesh) that
    /// answered `status`. The code is kept, so a declined card stays FAILED_PRECONDITION and a
    /// down dependency UNAVAILABLE (retryable); the message names the service. A cancelled or
    /// unknown outcome (a reset connection) counts as UNAVAILABLE.
    pub fn from_upstream(service: &str, status: &tonic::Status) -> Self {
        let message = format!("{service}: {}", status.message());
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => ServiceError::invalid(service, status.message()),
            Code::NotFound => ServiceError::NotFound { what: message },
            Code::AlreadyExists => ServiceError::AlreadyExists { what: message },
            Code::Unauthenticated => ServiceError::Unauthenticated(message),
            Code::PermissionDenied => ServiceError::PermissionDenied(message),
            Code::FailedPrecondition => ServiceError::FailedPrecondition(message),
            Code::Aborted => ServiceError::Aborted(message),
            Code::ResourceExhausted => ServiceError::ResourceExhausted(message),
            Code::DeadlineExceeded => ServiceError::DeadlineExceeded(message),
            Code::Internal | Code::DataLoss | Code::Unimplemented => ServiceError::Internal(message),
            Code::Ok | Code::Cancelled | Code::Unknown | Code::Unavailable => ServiceError::Unavailable(message),
        }
    }

    /// Returns whether trying the same call again may succeed (UNAVAILABLE, ABORTED,
    /// DEADLINE_EXCEEDED): what a saga retries before it compensates.
    pub fn is_transient(&self) -> bool {
        matches!(self, ServiceError::Unavailable(_) | ServiceError::Aborted(_) | ServiceError::DeadlineExceeded(_))
    }

    /// Returns the gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            ServiceError::InvalidArgument { .. } => Code::InvalidArgument,
            ServiceError::NotFound { .. } => Code::NotFound,
            ServiceError::AlreadyExists { .. } => Code::AlreadyExists,
            ServiceError::Unauthenticated(_) => Code::Unauthenticated,
            ServiceError::PermissionDenied(_) => Code::PermissionDenied,
            ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServiceError::Aborted(_) => Code::Aborted,
            ServiceError::ResourceExhausted(_) => Code::ResourceExhausted,
            ServiceError::Unavailable(_) => Code::Unavailable,
            ServiceError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ServiceError::Internal(_) => Code::Internal,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { key } => ServiceError::Aborted(format!("concurrent update of {key}; retry")),
            StoreError::LimitExceeded { .. } => ServiceError::ResourceExhausted(e.to_string()),
            StoreError::Unavailable(m) => ServiceError::Unavailable(m),
            StoreError::Invalid(m) | StoreError::Backend(m) => ServiceError::Internal(m),
            StoreError::Compacted(r) => ServiceError::Internal(format!("store revision {r} compacted")),
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        let code = e.code();
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error");
        }
        tonic::Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_code_and_message() {
        let cases = [
            (
                ServiceError::invalid("long_url", "must be http or https"),
                Code::InvalidArgument,
                "long_url: must be http or https",
            ),
            (ServiceError::not_found("link abc"), Code::NotFound, "link abc not found"),
            (ServiceError::AlreadyExists { what: "alias x".into() }, Code::AlreadyExists, "alias x already exists"),
            (ServiceError::Unauthenticated("no identity".into()), Code::Unauthenticated, "no identity"),
            (ServiceError::PermissionDenied("not yours".into()), Code::PermissionDenied, "not yours"),
            (ServiceError::FailedPrecondition("order is shipped".into()), Code::FailedPrecondition, "order is shipped"),
            (ServiceError::Aborted("c".into()), Code::Aborted, "aborted: c"),
            (ServiceError::ResourceExhausted("r".into()), Code::ResourceExhausted, "r"),
            (ServiceError::Unavailable("u".into()), Code::Unavailable, "unavailable: u"),
            (ServiceError::DeadlineExceeded("d".into()), Code::DeadlineExceeded, "deadline exceeded: d"),
            (ServiceError::Internal("i".into()), Code::Internal, "internal error: i"),
        ];
        for (err, code, message) in cases {
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn store_errors_map_to_retryable_codes() {
        assert_eq!(ServiceError::from(StoreError::conflict(b"k")).code(), Code::Aborted);
        assert_eq!(ServiceError::from(StoreError::Unavailable("x".into())).code(), Code::Unavailable);
        let limit = StoreError::LimitExceeded { what: "ops", limit: 128, actual: 129 };
        assert_eq!(ServiceError::from(limit).code(), Code::ResourceExhausted);
        assert_eq!(ServiceError::from(StoreError::Backend("io".into())).code(), Code::Internal);
    }
}
