//! gRPC glue: decodes requests, reads the caller ([`Caller`], optional), calls
//! [`ContactTracing`], encodes responses. No logic here.

use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_proto::pb::contacttracing::v1 as pb;
use pb::contact_tracing_server::ContactTracing as Api;
use tonic::{Request, Response, Status};

use crate::service::ContactTracing;

/// The tonic service.
#[derive(Clone, Debug)]
pub struct ContactTracingService {
    inner: Arc<ContactTracing>,
}

impl ContactTracingService {
    /// Wraps `inner` for tonic.
    pub fn new(inner: Arc<ContactTracing>) -> Self {
        ContactTracingService { inner }
    }
}

#[tonic::async_trait]
impl Api for ContactTracingService {
    async fn issue_code(
        &self,
        request: Request<pb::IssueCodeRequest>,
    ) -> Result<Response<pb::IssueCodeResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.inner.issue_code(request.get_ref(), caller.as_ref()).await?))
    }

    async fn verify_code(
        &self,
        request: Request<pb::VerifyCodeRequest>,
    ) -> Result<Response<pb::VerifyCodeResponse>, Status> {
        Ok(Response::new(self.inner.verify_code(request.get_ref()).await?))
    }

    async fn get_certificate(
        &self,
        request: Request<pb::GetCertificateRequest>,
    ) -> Result<Response<pb::GetCertificateResponse>, Status> {
        Ok(Response::new(self.inner.get_certificate(request.get_ref()).await?))
    }

    async fn publish_keys(
        &self,
        request: Request<pb::PublishKeysRequest>,
    ) -> Result<Response<pb::PublishKeysResponse>, Status> {
        Ok(Response::new(self.inner.publish_keys(request.get_ref()).await?))
    }

    async fn list_exports(
        &self,
        request: Request<pb::ListExportsRequest>,
    ) -> Result<Response<pb::ListExportsResponse>, Status> {
        Ok(Response::new(self.inner.list_exports(request.get_ref()).await?))
    }

    async fn get_export(
        &self,
        request: Request<pb::GetExportRequest>,
    ) -> Result<Response<pb::GetExportResponse>, Status> {
        Ok(Response::new(self.inner.get_export(request.get_ref()).await?))
    }

    async fn get_signing_key(
        &self,
        _request: Request<pb::GetSigningKeyRequest>,
    ) -> Result<Response<pb::GetSigningKeyResponse>, Status> {
        Ok(Response::new(self.inner.get_signing_key().await?))
    }

    async fn area_counts(
        &self,
        request: Request<pb::AreaCountsRequest>,
    ) -> Result<Response<pb::AreaCountsResponse>, Status> {
        Ok(Response::new(self.inner.area_counts(request.get_ref()).await?))
    }
}
