//! The mesh client over real tonic servers on loopback: an "outer" service handles a call and
//! calls an "inner" one through [`MeshClient`] (pointed at the inner server, standing in for
//! the gateway). The inner server must see a `grpc-timeout` no larger than what was left of
//! the outer call's deadline, and the `traceparent` of the outer call's span; a caller without
//! a deadline gets the mesh's default timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshwork_common::mesh::{CallContext, MeshClient};
use meshwork_telemetry::grpc_timeout::parse_grpc_timeout;
use opentelemetry::trace::{FutureExt as _, SpanContext, TraceContextExt as _, Tracer as _, TracerProvider as _};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// What the inner server saw of one call.
#[derive(Debug, Clone)]
struct Seen {
    timeout: Option<Duration>,
    traceparent: Option<String>,
}

/// The called service: records the metadata of every call.
#[derive(Clone, Default)]
struct Inner {
    seen: Arc<Mutex<Vec<Seen>>>,
}

type WatchStream = futures::stream::BoxStream<'static, Result<HealthCheckResponse, Status>>;

#[tonic::async_trait]
impl Health for Inner {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let text = |name: &str| request.metadata().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let seen = Seen {
            timeout: text("grpc-timeout").as_deref().and_then(|t| parse_grpc_timeout(t.as_bytes())),
            traceparent: text("traceparent"),
        };
        self.seen.lock().unwrap().push(seen);
        Ok(Response::new(HealthCheckResponse { status: ServingStatus::Serving as i32 }))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<WatchStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// The calling service: spends some time, then calls the inner one through the mesh. The
/// request's `service` field picks how: `span` runs the call inside a span of its own (as the
/// server trace layer does), `spawned` makes it from another task (where no span is current).
#[derive(Clone)]
struct Outer {
    mesh: MeshClient,
    span_ids: Arc<Mutex<Vec<SpanContext>>>,
}

#[tonic::async_trait]
impl Health for Outer {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let mode = request.get_ref().service.clone();
        let mut client = HealthClient::new(self.mesh.channel());
        let answer = match mode.as_str() {
            "span" => {
                let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
                let tracer = provider.tracer("mesh-test");
                let headers = request.metadata().clone().into_headers();
                let parent = meshwork_telemetry::propagation::extract(&headers);
                let span = tracer.start_with_context("outer.check", &parent);
                let cx = parent.with_span(span);
                self.span_ids.lock().unwrap().push(cx.span().span_context().clone());
                async move {
                    let ctx = CallContext::from_request(&request);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    client.check(ctx.outgoing(HealthCheckRequest::default())?).await
                }
                .with_context(cx)
                .await?
            }
            "spawned" => {
                let ctx = CallContext::from_request(&request);
                tokio::time::sleep(Duration::from_millis(300)).await;
                let outgoing = ctx.outgoing(HealthCheckRequest::default())?;
                tokio::spawn(async move { client.check(outgoing).await })
                    .await
                    .map_err(|e| Status::internal(e.to_string()))??
            }
            _ => {
                let ctx = CallContext::from_request(&request);
                tokio::time::sleep(Duration::from_millis(300)).await;
                client.check(ctx.outgoing(HealthCheckRequest::default())?).await?
            }
        };
        Ok(Response::new(answer.into_inner()))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<WatchStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

async fn serve(service: impl Health) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HealthServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

/// Returns a plain channel (the outside client's, not the mesh's).
async fn connect(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_string()).unwrap().connect().await.unwrap()
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Calls the outer service in `mode` with a 2 s deadline (or none) and the caller's
/// `traceparent`; returns what the inner service saw.
async fn call(outer_url: &str, inner: &Inner, mode: &str, deadline: Option<Duration>) -> Seen {
    let mut client = HealthClient::new(connect(outer_url).await);
    let mut request = Request::new(HealthCheckRequest { service: mode.into() });
    if let Some(d) = deadline {
        request.set_timeout(d);
    }
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    let answer = client.check(request).await.unwrap().into_inner();
    assert_eq!(answer.status, ServingStatus::Serving as i32);
    inner.seen.lock().unwrap().pop().expect("the inner service was called")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_the_remaining_deadline_and_the_callers_span() {
    let inner = Inner::default();
    let inner_url = serve(inner.clone()).await;
    let mesh = MeshClient::new(&inner_url).unwrap().with_default_timeout(Duration::from_secs(7));
    let span_ids = Arc::new(Mutex::new(Vec::new()));
    let outer_url = serve(Outer { mesh, span_ids: span_ids.clone() }).await;
    let budget = Duration::from_secs(2);

    // Inside a span: the inner call is its child, with what is left of the 2 s.
    let seen = call(&outer_url, &inner, "span", Some(budget)).await;
    let timeout = seen.timeout.expect("a grpc-timeout was sent");
    assert!(timeout <= budget - Duration::from_millis(300), "{timeout:?}: the time spent is not subtracted");
    assert!(timeout >= Duration::from_millis(500), "{timeout:?}");
    let span = span_ids.lock().unwrap().pop().unwrap();
    let expected = format!("00-{CALLER_TRACE}-{}-01", span.span_id());
    assert_eq!(span.trace_id().to_string(), CALLER_TRACE);
    assert_eq!(seen.traceparent.as_deref(), Some(expected.as_str()), "the outer span is the parent");

    // From a spawned task (no span current there): still the deadline and the trace.
    let seen = call(&outer_url, &inner, "spawned", Some(budget)).await;
    assert!(seen.timeout.unwrap() <= budget - Duration::from_millis(300));
    let traceparent = seen.traceparent.expect("a traceparent was sent");
    assert!(traceparent.starts_with(&format!("00-{CALLER_TRACE}-")), "{traceparent}");

    // A caller without a deadline: the mesh's default timeout.
    let seen = call(&outer_url, &inner, "", None).await;
    let timeout = seen.timeout.expect("the default timeout was sent");
    assert!(timeout <= Duration::from_secs(7) && timeout > Duration::from_secs(6), "{timeout:?}");
    assert!(seen.traceparent.unwrap().starts_with(&format!("00-{CALLER_TRACE}-")));
}
