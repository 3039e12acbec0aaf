//! Scenarios: a TOML file describing a realistic mix of calls on one target — setup steps
//! that create data and capture a response field into a key list (e.g. Shorten -> codes),
//! then a weighted mix whose entries pick keys from those lists uniformly, each in turn, or
//! over a Zipf distribution (`{{.Key}}` in their data). `meshwork load --scenario FILE` runs it, prints a
//! summary per call and, with `--append-to`, appends a Markdown table to that file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use prost_reflect::{DynamicMessage, MethodDescriptor, ReflectMessage, Value};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Deserialize;
use tokio::task::JoinSet;

use crate::args::LoadArgs;
use crate::duration::{self, human};
use crate::engine::{self, KeyPicker, Op, Plan, Stop};
use crate::payload::{Metadata, Payload};
use crate::report::{Options, Report};
use crate::schedule::Schedule;
use crate::template::CallData;
use crate::transport::{self, CallTarget};
use crate::{Error, schema, status};

fn default_concurrency() -> usize {
    64
}
fn default_one() -> usize {
    1
}
fn default_setup_concurrency() -> usize {
    16
}
fn default_timeout() -> String {
    "20s".into()
}
fn default_exponent() -> f64 {
    1.0
}
fn default_weight() -> u32 {
    1
}

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports and the table heading.
    pub name: String,
    /// One paragraph saying what the mix stands for.
    #[serde(default)]
    pub description: String,
    /// Default target `host:port` (the command line's host wins).
    #[serde(default)]
    pub target: Option<String>,
    /// Workers.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// h2 connections.
    #[serde(default = "default_one")]
    pub connections: usize,
    /// Run length (`10s`); when absent, `total` calls are made.
    #[serde(default)]
    pub duration: Option<String>,
    /// Calls to make when no `duration` is given.
    #[serde(default)]
    pub total: Option<u64>,
    /// Fixed rate over all calls; absent means as fast as possible.
    #[serde(default)]
    pub rps: Option<u64>,
    /// Deadline of each call.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Steps run before the load, in order.
    #[serde(default)]
    pub setup: Vec<SetupStep>,
    /// The weighted calls of the load.
    pub mix: Vec<MixEntry>,
}

/// A setup step: `count` calls whose response field `capture` is collected into key list
/// `into`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupStep {
    /// `package.Service/Method`.
    pub call: String,
    /// Request JSON (templates allowed).
    #[serde(default)]
    pub data: String,
    /// Calls to make.
    pub count: u64,
    /// Calls in flight.
    #[serde(default = "default_setup_concurrency")]
    pub concurrency: usize,
    /// Response field (top-level, by proto name) to collect.
    #[serde(default)]
    pub capture: Option<String>,
    /// Key list that collects it.
    #[serde(default)]
    pub into: Option<String>,
}

/// One call of the mix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixEntry {
    /// Name in the report (defaults to the method name).
    #[serde(default)]
    pub name: Option<String>,
    /// `package.Service/Method`.
    pub call: String,
    /// Relative share of the calls.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Request JSON (templates allowed, `{{.Key}}` for a key from `keys`).
    #[serde(default)]
    pub data: String,
    /// Call metadata (JSON object, templates allowed).
    #[serde(default)]
    pub metadata: Option<String>,
    /// Key list `{{.Key}}` picks from.
    #[serde(default)]
    pub keys: Option<String>,
    /// `uniform` or `zipf` (first captured key is the most popular).
    #[serde(default)]
    pub distribution: Distribution,
    /// Zipf exponent s (P(rank r) ~ 1/r^s).
    #[serde(default = "default_exponent")]
    pub zipf_exponent: f64,
}

/// How a mix entry picks its keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every key equally often.
    #[default]
    Uniform,
    /// Zipf over the keys in creation order.
    Zipf,
    /// Each key in turn, in creation order (one-use keys: carts to check out).
    Sequential,
}

impl Scenario {
    /// Parses and checks a scenario.
    pub fn parse(text: &str) -> Result<Scenario, Error> {
        let s: Scenario = toml::from_str(text).map_err(|e| Error::Config(format!("scenario: {e}")))?;
        if s.mix.is_empty() {
            return Err(Error::Config("scenario: [[mix]] is empty".into()));
        }
        if s.concurrency == 0 || s.connections == 0 || s.connections > s.concurrency {
            return Err(Error::Config("scenario: need 1 <= connections <= concurrency".into()));
        }
        let lists: BTreeSet<&str> = s.setup.iter().filter_map(|st| st.into.as_deref()).collect();
        for st in &s.setup {
            if st.capture.is_some() != st.into.is_some() {
                return Err(Error::Config(format!("scenario setup {}: give capture and into together", st.call)));
            }
        }
        for m in &s.mix {
            if let Some(k) = &m.keys
                && !lists.contains(k.as_str())
            {
                return Err(Error::Config(format!("scenario mix {}: no setup step fills key list {k:?}", m.call)));
            }
            if m.weight == 0 {
                return Err(Error::Config(format!("scenario mix {}: weight must be positive", m.call)));
            }
        }
        s.stop()?;
        Ok(s)
    }

    fn stop(&self) -> Result<Stop, Error> {
        match (&self.duration, self.total) {
            (Some(d), _) => Ok(Stop::Duration(duration::parse(d).map_err(Error::Config)?)),
            (None, Some(n)) if n > 0 => Ok(Stop::Count(n)),
            _ => Err(Error::Config("scenario: give duration or total".into())),
        }
    }

    fn timeout(&self) -> Result<Duration, Error> {
        duration::parse(&self.timeout).map_err(Error::Config)
    }
}

/// Runs the scenario in `path` as `args` say (host, protoset, --append-to).
pub async fn run_file(path: &Path, args: &LoadArgs) -> Result<(), Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let scenario = Scenario::parse(&text)?;
    let host = args
        .host
        .clone()
        .or_else(|| scenario.target.clone())
        .ok_or_else(|| Error::Config("no target: give host:port or `target` in the scenario".into()))?;
    let outcome = run(&scenario, &host, args.protoset.as_deref()).await?;
    print!("{}", outcome.summary());
    if let Some(md) = &args.append_to {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        let table = outcome.markdown(&command);
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(md).map_err(|e| Error::io(md, e))?;
        f.write_all(table.as_bytes()).map_err(|e| Error::io(md, e))?;
        println!("appended the table to {}", md.display());
    }
    Ok(())
}

/// What a scenario run measured.
#[derive(Debug, Clone)]
pub struct ScenarioOutcome {
    /// The scenario.
    pub scenario: Scenario,
    /// Target it ran against.
    pub host: String,
    /// Setup steps: (call, calls made, keys captured).
    pub setup: Vec<(String, u64, usize)>,
    /// One report per mix entry, then the total.
    pub reports: Vec<Report>,
    /// Shares of the mix, in percent, per entry.
    pub shares: Vec<f64>,
}

/// Runs `scenario` against `host`.
pub async fn run(scenario: &Scenario, host: &str, protoset: Option<&Path>) -> Result<ScenarioOutcome, Error> {
    let timeout = scenario.timeout()?;
    let services: BTreeSet<&str> = scenario
        .setup
        .iter()
        .map(|s| s.call.as_str())
        .chain(scenario.mix.iter().map(|m| m.call.as_str()))
        .map(|c| schema::split_call(c).map(|(s, _)| s))
        .collect::<Result<_, _>>()?;
    let pool = match protoset {
        Some(p) => schema::from_protoset(p)?,
        None => schema::from_reflection(host, &services.into_iter().collect::<Vec<_>>(), timeout).await?,
    };

    let mut lists: HashMap<String, Vec<String>> = HashMap::new();
    let mut setup = Vec::new();
    for step in &scenario.setup {
        let method = schema::find_method(&pool, &step.call)?;
        let captured = run_setup(host, &method, step, timeout).await?;
        tracing::info!(call = %step.call, count = step.count, captured = captured.len(), "scenario setup done");
        setup.push((step.call.clone(), step.count, captured.len()));
        if let Some(into) = &step.into {
            lists.entry(into.clone()).or_default().extend(captured);
        }
    }

    let mut ops = Vec::new();
    for m in &scenario.mix {
        let method = schema::find_method(&pool, &m.call)?;
        let names = schema::method_names(&method);
        let payload = Payload::new(method.input(), names.clone(), &m.data)?;
        let metadata = Metadata::new(m.metadata.as_deref(), names)?;
        let target =
            CallTarget::new(host, method.parent_service().full_name(), method.name(), timeout, metadata.fixed())?;
        let keys = m.keys.as_ref().map(|k| {
            let list = lists.get(k).cloned().unwrap_or_default();
            Arc::new(match m.distribution {
                Distribution::Uniform => KeyPicker::uniform(list),
                Distribution::Zipf => KeyPicker::zipf(list, m.zipf_exponent),
                Distribution::Sequential => KeyPicker::sequential(list),
            })
        });
        let name = m.name.clone().unwrap_or_else(|| method.name().to_string());
        ops.push(Op { name, target, payload, metadata, weight: m.weight, keys });
    }
    let weight_sum: f64 = scenario.mix.iter().map(|m| f64::from(m.weight)).sum();
    let shares = scenario.mix.iter().map(|m| f64::from(m.weight) * 100.0 / weight_sum).collect();
    let names: Vec<String> = ops.iter().map(|o| o.name.clone()).collect();
    let plan = Plan {
        addr: host.to_string(),
        ops,
        concurrency: scenario.concurrency,
        connections: scenario.connections,
        stop: scenario.stop()?,
        schedule: scenario.rps.map(|r| Schedule::Const { rps: r as f64 }),
        timeout,
        progress: crate::progress::wanted(),
    };
    let result = engine::run(plan).await?;
    let options = Options {
        host: host.to_string(),
        insecure: true,
        concurrency: scenario.concurrency as u64,
        connections: scenario.connections as u64,
        qps: scenario.rps.unwrap_or(0),
        timeout: timeout.as_nanos() as u64,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        ..Options::default()
    };
    let mut reports: Vec<Report> = result
        .stats
        .ops
        .iter()
        .zip(&names)
        .zip(&scenario.mix)
        .map(|((s, name), m)| {
            let opts = Options { call: m.call.clone(), ..options.clone() };
            Report::build(name, opts, s, result.total, result.started, result.end_reason)
        })
        .collect();
    let total = result.stats.total()?;
    reports.push(Report::build("all", options, &total, result.total, result.started, result.end_reason));
    Ok(ScenarioOutcome { scenario: scenario.clone(), host: host.to_string(), setup, reports, shares })
}

/// Makes `step.count` calls of `method`, returning the captured field of each response in
/// request order.
async fn run_setup(
    host: &str,
    method: &MethodDescriptor,
    step: &SetupStep,
    timeout: Duration,
) -> Result<Vec<String>, Error> {
    let names = schema::method_names(method);
    let payload = Arc::new(Payload::new(method.input(), names, &step.data)?);
    let target = Arc::new(CallTarget::new(host, method.parent_service().full_name(), method.name(), timeout, None)?);
    let sender = transport::connect(host).await?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for worker in 0..step.concurrency.max(1) {
        let (payload, target, next, mut sender) =
            (Arc::clone(&payload), Arc::clone(&target), Arc::clone(&next), sender.clone());
        let (count, capture, output) = (step.count, step.capture.clone(), method.output());
        tasks.spawn(async move {
            let mut rng = SmallRng::from_rng(&mut rand::rng());
            let mut scratch = String::new();
            let mut got = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= count {
                    return Ok(got);
                }
                let call = CallData { request_number: k, worker_id: worker, key: None };
                let body = payload.body(call, &mut rng, &mut scratch)?;
                let outcome =
                    tokio::time::timeout(timeout, transport::unary(&mut sender, target.request(None), body, true))
                        .await
                        .map_err(|_| Error::Setup("call timed out".into()))?
                        .map_err(|e| Error::Setup(e.to_string()))?;
                if outcome.code != status::OK {
                    return Err(Error::Setup(status::error_text(outcome.code, &outcome.message)));
                }
                if let Some(field) = &capture {
                    let bytes = outcome.body.as_ref().and_then(transport::first_message).unwrap_or_default();
                    let msg = DynamicMessage::decode(output.clone(), bytes).map_err(|e| Error::Setup(e.to_string()))?;
                    got.push((k, field_text(&msg, field)?));
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.map_err(|e| Error::Setup(e.to_string()))??);
    }
    all.sort_by_key(|(k, _)| *k);
    Ok(all.into_iter().map(|(_, v)| v).collect())
}

/// Returns the text of `field` in `msg`: a field name, or a dotted path into nested messages
/// (`cart.user_id`).
fn field_text(msg: &DynamicMessage, field: &str) -> Result<String, Error> {
    let (head, rest) = match field.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (field, None),
    };
    let desc = msg.descriptor();
    let f = desc
        .get_field_by_name(head)
        .ok_or_else(|| Error::Setup(format!("{} has no field {head:?}", desc.full_name())))?;
    let value = msg.get_field(&f);
    Ok(match (value.as_ref(), rest) {
        (Value::Message(inner), Some(rest)) => field_text(inner, rest)?,
        (_, Some(_)) => return Err(Error::Setup(format!("{}.{head} is not a message", desc.full_name()))),
        (Value::String(s), None) => s.clone(),
        (other, None) => other.to_string(),
    })
}

fn ms(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".into(), |v| human(Duration::from_nanos(v)))
}

impl ScenarioOutcome {
    /// Returns a short text summary: one line per call and the total.
    pub fn summary(&self) -> String {
        let mut out = format!("\nScenario {} on {}\n", self.scenario.name, self.host);
        for (call, n, keys) in &self.setup {
            out.push_str(&format!("  setup: {n} x {call} ({keys} keys captured)\n"));
        }
        out.push('\n');
        out.push_str(&self.table());
        out
    }

    fn table(&self) -> String {
        let mut t = String::from(
            "| call | share | count | req/s | errors | p50 | p90 | p95 | p99 | p99.9 |\n|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for (i, r) in self.reports.iter().enumerate() {
            let share = self.shares.get(i).map_or_else(|| "100%".to_string(), |s| format!("{s:.0}%"));
            let errors: u64 = r.error_distribution.values().sum();
            t.push_str(&format!(
                "| {} | {share} | {} | {:.0} | {errors} | {} | {} | {} | {} | {} |\n",
                r.name,
                r.count,
                r.rps,
                ms(r.percentile(50.0)),
                ms(r.percentile(90.0)),
                ms(r.percentile(95.0)),
                ms(r.percentile(99.0)),
                ms(r.percentile(99.9)),
            ));
        }
        t
    }

    /// Returns the Markdown section appended to BENCHMARKS.md.
    pub fn markdown(&self, command: &str) -> String {
        let s = &self.scenario;
        let date = crate::template::rfc3339(SystemTime::now());
        let load = match (&s.duration, s.total, s.rps) {
            (Some(d), _, Some(r)) => format!("{d} at {r} calls/s"),
            (Some(d), _, None) => format!("{d} as fast as the workers go"),
            (None, n, Some(r)) => format!("{} calls at {r} calls/s", n.unwrap_or(0)),
            (None, n, None) => format!("{} calls as fast as the workers go", n.unwrap_or(0)),
        };
        let mut setup = String::new();
        for (call, n, keys) in &self.setup {
            setup.push_str(&format!("{n} x `{call}` ({keys} keys); "));
        }
        let mut codes: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(all) = self.reports.last() {
            codes = all.status_code_distribution.clone();
        }
        let codes: Vec<String> = codes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!(
            "\n## Scenario: {name}\n\nCommand ({date}): `{command}`\n\n{desc}\n\nSetup: {setup}load: {load}, {c} workers on {conns} h2 connection(s), target {host}.{due} \
             Status codes: {codes}.\n\n{table}",
            name = s.name,
            desc = s.description.trim(),
            c = s.concurrency,
            conns = s.connections,
            host = self.host,
            codes = codes.join(", "),
            due = if s.rps.is_some() { " Latency counts from when each call was due." } else { "" },
            table = self.table(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    /// Every scenario kept in `loadtest/scenarios/` parses, with every request template.
    #[test]
    fn every_kept_scenario_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let s = Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for data in s.setup.iter().map(|st| &st.data).chain(s.mix.iter().map(|m| &m.data)) {
                Template::parse(data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            seen += 1;
        }
        assert!(seen >= 4, "scenarios in {}", dir.display());
    }
}
