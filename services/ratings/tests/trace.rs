//! The verified-purchase check is a hop of the submit's trace: a stand-in orders service (in
//! the same mesh) records the metadata of the `ListOrders` call that `SubmitReview` makes,
//! which must carry the caller's trace id (`traceparent`) and no more than what was left of
//! the caller's deadline (`grpc-timeout`). It also pages: a user whose delivered order is on
//! the third page is verified.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use futures::stream::BoxStream;
use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_proto::pb::orders::v1 as orders;
use meshwork_proto::pb::orders::v1::orders_server::{Orders, OrdersServer};
use meshwork_proto::pb::ratings::v1 as pb;
use meshwork_proto::pb::ratings::v1::ratings_client::RatingsClient;
use meshwork_telemetry::grpc_timeout::parse_grpc_timeout;
use meshwork_test_support::{TestServer, context, memory_store};
use tonic::{Request, Response, Status};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// (traceparent, grpc-timeout, page_token) of one ListOrders call.
type Call = (String, Option<Duration>, String);

/// Every ListOrders call seen.
fn seen() -> &'static Mutex<Vec<Call>> {
    static SEEN: OnceLock<Mutex<Vec<Call>>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
}

/// Orders that answers ListOrders with three pages; the last holds a DELIVERED order of
/// `TRACE-SKU`.
struct FakeOrders;

fn order(state: orders::OrderState, sku: &str) -> orders::Order {
    orders::Order {
        order_id: "ord_x".into(),
        state: state as i32,
        lines: vec![orders::OrderLine { sku: sku.into(), quantity: 1, ..Default::default() }],
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Orders for FakeOrders {
    async fn create_order(
        &self,
        _: Request<orders::CreateOrderRequest>,
    ) -> Result<Response<orders::CreateOrderResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_order(
        &self,
        _: Request<orders::GetOrderRequest>,
    ) -> Result<Response<orders::GetOrderResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_orders(
        &self,
        request: Request<orders::ListOrdersRequest>,
    ) -> Result<Response<orders::ListOrdersResponse>, Status> {
        let text = |name: &str| request.metadata().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let timeout = parse_grpc_timeout(text("grpc-timeout").as_bytes());
        let token = request.get_ref().page_token.clone();
        seen().lock().unwrap().push((text("traceparent"), timeout, token.clone()));
        let (orders, next) = match token.as_str() {
            "" => (vec![order(orders::OrderState::Shipped, "TRACE-SKU")], "2"),
            "2" => (vec![order(orders::OrderState::Delivered, "OTHER-SKU")], "3"),
            _ => (vec![order(orders::OrderState::Delivered, "TRACE-SKU")], ""),
        };
        Ok(Response::new(orders::ListOrdersResponse { orders, next_page_token: next.into() }))
    }
    async fn transition_order(
        &self,
        _: Request<orders::TransitionOrderRequest>,
    ) -> Result<Response<orders::TransitionOrderResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_order_history(
        &self,
        _: Request<orders::GetOrderHistoryRequest>,
    ) -> Result<Response<orders::GetOrderHistoryResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type WatchOrdersStream = BoxStream<'static, Result<orders::OrderEvent, Status>>;
    async fn watch_orders(
        &self,
        _: Request<orders::WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

fn fake_orders(_: &ServiceContext) -> HostedService {
    HostedService::builder("orders").grpc(OrdersServer::new(FakeOrders)).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_check_is_a_hop_of_the_submit_trace() {
    let (server, _ctx) = TestServer::mesh(&[fake_orders, meshwork_ratings::hosted], context(memory_store())).await;
    let mut ratings = RatingsClient::new(server.channel.clone());
    let mut request = Request::new(pb::SubmitReviewRequest {
        request_id: "trace-1".into(),
        sku: "TRACE-SKU".into(),
        user_id: "tracy".into(),
        rating: 4,
        title: String::new(),
        body: "fine".into(),
        media_urls: vec![],
    });
    let budget = Duration::from_secs(3);
    request.set_timeout(budget);
    request.metadata_mut().insert("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap());
    let review = ratings.submit_review(request).await.unwrap().into_inner().review.unwrap();
    assert!(review.verified_purchase, "the delivered order on the third page counts");

    let calls = seen().lock().unwrap().clone();
    assert_eq!(calls.iter().map(|c| c.2.as_str()).collect::<Vec<_>>(), ["", "2", "3"], "paged until found");
    for (traceparent, timeout, _) in calls {
        assert!(traceparent.starts_with(&format!("00-{TRACE}-")), "same trace: {traceparent}");
        let timeout = timeout.expect("the remaining deadline is forwarded");
        assert!(timeout <= budget, "{timeout:?}");
    }
}
