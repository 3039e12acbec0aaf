//! gRPC glue: decodes requests (and the caller's verified identity), calls [`Parking`],
//! encodes responses. No logic here.

use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_proto::pb::parking::v1 as pb;
use pb::parking_server::Parking as ParkingApi;
use tonic::{Request, Response, Status};

use crate::service::Parking;

/// The tonic service.
#[derive(Clone, Debug)]
pub struct ParkingService {
    inner: Arc<Parking>,
}

impl ParkingService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Parking>) -> Self {
        ParkingService { inner }
    }
}

#[tonic::async_trait]
impl ParkingApi for ParkingService {
    async fn create_lot(
        &self,
        request: Request<pb::CreateLotRequest>,
    ) -> Result<Response<pb::CreateLotResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.create_lot(caller.as_ref(), request.into_inner()).await?))
    }

    async fn get_lot(&self, request: Request<pb::GetLotRequest>) -> Result<Response<pb::GetLotResponse>, Status> {
        Ok(Response::new(self.inner.get_lot(request.into_inner()).await?))
    }

    async fn search_availability(
        &self,
        request: Request<pb::SearchAvailabilityRequest>,
    ) -> Result<Response<pb::SearchAvailabilityResponse>, Status> {
        Ok(Response::new(self.inner.search(request.into_inner()).await?))
    }

    async fn reserve(&self, request: Request<pb::ReserveRequest>) -> Result<Response<pb::ReserveResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.reserve(caller.as_ref(), request.into_inner()).await?))
    }

    async fn confirm_reservation(
        &self,
        request: Request<pb::ConfirmReservationRequest>,
    ) -> Result<Response<pb::ConfirmReservationResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let reservation = self.inner.confirm(caller.as_ref(), &request.into_inner().reservation_id).await?;
        Ok(Response::new(pb::ConfirmReservationResponse { reservation: Some(reservation) }))
    }

    async fn cancel_reservation(
        &self,
        request: Request<pb::CancelReservationRequest>,
    ) -> Result<Response<pb::CancelReservationResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let reservation = self.inner.cancel(caller.as_ref(), request.into_inner()).await?;
        Ok(Response::new(pb::CancelReservationResponse { reservation: Some(reservation) }))
    }

    async fn check_in(&self, request: Request<pb::CheckInRequest>) -> Result<Response<pb::CheckInResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let reservation = self.inner.check_in(caller.as_ref(), &request.into_inner().reservation_id).await?;
        Ok(Response::new(pb::CheckInResponse { reservation: Some(reservation) }))
    }

    async fn check_out(&self, request: Request<pb::CheckOutRequest>) -> Result<Response<pb::CheckOutResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let reservation = self.inner.check_out(caller.as_ref(), &request.into_inner().reservation_id).await?;
        Ok(Response::new(pb::CheckOutResponse { reservation: Some(reservation) }))
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let reservation = self.inner.get_reservation(caller.as_ref(), &request.into_inner().reservation_id).await?;
        Ok(Response::new(pb::GetReservationResponse { reservation: Some(reservation) }))
    }

    async fn list_reservations(
        &self,
        request: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.list(caller.as_ref(), request.into_inner()).await?))
    }
}
