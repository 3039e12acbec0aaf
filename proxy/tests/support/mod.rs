//! What the gateway's test binaries share: free ports, test logging (`TEST_LOG=debug`), and
//! starting and stopping the real gateway from async tests.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};

use meshwork_proxy::{GatewayConfig, GatewayHandle};

/// Returns a loopback address whose port was free a moment ago.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Sends the gateway's logs to the test output when `TEST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
        .with_test_writer()
        .try_init();
}

/// Starts the gateway (its start blocks, so off the async worker).
pub async fn start(config: GatewayConfig) -> GatewayHandle {
    init_logs();
    tokio::task::spawn_blocking(move || meshwork_proxy::spawn(config)).await.unwrap().unwrap()
}

/// Drains and stops the gateway.
pub async fn stop(gateway: GatewayHandle) {
    tokio::task::spawn_blocking(move || gateway.shutdown()).await.unwrap().unwrap();
}
