//! A tonic backend for manual checks and benchmarks: grpc.health.v1 plus a trivial
//! meshwork.urlshortener.v1.UrlShortener whose Resolve answers `https://example.com/<code>`.
//! `cargo run -p meshwork-gateway --example bench_backend -- 127.0.0.1:50051`

use meshwork_proto::pb::urlshortener::v1::url_shortener_server::{UrlShortener, UrlShortenerServer};
use meshwork_proto::pb::urlshortener::v1::*;
use tonic::{Request, Response, Status};

struct Echo;

#[tonic::async_trait]
impl UrlShortener for Echo {
    async fn shorten(&self, _: Request<ShortenRequest>) -> Result<Response<ShortenResponse>, Status> {
        Err(Status::unimplemented("bench backend"))
    }
    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveResponse>, Status> {
        let code = request.into_inner().code;
        if code == "missing" {
            return Err(Status::not_found("no such code"));
        }
        Ok(Response::new(ResolveResponse { long_url: format!("https://example.com/{code}"), link: None }))
    }
    async fn get_link(&self, _: Request<GetLinkRequest>) -> Result<Response<GetLinkResponse>, Status> {
        Err(Status::unimplemented("bench backend"))
    }
    async fn get_stats(&self, _: Request<GetStatsRequest>) -> Result<Response<GetStatsResponse>, Status> {
        Err(Status::unimplemented("bench backend"))
    }
    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Err(Status::unimplemented("bench backend"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50051".into()).parse()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(UrlShortenerServer::new(Echo))
        .serve_with_shutdown(addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
