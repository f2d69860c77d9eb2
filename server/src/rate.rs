//! Publish rate limits: `--publish-rate N` per second with bursts of
//! `--publish-burst M`, kept per token subject (or a hash of a token
//! without one, or one key for `--publish-token`), else per client address.
//! `X-Forwarded-For` names the client only when the peer is a proxy trusted
//! by `--trust-proxy`.
//!
//! The limiter's state is bounded: keys whose bucket has refilled are
//! forgotten, and past [`MAX_KEYS`] new keys share one bucket.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use warp::http::HeaderValue;

use crate::auth::Who;

/// The most keys the limiter keeps.
pub const MAX_KEYS: usize = 100_000;

/// Whose publishes a bucket counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A token's holder.
    Token(Who),
    /// A client without a token, by address.
    Address(IpAddr),
    /// Every new key once the limiter holds [`MAX_KEYS`].
    Overflow,
}

/// The limiter, when `--publish-rate` is set.
#[derive(Debug)]
pub struct PublishLimiter {
    /// One bucket per key.
    limiter: DefaultKeyedRateLimiter<Key>,
    /// Proxies whose `X-Forwarded-For` is believed.
    trusted: Vec<IpNet>,
}

impl PublishLimiter {
    /// `rate` publishes a second with bursts of `burst`.
    pub fn new(rate: NonZeroU32, burst: NonZeroU32, trusted: Vec<IpNet>) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            trusted,
        }
    }

    /// The client's address: the peer, or for a trusted proxy the last
    /// address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client(&self, peer: SocketAddr, forwarded: Option<&HeaderValue>) -> IpAddr {
        let peer = peer.ip();
        let trusted = |ip: &IpAddr| self.trusted.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let Some(list) = forwarded.and_then(|v| v.to_str().ok()) else {
            return peer;
        };
        let mut client = peer;
        for hop in list.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !trusted(&ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }

    /// Takes one publish from `key`'s bucket.
    ///
    /// # Errors
    /// How long until the next publish would be allowed.
    pub fn check(&self, key: Key) -> Result<(), Duration> {
        let key = if self.limiter.len() >= MAX_KEYS {
            // Forget the keys whose buckets are full again.
            self.limiter.retain_recent();
            if self.limiter.len() >= MAX_KEYS {
                Key::Overflow
            } else {
                key
            }
        } else {
            key
        };
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(trusted: &[&str]) -> PublishLimiter {
        PublishLimiter::new(
            NonZeroU32::new(1).unwrap(),
            NonZeroU32::new(2).unwrap(),
            trusted.iter().map(|t| t.parse().unwrap()).collect(),
        )
    }

    #[test]
    fn a_burst_then_refusals_per_key() {
        let limiter = limiter(&[]);
        let a = Key::Token(Who::Subject("a".into()));
        assert!(limiter.check(a.clone()).is_ok());
        assert!(limiter.check(a.clone()).is_ok());
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limiter.check(Key::Token(Who::Subject("b".into()))).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let xff = HeaderValue::from_static("203.0.113.9, 10.0.0.2");
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        assert_eq!(limiter(&[]).client(peer, Some(&xff)), peer.ip());
        let ip = limiter(&["10.0.0.0/8"]).client(peer, Some(&xff));
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        let outside: SocketAddr = "198.51.100.7:1".parse().unwrap();
        assert_eq!(
            limiter(&["10.0.0.0/8"]).client(outside, Some(&xff)),
            outside.ip()
        );
    }
}
