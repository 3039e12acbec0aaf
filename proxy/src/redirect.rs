//! Short-link redirects: HTTP `GET /<code>` -> the URL shortener's `Resolve` -> `302 Found`.
//!
//! The gateway keeps one lazily connected tonic channel per replica of the redirect pool (created
//! on the gateway's internal runtime, so their connections live as long as the gateway), picks
//! replicas round robin and tries the next replica when one is unreachable.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshwork_observability::propagation::TraceInterceptor;
use meshwork_proto::pb::urlshortener::v1::ResolveRequest;
use meshwork_proto::pb::urlshortener::v1::url_shortener_client::UrlShortenerClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::tls::{UpstreamTls, replica_endpoint};

/// Metadata key the URL shortener sets on NOT_FOUND to say why a code no longer resolves.
pub const LINK_STATE_KEY: &str = "meshwork-link-state";

/// How long one Resolve may take before the redirect answers 504.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `path` is a short-link path: `/` followed by 1-64 characters of `[A-Za-z0-9_-]`.
/// Returns the code.
pub fn short_code(path: &str) -> Option<&str> {
    let code = path.strip_prefix('/')?;
    let ok =
        (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(code)
}

/// The host of a `Referer` header value (`https://news.example/a?b` -> `news.example`), or an
/// empty string when there is none.
pub fn referrer_host(referer: Option<&[u8]>) -> String {
    referer
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .and_then(|s| s.parse::<http::Uri>().ok())
        .and_then(|uri| uri.host().map(|h| h.to_ascii_lowercase()))
        .unwrap_or_default()
}

/// What a redirect request turns into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectOutcome {
    /// `302 Found` to this URL.
    Found(String),
    /// An HTTP error status with a short text body.
    Error(u16, String),
}

/// A client for the redirect pool's `Resolve`.
#[derive(Debug)]
pub struct Resolver {
    replicas: Vec<(SocketAddr, Channel)>,
    next: AtomicUsize,
}

impl Resolver {
    /// Lazily connected channels to `replicas` (over `tls` when given). Must run inside a tokio runtime that outlives the
    /// resolver (the channels' connection tasks are spawned there).
    pub fn new(replicas: &[SocketAddr], tls: Option<&UpstreamTls>, connect_timeout: Duration) -> Self {
        let replicas =
            replicas.iter().map(|addr| (*addr, replica_endpoint(*addr, tls, connect_timeout).connect_lazy())).collect();
        Self { replicas, next: AtomicUsize::new(0) }
    }

    /// Resolves `code`; tries each replica at most once while they are unreachable.
    pub async fn resolve(&self, code: &str, referrer: String, skip_click: bool) -> RedirectOutcome {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let (addr, channel) = &self.replicas[(start.wrapping_add(i)) % n];
            // The interceptor sends the current (redirect) span's context with the call.
            let mut client = UrlShortenerClient::with_interceptor(channel.clone(), TraceInterceptor);
            let mut request =
                tonic::Request::new(ResolveRequest { code: code.to_string(), referrer: referrer.clone(), skip_click });
            request.set_timeout(RESOLVE_TIMEOUT);
            match client.resolve(request).await {
                Ok(response) => {
                    let long_url = response.into_inner().long_url;
                    return match http::HeaderValue::from_str(&long_url) {
                        Ok(_) if !long_url.is_empty() => RedirectOutcome::Found(long_url),
                        _ => RedirectOutcome::Error(502, "the URL shortener returned an unusable URL".into()),
                    };
                }
                Err(status) if status.code() == Code::Unavailable => {
                    tracing::debug!(replica = %addr, code, error = %status.message(), "resolve: replica unavailable");
                    last = Some(status);
                }
                Err(status) => return outcome_for_status(&status),
            }
        }
        match last {
            Some(status) => outcome_for_status(&status),
            None => RedirectOutcome::Error(503, "no URL shortener replica configured".into()),
        }
    }
}

/// Maps a failed Resolve to an HTTP answer.
pub fn outcome_for_status(status: &tonic::Status) -> RedirectOutcome {
    match status.code() {
        Code::NotFound => {
            let state = status.metadata().get(LINK_STATE_KEY).and_then(|v| v.to_str().ok()).unwrap_or("");
            match state {
                "expired" => RedirectOutcome::Error(410, "this short link has expired".into()),
                "deleted" => RedirectOutcome::Error(410, "this short link was deleted".into()),
                _ => RedirectOutcome::Error(404, "no such short link".into()),
            }
        }
        Code::InvalidArgument => RedirectOutcome::Error(400, format!("bad short link: {}", status.message())),
        Code::Unavailable => RedirectOutcome::Error(503, "the URL shortener is unavailable, try again".into()),
        Code::DeadlineExceeded | Code::Cancelled => {
            RedirectOutcome::Error(504, "the URL shortener did not answer in time".into())
        }
        Code::ResourceExhausted => RedirectOutcome::Error(429, "too many requests".into()),
        _ => RedirectOutcome::Error(502, "the URL shortener failed".into()),
    }
}

/// `http://addr` for a tonic endpoint.
pub(crate) fn grpc_uri(addr: SocketAddr) -> http::Uri {
    // A socket address always forms a valid authority; the fallback is never taken.
    format!("http://{addr}").parse().unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1:1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_codes() {
        assert_eq!(short_code("/abc123"), Some("abc123"));
        assert_eq!(short_code("/a_b-C"), Some("a_b-C"));
        assert_eq!(short_code("/"), None);
        assert_eq!(short_code("/favicon.ico"), None);
        assert_eq!(short_code("/a/b"), None);
        assert_eq!(short_code("/a%20b"), None);
        assert_eq!(short_code(&format!("/{}", "x".repeat(64))).map(str::len), Some(64));
        assert_eq!(short_code(&format!("/{}", "x".repeat(65))), None);
    }

    #[test]
    fn referrer_hosts() {
        assert_eq!(referrer_host(Some(b"https://News.Example/a?b=c")), "news.example");
        assert_eq!(referrer_host(Some(b"http://h:8080/")), "h");
        assert_eq!(referrer_host(Some(b"not a url")), "");
        assert_eq!(referrer_host(None), "");
    }

    #[test]
    fn status_mapping() {
        let mut expired = tonic::Status::not_found("gone");
        expired.metadata_mut().insert(LINK_STATE_KEY, "expired".parse().unwrap());
        assert!(matches!(outcome_for_status(&expired), RedirectOutcome::Error(410, _)));
        let mut deleted = tonic::Status::not_found("gone");
        deleted.metadata_mut().insert(LINK_STATE_KEY, "deleted".parse().unwrap());
        assert!(matches!(outcome_for_status(&deleted), RedirectOutcome::Error(410, _)));
        assert!(matches!(outcome_for_status(&tonic::Status::not_found("x")), RedirectOutcome::Error(404, _)));
        assert!(matches!(outcome_for_status(&tonic::Status::unavailable("x")), RedirectOutcome::Error(503, _)));
        assert!(matches!(outcome_for_status(&tonic::Status::invalid_argument("x")), RedirectOutcome::Error(400, _)));
    }
}
