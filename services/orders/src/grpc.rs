//! gRPC glue: decodes requests, reads the caller and the call context, calls [`Orders`],
//! encodes responses. No logic.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::caller::Caller;
use meshwork_common::mesh::CallContext;
use meshwork_proto::pb::orders::v1 as pb;
use pb::orders_server::Orders as OrdersApi;
use tonic::{Request, Response, Status};

use crate::service::Orders;

/// The tonic service.
#[derive(Clone)]
pub struct OrdersService {
    inner: Arc<Orders>,
}

impl OrdersService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Orders>) -> Self {
        OrdersService { inner }
    }
}

#[tonic::async_trait]
impl OrdersApi for OrdersService {
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::CreateOrderResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let order = self.inner.create(caller.as_ref(), request.into_inner()).await?;
        Ok(Response::new(pb::CreateOrderResponse { order: Some(order) }))
    }

    async fn get_order(&self, request: Request<pb::GetOrderRequest>) -> Result<Response<pb::GetOrderResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let order = self.inner.get(caller.as_ref(), &request.get_ref().order_id).await?;
        Ok(Response::new(pb::GetOrderResponse { order: Some(order) }))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let (orders, next_page_token) = self.inner.list(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(pb::ListOrdersResponse { orders, next_page_token }))
    }

    async fn transition_order(
        &self,
        request: Request<pb::TransitionOrderRequest>,
    ) -> Result<Response<pb::TransitionOrderResponse>, Status> {
        let cx = CallContext::from_request(&request);
        let caller = Caller::from_request(&request)?;
        let order = self.inner.transition(caller.as_ref(), &cx, request.get_ref()).await?;
        Ok(Response::new(pb::TransitionOrderResponse { order: Some(order) }))
    }

    async fn get_order_history(
        &self,
        request: Request<pb::GetOrderHistoryRequest>,
    ) -> Result<Response<pb::GetOrderHistoryResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let events = self.inner.history(caller.as_ref(), &request.get_ref().order_id).await?;
        Ok(Response::new(pb::GetOrderHistoryResponse { events }))
    }

    type WatchOrdersStream = BoxStream<'static, Result<pb::OrderEvent, Status>>;

    async fn watch_orders(
        &self,
        request: Request<pb::WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, Status> {
        let caller = Caller::from_request(&request)?;
        let events = self.inner.watch(caller.as_ref(), request.get_ref()).await?;
        Ok(Response::new(events.map(|e| e.map_err(Status::from)).boxed()))
    }
}
