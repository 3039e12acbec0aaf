//! The built-in trace view: one self-contained page (no build step, no CDN) over the v1 query
//! API: search, a waterfall of one trace with span details, and the service dependency map.

use axum::response::Html;

const INDEX: &str = include_str!("index.html");

/// `GET /`.
pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}
