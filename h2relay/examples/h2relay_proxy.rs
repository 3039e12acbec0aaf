//! A bare gRPC proxy on the relay: every request goes to one upstream address, for comparing
//! the relay with HAProxy and the gateway (h2load, ghz, `meshwork load`).
//!
//! usage: h2relay_proxy LISTEN_ADDR UPSTREAM_ADDR [UPSTREAM_CONNECTIONS]

use std::net::SocketAddr;
use std::sync::Arc;

use meshwork_h2relay::{Reject, RequestHead, Route, Router, ServerConfig, UpstreamConfig, UpstreamPool};
use tokio::net::TcpListener;

struct ToOnePool(Arc<UpstreamPool>);

impl Router for ToOnePool {
    fn route(&self, _head: &RequestHead) -> Result<Route, Reject> {
        Ok(Route::to(self.0.clone()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: h2relay_proxy LISTEN_ADDR UPSTREAM_ADDR [UPSTREAM_CONNECTIONS]";
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let mut up = UpstreamConfig::default();
    if let Some(n) = args.get(3) {
        up.connections = n.parse()?;
    }
    eprintln!("h2relay_proxy: {listen} -> {upstream} ({} upstream connections)", up.connections);
    let router = Arc::new(ToOnePool(UpstreamPool::new(upstream, up)));
    let config = Arc::new(ServerConfig::default());
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (sock, _) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        let (config, router) = (config.clone(), router.clone());
        tokio::spawn(async move {
            if let Err(e) = meshwork_h2relay::serve_connection(sock, config, router).await {
                eprintln!("h2relay_proxy: connection: {e}");
            }
        });
    }
}
