//! A worker process: a share of the subscribers, on one thread, driven by
//! the coordinator's commands (see [`crate::protocol`]).
//!
//! Every subscriber is a task that connects from the worker's source
//! address, reads its stream through the HTTP body decoder and the shared
//! WHATWG [`Parser`], and records each measured event in the worker's state:
//! its latency, its arrival in the subscriber's [`SeqTracker`], and the
//! per-event worst latency and receiver count from which the coordinator
//! computes when the last subscriber had each event.

mod state;
mod subscriber;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{watch, Semaphore};

use self::state::State;
use self::subscriber::{subscriber, Ctx};
use crate::protocol::{Command, Reply, TopicSetup};
use crate::target::Endpoint;

/// What every subscriber task watches: the coordinator's latest wishes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Control {
    /// Bumped by each [`Command::Reconnect`].
    generation: u32,
    /// Events behind the newest to resume from on reconnect.
    behind: u32,
    /// Subscribers with an index below this stop reading.
    stall_below: u32,
    /// Bumped by each [`Command::Rejoin`].
    rejoin: u32,
    /// The group that rejoins.
    rejoin_group: usize,
    /// How long it stays away, ms.
    rejoin_after_ms: u64,
    /// Everything ends.
    quit: bool,
}

/// A worker's command loop, on the current thread.
struct Worker {
    state: Option<Rc<RefCell<State>>>,
    control: watch::Sender<Control>,
}

impl Worker {
    async fn handle(&mut self, command: Command) -> (Reply, bool) {
        match command {
            Command::Connect {
                endpoints,
                data_format,
                lanes,
                count,
                source,
                concurrency,
                timeout_ms,
                topics,
            } => {
                if self.state.is_some() {
                    return (Reply::Error("already connected".to_owned()), false);
                }
                if endpoints.is_empty() {
                    return (Reply::Error("no endpoint to connect to".to_owned()), false);
                }
                let n = usize::try_from(count).unwrap_or(0);
                let state = Rc::new(RefCell::new(State::new(
                    n,
                    data_format,
                    lanes,
                    source,
                    topics.as_ref(),
                )));
                self.state = Some(state.clone());
                self.spawn_subscribers(&state, endpoints, topics.as_ref(), source, concurrency);
                (wait_connected(&state, count, timeout_ms).await, false)
            }
            Command::Status => (self.with_state(|s| Reply::Status(s.status())), false),
            Command::Measure { from_seq } => (
                self.with_state(|s| {
                    s.start_measure(from_seq);
                    Reply::Done
                }),
                false,
            ),
            Command::Report { from_seq, to_seq } => (
                self.with_state(|s| Reply::Report(s.report(from_seq, to_seq))),
                false,
            ),
            Command::Reconnect {
                behind,
                caught_up_seq,
            } => {
                let reply = self.with_state(|s| {
                    s.reconnect_at = Some(Instant::now());
                    s.caught_up_seq = Some(caught_up_seq);
                    s.catch_up.reset();
                    Reply::Done
                });
                self.control.send_modify(|c| {
                    c.generation += 1;
                    c.behind = behind;
                });
                (reply, false)
            }
            Command::Rejoin { group, after_ms } => {
                self.control.send_modify(|c| {
                    c.rejoin += 1;
                    c.rejoin_group = group;
                    c.rejoin_after_ms = after_ms;
                });
                (Reply::Done, false)
            }
            Command::Stall { count } => {
                self.control.send_modify(|c| c.stall_below = count);
                (Reply::Done, false)
            }
            Command::Quit => {
                self.control.send_modify(|c| c.quit = true);
                (Reply::Done, true)
            }
        }
    }

    /// Spawns a subscriber task for each of `state`'s subscribers, split
    /// evenly across `endpoints` (each on its own path in a topic
    /// workload), at most `concurrency` connecting at a time.
    fn spawn_subscribers(
        &self,
        state: &Rc<RefCell<State>>,
        endpoints: Vec<Endpoint>,
        topics: Option<&TopicSetup>,
        source: std::net::Ipv4Addr,
        concurrency: u32,
    ) {
        let endpoints: Vec<Rc<Endpoint>> = endpoints.into_iter().map(Rc::new).collect();
        let gate = Rc::new(Semaphore::new(
            usize::try_from(concurrency.max(1)).unwrap_or(1),
        ));
        let n = state.borrow().subs.len();
        for idx in 0..n {
            let endpoint = endpoints[idx % endpoints.len()].clone();
            // In a topic workload each subscriber has its own path.
            let (endpoint, group) = match topics {
                Some(t) => {
                    let index = t.first_index + u32::try_from(idx).unwrap_or(u32::MAX);
                    let path = t.routes.subscribe_path(&t.plan.follows(index));
                    (
                        Rc::new(Endpoint {
                            addr: endpoint.addr,
                            path,
                        }),
                        t.plan.group_of(index).0,
                    )
                }
                None => (endpoint, 0),
            };
            let ctx = Ctx {
                idx,
                group,
                endpoint,
                source,
                state: state.clone(),
                gate: gate.clone(),
            };
            tokio::task::spawn_local(subscriber(ctx, self.control.subscribe()));
        }
    }

    fn with_state(&self, f: impl FnOnce(&mut State) -> Reply) -> Reply {
        match &self.state {
            Some(state) => f(&mut state.borrow_mut()),
            None => Reply::Error("no subscribers yet: send Connect first".to_owned()),
        }
    }
}

/// Waits until each of `count` subscribers has connected or failed once,
/// or `timeout_ms` has passed; the reply that says how many connected.
async fn wait_connected(state: &Rc<RefCell<State>>, count: u32, timeout_ms: u64) -> Reply {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let done = {
            let s = state.borrow();
            s.initial_ok + s.initial_failed >= count
        };
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = state.borrow();
    Reply::Connected {
        ok: s.initial_ok,
        failed: count - s.initial_ok,
        first_error: s.first_error.clone(),
    }
}

/// Runs a worker process: reads commands from stdin, answers on stdout,
/// until [`Command::Quit`] or the end of stdin.
///
/// # Errors
/// When the runtime cannot start or stdout cannot be written.
pub fn run() -> anyhow::Result<()> {
    if let Err(e) = crate::raise_nofile_limit() {
        tracing::warn!("cannot raise the open files limit: {e}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let (control, _) = watch::channel(Control::default());
        let mut worker = Worker {
            state: None,
            control,
        };
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut stdout = tokio::io::stdout();
        while let Some(line) = lines.next_line().await? {
            let (reply, quit) = match serde_json::from_str::<Command>(&line) {
                Ok(command) => worker.handle(command).await,
                Err(e) => (Reply::Error(format!("bad command: {e}")), false),
            };
            let mut out = serde_json::to_vec(&reply)?;
            out.push(b'\n');
            stdout.write_all(&out).await?;
            stdout.flush().await?;
            if quit {
                break;
            }
        }
        Ok(())
    })
}
