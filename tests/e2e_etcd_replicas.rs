//! End to end on the distributed store: a real 3-member etcd cluster, two `meshwork serve
//! urlshortener` replicas on it and one `meshwork gateway` in front of both, all real
//! processes. Codes never collide across replicas, an alias has exactly one winner, and a code
//! created through either replica resolves through both and through the gateway.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use meshwork_proto::pb::urlshortener::v1 as pb;
use meshwork_storage::testing::EtcdCluster;
use pb::url_shortener_client::UrlShortenerClient;
use support::{Mesh, free_addr, header, http_get};
use tonic::Code;
use tonic::transport::Channel;

async fn client(addr: SocketAddr) -> UrlShortenerClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    UrlShortenerClient::new(channel)
}

fn shorten(url: String, alias: &str) -> pb::ShortenRequest {
    pb::ShortenRequest { long_url: url, custom_alias: alias.into(), ..Default::default() }
}

fn resolve(code: &str) -> pb::ResolveRequest {
    pb::ResolveRequest { code: code.into(), referrer: String::new(), skip_click: true }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_etcd_behind_one_gateway() {
    let cluster =
        EtcdCluster::start(3).expect("a 3-member etcd cluster (etcd is installed by scripts/install-deps.sh)");
    let store = cluster.store_url().to_string();
    let gateway_addr = free_addr();
    let public = format!("http://{gateway_addr}");
    let replicas: Vec<Mesh> = (0..2)
        .map(|_| {
            let addr = free_addr();
            let a = addr.to_string();
            Mesh::start(
                &["serve", "urlshortener", "--listen", &a, "--store", &store, "--public-url", &public],
                addr,
                "meshwork serving",
            )
        })
        .collect();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{gateway_addr}\"\n\n[pools.urlshortener]\nendpoints = [\"{}\", \"{}\"]\n\n\
             [[routes]]\nservice = \"meshwork.urlshortener.v1.UrlShortener\"\npool = \"urlshortener\"\n\n\
             [[http_routes]]\nkind = \"redirect\"\npath = \"/{{code}}\"\n\
             method = \"meshwork.urlshortener.v1.UrlShortener/Resolve\"\nlocation_field = \"long_url\"\n",
            replicas[0].addr, replicas[1].addr
        ),
    )
    .unwrap();
    let gateway = Mesh::start(&["gateway", "--config", config.to_str().unwrap()], gateway_addr, "gateway ready");

    let mut a = client(replicas[0].addr).await;
    let mut b = client(replicas[1].addr).await;
    // Created through either replica, resolved through both.
    let via_a = a.shorten(shorten("https://example.com/from-a".into(), "")).await.unwrap().into_inner().code;
    let via_b = b.shorten(shorten("https://example.com/from-b".into(), "")).await.unwrap().into_inner().code;
    for (code, url) in [(&via_a, "https://example.com/from-a"), (&via_b, "https://example.com/from-b")] {
        assert_eq!(a.resolve(resolve(code)).await.unwrap().into_inner().long_url, url);
        assert_eq!(b.resolve(resolve(code)).await.unwrap().into_inner().long_url, url);
    }

    // 1,000 concurrent Shorten calls through the gateway: 1,000 distinct codes.
    let gw = client(gateway_addr).await;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let mut c = gw.clone();
        tasks.push(tokio::spawn(async move {
            c.shorten(shorten(format!("https://example.com/bulk/{i}"), "")).await.map(|r| r.into_inner().code)
        }));
    }
    let mut codes = HashSet::new();
    for t in tasks {
        let code = t.await.unwrap().expect("Shorten through the gateway");
        assert!(codes.insert(code.clone()), "code {code} handed out twice");
    }
    assert_eq!(codes.len(), 1000);
    assert!(!codes.contains(&via_a) && !codes.contains(&via_b));

    // 100 concurrent Shorten calls with one alias: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut c = gw.clone();
        tasks.push(tokio::spawn(async move {
            c.shorten(shorten(format!("https://example.com/alias/{i}"), "big-launch")).await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.into_inner().code, "big-launch");
                winners += 1;
            }
            Err(s) => assert_eq!(s.code(), Code::AlreadyExists, "{s:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one alias winner");

    // Codes made through the gateway resolve on both replicas and redirect over HTTP.
    for code in codes.iter().take(20) {
        a.resolve(resolve(code)).await.unwrap();
        b.resolve(resolve(code)).await.unwrap();
    }
    let (status, headers, _) = http_get(gateway_addr, "/big-launch", &[]);
    assert_eq!(status, 302);
    assert!(header(&headers, "location").is_some_and(|l| l.starts_with("https://example.com/alias/")));

    assert!(gateway.terminate(Duration::from_secs(30)).success());
    for r in replicas {
        assert!(r.terminate(Duration::from_secs(30)).success());
    }
}
