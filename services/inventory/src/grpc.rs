//! gRPC glue: decodes requests (and the caller's verified identity), calls [`Inventory`],
//! encodes responses. No logic here.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::caller::Caller;
use meshwork_proto::pb::inventory::v1 as pb;
use pb::inventory_server::Inventory as InventoryApi;
use tonic::{Request, Response, Status};

use crate::service::Inventory;

/// The tonic service.
#[derive(Clone, Debug)]
pub struct InventoryService {
    inner: Arc<Inventory>,
}

impl InventoryService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Inventory>) -> Self {
        InventoryService { inner }
    }
}

#[tonic::async_trait]
impl InventoryApi for InventoryService {
    async fn adjust_stock(
        &self,
        request: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::AdjustStockResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.adjust_stock(caller.as_ref(), request.into_inner()).await?))
    }

    async fn batch_adjust(
        &self,
        request: Request<pb::BatchAdjustRequest>,
    ) -> Result<Response<pb::BatchAdjustResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.batch_adjust(caller.as_ref(), request.into_inner()).await?))
    }

    async fn get_stock(&self, request: Request<pb::GetStockRequest>) -> Result<Response<pb::GetStockResponse>, Status> {
        Ok(Response::new(self.inner.get_stock(request.into_inner()).await?))
    }

    async fn set_low_stock_threshold(
        &self,
        request: Request<pb::SetLowStockThresholdRequest>,
    ) -> Result<Response<pb::SetLowStockThresholdResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.set_threshold(caller.as_ref(), request.into_inner()).await?))
    }

    async fn reserve(&self, request: Request<pb::ReserveRequest>) -> Result<Response<pb::ReserveResponse>, Status> {
        Ok(Response::new(self.inner.reserve(request.into_inner()).await?))
    }

    async fn commit_reservation(
        &self,
        request: Request<pb::CommitReservationRequest>,
    ) -> Result<Response<pb::CommitReservationResponse>, Status> {
        let reservation = self.inner.commit(&request.into_inner().reservation_id).await?;
        Ok(Response::new(pb::CommitReservationResponse { reservation: Some(reservation) }))
    }

    async fn release_reservation(
        &self,
        request: Request<pb::ReleaseReservationRequest>,
    ) -> Result<Response<pb::ReleaseReservationResponse>, Status> {
        let reservation = self.inner.release(request.into_inner()).await?;
        Ok(Response::new(pb::ReleaseReservationResponse { reservation: Some(reservation) }))
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        let reservation = self.inner.get_reservation(&request.into_inner().reservation_id).await?;
        Ok(Response::new(pb::GetReservationResponse { reservation: Some(reservation) }))
    }

    type WatchStockStream = BoxStream<'static, Result<pb::StockEvent, Status>>;

    async fn watch_stock(
        &self,
        request: Request<pb::WatchStockRequest>,
    ) -> Result<Response<Self::WatchStockStream>, Status> {
        let events = self.inner.watch(request.into_inner()).await?;
        Ok(Response::new(events.map(|e| e.map_err(Status::from)).boxed()))
    }
}
