//! The floor the gateway is measured against: Pingora 0.9 with the gateway's server settings
//! (h2c downstream, the same h2 windows and stream limit, h2 upstream) and a `ProxyHttp` that
//! does nothing but send every request to one address. Whatever the gateway costs above this is
//! meshwork's own code; what this costs above a direct call is Pingora's.
//! `cargo run --release -p meshwork-gateway --example bare_pingora -- 127.0.0.1:8081 127.0.0.1:50051 [threads] [streams]`

use async_trait::async_trait;
use pingora_core::apps::HttpServerOptions;
use pingora_core::protocols::ALPN;
use pingora_core::protocols::http::v2::server::default_h2_options;
use pingora_core::server::Server;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, ProxyServiceBuilder, Session};

/// The same allocator as the `meshwork` binary, so that only the proxy logic differs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: std::net::SocketAddr,
    max_h2_streams: usize,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> pingora_core::Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.alpn = ALPN::H2;
        peer.options.max_h2_streams = self.max_h2_streams;
        peer.options.h2_stream_window_size = Some(1 << 20);
        peer.options.h2_connection_window_size = Some(8 << 20);
        Ok(Box::new(peer))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_pingora LISTEN UPSTREAM [THREADS] [UPSTREAM H2 STREAMS PER CONNECTION]";
    let listen = args.next().expect(usage);
    let upstream = args.next().expect(usage).parse().expect("UPSTREAM is host:port");
    let threads = args.next().map_or(2, |t| t.parse().expect("THREADS is a number"));
    let max_h2_streams = args.next().map_or(100, |t| t.parse().expect("STREAMS is a number"));
    let conf = ServerConf { threads, ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    let mut service = ProxyServiceBuilder::new(&server.configuration, Bare { upstream, max_h2_streams })
        .server_options(options)
        .build();
    if let Some(app) = service.app_logic_mut() {
        let mut h2 = default_h2_options();
        h2.max_concurrent_streams(1024)
            .initial_window_size(1 << 20)
            .initial_connection_window_size(8 << 20)
            .data_frame_budget(4 << 20);
        app.h2_options = Some(h2);
    }
    service.add_tcp(&listen);
    server.add_service(service);
    println!("bare pingora on {listen} -> {upstream}");
    server.run_forever();
}
