//! The command line of the `bench` binary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::future::LocalBoxFuture;

use crate::fleet::{AddrPool, FleetConfig};
use crate::payload::DataFormat;
use crate::procstat::ServerProcess;
use crate::suite::{Selection, SuiteConfig, SuiteResults};
use crate::target::{Endpoint, PublishFormat, Target};
use crate::workloads::{self, Harness};

/// Load generator and benchmark harness for Server-Sent Events servers.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run one workload against a server that is already running.
    Run(RunArgs),
    /// Start every configured server in turn and run every workload.
    Suite(SuiteArgs),
    /// Write BENCHMARKS.md and the latency plot from a suite's results.
    Report(ReportArgs),
    /// Internal: a worker process holding a share of the subscribers,
    /// commanded over stdin/stdout.
    #[command(hide = true)]
    Worker,
}

/// The workloads `run` can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Connect, read idle memory, publish at a fixed rate.
    Fanout,
    /// Step the rate up until loss or p99 over the limit.
    Saturation,
    /// Everybody drops and reconnects with Last-Event-ID.
    Storm,
    /// 1% stop reading.
    Slow,
    /// A few seconds of a small fan-out (and a storm with --resumes).
    Smoke,
}

/// Where the server is and how to talk to it, plus the workload's knobs.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workload.
    #[arg(long, value_enum, default_value = "fanout")]
    pub workload: Workload,
    /// The URL subscribers GET, e.g. http://127.0.0.1:3000/stream; several
    /// (comma separated, e.g. two servers sharing a Redis) split the
    /// subscribers evenly.
    #[arg(long, required = true, value_delimiter = ',')]
    pub subscribe: Vec<String>,
    /// The URL events are POSTed to, e.g. http://127.0.0.1:3000/publish.
    #[arg(long)]
    pub publish: String,
    /// `json`: a PublishRequest JSON body; `raw`: the payload as the body;
    /// `pushpin`: a Pushpin publish command to the channel `--topic`.
    #[arg(long, value_enum, default_value = "json")]
    pub publish_format: PublishFormatArg,
    /// `server-event`: data is our ServerEvent JSON; `raw`: data is the payload.
    #[arg(long, value_enum, default_value = "server-event")]
    pub data_format: DataFormatArg,
    /// The topic to publish to (JSON publishing; Pushpin's channel, which
    /// it needs).
    #[arg(long)]
    pub topic: Option<String>,
    /// The server's process ids (comma separated, e.g. both servers and
    /// their Redis), for CPU time and memory from /proc.
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: u32,
    /// Events per second (saturation: the first rate, doubled each step).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Publishing time, s.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Payload size, bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Storm: resume this many events behind.
    #[arg(long, default_value_t = 10)]
    pub behind: u32,
    /// Slow: subscribers that stop reading (default 1%).
    #[arg(long)]
    pub stalled: Option<u32>,
    /// Smoke: also run a reconnect storm (the server resumes).
    #[arg(long)]
    pub resumes: bool,
    /// Subscribers per worker process.
    #[arg(long, default_value_t = 8000)]
    pub per_worker: u32,
    /// Write the result as JSON here (stdout otherwise).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `--publish-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishFormatArg {
    /// PublishRequest JSON.
    Json,
    /// The payload as the body.
    Raw,
    /// A Pushpin publish command (HTTP control API).
    Pushpin,
}

/// `--data-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataFormatArg {
    /// ServerEvent JSON.
    ServerEvent,
    /// The payload itself.
    Raw,
    /// The payload as a JSON string literal.
    JsonString,
}

/// `suite` options.
#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// The suite configuration (TOML).
    #[arg(long, default_value = "bench/configs/suite.toml")]
    pub config: PathBuf,
    /// The directory relative paths in the configuration start from.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Where to write the results JSON.
    #[arg(long, default_value = "bench/results/results.json")]
    pub out: PathBuf,
    /// Only these servers (comma separated names).
    #[arg(long, value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Only these workloads (comma separated; `topics` for bystanders to
    /// prefix); all but `https` when not given. A server whose spec lists
    /// its workloads runs only those.
    #[arg(long, value_delimiter = ',', value_parser = workload_names())]
    pub workloads: Vec<String>,
    /// Keep the results already in `--out` and add this run next to them
    /// (for a run of some servers or workloads): the report's main tables
    /// stay on the earlier run, sections about the servers measured now use
    /// this one.
    #[arg(long)]
    pub merge: bool,
}

/// The names `--workloads` takes (see [`Selection::names`]).
fn workload_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Selection::names())
}

/// `report` options.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The suite's results JSON.
    #[arg(long, default_value = "bench/results/results.json")]
    pub results: PathBuf,
    /// The markdown template.
    #[arg(long, default_value = "bench/configs/BENCHMARKS.md.in")]
    pub template: PathBuf,
    /// The markdown to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// The latency plot to write.
    #[arg(long, default_value = "bench/results/latency.svg")]
    pub svg: PathBuf,
    /// The server ratios are taken against.
    #[arg(long, default_value = "nchan")]
    pub reference: String,
}

fn coordinator_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The target `run` was pointed at.
fn target_of(args: &RunArgs) -> anyhow::Result<Target> {
    anyhow::ensure!(
        args.publish_format != PublishFormatArg::Pushpin || args.topic.is_some(),
        "--publish-format pushpin needs --topic (the channel the streams are held on)"
    );
    Ok(Target {
        subscribe: args
            .subscribe
            .iter()
            .map(|url| Endpoint::parse(url))
            .collect::<Result<_, _>>()?,
        publish: Endpoint::parse(&args.publish)?,
        publish_format: match args.publish_format {
            PublishFormatArg::Json => PublishFormat::Json,
            PublishFormatArg::Raw => PublishFormat::Raw,
            PublishFormatArg::Pushpin => PublishFormat::Pushpin,
        },
        data_format: match args.data_format {
            DataFormatArg::ServerEvent => DataFormat::ServerEvent,
            DataFormatArg::Raw => DataFormat::Raw,
            DataFormatArg::JsonString => DataFormat::JsonString,
        },
        topic: args.topic.clone(),
        topics: None,
    })
}

/// The server processes `--pid` names.
fn servers_of(args: &RunArgs) -> Vec<ServerProcess> {
    args.pid
        .iter()
        .map(|&pid| ServerProcess {
            name: format!("pid {pid}"),
            pid,
        })
        .collect()
}

/// Runs `args.workload` against `target` and `servers`; its result as
/// pretty JSON.
async fn measure(
    args: &RunArgs,
    h: &mut Harness,
    target: Target,
    servers: Vec<ServerProcess>,
) -> anyhow::Result<String> {
    let n = args.subscribers;
    let (rate, seconds, payload_bytes) = (args.rate, args.seconds, args.payload_bytes);
    Ok(match args.workload {
        Workload::Fanout => {
            let p = workloads::FanoutParams {
                subscribers: n,
                rate,
                seconds,
                payload_bytes,
            };
            serde_json::to_string_pretty(&workloads::fanout(h, &target, &servers, p).await?)?
        }
        Workload::Saturation => {
            let p = workloads::SaturationParams {
                subscribers: n,
                rates: (0..12).map(|i| rate * f64::from(1u32 << i)).collect(),
                seconds,
                payload_bytes,
                p99_limit_ms: 100.0,
                refine: 0,
            };
            serde_json::to_string_pretty(
                &workloads::saturation(h, &mut Fixed(target, servers), &p).await?,
            )?
        }
        Workload::Storm => {
            let p = workloads::StormParams {
                subscribers: n,
                rate,
                before_seconds: seconds / 2.0,
                during_seconds: seconds,
                behind: args.behind,
                payload_bytes,
            };
            serde_json::to_string_pretty(
                &workloads::reconnect_storm(h, &target, &servers, p).await?,
            )?
        }
        Workload::Slow => {
            let p = workloads::SlowParams {
                subscribers: n,
                stalled: args.stalled.unwrap_or(n.div_ceil(100)),
                rate,
                seconds,
                payload_bytes,
            };
            serde_json::to_string_pretty(&workloads::slow_consumer(h, &target, &servers, p).await?)?
        }
        Workload::Smoke => serde_json::to_string_pretty(
            &workloads::smoke(h, &target, &servers, n, args.resumes).await?,
        )?,
    })
}

fn run_workload(args: RunArgs) -> anyhow::Result<()> {
    let target = target_of(&args)?;
    let mut h = Harness {
        fleet: FleetConfig {
            worker_exe: std::env::current_exe()?,
            per_worker: args.per_worker,
            connect_concurrency: 256,
            connect_timeout: Duration::from_secs(60),
        },
        addrs: AddrPool::new(),
        publish_connections: 16,
    };
    let servers = servers_of(&args);
    let json = coordinator_runtime()?.block_on(measure(&args, &mut h, target, servers))?;
    match args.out {
        Some(path) => std::fs::write(&path, json)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => println!("{json}"),
    }
    Ok(())
}

/// A server the load generator did not start: "restarting" hands back the
/// same one.
#[derive(Debug)]
struct Fixed(Target, Vec<ServerProcess>);

impl workloads::Restart for Fixed {
    fn restart(&mut self) -> LocalBoxFuture<'_, anyhow::Result<workloads::Started>> {
        let started = (self.0.clone(), self.1.clone());
        Box::pin(async move { Ok(started) })
    }
}

fn run_suite(args: &SuiteArgs) -> anyhow::Result<()> {
    let config = SuiteConfig::load(&args.config)?;
    let selection = Selection::parse(&args.workloads)?;
    let exe = std::env::current_exe()?;
    let root = args.root.canonicalize()?;
    let results = coordinator_runtime()?.block_on(crate::suite::run(
        &config,
        &root,
        exe,
        &args.servers,
        selection,
    ))?;
    let results = match std::fs::read_to_string(&args.out) {
        Ok(text) if args.merge => {
            let earlier: SuiteResults = serde_json::from_str(&text).with_context(|| {
                format!(
                    "cannot merge into {}: not a results file",
                    args.out.display()
                )
            })?;
            tracing::info!("keeping the earlier results in {}", args.out.display());
            earlier.merge(results)
        }
        _ => results,
    };
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    tracing::info!("results written to {}", args.out.display());
    Ok(())
}

fn run_report(args: &ReportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.results)
        .with_context(|| format!("cannot read {}", args.results.display()))?;
    let results: SuiteResults = serde_json::from_str(&text)?;
    let template = std::fs::read_to_string(&args.template)
        .with_context(|| format!("cannot read {}", args.template.display()))?;
    let markdown = crate::report::markdown(&template, &results, &args.reference)
        .with_context(|| format!("in {}", args.template.display()))?;
    std::fs::write(&args.out, markdown)?;
    if let Some(dir) = args.svg.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::report::latency_svg(&results, &args.svg)?;
    tracing::info!("wrote {} and {}", args.out.display(), args.svg.display());
    Ok(())
}

/// Runs the parsed command line.
///
/// # Errors
/// Whatever the command fails with.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Err(e) = crate::raise_nofile_limit() {
        tracing::warn!("cannot raise the open files limit: {e}");
    }
    match cli.command {
        Cmd::Worker => crate::worker::run(),
        Cmd::Run(args) => run_workload(args),
        Cmd::Suite(args) => run_suite(&args),
        Cmd::Report(args) => run_report(&args),
    }
}
