//! What the catalog's test suites share: product builders, clients of a hosted catalog, a
//! caller identity, and polling of a replica's search for a condition within a budget.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::catalog::v1 as pb;
use meshwork_test_support::TestServer;
use pb::carts_client::CartsClient;
use pb::catalog_client::CatalogClient;
use tonic::transport::Channel;

/// A fresh sku no other test of this run uses (etcd is shared).
pub fn sku(name: &str) -> String {
    meshwork_test_support::backends::unique(name).to_uppercase()
}

/// A product in USD with the given attributes.
pub fn product(sku: &str, title: &str, category: &str, price: i64, attributes: &[(&str, &str)]) -> pb::Product {
    pb::Product {
        sku: sku.into(),
        title: title.into(),
        description: String::new(),
        category: category.into(),
        price_minor: price,
        currency: "USD".into(),
        attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        status: 0,
        ..Default::default()
    }
}

/// The Catalog client of a server.
pub fn catalog(server: &TestServer) -> CatalogClient<Channel> {
    CatalogClient::new(server.channel.clone())
}

/// The Carts client of a server.
pub fn carts(server: &TestServer) -> CartsClient<Channel> {
    CartsClient::new(server.channel.clone())
}

/// Creates `product` (request id derived from its sku) and returns it as stored.
pub async fn create(client: &mut CatalogClient<Channel>, product: pb::Product) -> pb::Product {
    let request_id = format!("create-{}", product.sku);
    client
        .create_product(pb::CreateProductRequest { request_id, product: Some(product) })
        .await
        .expect("create product")
        .into_inner()
        .product
        .expect("product in the answer")
}

/// Returns `message` carrying the identity of `subject` with `roles`, as the gateway sends it.
pub fn as_caller<T>(message: T, subject: &str, roles: &[&str]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let identity = Identity::new(subject, roles.iter().map(|r| r.to_string()).collect(), Method::Jwt).encode();
    request.metadata_mut().insert(IDENTITY_HEADER, identity.parse().expect("identity header"));
    request
}

/// Runs `req` on the server's search.
pub async fn search(client: &mut CatalogClient<Channel>, req: pb::SearchProductsRequest) -> pb::SearchProductsResponse {
    client.search_products(req).await.expect("search").into_inner()
}

/// The skus of a search's hits, in order.
pub fn skus(response: &pb::SearchProductsResponse) -> Vec<String> {
    response.hits.iter().map(|h| h.product.as_ref().map(|p| p.sku.clone()).unwrap_or_default()).collect()
}

/// Polls `req` on `client` until `done` holds of the answer or `budget` passes; returns how
/// long it took, or `None` when it never held.
pub async fn poll_search(
    client: &mut CatalogClient<Channel>,
    req: &pb::SearchProductsRequest,
    budget: Duration,
    done: impl Fn(&pb::SearchProductsResponse) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if let Ok(answer) = client.search_products(req.clone()).await
            && done(answer.get_ref())
        {
            return Some(start.elapsed());
        }
        if start.elapsed() > budget {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A search for `query` with everything else unset.
pub fn query(query: &str) -> pb::SearchProductsRequest {
    pb::SearchProductsRequest { query: query.into(), ..Default::default() }
}
