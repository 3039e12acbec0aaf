//! storebench: write and point-read rates of the storage backends.
//!
//! ```text
//! cargo run --release -p meshwork-storage --example storebench -- [--secs N] [--etcd etcd://h:p,...] [--spawn-etcd]
//! ```
//!
//! Always measures `embedded:<tempdir>`; measures etcd when given a URL or `--spawn-etcd`
//! (a single-node etcd from the `etcd` binary on PATH). Each figure runs for `--secs`
//! seconds (default 3). Keys are 16 bytes, values 100 bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meshwork_storage::{DynStore, Mutation, StoreUrl};
use rand::Rng;

const VALUE: [u8; 100] = [b'v'; 100];

fn key(prefix: &str, i: u64) -> Vec<u8> {
    format!("{prefix}{i:012}").into_bytes()
}

struct Figures {
    sequential: f64,
    concurrent: f64,
    batched: f64,
    reads_seq: f64,
    reads_concurrent: f64,
}

async fn run_for<F, Fut>(tasks: usize, secs: Duration, f: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let f = Arc::new(f);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + secs;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let f = f.clone();
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let n = f(t, i).await;
                done.fetch_add(n, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for h in handles {
        if let Err(e) = h.await {
            eprintln!("bench task failed: {e}");
        }
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Returns the rate of random point reads of the first `existing` batched keys by `tasks` tasks.
async fn point_reads(store: DynStore, tasks: usize, secs: Duration, existing: u64) -> f64 {
    run_for(tasks, secs, move |_, _| {
        let s = store.clone();
        async move {
            let i = rand::rng().random_range(0..existing);
            let got = s.get(&key("b/", i)).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(got.is_some(), "key b/{i} missing");
            1
        }
    })
    .await
}

async fn bench(store: DynStore, secs: Duration) -> Figures {
    let s = store.clone();
    let sequential = run_for(1, secs, move |_, i| {
        let s = s.clone();
        async move {
            s.write(vec![], vec![Mutation::put(key("s/", i), VALUE)]).await.map(|_| 1).unwrap_or_else(|e| panic!("{e}"))
        }
    })
    .await;
    let s = store.clone();
    let concurrent = run_for(64, secs, move |t, i| {
        let s = s.clone();
        async move {
            let k = key(&format!("c{t:02}/"), i);
            s.write(vec![], vec![Mutation::put(k, VALUE)]).await.map(|_| 1).unwrap_or_else(|e| panic!("{e}"))
        }
    })
    .await;
    let s = store.clone();
    let batched = run_for(1, secs, move |_, i| {
        let s = s.clone();
        async move {
            let muts = (0..128).map(|j| Mutation::put(key("b/", i * 128 + j), VALUE)).collect();
            s.write(vec![], muts).await.map(|_| 128).unwrap_or_else(|e| panic!("{e}"))
        }
    })
    .await;
    // Point reads of keys the batched phase wrote (at least 128 of them exist).
    let existing = (batched * secs.as_secs_f64()) as u64 / 128 * 128;
    let existing = existing.max(128);
    let reads_seq = point_reads(store.clone(), 1, secs, existing).await;
    let reads_concurrent = point_reads(store, 64, secs, existing).await;
    Figures { sequential, concurrent, batched, reads_seq, reads_concurrent }
}

fn print(name: &str, f: &Figures) {
    println!("{name}");
    println!("  sequential writes (1 task, 1 put each)   {:>10.0} writes/s", f.sequential);
    println!("  concurrent writes (64 tasks, 1 put each) {:>10.0} writes/s", f.concurrent);
    println!("  batched writes (1 task, 128 puts each)   {:>10.0} keys/s", f.batched);
    println!("  point reads (1 task)                     {:>10.0} reads/s", f.reads_seq);
    println!("  point reads (64 tasks)                   {:>10.0} reads/s", f.reads_concurrent);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut secs = Duration::from_secs(3);
    let mut etcd_url: Option<StoreUrl> = None;
    let mut spawn_etcd = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = Duration::from_secs_f64(args.next().unwrap_or_default().parse()?),
            "--etcd" => etcd_url = Some(args.next().unwrap_or_default().parse().map_err(anyhow::Error::msg)?),
            "--spawn-etcd" => spawn_etcd = true,
            other if other.starts_with("etcd://") => etcd_url = Some(other.parse().map_err(anyhow::Error::msg)?),
            "-h" | "--help" => {
                println!("usage: storebench [--secs N] [--etcd etcd://host:port,...] [--spawn-etcd]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    println!("each figure runs {secs:?}; 16-byte keys, 100-byte values");

    let dir = tempfile::tempdir()?;
    let url = StoreUrl::Embedded(dir.path().to_path_buf());
    let store = meshwork_storage::open(&url).await?;
    let f = bench(store, secs).await;
    print(&format!("embedded ({url})"), &f);

    let _cluster;
    if spawn_etcd && etcd_url.is_none() {
        let cluster = tokio::task::spawn_blocking(|| meshwork_storage::testing::EtcdCluster::start(1))
            .await?
            .map_err(anyhow::Error::msg)?;
        etcd_url = Some(cluster.store_url());
        _cluster = cluster;
    }
    if let Some(url) = etcd_url {
        let store = meshwork_storage::open(&url).await?;
        let f = bench(store, secs).await;
        print(&format!("etcd ({url})"), &f);
    }
    Ok(())
}
