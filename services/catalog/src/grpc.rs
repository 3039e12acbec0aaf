//! gRPC glue of `meshwork.catalog.v1.Catalog` and `meshwork.catalog.v1.Carts`: reads the
//! caller's verified identity ([`Caller`]), calls [`Products`], [`SearchIndex`] or [`Carts`],
//! and wraps the answer. No logic here.

use std::sync::Arc;

use meshwork_common::caller::Caller;
use meshwork_proto::pb::catalog::v1 as pb;
use pb::carts_server::Carts as CartsApi;
use pb::catalog_server::Catalog as CatalogApi;
use tonic::{Request, Response, Status};

use crate::carts::Carts;
use crate::products::Products;
use crate::search::SearchIndex;
use crate::validate;

/// The tonic service of `meshwork.catalog.v1.Catalog`.
#[derive(Clone)]
pub struct CatalogService {
    products: Arc<Products>,
    search: Arc<SearchIndex>,
}

impl CatalogService {
    /// Wraps the products and the replica's search index for tonic.
    pub fn new(products: Arc<Products>, search: Arc<SearchIndex>) -> Self {
        CatalogService { products, search }
    }
}

#[tonic::async_trait]
impl CatalogApi for CatalogService {
    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::CreateProductResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.products.create(request.into_inner(), caller.as_ref()).await?))
    }

    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::GetProductResponse>, Status> {
        Ok(Response::new(self.products.get(request.into_inner()).await?))
    }

    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::UpdateProductResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(self.products.update(request.into_inner(), caller.as_ref()).await?))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        Ok(Response::new(self.products.list(request.into_inner()).await?))
    }

    async fn search_products(
        &self,
        request: Request<pb::SearchProductsRequest>,
    ) -> Result<Response<pb::SearchProductsResponse>, Status> {
        let params = validate::search_products(&request.into_inner())?;
        Ok(Response::new(self.search.search(params).await?))
    }

    async fn list_categories(
        &self,
        request: Request<pb::ListCategoriesRequest>,
    ) -> Result<Response<pb::ListCategoriesResponse>, Status> {
        Ok(Response::new(self.products.categories(request.into_inner()).await?))
    }
}

/// The tonic service of `meshwork.catalog.v1.Carts`.
#[derive(Clone)]
pub struct CartsService {
    carts: Arc<Carts>,
}

impl CartsService {
    /// Wraps the carts for tonic.
    pub fn new(carts: Arc<Carts>) -> Self {
        CartsService { carts }
    }
}

#[tonic::async_trait]
impl CartsApi for CartsService {
    async fn add_item(&self, request: Request<pb::AddItemRequest>) -> Result<Response<pb::AddItemResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let cart = self.carts.add_item(request.into_inner(), caller.as_ref()).await?;
        Ok(Response::new(pb::AddItemResponse { cart: Some(cart) }))
    }

    async fn update_item(
        &self,
        request: Request<pb::UpdateItemRequest>,
    ) -> Result<Response<pb::UpdateItemResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let cart = self.carts.update_item(request.into_inner(), caller.as_ref()).await?;
        Ok(Response::new(pb::UpdateItemResponse { cart: Some(cart) }))
    }

    async fn remove_item(
        &self,
        request: Request<pb::RemoveItemRequest>,
    ) -> Result<Response<pb::RemoveItemResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let cart = self.carts.remove_item(request.into_inner(), caller.as_ref()).await?;
        Ok(Response::new(pb::RemoveItemResponse { cart: Some(cart) }))
    }

    async fn get_cart(&self, request: Request<pb::GetCartRequest>) -> Result<Response<pb::GetCartResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let cart = self.carts.get(request.into_inner(), caller.as_ref()).await?;
        Ok(Response::new(pb::GetCartResponse { cart: Some(cart) }))
    }

    async fn clear_cart(
        &self,
        request: Request<pb::ClearCartRequest>,
    ) -> Result<Response<pb::ClearCartResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let cart = self.carts.clear(request.into_inner(), caller.as_ref()).await?;
        Ok(Response::new(pb::ClearCartResponse { cart: Some(cart) }))
    }
}
