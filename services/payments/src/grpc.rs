//! gRPC glue: decodes requests, reads the caller ([`Caller`], optional: the dev gateway allows
//! anonymous calls), calls [`Payments`], encodes responses. No logic here.

use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_proto::pb::payments::v1 as pb;
use pb::payments_server::Payments as PaymentsApi;
use tonic::{Request, Response, Status};

use crate::service::Payments;

/// The tonic service.
#[derive(Clone, Debug)]
pub struct PaymentsService {
    inner: Arc<Payments>,
}

impl PaymentsService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<Payments>) -> Self {
        PaymentsService { inner }
    }
}

#[tonic::async_trait]
impl PaymentsApi for PaymentsService {
    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let payment = self.inner.authorize(request.get_ref(), caller.as_ref()).await?;
        Ok(Response::new(pb::AuthorizeResponse { payment: Some(payment) }))
    }

    async fn capture(&self, request: Request<pb::CaptureRequest>) -> Result<Response<pb::CaptureResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let payment = self.inner.capture(request.get_ref(), caller.as_ref()).await?;
        Ok(Response::new(pb::CaptureResponse { payment: Some(payment) }))
    }

    async fn void(&self, request: Request<pb::VoidRequest>) -> Result<Response<pb::VoidResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let payment = self.inner.void(request.get_ref(), caller.as_ref()).await?;
        Ok(Response::new(pb::VoidResponse { payment: Some(payment) }))
    }

    async fn refund(&self, request: Request<pb::RefundRequest>) -> Result<Response<pb::RefundResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let payment = self.inner.refund(request.get_ref(), caller.as_ref()).await?;
        Ok(Response::new(pb::RefundResponse { payment: Some(payment) }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let payment = self.inner.get(request.get_ref(), caller.as_ref()).await?;
        Ok(Response::new(pb::GetPaymentResponse { payment: Some(payment) }))
    }

    async fn list_payments(
        &self,
        request: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let (payments, next_page_token) = self.inner.list(request.get_ref(), caller.as_ref()).await?;
        Ok(Response::new(pb::ListPaymentsResponse { payments, next_page_token }))
    }
}
