//! Every store key and event-log name this service uses. The service writes only its own
//! event log (`recommendation/events/<sequence>`, `recommendation/event-head`, through
//! [`meshwork_common::EventLog`]) and its idempotency records
//! (`recommendation/requests/<request_id>`, through [`meshwork_common::Idempotency`]); the
//! model itself lives in memory, rebuilt from the logs below.

/// This service's key prefix and event log.
pub const SERVICE: &str = "recommendation";

/// The orders' event log (payload `meshwork.orders.v1.OrderEvent`).
pub const ORDERS_LOG: &str = "orders";

/// The ratings' event log (payload `meshwork.ratings.v1.ReviewEvent`).
pub const RATINGS_LOG: &str = "ratings";

/// The catalog's event log (product events carry `meshwork.catalog.v1.Product`).
pub const CATALOG_LOG: &str = "catalog";

/// Event type of a recorded interaction (payload: the `RecordInteractionRequest`, with `at`
/// set).
pub const INTERACTION_RECORDED: &str = "interaction.recorded";

/// Catalog event types that carry a product.
pub const PRODUCT_EVENTS: [&str; 2] = ["catalog.product_created", "catalog.product_updated"];

/// Ratings event types start with this (`review.submitted`, `review.edited`,
/// `review.moderated`); each carries a `ReviewEvent`.
pub const REVIEW_EVENT_PREFIX: &str = "review.";
