//! The server's integration tests, one binary: the real server over TCP
//! (in this process on 127.0.0.1:0, or the `server` binary as a child
//! process), with real `redis-server`s, real files and real signals. Each
//! module is one area; `common` is their support.

mod common;

mod accept;
mod auth;
mod batch;
mod config;
mod deploy;
mod direct;
mod disk;
mod faults;
mod http;
mod idempotency;
mod last;
mod lifecycle;
mod limits;
mod logs;
mod publish;
mod redis;
mod redis_faults;
mod replay;
mod resume;
mod stream;
mod tls;
mod topics;
mod ttl;
