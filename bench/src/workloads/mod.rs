//! The workloads: one file each behind the [`Workload`] trait, and the
//! [`REGISTRY`] the suite runs them from; the [`Session`] they measure on
//! ([`session`]) and what a measured step reports ([`step`]); and the quick
//! smoke runs that the tests use ([`smoke`]).
//!
//! Every workload but publishing alone ([`publish`]), publishing in
//! batches ([`batch`]; both in a closed loop, [`closed_loop`]) and HTTPS
//! ([`https`]) works on a [`Session`]: N subscribers connected through a fleet of
//! workers, warmed up (warm-up events are published until every subscriber
//! has received one, so no measured event races a subscription), and a
//! publisher. A *step* publishes measured events open-loop at a fixed rate,
//! waits (bounded) until every subscriber holds every event, and collects
//! latency, completion time, loss, duplicates, reordering and the server's
//! CPU time and memory.
//!
//! A workload says its name (for `--workloads` and a server's `workloads`
//! and `also` lists), its section in the suite's configuration (and its key
//! in each server's results), which servers it runs against, the jobs it
//! runs against each (most one; the fan-out sweep one per subscriber
//! count), how one job runs against a server, and how its result is
//! reported: logged, judged for disturbance, named among what a run
//! measured. Adding a workload is one file here and one line in
//! [`REGISTRY`]; the report's template shows its results, which it finds
//! under the workload's section in each server's results.

pub mod batch;
pub mod bystanders;
pub mod closed_loop;
pub mod fanout;
pub mod heavy;
pub mod https;
pub mod per_user;
pub mod prefix;
pub mod publish;
pub mod retention;
pub mod rooms;
pub mod saturation;
pub mod session;
pub mod slow;
pub mod smoke;
pub mod step;
pub mod storm;
pub mod topic;

use std::future::Future;

use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::bystanders::{bystanders, BystandersParams, BystandersResult};
pub use self::fanout::{fanout, FanoutConfig, FanoutParams, FanoutResult};
pub use self::prefix::{prefix, PrefixParams, PrefixResult};
pub use self::retention::{retention, RetentionParams, RetentionResult};
pub use self::saturation::{saturation, SaturationParams, SaturationResult};
pub use self::session::Session;
pub use self::slow::{slow_consumer, SlowParams, SlowResult};
pub use self::smoke::{smoke, topic_smoke, SmokeResult, TopicSmokeResult};
pub use self::step::{GroupResult, IdleMemory, Percentiles, StepResult};
pub use self::storm::{reconnect_storm, StormParams, StormResult};
pub use self::topic::{spread, SpreadParams, ROOM_TOPICS, USER_TOPICS};
use crate::fleet::{AddrPool, FleetConfig};
use crate::json::Json;
use crate::procstat::ServerProcess;
use crate::server_proc::ServerSpec;
use crate::target::Target;
use crate::tls::TlsFiles;

/// The workloads the suite runs, in the order it runs them.
pub static REGISTRY: &[&dyn Entry] = &[
    &fanout::Fanout,
    &saturation::Saturation,
    &storm::Storm,
    &slow::Slow,
    &bystanders::Bystanders,
    &per_user::PerUser,
    &rooms::Rooms,
    &retention::Retention,
    &prefix::Prefix,
    &publish::Publish,
    &batch::Batch,
    &heavy::Heavy,
    &https::Https,
];

/// The registered workload named `name` (as `--workloads` names it).
pub fn named(name: &str) -> Option<&'static dyn Entry> {
    REGISTRY.iter().copied().find(|w| w.name() == name)
}

/// What every workload shares: how to spread subscribers over processes and
/// where source addresses come from.
#[derive(Debug, Clone)]
pub struct Harness {
    /// Worker processes.
    pub fleet: FleetConfig,
    /// Source addresses, never reused within a run.
    pub addrs: AddrPool,
    /// Publishing connections.
    pub publish_connections: usize,
}

/// A server's processes as started: where it listens, and its server side.
pub type Started = (Target, Vec<ServerProcess>);

/// Restarts the target under test so that a step starts from a clean state.
pub trait Restart {
    /// Stops the target if it runs, starts a fresh one, and returns where it
    /// listens and its server-side processes.
    fn restart(&mut self) -> LocalBoxFuture<'_, anyhow::Result<Started>>;

    /// As [`Restart::restart`], the fresh one serving HTTPS with `tls`.
    fn restart_tls<'a>(
        &'a mut self,
        tls: &'a TlsFiles,
    ) -> LocalBoxFuture<'a, anyhow::Result<Started>> {
        let _ = tls;
        Box::pin(async { anyhow::bail!("this target cannot be started to serve HTTPS") })
    }
}

/// What one job of a workload runs with: the shared harness, and the
/// server, which the job (re)starts as it needs.
pub struct Bench<'a> {
    /// Workers, source addresses, publishing connections.
    pub harness: &'a mut Harness,
    /// The server under test.
    pub server: &'a mut dyn Restart,
}

impl std::fmt::Debug for Bench<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench")
            .field("harness", &self.harness)
            .finish_non_exhaustive()
    }
}

/// One workload of the suite.
pub trait Workload: Sync + 'static {
    /// Its name in `--workloads` and in a server's `workloads` and `also`
    /// lists.
    const NAME: &'static str;
    /// Its table in the configuration file, and its key in each server's
    /// results.
    const SECTION: &'static str;
    /// Whether every configuration has its table (and every server's
    /// results its key, `null` or `[]` when it did not run).
    const REQUIRED: bool = false;
    /// The `--workloads` name of the kind it is one of (`topics`).
    const GROUP: Option<&'static str> = None;
    /// Whether it runs only against the servers that ask for it (see
    /// `suite::runs`).
    const OPT_IN: bool = false;
    /// Whether a run that names no workload runs it.
    const BY_DEFAULT: bool = true;
    /// Whether a server keeps one result per job, in a list (the fan-out
    /// sweep), rather than one result.
    const SWEEP: bool = false;
    /// Whether the run's summaries count it: what a run measured (which
    /// `bench suite --merge` compares) and the report's highest disturbance.
    const SUMMARISED: bool = true;

    /// Its configuration table.
    type Config: Serialize + DeserializeOwned;
    /// What one job measured.
    type Output: Serialize + DeserializeOwned;

    /// Whether it can run against `spec` (the topic workloads need topics).
    fn applies_to(spec: &ServerSpec) -> bool {
        let _ = spec;
        true
    }

    /// The jobs it runs against each server, in order, each as the log and
    /// the errors call it.
    fn jobs(config: &Self::Config) -> Vec<String>;

    /// Runs job `job` (an index into [`Workload::jobs`]) against a server.
    fn run(
        bench: Bench<'_>,
        config: &Self::Config,
        job: usize,
    ) -> impl Future<Output = anyhow::Result<Self::Output>>;

    /// The highest share of a core used by neither the server side nor the
    /// load generator in any step of `output` (0 at least): above the
    /// suite's limit, the job runs again.
    fn disturbance(output: &Self::Output) -> f64;

    /// Logs what `output` measured on `server`.
    fn log(server: &str, output: &Self::Output) {
        let _ = (server, output);
    }

    /// What `output` is in the list of what a run measured.
    fn measured(output: &Self::Output) -> String {
        let _ = output;
        Self::NAME.to_owned()
    }
}

/// The highest `other_cpu_share` of `steps`, and 0 at least.
pub fn worst<'a>(steps: impl IntoIterator<Item = &'a StepResult>) -> f64 {
    steps
        .into_iter()
        .map(|s| s.other_cpu_share)
        .fold(0.0, f64::max)
}

/// A [`Workload`] as the suite and the report use it, its configuration
/// and results as JSON values (as the results file holds them, in order).
pub trait Entry: Sync {
    /// [`Workload::NAME`].
    fn name(&self) -> &'static str;
    /// [`Workload::SECTION`].
    fn section(&self) -> &'static str;
    /// [`Workload::REQUIRED`].
    fn required(&self) -> bool;
    /// [`Workload::GROUP`].
    fn group(&self) -> Option<&'static str>;
    /// [`Workload::OPT_IN`].
    fn opt_in(&self) -> bool;
    /// [`Workload::BY_DEFAULT`].
    fn by_default(&self) -> bool;
    /// [`Workload::SWEEP`].
    fn sweep(&self) -> bool;
    /// [`Workload::SUMMARISED`].
    fn summarised(&self) -> bool;
    /// [`Workload::applies_to`].
    fn applies_to(&self, spec: &ServerSpec) -> bool;
    /// Reads its configuration table, as it is written back.
    ///
    /// # Errors
    /// When the table is not the workload's configuration.
    fn read_config(&self, table: Json) -> anyhow::Result<Json>;
    /// [`Workload::jobs`] of a table [`Entry::read_config`] read.
    fn jobs(&self, config: &Json) -> Vec<String>;
    /// [`Workload::run`], its result as a JSON value.
    fn run<'a>(
        &'a self,
        bench: Bench<'a>,
        config: &'a Json,
        job: usize,
    ) -> LocalBoxFuture<'a, anyhow::Result<Json>>;
    /// [`Workload::disturbance`] of one job's result.
    fn disturbance(&self, result: &Json) -> f64;
    /// [`Workload::log`] of one job's result.
    fn log(&self, server: &str, result: &Json);
    /// [`Workload::measured`] of what a server holds (a result, or a
    /// sweep's list of them).
    fn measured(&self, held: &Json) -> Vec<String>;
    /// The highest disturbance in what a server holds.
    fn held_disturbance(&self, held: &Json) -> f64;
}

fn typed<T: DeserializeOwned>(value: &Json) -> Option<T> {
    value.to_typed().ok()
}

/// The results a server holds for workload `W`: its one result, or each of
/// a sweep's.
fn held<W: Workload>(held: &Json) -> Vec<W::Output> {
    match held {
        Json::Array(items) if W::SWEEP => items.iter().filter_map(typed).collect(),
        one => typed(one).into_iter().collect(),
    }
}

impl<W: Workload> Entry for W {
    fn name(&self) -> &'static str {
        W::NAME
    }
    fn section(&self) -> &'static str {
        W::SECTION
    }
    fn required(&self) -> bool {
        W::REQUIRED
    }
    fn group(&self) -> Option<&'static str> {
        W::GROUP
    }
    fn opt_in(&self) -> bool {
        W::OPT_IN
    }
    fn by_default(&self) -> bool {
        W::BY_DEFAULT
    }
    fn sweep(&self) -> bool {
        W::SWEEP
    }
    fn summarised(&self) -> bool {
        W::SUMMARISED
    }
    fn applies_to(&self, spec: &ServerSpec) -> bool {
        <W as Workload>::applies_to(spec)
    }
    fn read_config(&self, table: Json) -> anyhow::Result<Json> {
        let config: W::Config = table.to_typed()?;
        Ok(Json::from_typed(&config)?)
    }
    fn jobs(&self, config: &Json) -> Vec<String> {
        typed(config).map_or_else(Vec::new, |c| <W as Workload>::jobs(&c))
    }
    fn run<'a>(
        &'a self,
        bench: Bench<'a>,
        config: &'a Json,
        job: usize,
    ) -> LocalBoxFuture<'a, anyhow::Result<Json>> {
        Box::pin(async move {
            let config: W::Config = config.to_typed()?;
            let output = <W as Workload>::run(bench, &config, job).await?;
            Ok(Json::from_typed(&output)?)
        })
    }
    fn disturbance(&self, result: &Json) -> f64 {
        typed(result).map_or(0.0, |o| <W as Workload>::disturbance(&o))
    }
    fn log(&self, server: &str, result: &Json) {
        if let Some(output) = typed(result) {
            <W as Workload>::log(server, &output);
        }
    }
    fn measured(&self, held_value: &Json) -> Vec<String> {
        held::<W>(held_value)
            .iter()
            .map(<W as Workload>::measured)
            .collect()
    }
    fn held_disturbance(&self, held_value: &Json) -> f64 {
        held::<W>(held_value)
            .iter()
            .map(<W as Workload>::disturbance)
            .fold(0.0, f64::max)
    }
}
