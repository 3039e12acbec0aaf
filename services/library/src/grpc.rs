//! gRPC glue of `meshwork.library.v1.Library`: reads the caller's verified identity
//! ([`Caller`]), calls [`Library`] (or the replica's [`SearchIndex`]) and wraps the answer. No
//! logic here.

use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_proto::pb::library::v1 as pb;
use pb::library_server::Library as LibraryApi;
use tonic::{Request, Response, Status};

use crate::search::SearchIndex;
use crate::service::Library;

/// The tonic service of `meshwork.library.v1.Library`.
#[derive(Clone)]
pub struct LibraryService {
    library: Arc<Library>,
    search: Arc<SearchIndex>,
}

impl LibraryService {
    /// Wraps the library and the replica's search index for tonic.
    pub fn new(library: Arc<Library>, search: Arc<SearchIndex>) -> Self {
        LibraryService { library, search }
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl LibraryApi for LibraryService {
    async fn add_title(&self, request: Request<pb::AddTitleRequest>) -> Answer<pb::AddTitleResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.add_title(request.into_inner(), caller.as_ref()).await?))
    }

    async fn get_title(&self, request: Request<pb::GetTitleRequest>) -> Answer<pb::GetTitleResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.get_title(request.into_inner(), caller.as_ref()).await?))
    }

    async fn add_copy(&self, request: Request<pb::AddCopyRequest>) -> Answer<pb::AddCopyResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.add_copy(request.into_inner(), caller.as_ref()).await?))
    }

    async fn get_copy(&self, request: Request<pb::GetCopyRequest>) -> Answer<pb::GetCopyResponse> {
        Ok(Response::new(self.library.get_copy(request.into_inner()).await?))
    }

    async fn register_member(&self, request: Request<pb::RegisterMemberRequest>) -> Answer<pb::RegisterMemberResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.register_member(request.into_inner(), caller.as_ref()).await?))
    }

    async fn search_catalog(&self, request: Request<pb::SearchCatalogRequest>) -> Answer<pb::SearchCatalogResponse> {
        Ok(Response::new(self.library.search(&self.search, request.into_inner()).await?))
    }

    async fn checkout(&self, request: Request<pb::CheckoutRequest>) -> Answer<pb::CheckoutResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.checkout(request.into_inner(), caller.as_ref()).await?))
    }

    async fn r#return(&self, request: Request<pb::ReturnRequest>) -> Answer<pb::ReturnResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.return_copy(request.into_inner(), caller.as_ref()).await?))
    }

    async fn renew(&self, request: Request<pb::RenewRequest>) -> Answer<pb::RenewResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.renew(request.into_inner(), caller.as_ref()).await?))
    }

    async fn place_hold(&self, request: Request<pb::PlaceHoldRequest>) -> Answer<pb::PlaceHoldResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.place_hold(request.into_inner(), caller.as_ref()).await?))
    }

    async fn cancel_hold(&self, request: Request<pb::CancelHoldRequest>) -> Answer<pb::CancelHoldResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.cancel_hold(request.into_inner(), caller.as_ref()).await?))
    }

    async fn pay_fine(&self, request: Request<pb::PayFineRequest>) -> Answer<pb::PayFineResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.pay_fine(request.into_inner(), caller.as_ref()).await?))
    }

    async fn member_account(&self, request: Request<pb::MemberAccountRequest>) -> Answer<pb::MemberAccountResponse> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.library.member_account(request.into_inner(), caller.as_ref()).await?))
    }
}
