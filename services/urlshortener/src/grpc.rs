//! gRPC glue: decodes requests, calls [`Shortener`], encodes responses. A code that is gone
//! answers NOT_FOUND with the `meshwork-link-state` trailer (`unknown`, `expired`, `deleted`),
//! which the gateway turns into HTTP 404 or 410 for browser redirects.
//!
//! Who calls is the gateway's verified identity (`meshwork-identity` metadata) read through
//! [`Caller`]: Shorten records it as the link's owner (anonymous calls make ownerless links);
//! Delete and GetStats require it (UNAUTHENTICATED without one); Resolve and GetLink are public.

use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_proto::pb::urlshortener::v1 as pb;
use pb::url_shortener_server::UrlShortener;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::model::{LinkRecord, LinkState};
use crate::service::{Lookup, Shortener};

/// Trailer naming why a code was not found.
pub const LINK_STATE_METADATA: &str = "meshwork-link-state";

/// The tonic service.
#[derive(Clone)]
pub struct UrlShortenerService {
    inner: Arc<Shortener>,
}

impl UrlShortenerService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Shortener>) -> Self {
        UrlShortenerService { inner }
    }

    /// The link as `viewer` may see it: the owner is shown to the owner and to admins only
    /// (a subject may be an e-mail address; anyone may resolve a code).
    fn link(&self, code: &str, r: &LinkRecord, viewer: Option<&Caller>) -> pb::Link {
        let owner_visible = viewer.is_some_and(|v| v.is_admin() || (!r.owner.is_empty() && v.subject == r.owner));
        pb::Link {
            code: code.to_string(),
            long_url: r.long_url.clone(),
            short_url: self.inner.short_url(code),
            created_at_ms: r.created_at_ms,
            expires_at_ms: r.expires_at_ms,
            custom_alias: r.custom_alias,
            owner: if owner_visible { r.owner.clone() } else { String::new() },
        }
    }

    fn found(&self, code: &str, lookup: Lookup, viewer: Option<&Caller>) -> Result<pb::Link, Status> {
        match lookup {
            Lookup::Found(r) => Ok(self.link(code, &r, viewer)),
            Lookup::Gone(state) => Err(gone(code, state)),
        }
    }
}

/// Returns the NOT_FOUND of a code in `state`.
fn gone(code: &str, state: LinkState) -> Status {
    let message = match state {
        LinkState::Expired => format!("code {code:?} has expired"),
        LinkState::Deleted => format!("code {code:?} was deleted"),
        _ => format!("code {code:?} not found"),
    };
    let mut status = Status::not_found(message);
    status.metadata_mut().insert(LINK_STATE_METADATA, MetadataValue::from_static(state.as_str()));
    status
}

#[tonic::async_trait]
impl UrlShortener for UrlShortenerService {
    async fn shorten(&self, request: Request<pb::ShortenRequest>) -> Result<Response<pb::ShortenResponse>, Status> {
        // Anonymous callers may shorten too; their links have no owner.
        let caller = Caller::from_request(&request)?;
        let owner = caller.as_ref().map(|c| c.subject.clone()).unwrap_or_default();
        let req = request.into_inner();
        let (code, record) = if req.request_id.is_empty() {
            self.inner.shorten(&req.long_url, &req.custom_alias, req.ttl_seconds, &owner).await?
        } else {
            self.inner.shorten_once(&req.request_id, &req.long_url, &req.custom_alias, req.ttl_seconds, &owner).await?
        };
        let link = self.link(&code, &record, caller.as_ref());
        Ok(Response::new(pb::ShortenResponse { code, short_url: link.short_url.clone(), link: Some(link) }))
    }

    async fn resolve(&self, request: Request<pb::ResolveRequest>) -> Result<Response<pb::ResolveResponse>, Status> {
        let viewer = Caller::from_request(&request).ok().flatten();
        let req = request.into_inner();
        let lookup = self.inner.resolve(&req.code, &req.referrer, req.skip_click).await?;
        let link = self.found(&req.code, lookup, viewer.as_ref())?;
        Ok(Response::new(pb::ResolveResponse { long_url: link.long_url.clone(), link: Some(link) }))
    }

    async fn get_link(&self, request: Request<pb::GetLinkRequest>) -> Result<Response<pb::GetLinkResponse>, Status> {
        let viewer = Caller::from_request(&request).ok().flatten();
        let req = request.into_inner();
        let lookup = self.inner.lookup(&req.code).await?;
        Ok(Response::new(pb::GetLinkResponse { link: Some(self.found(&req.code, lookup, viewer.as_ref())?) }))
    }

    async fn get_stats(&self, request: Request<pb::GetStatsRequest>) -> Result<Response<pb::GetStatsResponse>, Status> {
        let caller = Caller::required(&request)?;
        let req = request.into_inner();
        let stats = self.inner.stats(&req.code, req.days, req.top_referrers, &caller).await?;
        Ok(Response::new(pb::GetStatsResponse {
            code: req.code,
            total_clicks: stats.total as i64,
            daily: stats.daily.into_iter().map(|(date, n)| pb::DailyClicks { date, clicks: n as i64 }).collect(),
            top_referrers: stats
                .referrers
                .into_iter()
                .map(|(referrer, n)| pb::ReferrerClicks { referrer, clicks: n as i64 })
                .collect(),
        }))
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let caller = Caller::required(&request)?;
        self.inner.delete(&request.into_inner().code, &caller).await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }
}
