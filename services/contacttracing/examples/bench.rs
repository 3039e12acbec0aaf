//! Benchmarks of the key server, for docs/BENCHMARKS.md:
//!
//! 1. **PublishKeys uploads per second**: prepares `--uploads` certificates through the whole
//!    verification flow (IssueCode -> VerifyCode -> GetCertificate, not timed), then sends the
//!    `--uploads` PublishKeys calls (14 keys each, one device each) from `--concurrency`
//!    workers and reports uploads/s with p50/p95/p99 latency;
//! 2. **export generation for `--keys` keys** (default 1,000,000): builds, signs and zips one
//!    TemporaryExposureKeyExport in process (what GetExport does after reading the keys), then
//!    verifies and parses it back, and reports both times and the archive size.
//!
//! In process (a contact-tracing server on a loopback port over an in-memory store):
//!
//! ```sh
//! cargo run --release -p meshwork-contacttracing --example bench -- --uploads 2000 --concurrency 32
//! ```
//!
//! Through a running gateway (`meshwork up`), with the API key of a `health_authority` user
//! (or an admin) for IssueCode:
//!
//! ```sh
//! cargo run --release -p meshwork-contacttracing --example bench -- \
//!     --gateway http://127.0.0.1:8080 --api-key mwk_... --uploads 2000 --concurrency 32
//! ```
//!
//! or `--token "$(meshwork token --sub ministry --role health_authority)"` instead of
//! `--api-key` for the development token `meshwork up` trusts.
//!
//! `--skip-export` leaves out the export benchmark, `--keys N` changes its size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use meshwork_gaen::export::{self as gx, TemporaryExposureKey};
use meshwork_gaen::verification::{HmacKey, tek_hmac_base64};
use meshwork_identity::{IDENTITY_HEADER, Identity, Method};
use meshwork_proto::pb::contacttracing::v1 as pb;
use meshwork_test_support::{TestServer, context, memory_store};
use pb::contact_tracing_client::ContactTracingClient;
use tonic::transport::Channel;

struct Args {
    gateway: Option<String>,
    api_key: Option<String>,
    token: Option<String>,
    uploads: usize,
    concurrency: usize,
    keys: usize,
    skip_export: bool,
}

fn args() -> Result<Args> {
    let mut out = Args {
        gateway: None,
        api_key: None,
        token: None,
        uploads: 1000,
        concurrency: 16,
        keys: 1_000_000,
        skip_export: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--gateway" => out.gateway = Some(value()?),
            "--api-key" => out.api_key = Some(value()?),
            "--token" => out.token = Some(value()?),
            "--uploads" => out.uploads = value()?.parse()?,
            "--concurrency" => out.concurrency = value()?.parse::<usize>()?.max(1),
            "--keys" => out.keys = value()?.parse()?,
            "--skip-export" => out.skip_export = true,
            other => bail!("unknown flag {other}; see the example's documentation"),
        }
    }
    Ok(out)
}

/// How IssueCode is authorized: the gateway's API key, or (in process, on loopback) the
/// identity the gateway would forward.
fn authorized<T>(args: &Args, message: T) -> Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    match (&args.api_key, &args.token) {
        (Some(key), _) => request.metadata_mut().insert("x-api-key", key.parse()?),
        // A JWT, e.g. `meshwork token --sub ministry --role health_authority`.
        (None, Some(token)) => request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?),
        (None, None) => {
            let identity = Identity::new("bench", vec!["health_authority".into()], Method::ApiKey);
            request.metadata_mut().insert(IDENTITY_HEADER, identity.encode().parse()?)
        }
    };
    Ok(request)
}

fn interval_now() -> i32 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    (secs / 600) as i32
}

fn daily_keys(days: i32) -> Vec<pb::ExposureKey> {
    let now = interval_now();
    let today = now - now % 144;
    (0..days)
        .map(|d| pb::ExposureKey {
            key_data: rand::random::<[u8; 16]>().to_vec(),
            rolling_start_interval_number: today - d * 144,
            rolling_period: 144,
            transmission_risk: 0,
        })
        .collect()
}

async fn prepare(args: &Args, c: &mut ContactTracingClient<Channel>, n: usize) -> Result<pb::PublishKeysRequest> {
    let issue = pb::IssueCodeRequest {
        request_id: format!("bench-{}-{n}", rand::random::<u64>()),
        test_type: pb::TestType::Confirmed as i32,
        symptom_onset_time: None,
        geohash: "tdr1v".into(),
    };
    let code = c.issue_code(authorized(args, issue)?).await?.into_inner().code;
    let token = c.verify_code(pb::VerifyCodeRequest { code }).await?.into_inner().token;
    let keys = daily_keys(14);
    let hmac_key: [u8; 32] = rand::random();
    let hmac_keys: Vec<HmacKey<'_>> = keys
        .iter()
        .map(|k| HmacKey {
            key_data: &k.key_data,
            rolling_start_interval_number: i64::from(k.rolling_start_interval_number),
            rolling_period: i64::from(k.rolling_period),
            transmission_risk: i64::from(k.transmission_risk),
        })
        .collect();
    let ekey_hmac = tek_hmac_base64(&hmac_key, &hmac_keys);
    let certificate = c.get_certificate(pb::GetCertificateRequest { token, ekey_hmac }).await?.into_inner().certificate;
    Ok(pb::PublishKeysRequest {
        keys,
        certificate,
        hmac_key: hmac_key.to_vec(),
        symptom_onset_interval: 0,
        revision_token: String::new(),
        device_id: format!("bench-device-{n}-{}", rand::random::<u32>()),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn publish_bench(args: &Args, channel: Channel) -> Result<()> {
    let mut c = ContactTracingClient::new(channel.clone());
    let started = Instant::now();
    let mut requests = Vec::with_capacity(args.uploads);
    for n in 0..args.uploads {
        requests.push(prepare(args, &mut c, n).await?);
    }
    println!("prepared {} certificates in {:?} (not timed below)", args.uploads, started.elapsed());
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let queue = queue.clone();
            let mut c = ContactTracingClient::new(channel.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                    let Some(req) = next else { break };
                    let t = Instant::now();
                    c.publish_keys(req).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, tonic::Status>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "PublishKeys: {} uploads (14 keys each) in {elapsed:?} with {} workers: {:.1} uploads/s, p50 {:?}, p95 {:?}, p99 {:?}",
        latencies.len(),
        args.concurrency,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
    );
    Ok(())
}

fn export_bench(n: usize) -> Result<()> {
    let start = interval_now() - 144;
    let keys: Vec<TemporaryExposureKey> = (0..n)
        .map(|i| TemporaryExposureKey {
            key_data: Some(rand::random::<[u8; 16]>().to_vec()),
            transmission_risk_level: Some(0),
            rolling_start_interval_number: Some(start - (i % 14) as i32 * 144),
            rolling_period: Some(144),
            report_type: Some(gx::ReportType::ConfirmedTest as i32),
            days_since_onset_of_symptoms: Some((i % 29) as i32 - 14),
        })
        .collect();
    let signer = gx::generate_signing_key();
    let info = gx::signature_info("v1", "404");
    let t = Instant::now();
    let archive = gx::build_archive(keys, 0, 3600, "IN", &signer, &info)?;
    let built = t.elapsed();
    let t = Instant::now();
    let export = gx::open_archive(&archive, Some(signer.verifying_key()))?;
    let opened = t.elapsed();
    println!(
        "export of {} keys: built, signed and zipped in {built:?} ({:.1} MiB archive); verified and parsed in {opened:?}",
        export.keys.len(),
        archive.len() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let (channel, _server) = match &args.gateway {
        Some(url) => (Channel::from_shared(url.clone())?.connect().await?, None),
        None => {
            let server = TestServer::hosting(meshwork_contacttracing::hosted, &context(memory_store())).await;
            (server.channel.clone(), Some(server))
        }
    };
    if args.uploads > 0 {
        publish_bench(&args, channel).await?;
    }
    if !args.skip_export {
        export_bench(args.keys)?;
    }
    Ok(())
}
