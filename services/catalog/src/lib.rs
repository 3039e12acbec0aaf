//! The shop (`meshwork.catalog.v1`): the product catalog with its category tree (Catalog),
//! ranked full-text search with facets kept as a per-replica tantivy projection of the store
//! (`SearchProducts`), a cart per user (Carts), and checkout (Checkout), the saga that turns a
//! cart into a paid, confirmed order across inventory, orders and payments.
//!
//! Products live under `catalog/products/<sku>`; each write also maintains per-category
//! listing entries and ACTIVE counts and appends to the catalog's event log, in one store
//! transaction. Every replica builds its search index from a scan and follows the store's
//! watch, so a write through any replica is searchable on every replica within a second.

#![forbid(unsafe_code)]

pub mod cart;
pub mod carts;
pub mod categories;
pub mod checkout;
pub mod grpc;
pub mod keys;
pub mod model;
pub mod products;
pub mod search;
pub mod validate;

use std::sync::Arc;

use meshwork_common::server::{HostedService, ServiceContext};
use meshwork_common::spec::{ServiceSpec, grpc_name};
use meshwork_proto::pb::catalog::v1::carts_server::CartsServer;
use meshwork_proto::pb::catalog::v1::catalog_server::CatalogServer;
use meshwork_proto::pb::catalog::v1::checkout_server::CheckoutServer;

pub use carts::Carts;
pub use grpc::{CartsService, CatalogService};
pub use products::Products;
pub use search::SearchIndex;

/// The service's entry in the mesh's table: Catalog, Carts and Checkout. The gateway may retry
/// the read-only methods and those a `request_id` makes idempotent (CreateProduct,
/// PlaceOrder: a retry answers the first call's answer).
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "catalog",
        about: "products, ranked search with facets, carts and the checkout saga",
        grpc_services: vec![
            grpc_name::<CatalogServer<CatalogService>>(),
            grpc_name::<CartsServer<CartsService>>(),
            grpc_name::<CheckoutServer<checkout::CheckoutService>>(),
        ],
        hosted,
        http_routes: vec![],
        idempotent_methods: vec![
            "GetProduct",
            "ListProducts",
            "SearchProducts",
            "ListCategories",
            "GetCart",
            "GetCheckout",
            "CreateProduct",
            "PlaceOrder",
        ],
    }
}

/// Builds the service on `ctx`: the Catalog and Carts servers, this replica's search index
/// (built from a scan and following the store's watch in a background task), and checkout.
pub fn hosted(ctx: &ServiceContext) -> HostedService {
    let products = Arc::new(Products::new(ctx.store.clone(), ctx.clock.clone()));
    let carts = Arc::new(Carts::new(ctx.store.clone(), ctx.clock.clone()));
    let index = Arc::new(SearchIndex::new());
    let builder = HostedService::builder("catalog")
        .grpc(CatalogServer::new(CatalogService::new(products, index.clone())))
        .grpc(CartsServer::new(CartsService::new(carts)))
        .task(search::follow::run(index, ctx.store.clone()));
    checkout::install(builder, ctx).build()
}
