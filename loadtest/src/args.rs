//! `meshwork load`'s flags (ghz's names and defaults where ghz has them) and the single-call
//! run: schema, payload, plan, report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;

use crate::Error;
use crate::duration;
use crate::engine::{self, Op, Plan, RunResult, Stop};
use crate::payload::{Metadata, Payload};
use crate::report::{Options, Report};
use crate::schedule::Schedule;
use crate::schema;
use crate::transport::CallTarget;

/// Report formats (`-O`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// ghz's summary text.
    Summary,
    /// ghz's JSON report, one line.
    Json,
    /// ghz's JSON report, indented.
    Pretty,
    /// A self-contained HTML page with charts.
    Html,
}

/// Load schedules (`--load-schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadSchedule {
    /// `--rps` throughout.
    Const,
    /// `--load-start`, plus `--load-step` every `--load-step-duration`, up to `--load-end`.
    Step,
    /// `--load-start`, plus `--load-step` per second, up to `--load-end`.
    Line,
}

/// `meshwork load`: a ghz-compatible gRPC load generator (plaintext h2c only).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Target host:port (for a scenario: overrides its `target`).
    pub host: Option<String>,
    /// Fully qualified method: package.Service/Method.
    #[arg(long)]
    pub call: Option<String>,
    /// Request data as JSON (an array sends its elements in turn); ghz templates allowed:
    /// {{.RequestNumber}}, {{.WorkerID}}, {{.UUID}}, {{.Timestamp}}, {{newUUID}},
    /// {{randomString 8}}, {{randomInt 1 100}}.
    #[arg(short = 'd', long)]
    pub data: Option<String>,
    /// File with the request data (JSON, templates allowed).
    #[arg(short = 'D', long = "data-file")]
    pub data_file: Option<PathBuf>,
    /// Call metadata as a JSON object of strings (templates allowed).
    #[arg(short = 'm', long)]
    pub metadata: Option<String>,
    /// File with the call metadata.
    #[arg(short = 'M', long = "metadata-file")]
    pub metadata_file: Option<PathBuf>,
    /// Workers: calls in flight at once.
    #[arg(short = 'c', long, default_value_t = 50)]
    pub concurrency: usize,
    /// h2 connections shared by the workers (round-robin).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Calls to make (ignored when -z is given).
    #[arg(short = 'n', long, default_value_t = 200)]
    pub total: u64,
    /// Run for this long (10s, 1m); takes precedence over -n.
    #[arg(short = 'z', long, value_parser = duration::parse)]
    pub duration: Option<Duration>,
    /// Calls per second over all workers (const schedule); latency counts from when each call
    /// was due.
    #[arg(short = 'r', long)]
    pub rps: Option<u64>,
    /// Rate schedule: const (uses --rps), step or line.
    #[arg(long = "load-schedule", value_enum, default_value = "const")]
    pub load_schedule: LoadSchedule,
    /// Starting rate of a step or line schedule.
    #[arg(long = "load-start")]
    pub load_start: Option<f64>,
    /// Rate change per step (step) or per second (line); may be negative.
    #[arg(long = "load-step")]
    pub load_step: Option<f64>,
    /// Rate at which a step or line schedule stops changing (0: never).
    #[arg(long = "load-end", default_value_t = 0.0)]
    pub load_end: f64,
    /// Length of one step of a step schedule.
    #[arg(long = "load-step-duration", value_parser = duration::parse)]
    pub load_step_duration: Option<Duration>,
    /// After this long the rate of a step or line schedule stays where it is.
    #[arg(long = "load-max-duration", value_parser = duration::parse)]
    pub load_max_duration: Option<Duration>,
    /// Deadline of each call.
    #[arg(short = 't', long, value_parser = duration::parse, default_value = "20s")]
    pub timeout: Duration,
    /// Plaintext h2c (required: TLS is not supported).
    #[arg(long)]
    pub insecure: bool,
    /// A .proto file with the method, compiled in-process; without it (or --protoset), server
    /// reflection is used.
    #[arg(long)]
    pub proto: Option<PathBuf>,
    /// Folders to find the imports of --proto in (the file's own folder is always searched).
    #[arg(short = 'i', long = "import-paths", value_delimiter = ',')]
    pub import_paths: Vec<PathBuf>,
    /// A protoset (FileDescriptorSet) with the method; without it, server reflection is used.
    #[arg(long)]
    pub protoset: Option<PathBuf>,
    /// Report format.
    #[arg(short = 'O', long = "format", value_enum, default_value = "summary")]
    pub format: OutputFormat,
    /// Write the report to this file instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Name of the run, echoed in the report.
    #[arg(long)]
    pub name: Option<String>,
    /// Run a scenario (TOML, see loadtest/scenarios/) instead of one call.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// With --scenario: append the scenario's table to this Markdown file.
    #[arg(long = "append-to")]
    pub append_to: Option<PathBuf>,
}

impl LoadArgs {
    /// Checks the flags, returning one line naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("-c must be at least 1".into());
        }
        if self.connections == 0 || self.connections > self.concurrency {
            return Err(format!("--connections must be between 1 and -c ({})", self.concurrency));
        }
        if self.total == 0 && self.duration.is_none() {
            return Err("-n must be at least 1".into());
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err("-z must be positive".into());
        }
        if self.timeout.is_zero() {
            return Err("-t must be positive".into());
        }
        if self.rps == Some(0) {
            return Err("--rps must be positive".into());
        }
        if self.proto.is_some() && self.protoset.is_some() {
            return Err("give --proto or --protoset, not both".into());
        }
        if self.data.is_some() && self.data_file.is_some() {
            return Err("give -d or -D, not both".into());
        }
        if self.metadata.is_some() && self.metadata_file.is_some() {
            return Err("give -m or -M, not both".into());
        }
        if self.scenario.is_some() {
            if self.call.is_some() {
                return Err("give --scenario or --call, not both".into());
            }
            return Ok(());
        }
        if self.append_to.is_some() {
            return Err("--append-to goes with --scenario".into());
        }
        if self.call.is_none() {
            return Err("--call package.Service/Method is required (or --scenario FILE)".into());
        }
        if self.host.is_none() {
            return Err("the target host:port is required".into());
        }
        if !self.insecure {
            return Err("TLS is not supported: pass --insecure (plaintext h2c)".into());
        }
        self.schedule().map(|_| ())
    }

    /// Returns the rate schedule the flags describe (`None`: as fast as possible).
    pub fn schedule(&self) -> Result<Option<Schedule>, String> {
        let need = |v: Option<f64>, flag: &str| {
            v.ok_or_else(|| format!("--load-schedule {:?} needs {flag}", self.load_schedule))
        };
        Ok(match self.load_schedule {
            LoadSchedule::Const => self.rps.map(|r| Schedule::Const { rps: r as f64 }),
            LoadSchedule::Step => {
                let step_duration = self.load_step_duration.ok_or("--load-schedule step needs --load-step-duration")?;
                if step_duration.is_zero() {
                    return Err("--load-step-duration must be positive".into());
                }
                Some(Schedule::Step {
                    start: need(self.load_start, "--load-start")?,
                    step: need(self.load_step, "--load-step")?,
                    end: self.load_end,
                    step_duration,
                    max_duration: self.load_max_duration,
                })
            }
            LoadSchedule::Line => Some(Schedule::Line {
                start: need(self.load_start, "--load-start")?,
                slope: need(self.load_step, "--load-step")?,
                end: self.load_end,
                max_duration: self.load_max_duration,
            }),
        })
    }

    /// When the run stops.
    pub fn stop(&self) -> Stop {
        match self.duration {
            Some(d) => Stop::Duration(d),
            None => Stop::Count(self.total),
        }
    }
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Runs `args.call` against `args.host`, returning the report's options and the measurements.
pub async fn run_call(args: &LoadArgs) -> Result<(Options, RunResult), Error> {
    let call = args.call.as_deref().ok_or_else(|| Error::Config("--call is required".into()))?;
    let host = args.host.as_deref().ok_or_else(|| Error::Config("the target host:port is required".into()))?;
    let (service, _) = schema::split_call(call)?;
    let pool = match (&args.protoset, &args.proto) {
        (Some(path), _) => schema::from_protoset(path)?,
        (None, Some(path)) => schema::from_proto(path, &args.import_paths)?,
        (None, None) => schema::from_reflection(host, &[service], args.timeout).await?,
    };
    let method = schema::find_method(&pool, call)?;
    let names = schema::method_names(&method);
    let data = match (&args.data, &args.data_file) {
        (Some(d), _) => d.clone(),
        (None, Some(path)) => read(path)?,
        (None, None) => String::new(),
    };
    let metadata_text = match (&args.metadata, &args.metadata_file) {
        (Some(m), _) => Some(m.clone()),
        (None, Some(path)) => Some(read(path)?),
        (None, None) => None,
    };
    let payload = Payload::new(method.input(), names.clone(), &data)?;
    let metadata = Metadata::new(metadata_text.as_deref(), names)?;
    let target =
        CallTarget::new(host, method.parent_service().full_name(), method.name(), args.timeout, metadata.fixed())?;
    tracing::debug!(call, fixed_body = payload.is_fixed(), "payload ready");
    let plan = Plan {
        addr: host.to_string(),
        ops: vec![Op { name: method.name().to_string(), target, payload, metadata, weight: 1, keys: None }],
        concurrency: args.concurrency,
        connections: args.connections,
        stop: args.stop(),
        schedule: args.schedule().map_err(Error::Config)?,
        timeout: args.timeout,
        progress: crate::progress::wanted(),
    };
    let result = engine::run(plan).await?;
    let options = Options {
        host: host.to_string(),
        call: call.to_string(),
        protoset: args.protoset.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        insecure: true,
        total: if args.duration.is_some() { 0 } else { args.total },
        concurrency: args.concurrency as u64,
        qps: args.rps.unwrap_or(0),
        connections: args.connections as u64,
        duration: args.duration.map_or(0, |d| d.as_nanos() as u64),
        timeout: args.timeout.as_nanos() as u64,
        data: serde_json::from_str(&data).ok(),
        metadata: metadata_text.as_deref().and_then(|m| serde_json::from_str(m).ok()),
        binary: false,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
    };
    Ok((options, result))
}

/// Writes the report of `result` in `args.format` to `args.output` or stdout.
pub fn write_report(args: &LoadArgs, options: Options, result: &RunResult) -> Result<(), Error> {
    let total = result.stats.total()?;
    let report = Report::build(
        args.name.as_deref().unwrap_or(""),
        options,
        &total,
        result.total,
        result.started,
        result.end_reason,
    );
    let text = match args.format {
        OutputFormat::Summary => report.summary(),
        OutputFormat::Json => serde_json::to_string(&report).map_err(|e| Error::Config(e.to_string()))? + "\n",
        OutputFormat::Pretty => serde_json::to_string_pretty(&report).map_err(|e| Error::Config(e.to_string()))? + "\n",
        OutputFormat::Html => report.html(&total, &result.stats.timeline),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text).map_err(|e| Error::io(path, e)),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
