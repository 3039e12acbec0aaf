//! gRPC glue: decodes requests (and the caller's verified identity), calls [`Waste`],
//! encodes responses. No logic here.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use meshwork_common::caller::Caller;
use meshwork_proto::pb::waste::v1 as pb;
use pb::waste_server::Waste as WasteApi;
use tonic::{Request, Response, Status, Streaming};

use crate::service::Waste;

/// The tonic service.
#[derive(Clone, Debug)]
pub struct WasteService {
    inner: Arc<Waste>,
}

impl WasteService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Waste>) -> Self {
        WasteService { inner }
    }
}

#[tonic::async_trait]
impl WasteApi for WasteService {
    async fn create_site(&self, request: Request<pb::CreateSiteRequest>) -> Result<Response<pb::Site>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.create_site(caller.as_ref(), request.into_inner()).await?))
    }

    async fn create_truck(&self, request: Request<pb::CreateTruckRequest>) -> Result<Response<pb::Truck>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.create_truck(caller.as_ref(), request.into_inner()).await?))
    }

    async fn create_bin(&self, request: Request<pb::CreateBinRequest>) -> Result<Response<pb::Bin>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.create_bin(caller.as_ref(), request.into_inner()).await?))
    }

    async fn get_bin(&self, request: Request<pb::GetBinRequest>) -> Result<Response<pb::GetBinResponse>, Status> {
        Ok(Response::new(self.inner.get_bin(request.into_inner()).await?))
    }

    async fn list_bins(&self, request: Request<pb::ListBinsRequest>) -> Result<Response<pb::ListBinsResponse>, Status> {
        Ok(Response::new(self.inner.list_bins(request.into_inner()).await?))
    }

    async fn report_fill(
        &self,
        request: Request<pb::ReportFillRequest>,
    ) -> Result<Response<pb::ReportFillResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.report_fill(caller.as_ref(), request.into_inner()).await?))
    }

    async fn report_fill_stream(
        &self,
        request: Request<Streaming<pb::ReportFillRequest>>,
    ) -> Result<Response<pb::ReportFillStreamResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let accepted = self.inner.report_fill_stream(caller.as_ref(), request.into_inner()).await?;
        Ok(Response::new(pb::ReportFillStreamResponse { accepted }))
    }

    async fn plan_routes(&self, request: Request<pb::PlanRoutesRequest>) -> Result<Response<pb::Plan>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.plan_routes(caller.as_ref(), request.into_inner()).await?))
    }

    async fn get_plan(&self, request: Request<pb::GetPlanRequest>) -> Result<Response<pb::Plan>, Status> {
        Ok(Response::new(self.inner.get_plan(request.into_inner()).await?))
    }

    async fn start_route(&self, request: Request<pb::StartRouteRequest>) -> Result<Response<pb::Route>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.start_route(caller.as_ref(), request.into_inner()).await?))
    }

    async fn record_pickup(&self, request: Request<pb::RecordPickupRequest>) -> Result<Response<pb::Route>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.record_pickup(caller.as_ref(), request.into_inner()).await?))
    }

    async fn skip_stop(&self, request: Request<pb::SkipStopRequest>) -> Result<Response<pb::Route>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.skip_stop(caller.as_ref(), request.into_inner()).await?))
    }

    async fn track_truck(
        &self,
        request: Request<Streaming<pb::TruckPing>>,
    ) -> Result<Response<pb::TrackTruckResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let accepted = self.inner.track_truck(caller.as_ref(), request.into_inner()).await?;
        Ok(Response::new(pb::TrackTruckResponse { accepted }))
    }

    type WatchRouteStream = BoxStream<'static, Result<pb::RouteEvent, Status>>;

    async fn watch_route(
        &self,
        request: Request<pb::WatchRouteRequest>,
    ) -> Result<Response<Self::WatchRouteStream>, Status> {
        let events = self.inner.watch_route(request.into_inner()).await?;
        Ok(Response::new(events.map(|e| e.map_err(Status::from)).boxed()))
    }
}
