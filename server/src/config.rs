//! The command line: every option is a flag with an environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::event_log::Fsync;

/// How the server runs. Build it from the command line with
/// [`Config::parse`], or in tests with [`Config::parse_from`].
#[derive(Debug, Clone, Parser)]
#[command(
    name = "server",
    version,
    args_override_self = true,
    about = "A Server-Sent Events server: GET /stream, POST /publish, resumable with Last-Event-ID."
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SSE_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// How often the demo ticker publishes "Data pushed from server: (N)" on
    /// the `ticker` topic, like `150ms` or `2s`; `off` disables it.
    // Fully qualified so clap keeps the option required-with-default
    // instead of treating it as optional.
    #[arg(long, env = "SSE_TICKER_INTERVAL", default_value = "150ms", value_parser = optional_duration)]
    pub ticker_interval: ::std::option::Option<Duration>,

    /// How many recent events are kept so reconnecting clients can resume.
    #[arg(long, env = "SSE_HISTORY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub history: u64,

    /// How many bytes of framed events the history keeps at most, beside
    /// --history (the newest event is always kept).
    #[arg(long, env = "SSE_HISTORY_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_bytes: u64,

    /// Events each topic keeps for resuming clients while the history has
    /// room (the oldest events beyond their topic's share go first).
    #[arg(long, env = "SSE_HISTORY_PER_TOPIC", default_value_t = 100)]
    pub history_per_topic: u64,

    /// Most topics that hold events or are followed; a publish to a new
    /// topic over it evicts the least recently published topic no one
    /// follows, or is refused with 503 topic_limit.
    #[arg(long, env = "SSE_MAX_LIVE_TOPICS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_live_topics: u64,

    /// Most topics one stream may name with `topic=`; more are refused
    /// with 400 too_many_topics.
    #[arg(long, env = "SSE_MAX_TOPICS_PER_STREAM", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_topics_per_stream: u64,

    /// How many events a subscriber may fall behind before it is
    /// disconnected (it then reconnects and resumes from the history).
    /// Must not exceed --history.
    #[arg(long, env = "SSE_MAX_LAG", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_lag: u64,

    /// Interval of keep-alive comments on a quiet stream, like `15s`.
    #[arg(long, env = "SSE_KEEP_ALIVE", default_value = "15s", value_parser = duration)]
    pub keep_alive: Duration,

    /// Reconnection delay advised to clients in the `retry:` field.
    #[arg(long, env = "SSE_RETRY", default_value = "2s", value_parser = duration)]
    pub retry: Duration,

    /// When set, POST /publish requires `Authorization: Bearer <token>`.
    #[arg(long, env = "SSE_PUBLISH_TOKEN", hide_env_values = true)]
    pub publish_token: Option<String>,

    /// Origins allowed to call the API from a browser (CORS); comma separated
    /// or repeated. Same-origin pages need no entry.
    #[arg(
        long = "cors-origin",
        env = "SSE_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080,http://localhost:8080"
    )]
    pub cors_origins: Vec<String>,

    /// Most subscribers at once; more get 503 with Retry-After. Defaults to
    /// what the open-files limit allows.
    #[arg(long, env = "SSE_MAX_SUBSCRIBERS")]
    pub max_subscribers: Option<usize>,

    /// Largest accepted POST /publish body, in bytes.
    #[arg(long, env = "SSE_MAX_BODY", default_value_t = 64 * 1024)]
    pub max_body: u64,

    /// Folder of the built page (`trunk build`), served at `/` when it holds
    /// an index.html.
    #[arg(long, env = "SSE_DIST", default_value = "dist")]
    pub dist: PathBuf,

    /// Store events in this Redis (`redis://host:port/db`) as a Redis stream
    /// shared with every server pointed at it, instead of in memory.
    #[arg(long, env = "SSE_REDIS", value_name = "URL")]
    pub redis: Option<String>,

    /// The key of the Redis stream.
    #[arg(
        long,
        env = "SSE_REDIS_KEY",
        default_value = "sse:events",
        requires = "redis"
    )]
    pub redis_key: String,

    /// The Redis stream is trimmed to this many entries (default: --history;
    /// must not be smaller). Clients resuming from further back than
    /// --history are replayed from the stream.
    #[arg(long, env = "SSE_REDIS_MAX_LEN", requires = "redis", value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_max_len: Option<u64>,

    /// Keep the event log on disk in this folder (created when missing), so
    /// that a restart or a crash keeps the epoch, the seqs and the history.
    /// Not with --redis.
    #[arg(
        long,
        env = "SSE_DATA_DIR",
        value_name = "DIR",
        conflicts_with = "redis"
    )]
    pub data_dir: Option<PathBuf>,

    /// Events the disk log keeps (at least --history): clients resuming from
    /// further back than --history are replayed from disk.
    #[arg(long, env = "SSE_DISK_HISTORY", default_value_t = 1_000_000, requires = "data_dir", value_parser = clap::value_parser!(u64).range(1..))]
    pub disk_history: u64,

    /// Bytes the disk log keeps (at least --history-bytes).
    #[arg(long, env = "SSE_DISK_HISTORY_BYTES", default_value_t = 1 << 30, requires = "data_dir", value_parser = clap::value_parser!(u64).range(1..))]
    pub disk_history_bytes: u64,

    /// When a publish to the disk log is acknowledged: `always` (once it is
    /// on disk; concurrent publishes share one fsync) or `batch=100ms` (at
    /// once; the file is fsynced every interval).
    #[arg(
        long,
        env = "SSE_FSYNC",
        default_value = "always",
        requires = "data_dir"
    )]
    pub fsync: Fsync,

    /// How long shutdown waits for open connections to finish before
    /// closing them.
    #[arg(long, env = "SSE_SHUTDOWN_GRACE", default_value = "1s", value_parser = duration)]
    pub shutdown_grace: Duration,
}

/// Why a configuration cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--max-lag` larger than `--history` would cut subscribers only after
    /// the events they need are gone.
    #[error("--max-lag ({max_lag}) must not exceed --history ({history})")]
    LagOverHistory {
        /// The configured lag limit.
        max_lag: u64,
        /// The configured history size.
        history: u64,
    },
    /// A CORS origin that is not a valid header value.
    #[error("--cors-origin {0:?} is not a valid origin")]
    BadOrigin(String),
    /// A stream shorter than the history would let servers hold events the
    /// stream no longer has.
    #[error("--redis-max-len ({max_len}) must not be smaller than --history ({history})")]
    StreamUnderHistory {
        /// The configured stream length.
        max_len: u64,
        /// The configured history size.
        history: u64,
    },
    /// A disk log shorter than the history would drop events the memory
    /// still holds.
    #[error("{option} ({disk}) must not be smaller than {memory_option} ({memory})")]
    DiskUnderHistory {
        /// The disk bound.
        option: &'static str,
        /// Its value.
        disk: u64,
        /// The memory bound it must cover.
        memory_option: &'static str,
        /// Its value.
        memory: u64,
    },
    /// The data dir cannot be used.
    #[error("--data-dir: {}: {reason}", path.display())]
    DataDir {
        /// The folder or file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a Redis URL.
    #[error("--redis {url:?} is not a Redis URL: {reason}")]
    BadRedisUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// Checks the options that depend on each other.
    ///
    /// # Errors
    /// [`ConfigError`] naming the option that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_lag > self.history {
            return Err(ConfigError::LagOverHistory {
                max_lag: self.max_lag,
                history: self.history,
            });
        }
        for origin in &self.cors_origins {
            if origin.is_empty() || http::HeaderValue::from_str(origin).is_err() {
                return Err(ConfigError::BadOrigin(origin.clone()));
            }
        }
        if let Some(url) = &self.redis {
            if let Err(error) = redis::Client::open(url.as_str()) {
                return Err(ConfigError::BadRedisUrl {
                    url: url.clone(),
                    reason: error.to_string(),
                });
            }
            if self.stream_max_len() < self.history {
                return Err(ConfigError::StreamUnderHistory {
                    max_len: self.stream_max_len(),
                    history: self.history,
                });
            }
        }
        if let Some(dir) = &self.data_dir {
            for (option, disk, memory_option, memory) in [
                (
                    "--disk-history",
                    self.disk_history,
                    "--history",
                    self.history,
                ),
                (
                    "--disk-history-bytes",
                    self.disk_history_bytes,
                    "--history-bytes",
                    self.history_bytes,
                ),
            ] {
                if disk < memory {
                    return Err(ConfigError::DiskUnderHistory {
                        option,
                        disk,
                        memory_option,
                        memory,
                    });
                }
            }
            // Before the server listens: an unusable folder is refused at
            // once, naming it.
            crate::event_log::check_data_dir(dir)?;
        }
        Ok(())
    }

    /// The length the Redis stream is trimmed to.
    pub fn stream_max_len(&self) -> u64 {
        self.redis_max_len.unwrap_or(self.history)
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 150ms, 2s, 1m)"))
}

fn optional_duration(s: &str) -> Result<Option<Duration>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match duration(s)? {
        d if d.is_zero() => Err("use `off` to disable, not 0".to_owned()),
        d => Ok(Some(d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parsing() {
        let config = Config::try_parse_from(["server"]).expect("defaults parse");
        assert_eq!(config.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(config.ticker_interval, Some(Duration::from_millis(150)));
        assert_eq!(config.keep_alive, Duration::from_secs(15));
        assert!(config.validate().is_ok());

        let config = Config::try_parse_from([
            "server",
            "--ticker-interval",
            "off",
            "--cors-origin",
            "http://a:1,http://b:2",
        ])
        .expect("parses");
        assert_eq!(config.ticker_interval, None);
        assert_eq!(config.cors_origins, ["http://a:1", "http://b:2"]);
    }

    #[test]
    fn refuses_what_cannot_run() {
        let err = Config::try_parse_from(["server", "--ticker-interval", "0s"]).unwrap_err();
        assert!(err.to_string().contains("use `off` to disable"), "{err}");
        let config = Config::try_parse_from(["server", "--history", "10", "--max-lag", "11"])
            .expect("parses");
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "--max-lag (11) must not exceed --history (10)"
        );
        let config = Config::try_parse_from([
            "server",
            "--redis",
            "redis://127.0.0.1:1/",
            "--history",
            "10",
            "--max-lag",
            "5",
            "--redis-max-len",
            "9",
        ])
        .expect("parses");
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "--redis-max-len (9) must not be smaller than --history (10)"
        );
        let config = Config::try_parse_from(["server", "--redis", "http://x/"]).expect("parses");
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--redis \"http://x/\" is not a Redis URL"));
        let err = Config::try_parse_from(["server", "--redis-key", "k"]).unwrap_err();
        assert!(err.to_string().contains("--redis <URL>"), "{err}");
    }
}
