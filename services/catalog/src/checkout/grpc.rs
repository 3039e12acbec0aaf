//! The gRPC face of Checkout: decode, check the caller, call [`Checkouts`], encode. No logic.

use std::sync::Arc;

use meshwork_common::Caller;
use meshwork_common::mesh::CallContext;
use meshwork_proto::pb::catalog::v1::checkout_server::Checkout;
use meshwork_proto::pb::catalog::v1::{GetCheckoutRequest, GetCheckoutResponse, PlaceOrderRequest, PlaceOrderResponse};
use tonic::{Request, Response, Status};

use super::service::Checkouts;
use super::validate;

/// The role that may act on other users' checkouts.
const ADMIN: &str = "admin";

/// The tonic service behind `meshwork.catalog.v1.Checkout`.
#[derive(Debug, Clone)]
pub struct CheckoutService {
    checkouts: Arc<Checkouts>,
}

impl CheckoutService {
    /// Returns the service over `checkouts`.
    pub fn new(checkouts: Arc<Checkouts>) -> Self {
        CheckoutService { checkouts }
    }
}

#[tonic::async_trait]
impl Checkout for CheckoutService {
    async fn place_order(&self, request: Request<PlaceOrderRequest>) -> Result<Response<PlaceOrderResponse>, Status> {
        let cx = CallContext::from_request(&request);
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        validate::place_order(&req)?;
        if let Some(caller) = caller {
            caller.require_subject_or_role(&req.user_id, ADMIN)?;
        }
        Ok(Response::new(self.checkouts.place_order(req, cx).await?))
    }

    async fn get_checkout(
        &self,
        request: Request<GetCheckoutRequest>,
    ) -> Result<Response<GetCheckoutResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let req = request.into_inner();
        validate::get_checkout(&req)?;
        let rec = self.checkouts.get(&req.checkout_id).await?;
        if let Some(caller) = caller {
            caller.require_subject_or_role(&rec.user_id, ADMIN)?;
        }
        Ok(Response::new(GetCheckoutResponse { checkout: Some(rec.to_proto()) }))
    }
}
