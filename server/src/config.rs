//! The command line: every option is a flag with an environment fallback
//! and a key of the `--config` file ([`crate::config_file`]), turned once
//! into the [`Settings`] the server runs on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::auth::{Auth, JwtKey};
use crate::event_log::{
    DataDirError, DiskOptions, Fsync, LogChoice, OpenError, RedisOptions, Store,
};
use crate::idempotency::KeyOptions;
use crate::limits;
use crate::logging::LogFormat;
use crate::publish::PublishSettings;
use crate::settings::{ConnectionSettings, HistorySettings, RateSettings, Settings};
use crate::stream::StreamSettings;
use crate::tls::Tls;

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
    /// Read options from this TOML file: each key is an option's flag name
    /// (`max-connections = 5000`), in sections or not. Flags and the
    /// environment take precedence over it.
    #[arg(long, env = "SSE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// How log lines on stderr are written: `text`, or `json` (one object
    /// a line, for a log shipper).
    #[arg(long, env = "SSE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

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

    /// Drop events older than this from the history (in memory, on disk,
    /// in the Redis stream), like `1h` (1ms to 100y): they are never
    /// replayed, and a client resuming from before them gets a reset
    /// notice. Off by default.
    #[arg(long, env = "SSE_HISTORY_TTL", value_name = "DURATION", value_parser = history_ttl)]
    pub history_ttl: Option<Duration>,

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
    #[arg(long, env = "SSE_KEEP_ALIVE", default_value = "15s", value_parser = positive_duration)]
    pub keep_alive: Duration,

    /// Reconnection delay advised to clients in the `retry:` field.
    #[arg(long, env = "SSE_RETRY", default_value = "2s", value_parser = duration)]
    pub retry: Duration,

    /// When set, POST /publish requires `Authorization: Bearer <token>`.
    /// Printable ASCII without spaces, as a header can carry it.
    #[arg(long, env = "SSE_PUBLISH_TOKEN", hide_env_values = true, value_parser = token)]
    pub publish_token: Option<String>,

    /// `--publish-token` read from this file (a trailing newline dropped).
    #[arg(
        long,
        env = "SSE_PUBLISH_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "publish_token"
    )]
    pub publish_token_file: Option<PathBuf>,

    /// Check JWTs signed with this shared secret (HS256). Tokens give
    /// rights per topic in their `sse` claim.
    #[arg(
        long,
        env = "SSE_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    pub jwt_secret: Option<String>,

    /// `--jwt-secret` read from this file (a trailing newline dropped).
    #[arg(
        long,
        env = "SSE_JWT_SECRET_FILE",
        value_name = "FILE",
        conflicts_with_all = ["jwt_secret", "jwt_public_key"]
    )]
    pub jwt_secret_file: Option<PathBuf>,

    /// Check JWTs signed with the private key of this PEM public key (RS256
    /// for an RSA key, ES256 for a P-256 EC key).
    #[arg(long, env = "SSE_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// Accept only tokens whose `aud` is this.
    #[arg(long, env = "SSE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Accept only tokens whose `iss` is this.
    #[arg(long, env = "SSE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// How far `exp` and `nbf` may be off, for clocks that disagree; a
    /// stream ends when its token is no longer accepted (`exp` plus this).
    #[arg(long, env = "SSE_JWT_LEEWAY", default_value = "30s", value_parser = duration)]
    pub jwt_leeway: Duration,

    /// The cookie a stream's token may come in (never a publish's).
    #[arg(long, env = "SSE_JWT_COOKIE", default_value = "sse_token")]
    pub jwt_cookie: String,

    /// Topics that need a token to be read: a name, `prefix.*` or `*`;
    /// repeatable (comma separated in the environment).
    #[arg(long = "private", env = "SSE_PRIVATE", value_delimiter = ',', value_parser = pattern)]
    pub private: Vec<shared::TopicPattern>,

    /// When set, /metrics and /healthz need `Authorization: Bearer <token>`.
    #[arg(long, env = "SSE_METRICS_TOKEN", hide_env_values = true, value_parser = token)]
    pub metrics_token: Option<String>,

    /// `--metrics-token` read from this file (a trailing newline dropped).
    #[arg(
        long,
        env = "SSE_METRICS_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "metrics_token"
    )]
    pub metrics_token_file: Option<PathBuf>,

    /// Most publishes per second for one token subject (or, without a
    /// token, one client: an IPv4 address or an IPv6 prefix, see
    /// --rate-ipv6-prefix); off when unset.
    #[arg(long, env = "SSE_PUBLISH_RATE", value_parser = clap::value_parser!(u32).range(1..))]
    pub publish_rate: Option<u32>,

    /// Publishes allowed at once above --publish-rate (default: the rate).
    #[arg(long, env = "SSE_PUBLISH_BURST", requires = "publish_rate", value_parser = clap::value_parser!(u32).range(1..))]
    pub publish_burst: Option<u32>,

    /// The leading bits of an IPv6 address that name one client for the
    /// rate limit (64: a /64 shares one bucket).
    #[arg(long, env = "SSE_RATE_IPV6_PREFIX", default_value_t = crate::rate::DEFAULT_IPV6_PREFIX, value_parser = clap::value_parser!(u8).range(1..=128))]
    pub rate_ipv6_prefix: u8,

    /// Proxies (CIDR, like 10.0.0.0/8) whose X-Forwarded-For names the
    /// client for the rate limit; repeatable.
    #[arg(long = "trust-proxy", env = "SSE_TRUST_PROXY", value_delimiter = ',')]
    pub trust_proxy: Vec<ipnet::IpNet>,

    /// Origins allowed to call the API from a browser (CORS), like
    /// `https://example.com:8443`; comma separated or repeated. `*` alone
    /// allows every origin. Same-origin pages need no entry.
    #[arg(
        long = "cors-origin",
        env = "SSE_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080,http://localhost:8080",
        value_parser = origin
    )]
    pub cors_origins: Vec<String>,

    /// Most subscribers at once; more get 503 with Retry-After. Defaults to
    /// --max-connections, which also applies.
    #[arg(long, env = "SSE_MAX_SUBSCRIBERS")]
    pub max_subscribers: Option<usize>,

    /// Largest accepted POST /publish body, in bytes.
    #[arg(long, env = "SSE_MAX_BODY", default_value_t = 64 * 1024)]
    pub max_body: u64,

    /// Most events in one batch (POST /publish with
    /// Content-Type: application/x-ndjson); more gets 413.
    #[arg(long, env = "SSE_MAX_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_batch: u64,

    /// Largest accepted batch body, in bytes; larger gets 413.
    #[arg(long, env = "SSE_MAX_BATCH_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=64 * 1024 * 1024))]
    pub max_batch_bytes: u64,

    /// How long a client may take to send a request's head (request line
    /// and headers): from accept for the first request, from its first
    /// byte for later ones. Past it the connection is closed.
    #[arg(long, env = "SSE_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,

    /// Largest request head (request line and headers) in bytes; larger
    /// gets 431.
    #[arg(long, env = "SSE_MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(1024..=256 * 1024))]
    pub max_header_bytes: u64,

    /// How long a client may take to send a POST /publish body, from the
    /// end of its head; past it the answer is 408 and nothing is published.
    #[arg(long, env = "SSE_BODY_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub body_timeout: Duration,

    /// How long a keep-alive connection may wait, carrying no request and
    /// no stream, before the server closes it.
    #[arg(long, env = "SSE_IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub idle_timeout: Duration,

    /// Most open connections at once; more are answered 503 with
    /// Retry-After and closed. Defaults to the open-files limit minus a
    /// reserve for the process's own files, Redis and those answers.
    #[arg(long, env = "SSE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

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

    /// Serve HTTPS with this PEM certificate chain (leaf first), with
    /// `--tls-key`. ALPN offers h2 and http/1.1. SIGHUP reloads both files.
    #[arg(long, env = "SSE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SSE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Without TLS, also serve cleartext HTTP/2 to clients that open with
    /// its preface (prior knowledge, as proxies do); others stay HTTP/1.1.
    #[arg(long, env = "SSE_H2C", conflicts_with = "tls_cert")]
    pub h2c: bool,

    /// Most concurrent streams (requests) on one HTTP/2 connection.
    #[arg(long, env = "SSE_H2_MAX_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub h2_max_streams: u32,
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

    /// How long a publish's Idempotency-Key is remembered: a retry with the
    /// same key and body within it gets the first answer, like `24h`.
    #[arg(long, env = "SSE_IDEMPOTENCY_TTL", default_value = "24h", value_parser = positive_duration)]
    pub idempotency_ttl: Duration,

    /// Most remembered answers of Idempotency-Keys, counted in events: a
    /// key of one event counts 1, a batch's key counts its events; the
    /// oldest are forgotten first. Must not be smaller than --max-batch.
    #[arg(long, env = "SSE_IDEMPOTENCY_KEYS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub idempotency_keys: u64,

    /// How long shutdown waits for open connections to finish before
    /// closing them.
    #[arg(long, env = "SSE_SHUTDOWN_GRACE", default_value = "1s", value_parser = duration)]
    pub shutdown_grace: Duration,
}

/// Why a configuration cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Private topics no token could ever read.
    #[error("--private needs --jwt-secret or --jwt-public-key: no token could read those topics")]
    PrivateWithoutJwt,
    /// Claims to check without tokens to check them in.
    #[error("--jwt-audience and --jwt-issuer need --jwt-secret or --jwt-public-key")]
    ClaimsWithoutJwt,
    /// A JWT key that cannot be used.
    #[error(transparent)]
    JwtKey(#[from] crate::auth::KeyError),
    /// `--max-lag` larger than `--history` would cut subscribers only after
    /// the events they need are gone.
    #[error("--max-lag ({max_lag}) must not exceed --history ({history})")]
    LagOverHistory {
        /// The configured lag limit.
        max_lag: u64,
        /// The configured history size.
        history: u64,
    },
    /// `*` among other origins: it already allows them all.
    #[error("--cors-origin `*` allows every origin; give it alone, not with other origins")]
    WildcardAmongOrigins,
    /// More connections than the open-files limit can hold: the process
    /// would run out of file descriptors before the cap applies.
    #[error(
        "--max-connections ({max}) is more than the open-files limit allows ({allowed}: \
         the hard limit {hard} minus {reserved} for the process's own files)"
    )]
    ConnectionsOverFiles {
        /// The configured cap.
        max: u64,
        /// The most the limit allows.
        allowed: u64,
        /// The hard open-files limit.
        hard: u64,
        /// File descriptors kept for other uses.
        reserved: u64,
    },
    /// A stream shorter than the history would let servers hold events the
    /// stream no longer has.
    #[error("--redis-max-len ({max_len}) must not be smaller than --history ({history})")]
    StreamUnderHistory {
        /// The configured stream length.
        max_len: u64,
        /// The configured history size.
        history: u64,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
    /// A keyed batch of `--max-batch` events would not fit the keys' bound:
    /// its record weighs its events.
    #[error(
        "--idempotency-keys ({keys}) must not be smaller than --max-batch ({max_batch}): \
         a keyed batch's record counts as its events"
    )]
    KeysUnderBatch {
        /// The configured bound on remembered answers.
        keys: u64,
        /// The configured batch size.
        max_batch: u64,
    },
    /// The data dir cannot be used.
    #[error("--data-dir: {0}")]
    DataDir(#[from] DataDirError),
    /// A secret's file cannot be used.
    #[error("{option} {path}: {reason}")]
    SecretFile {
        /// The option naming the file.
        option: &'static str,
        /// The file.
        path: String,
        /// Why it cannot be used.
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

impl From<OpenError> for ConfigError {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::DataDir(error) => Self::DataDir(error),
            OpenError::RedisUrl { url, reason } => Self::BadRedisUrl { url, reason },
        }
    }
}

impl Config {
    /// The settings the server runs on: the options checked against each
    /// other, then every file they name read once (the JWT key, the TLS
    /// pair, the data dir's store) and the Redis URL parsed.
    ///
    /// # Errors
    /// [`ConfigError`] naming the option when the options contradict each
    /// other, or a file or URL they name cannot be used.
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        self.check_consistency()?;
        let auth = self.auth()?;
        let tls = self.tls()?;
        let log = self.log_choice()?;
        Ok(Settings {
            addr: self.addr,
            history: HistorySettings {
                events: self.history,
                bytes: self.history_bytes,
                per_topic: self.history_per_topic,
                ttl: self.history_ttl,
                max_live_topics: self.max_live_topics,
                max_lag: self.max_lag,
            },
            log,
            connections: ConnectionSettings {
                header_timeout: self.header_timeout,
                idle_timeout: self.idle_timeout,
                max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
                max_connections: self.max_connections,
                max_subscribers: self.max_subscribers,
                h2_max_streams: self.h2_max_streams,
            },
            stream: StreamSettings {
                keep_alive: self.keep_alive,
                retry: self.retry,
                max_topics: usize::try_from(self.max_topics_per_stream).unwrap_or(usize::MAX),
                max_last: self.history_per_topic,
            },
            publish: PublishSettings {
                max_body: self.max_body,
                body_timeout: self.body_timeout,
                max_batch: usize::try_from(self.max_batch).unwrap_or(usize::MAX),
                max_batch_bytes: self.max_batch_bytes,
            },
            auth,
            rate: self.rate(),
            cors_origins: self.cors_origins,
            tls,
            h2c: self.h2c,
            dist: self.dist,
            ticker_interval: self.ticker_interval,
            shutdown_grace: self.shutdown_grace,
        })
    }

    /// The checks that read nothing: options that contradict each other.
    fn check_consistency(&self) -> Result<(), ConfigError> {
        if self.max_lag > self.history {
            return Err(ConfigError::LagOverHistory {
                max_lag: self.max_lag,
                history: self.history,
            });
        }
        if self.cors_origins.len() > 1 && self.cors_origins.iter().any(|o| o == "*") {
            return Err(ConfigError::WildcardAmongOrigins);
        }
        self.check_connections()?;
        self.check_jwt_options()?;
        if self.idempotency_keys < self.max_batch {
            return Err(ConfigError::KeysUnderBatch {
                keys: self.idempotency_keys,
                max_batch: self.max_batch,
            });
        }
        if self.redis.is_some() && self.stream_max_len() < self.history {
            return Err(ConfigError::StreamUnderHistory {
                max_len: self.stream_max_len(),
                history: self.history,
            });
        }
        if self.data_dir.is_some() {
            self.check_disk_history()?;
        }
        Ok(())
    }

    fn check_connections(&self) -> Result<(), ConfigError> {
        let Some(max) = self.max_connections else {
            return Ok(());
        };
        let hard = limits::hard_open_files_limit();
        let allowed = limits::connections_allowed(hard);
        if max > allowed {
            return Err(ConfigError::ConnectionsOverFiles {
                max,
                allowed,
                hard,
                reserved: limits::RESERVED_FDS,
            });
        }
        Ok(())
    }

    fn check_jwt_options(&self) -> Result<(), ConfigError> {
        let jwt = self.jwt_secret.is_some()
            || self.jwt_secret_file.is_some()
            || self.jwt_public_key.is_some();
        if !self.private.is_empty() && !jwt {
            return Err(ConfigError::PrivateWithoutJwt);
        }
        if (self.jwt_audience.is_some() || self.jwt_issuer.is_some()) && !jwt {
            return Err(ConfigError::ClaimsWithoutJwt);
        }
        Ok(())
    }

    fn check_disk_history(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The JWT key (its file read here, once), with its claims' checks.
    fn jwt_key(&self) -> Result<Option<JwtKey>, ConfigError> {
        let secret = secret(
            self.jwt_secret.as_ref(),
            self.jwt_secret_file.as_ref(),
            "--jwt-secret-file",
            |_| Ok(()),
        )?;
        let key = match (secret, &self.jwt_public_key) {
            (Some(secret), _) => JwtKey::secret(&secret)?,
            (None, Some(path)) => JwtKey::public_key(path)?,
            (None, None) => return Ok(None),
        };
        let key = key.leeway(self.jwt_leeway);
        let key = match &self.jwt_audience {
            Some(aud) => key.audience(aud),
            None => key,
        };
        Ok(Some(match &self.jwt_issuer {
            Some(iss) => key.issuer(iss),
            None => key,
        }))
    }

    fn auth(&self) -> Result<Auth, ConfigError> {
        let check = |s: &str| token(s).map(drop);
        Ok(Auth::new(
            self.jwt_key()?,
            self.private.clone(),
            self.jwt_cookie.clone(),
            secret(
                self.publish_token.as_ref(),
                self.publish_token_file.as_ref(),
                "--publish-token-file",
                check,
            )?,
            secret(
                self.metrics_token.as_ref(),
                self.metrics_token_file.as_ref(),
                "--metrics-token-file",
                check,
            )?,
        ))
    }

    /// HTTPS with the certificate and key read here, once.
    fn tls(&self) -> Result<Option<Arc<Tls>>, ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(Arc::new(Tls::new(cert, key)?))),
            _ => Ok(None),
        }
    }

    fn rate(&self) -> Option<RateSettings> {
        let rate = self.publish_rate.and_then(NonZeroU32::new)?;
        Some(RateSettings {
            rate,
            burst: self.publish_burst.and_then(NonZeroU32::new).unwrap_or(rate),
            trust_proxy: self.trust_proxy.clone(),
            ipv6_prefix: self.rate_ipv6_prefix,
        })
    }

    /// The log: the data dir's store opened (before the server listens, so
    /// that an unusable folder is refused at once, naming it), or the Redis
    /// URL parsed.
    fn log_choice(&self) -> Result<LogChoice, ConfigError> {
        if let Some(dir) = &self.data_dir {
            return Ok(LogChoice::Disk {
                store: Store::open(dir)?,
                options: DiskOptions {
                    dir: dir.clone(),
                    fsync: self.fsync,
                    max_events: self.disk_history,
                    max_bytes: self.disk_history_bytes,
                    floor: self.history_per_topic,
                    max_empty_topics: usize::try_from(self.max_live_topics).unwrap_or(usize::MAX),
                    keys: self.key_options(),
                    ttl: self.history_ttl,
                },
            });
        }
        let Some(url) = &self.redis else {
            return Ok(LogChoice::Memory {
                keys: self.key_options(),
            });
        };
        if let Err(error) = redis::Client::open(url.as_str()) {
            return Err(ConfigError::BadRedisUrl {
                url: url.clone(),
                reason: error.to_string(),
            });
        }
        Ok(LogChoice::Redis(RedisOptions {
            url: url.clone(),
            key: self.redis_key.clone(),
            max_len: self.stream_max_len(),
            history: self.history,
            max_event_bytes: self.max_body,
            keys: self.key_options(),
            ttl: self.history_ttl,
        }))
    }

    /// How long and how many idempotency keys are remembered.
    fn key_options(&self) -> KeyOptions {
        KeyOptions {
            ttl: self.idempotency_ttl,
            max: usize::try_from(self.idempotency_keys).unwrap_or(usize::MAX),
        }
    }

    /// The Redis stream's length: `--redis-max-len`, or `--history`.
    fn stream_max_len(&self) -> u64 {
        self.redis_max_len.unwrap_or(self.history)
    }
}

/// A secret given inline, or read from `file` (named by `option`) with its
/// trailing newline dropped and checked by `check`.
fn secret(
    inline: Option<&String>,
    file: Option<&PathBuf>,
    option: &'static str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Option<String>, ConfigError> {
    let Some(path) = file else {
        return Ok(inline.cloned());
    };
    let failed = |reason: String| ConfigError::SecretFile {
        option,
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(failed("the file is empty".to_owned()));
    }
    check(value).map_err(failed)?;
    Ok(Some(value.to_owned()))
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 150ms, 2s, 1m)"))
}

fn pattern(s: &str) -> Result<shared::TopicPattern, String> {
    shared::TopicPattern::parse(s.trim())
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err("must be more than 0".to_owned());
    }
    match duration(s)? {
        d if d.is_zero() => Err("must be more than 0".to_owned()),
        d => Ok(d),
    }
}

/// The longest `--history-ttl`: 100 years (`100y`). Longer is surely a
/// mistake of units; leaving the option out keeps events regardless of age.
const MAX_HISTORY_TTL: Duration = Duration::from_secs(3_155_760_000);

/// `--history-ttl`: from 1 ms (events' times are in milliseconds) to
/// [`MAX_HISTORY_TTL`].
fn history_ttl(s: &str) -> Result<Duration, String> {
    match positive_duration(s)? {
        d if d < Duration::from_millis(1) => {
            Err("must be at least 1ms (events' times are in milliseconds)".to_owned())
        }
        d if d > MAX_HISTORY_TTL => Err(
            "must be at most 100y; leave --history-ttl out to keep events whatever their age"
                .to_owned(),
        ),
        d => Ok(d),
    }
}

/// A bearer token a client can send: a header value that is not printable
/// ASCII would never match.
fn token(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces, and not empty".to_owned());
    }
    Ok(s.to_owned())
}

/// A browser origin as it appears in an `Origin` header: `scheme://host`
/// with an optional port and nothing after it, or `*`. Surrounding spaces
/// (`a, b`) are dropped; scheme and host are case-insensitive, and browsers
/// send them in lower case.
fn origin(s: &str) -> Result<String, String> {
    let origin = s.trim();
    if origin == "*" {
        return Ok(origin.to_owned());
    }
    let hint = "an origin is scheme://host[:port], like http://localhost:8080, or `*` alone";
    if origin.is_empty() {
        return Err(format!("an empty origin; {hint}"));
    }
    let uri: http::Uri = origin
        .parse()
        .map_err(|_| format!("{origin:?} is not an origin; {hint}"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("{origin:?} has no scheme or host; {hint}"));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!("{origin:?} is not http or https; {hint}"));
    }
    if authority.as_str().contains('@') {
        return Err(format!("{origin:?} has user information; {hint}"));
    }
    // `Uri` reads a missing path as `/`, so compare with what an origin is.
    if !origin.eq_ignore_ascii_case(&format!("{scheme}://{authority}")) {
        return Err(format!(
            "{origin:?} has a path, a trailing slash or a query, which an Origin header never has; {hint}"
        ));
    }
    Ok(origin.to_ascii_lowercase())
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
        assert!(config.into_settings().is_ok());

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
            config.into_settings().unwrap_err().to_string(),
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
            config.into_settings().unwrap_err().to_string(),
            "--redis-max-len (9) must not be smaller than --history (10)"
        );
        let config =
            Config::try_parse_from(["server", "--idempotency-keys", "10"]).expect("parses");
        assert_eq!(
            config.into_settings().unwrap_err().to_string(),
            "--idempotency-keys (10) must not be smaller than --max-batch (1000): a keyed \
             batch's record counts as its events"
        );
        let config =
            Config::try_parse_from(["server", "--idempotency-keys", "10", "--max-batch", "10"])
                .expect("parses");
        assert!(config.into_settings().is_ok());
        let config = Config::try_parse_from(["server", "--redis", "http://x/"]).expect("parses");
        assert!(config
            .into_settings()
            .unwrap_err()
            .to_string()
            .starts_with("--redis \"http://x/\" is not a Redis URL"));
        let err = Config::try_parse_from(["server", "--redis-key", "k"]).unwrap_err();
        assert!(err.to_string().contains("--redis <URL>"), "{err}");
        let err = Config::try_parse_from(["server", "--keep-alive", "0s"]).unwrap_err();
        assert!(err.to_string().contains("must be more than 0"), "{err}");
    }

    #[test]
    fn history_ttl_is_off_by_default_and_bounded() {
        let config = Config::try_parse_from(["server"]).expect("defaults parse");
        assert_eq!(config.history_ttl, None);
        let config = Config::try_parse_from(["server", "--history-ttl", "90s"]).expect("parses");
        assert_eq!(config.history_ttl, Some(Duration::from_secs(90)));
        let config = Config::try_parse_from(["server", "--history-ttl", "100y"]).expect("parses");
        assert_eq!(config.history_ttl, Some(MAX_HISTORY_TTL));
        for (value, says) in [
            ("0", "must be more than 0"),
            ("-1s", "must be more than 0"),
            ("500us", "must be at least 1ms"),
            ("101y", "must be at most 100y"),
            ("soon", "expected number at 0"),
        ] {
            let flag = format!("--history-ttl={value}");
            let err = Config::try_parse_from(["server", flag.as_str()]).unwrap_err();
            assert!(err.to_string().contains(says), "{value}: {err}");
        }
    }

    #[test]
    fn limits_have_defaults_and_refuse_zero() {
        let config = Config::try_parse_from(["server"]).expect("defaults parse");
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.max_header_bytes, 16384);
        assert_eq!(config.body_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.max_connections, None);
        for flag in [
            "--header-timeout",
            "--body-timeout",
            "--idle-timeout",
            "--keep-alive",
        ] {
            let err = Config::try_parse_from(["server", flag, "0ms"]).unwrap_err();
            assert!(
                err.to_string().contains("must be more than 0"),
                "{flag}: {err}"
            );
        }
        let over = (limits::connections_allowed(limits::hard_open_files_limit()) + 1).to_string();
        let config =
            Config::try_parse_from(["server", "--max-connections", &over]).expect("parses");
        assert!(config
            .into_settings()
            .unwrap_err()
            .to_string()
            .starts_with(&format!(
                "--max-connections ({over}) is more than the open-files limit allows"
            )));
    }

    #[test]
    fn origins_are_trimmed_and_checked() {
        let config = Config::try_parse_from([
            "server",
            "--cors-origin",
            " http://a.example:1 ,HTTPS://B.Example",
        ])
        .expect("parses");
        assert_eq!(
            config.cors_origins,
            ["http://a.example:1", "https://b.example"]
        );
        let config = Config::try_parse_from(["server", "--cors-origin", "*"]).expect("parses");
        assert!(config.into_settings().is_ok());
        let config =
            Config::try_parse_from(["server", "--cors-origin", "*, http://a"]).expect("parses");
        assert_eq!(
            config.into_settings().unwrap_err().to_string(),
            "--cors-origin `*` allows every origin; give it alone, not with other origins"
        );
        for (origin, says) in [
            (
                "http://a.example/",
                "has a path, a trailing slash or a query",
            ),
            (
                "http://a.example/app",
                "has a path, a trailing slash or a query",
            ),
            (
                "http://a.example?x",
                "has a path, a trailing slash or a query",
            ),
            ("a.example", "has no scheme or host"),
            ("ftp://a.example", "is not http or https"),
            ("http://u@a.example", "has user information"),
            ("http://a,", "an empty origin"),
            ("null", "has no scheme or host"),
        ] {
            let err = Config::try_parse_from(["server", "--cors-origin", origin]).unwrap_err();
            assert!(err.to_string().contains(says), "{origin}: {err}");
        }
    }

    #[test]
    fn a_publish_token_is_what_a_header_can_carry() {
        assert!(Config::try_parse_from(["server", "--publish-token", "s3cr3t-_.~+/="]).is_ok());
        for token in ["", "a b", "s\u{e9}cret"] {
            let err = Config::try_parse_from(["server", "--publish-token", token]).unwrap_err();
            assert!(
                err.to_string().contains("printable ASCII"),
                "{token:?}: {err}"
            );
        }
    }
}
