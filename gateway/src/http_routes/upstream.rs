//! Unary gRPC calls that the gateway makes itself (for HTTP routes), with the same replica
//! choice, retries, outlier ejection and metrics as proxied calls.
//!
//! A call takes a replica from its route's pool (`Pool::pick`: health, ejection, slow start,
//! concurrency caps and the pool's policy all apply), sends the encoded request over a tonic
//! channel to that replica, and on failure acts as the proxy does: a replica that cannot be
//! reached is recorded as a failure and the call goes to another replica; an UNAVAILABLE answer
//! goes to another replica only for idempotent methods within the pool's retry budget.
//!
//! Channels are lazily connected, one per (pool, replica), created on the gateway's internal
//! runtime (so their connections live as long as the gateway) and dropped when the replica
//! leaves its pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

use crate::balance::Policy;
use crate::metrics::Metrics;
use crate::pool::{PickError, PickInput, Pool};
use crate::routing::Route;
use crate::tls::replica_endpoint;

/// `http://addr` for a tonic endpoint.
pub(crate) fn grpc_uri(addr: SocketAddr) -> http::Uri {
    // A socket address always forms a valid authority; the fallback is never taken.
    format!("http://{addr}").parse().unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1:1"))
}

/// A codec that passes encoded messages through: the gateway encodes and decodes them with
/// `prost-reflect` itself.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// One unary call to make.
pub(crate) struct UnaryCall<'a> {
    /// The route of the call's service (its pools, idempotent methods, timeout).
    pub route: &'a Route,
    /// `/package.Service/Method`.
    pub path: &'a str,
    /// The method name (for the idempotent check).
    pub method: &'a str,
    /// The encoded request message.
    pub message: Bytes,
    /// Request metadata (without trace headers: `decorate` adds those per attempt).
    pub metadata: http::HeaderMap,
    /// When the call must be over.
    pub deadline: Option<Instant>,
    /// Hash of the affinity key for the hashing policies.
    pub hash: Option<u64>,
}

/// The answer of a successful call: the encoded message and the response metadata (headers
/// and trailers).
pub(crate) struct UnaryAnswer {
    pub message: Bytes,
    pub metadata: MetadataMap,
}

/// Makes the gateway's own unary calls.
pub(crate) struct Upstream {
    runtime: tokio::runtime::Handle,
    channels: Mutex<HashMap<(String, SocketAddr), Channel>>,
    connect_timeout: Duration,
    max_request_bytes: usize,
    max_response_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Upstream {
    /// Calls made through `runtime` (the gateway's internal runtime) with these limits.
    pub fn new(
        runtime: tokio::runtime::Handle,
        connect_timeout: Duration,
        max_request_bytes: usize,
        max_response_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            runtime,
            channels: Mutex::new(HashMap::new()),
            connect_timeout,
            max_request_bytes,
            max_response_bytes,
            metrics,
        }
    }

    fn channel(&self, pool: &Pool, addr: SocketAddr) -> Channel {
        let mut channels = match self.channels.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = (pool.name().to_string(), addr);
        if let Some(channel) = channels.get(&key) {
            return channel.clone();
        }
        // Forget replicas that left this pool (registry churn) before adding one.
        let live: Vec<SocketAddr> = pool.addrs();
        channels.retain(|(name, a), _| name != pool.name() || live.contains(a));
        let _guard = self.runtime.enter();
        let channel = replica_endpoint(addr, pool.tls(), self.connect_timeout).connect_lazy();
        channels.insert(key, channel.clone());
        channel
    }

    /// Makes the call. `decorate` adds per-attempt metadata (trace context) for the replica and
    /// attempt number (from 1). Returns the answer, or the final status with the number of
    /// attempts made.
    pub async fn unary(
        &self,
        call: UnaryCall<'_>,
        decorate: &mut (dyn FnMut(SocketAddr, usize, &mut http::HeaderMap) + Send),
    ) -> Result<UnaryAnswer, tonic::Status> {
        if call.message.len() > self.max_request_bytes {
            return Err(tonic::Status::resource_exhausted(format!(
                "request message of {} bytes is above the limit of {}",
                call.message.len(),
                self.max_request_bytes
            )));
        }
        let path = PathAndQuery::try_from(call.path)
            .map_err(|_| tonic::Status::internal(format!("bad method path {}", call.path)))?;
        let pool = call.route.pick_pool().clone();
        let members = pool.members();
        let idempotent = call.route.is_idempotent(call.method);
        if idempotent {
            pool.budget().deposit();
        }
        let mut failed: Vec<usize> = Vec::new();
        let mut last: Option<tonic::Status> = None;
        let mut attempt = 0;
        loop {
            let remaining = call.deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining.is_some_and(|r| r.is_zero()) {
                return Err(tonic::Status::deadline_exceeded("deadline exceeded at the gateway"));
            }
            let (idx, slot) = match pool.pick(&members, PickInput { hash: call.hash, exclude: &failed }) {
                Ok(picked) => picked,
                Err(PickError::AllBusy) => {
                    self.metrics.overloaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(tonic::Status::unavailable(format!(
                        "every replica of pool \"{}\" is at its concurrency limit",
                        pool.name()
                    )));
                }
                Err(PickError::NoneLeft) => {
                    return Err(last.unwrap_or_else(|| {
                        tonic::Status::unavailable(format!("no replica of pool \"{}\" is reachable", pool.name()))
                    }));
                }
            };
            attempt += 1;
            if attempt > 1 {
                self.metrics.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let replica = slot.replica().clone();
            let mut headers = call.metadata.clone();
            decorate(replica.addr(), attempt, &mut headers);
            let mut request = tonic::Request::from_parts(
                MetadataMap::from_headers(headers),
                Default::default(),
                call.message.clone(),
            );
            if let Some(remaining) = remaining {
                request.set_timeout(remaining);
            }
            let mut grpc = tonic::client::Grpc::new(self.channel(&pool, replica.addr()))
                .max_decoding_message_size(self.max_response_bytes)
                .max_encoding_message_size(self.max_request_bytes);
            let started = Instant::now();
            // The error, and whether it means the replica was not reached at all (a transport
            // failure carries its cause; a replica's own status does not).
            let sent = async {
                grpc.ready()
                    .await
                    .map_err(|e| (tonic::Status::unavailable(format!("replica not reachable: {e}")), true))?;
                grpc.unary(request, path.clone(), RawCodec).await.map_err(|status| {
                    let unreachable = std::error::Error::source(&status).is_some();
                    (status, unreachable)
                })
            };
            let result = match remaining {
                Some(remaining) => match tokio::time::timeout(remaining, sent).await {
                    Ok(result) => result,
                    Err(_) => {
                        return Err(tonic::Status::deadline_exceeded(
                            "deadline exceeded while waiting for the replica",
                        ));
                    }
                },
                None => sent.await,
            };
            if pool.settings().policy == Policy::PeakEwma {
                replica.observe_latency(started.elapsed());
            }
            drop(slot);
            match result {
                Ok(response) => {
                    pool.record_success(&replica);
                    let (metadata, message, _) = response.into_parts();
                    return Ok(UnaryAnswer { message, metadata });
                }
                Err((status, unreachable)) if unreachable || status.code() == Code::Unavailable => {
                    pool.record_failure(&members, &replica);
                    tracing::debug!(
                        pool = pool.name(),
                        replica = %replica.addr(),
                        unreachable,
                        error = %status.message(),
                        "http route call: replica unavailable"
                    );
                    failed.push(idx);
                    let retry = unreachable || (idempotent && pool.budget().try_withdraw());
                    if !retry {
                        return Err(status);
                    }
                    last = Some(status);
                }
                Err((status, _)) => {
                    pool.record_success(&replica);
                    return Err(status);
                }
            }
        }
    }
}
