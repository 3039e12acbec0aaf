//! gRPC glue: decodes each request, checks it ([`validate`]), calls [`Warehouses`], encodes
//! the answer. Calls that reach other services capture the caller's deadline and trace first.
//! No logic here.

use std::sync::Arc;

use meshwork_common::mesh::CallContext;
use meshwork_proto::pb::warehouse::v1 as pb;
use pb::warehouse_server::Warehouse as WarehouseApi;
use tonic::{Request, Response, Status};

use crate::service::Warehouses;
use crate::validate;

/// The tonic service.
#[derive(Clone, Debug)]
pub struct WarehouseService {
    inner: Arc<Warehouses>,
}

impl WarehouseService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Warehouses>) -> Self {
        WarehouseService { inner }
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl WarehouseApi for WarehouseService {
    async fn create_warehouse(
        &self,
        request: Request<pb::CreateWarehouseRequest>,
    ) -> Answer<pb::CreateWarehouseResponse> {
        let req = request.into_inner();
        validate::create_warehouse(&req)?;
        Ok(Response::new(self.inner.create_warehouse(req).await?))
    }

    async fn get_warehouse(&self, request: Request<pb::GetWarehouseRequest>) -> Answer<pb::GetWarehouseResponse> {
        let req = request.into_inner();
        validate::get_warehouse(&req)?;
        Ok(Response::new(self.inner.get_warehouse(req).await?))
    }

    async fn create_locations(
        &self,
        request: Request<pb::CreateLocationsRequest>,
    ) -> Answer<pb::CreateLocationsResponse> {
        let req = request.into_inner();
        validate::create_locations(&req)?;
        Ok(Response::new(self.inner.create_locations(req).await?))
    }

    async fn get_location(&self, request: Request<pb::GetLocationRequest>) -> Answer<pb::GetLocationResponse> {
        let req = request.into_inner();
        validate::get_location(&req)?;
        Ok(Response::new(self.inner.get_location(req).await?))
    }

    async fn list_locations(&self, request: Request<pb::ListLocationsRequest>) -> Answer<pb::ListLocationsResponse> {
        let req = request.into_inner();
        let size = validate::list_locations(&req)?;
        Ok(Response::new(self.inner.list_locations(req, size).await?))
    }

    async fn get_sku_stock(&self, request: Request<pb::GetSkuStockRequest>) -> Answer<pb::GetSkuStockResponse> {
        let req = request.into_inner();
        validate::get_sku_stock(&req)?;
        Ok(Response::new(self.inner.get_sku_stock(req).await?))
    }

    async fn create_purchase_order(
        &self,
        request: Request<pb::CreatePurchaseOrderRequest>,
    ) -> Answer<pb::CreatePurchaseOrderResponse> {
        let req = request.into_inner();
        validate::create_purchase_order(&req)?;
        Ok(Response::new(self.inner.create_purchase_order(req).await?))
    }

    async fn get_purchase_order(
        &self,
        request: Request<pb::GetPurchaseOrderRequest>,
    ) -> Answer<pb::GetPurchaseOrderResponse> {
        let req = request.into_inner();
        validate::get_purchase_order(&req)?;
        Ok(Response::new(self.inner.get_purchase_order(req).await?))
    }

    async fn receive(&self, request: Request<pb::ReceiveRequest>) -> Answer<pb::ReceiveResponse> {
        let req = request.into_inner();
        let expiries = validate::receive(&req)?;
        Ok(Response::new(self.inner.receive(req, expiries).await?))
    }

    async fn suggest_put_away(
        &self,
        request: Request<pb::SuggestPutAwayRequest>,
    ) -> Answer<pb::SuggestPutAwayResponse> {
        let req = request.into_inner();
        validate::suggest_put_away(&req)?;
        Ok(Response::new(self.inner.suggest_put_away(req).await?))
    }

    async fn put_away(&self, request: Request<pb::PutAwayRequest>) -> Answer<pb::PutAwayResponse> {
        let cx = CallContext::from_request(&request);
        let req = request.into_inner();
        validate::put_away(&req)?;
        Ok(Response::new(self.inner.put_away(&cx, req).await?))
    }

    async fn move_stock(&self, request: Request<pb::MoveStockRequest>) -> Answer<pb::MoveStockResponse> {
        let req = request.into_inner();
        validate::move_stock(&req)?;
        Ok(Response::new(self.inner.move_stock(req).await?))
    }

    async fn build_wave(&self, request: Request<pb::BuildWaveRequest>) -> Answer<pb::BuildWaveResponse> {
        let cx = CallContext::from_request(&request);
        let req = request.into_inner();
        let max_orders = validate::build_wave(&req)?;
        Ok(Response::new(self.inner.build_wave(&cx, req, max_orders).await?))
    }

    async fn get_wave(&self, request: Request<pb::GetWaveRequest>) -> Answer<pb::GetWaveResponse> {
        let req = request.into_inner();
        validate::get_wave(&req)?;
        Ok(Response::new(self.inner.get_wave(req).await?))
    }

    async fn confirm_pick(&self, request: Request<pb::ConfirmPickRequest>) -> Answer<pb::ConfirmPickResponse> {
        let req = request.into_inner();
        validate::confirm_pick(&req)?;
        Ok(Response::new(self.inner.confirm_pick(req).await?))
    }

    async fn pack(&self, request: Request<pb::PackRequest>) -> Answer<pb::PackResponse> {
        let cx = CallContext::from_request(&request);
        let req = request.into_inner();
        validate::pack(&req)?;
        Ok(Response::new(self.inner.pack(&cx, req).await?))
    }

    async fn ship(&self, request: Request<pb::ShipRequest>) -> Answer<pb::ShipResponse> {
        let cx = CallContext::from_request(&request);
        let req = request.into_inner();
        validate::ship(&req)?;
        Ok(Response::new(self.inner.ship(&cx, req).await?))
    }

    async fn get_fulfillment(&self, request: Request<pb::GetFulfillmentRequest>) -> Answer<pb::GetFulfillmentResponse> {
        let req = request.into_inner();
        validate::get_fulfillment(&req)?;
        Ok(Response::new(self.inner.get_fulfillment(req).await?))
    }

    async fn plan_cycle_counts(
        &self,
        request: Request<pb::PlanCycleCountsRequest>,
    ) -> Answer<pb::PlanCycleCountsResponse> {
        let req = request.into_inner();
        validate::plan_cycle_counts(&req)?;
        Ok(Response::new(self.inner.plan_cycle_counts(req).await?))
    }

    async fn record_count(&self, request: Request<pb::RecordCountRequest>) -> Answer<pb::RecordCountResponse> {
        let cx = CallContext::from_request(&request);
        let req = request.into_inner();
        validate::record_count(&req)?;
        Ok(Response::new(self.inner.record_count(&cx, req).await?))
    }

    async fn list_audit(&self, request: Request<pb::ListAuditRequest>) -> Answer<pb::ListAuditResponse> {
        let req = request.into_inner();
        let size = validate::list_audit(&req)?;
        Ok(Response::new(self.inner.list_audit(req, size).await?))
    }
}
