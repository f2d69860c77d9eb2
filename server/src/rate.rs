//! Publish rate limits: `--publish-rate N` per second with bursts of
//! `--publish-burst M`, kept per token subject (or a hash of a token
//! without one, or one key for `--publish-token`), else per client address.
//! `X-Forwarded-For` names the client only when the peer is a proxy trusted
//! by `--trust-proxy`.
//!
//! A client without a token is keyed by its network: an IPv4 address, or
//! the IPv6 prefix of `--rate-ipv6-prefix` bits (64 by default, the size a
//! single host or home usually gets), so that one /64 cannot take a fresh
//! burst from each of its addresses. IPv4-mapped IPv6 addresses
//! (`::ffff:1.2.3.4`) count as the IPv4 address.
//!
//! The limiter's state is bounded in count and time: keys whose bucket has
//! refilled are forgotten every [`SWEEP_EVERY`] (and at once when the table
//! is full), and past [`MAX_KEYS`] new keys share one bucket.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use warp::http::HeaderValue;

use crate::auth::Who;

/// The most keys the limiter keeps.
pub const MAX_KEYS: usize = 100_000;

/// How often keys whose bucket has refilled are forgotten.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The IPv6 prefix a client is keyed by unless `--rate-ipv6-prefix` says.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// Whose publishes a bucket counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A token's holder.
    Token(Who),
    /// A client without a token, by network: its IPv4 address, or its
    /// IPv6 address cut to the configured prefix.
    Network(IpAddr),
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
    /// The bits of an IPv6 address that name a client.
    ipv6_prefix: u8,
}

impl PublishLimiter {
    /// `rate` publishes a second with bursts of `burst`; IPv6 clients keyed
    /// by their first `ipv6_prefix` bits (at most 128).
    pub fn new(rate: NonZeroU32, burst: NonZeroU32, trusted: Vec<IpNet>, ipv6_prefix: u8) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            trusted,
            ipv6_prefix: ipv6_prefix.min(128),
        }
    }

    /// The key of a client without a token: see the module's text.
    pub fn network_key(&self, peer: SocketAddr, forwarded: Option<&HeaderValue>) -> Key {
        Key::Network(network(self.client(peer, forwarded), self.ipv6_prefix))
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }

    /// Forgets the keys whose bucket has refilled: a client that stopped
    /// publishing for the time its burst takes to refill costs nothing.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Sweeps every [`SWEEP_EVERY`] until `stop` is cancelled.
    pub async fn sweep_until(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => self.sweep(),
            }
        }
    }

    /// The client's address: the peer, or for a trusted proxy the last
    /// address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client(&self, peer: SocketAddr, forwarded: Option<&HeaderValue>) -> IpAddr {
        let peer = peer.ip().to_canonical();
        let trusted = |ip: &IpAddr| self.trusted.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let Some(list) = forwarded.and_then(|v| v.to_str().ok()) else {
            return peer;
        };
        let mut client = peer;
        for hop in list.rsplit(',') {
            match hop.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()) {
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
        match self.check_n(key, NonZeroU32::MIN) {
            Ok(()) => Ok(()),
            Err(RateRefusal::Wait(wait)) => Err(wait),
            // A burst is at least one.
            Err(RateRefusal::OverBurst(_)) => Err(Duration::from_secs(1)),
        }
    }

    /// Takes `n` publishes (a batch's events) from `key`'s bucket, all or
    /// none.
    ///
    /// # Errors
    /// How long until they would be allowed, or that they never would be:
    /// `n` is over the burst.
    pub fn check_n(&self, key: Key, n: NonZeroU32) -> Result<(), RateRefusal> {
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
        match self.limiter.check_key_n(&key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(RateRefusal::Wait(
                not_until.wait_time_from(DefaultClock::default().now()),
            )),
            Err(governor::InsufficientCapacity(burst)) => Err(RateRefusal::OverBurst(burst)),
        }
    }
}

/// Why the limiter refused publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateRefusal {
    /// They would be allowed after this long.
    Wait(Duration),
    /// They never would be: more than the burst, which is this.
    OverBurst(u32),
}

/// The network that names a client: an IPv4 address (IPv4-mapped IPv6 ones
/// included), or an IPv6 address with all but its first `prefix` bits zero.
fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = match prefix {
                0 => 0,
                p => u128::MAX << (128 - u32::from(p.min(128))),
            };
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
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
            DEFAULT_IPV6_PREFIX,
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

    #[test]
    fn ipv6_clients_are_keyed_by_their_prefix_and_mapped_ipv4_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(network(ip("2001:db8::1"), 64), ip("2001:db8::"));
        assert_eq!(
            network(ip("2001:db8:0:0:ffff::2"), 64),
            network(ip("2001:db8::1"), 64)
        );
        assert_ne!(
            network(ip("2001:db8:0:1::1"), 64),
            network(ip("2001:db8::1"), 64)
        );
        assert_eq!(network(ip("2001:db8:0:1::1"), 48), ip("2001:db8::"));
        assert_eq!(network(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(network(ip("::ffff:1.2.3.4"), 64), ip("1.2.3.4"));
        assert_eq!(network(ip("1.2.3.4"), 64), ip("1.2.3.4"));
        let limiter = limiter(&["::1/128"]);
        let peer: SocketAddr = "[::ffff:10.0.0.1]:5000".parse().unwrap();
        assert_eq!(limiter.client(peer, None), ip("10.0.0.1"));
        let proxy: SocketAddr = "[::1]:5000".parse().unwrap();
        let xff = HeaderValue::from_static("::ffff:203.0.113.9");
        assert_eq!(
            limiter.network_key(proxy, Some(&xff)),
            Key::Network(ip("203.0.113.9"))
        );
    }

    #[test]
    fn one_ipv6_prefix_shares_one_burst() {
        let limiter = limiter(&[]);
        let a: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let b: SocketAddr = "[2001:db8::2]:1".parse().unwrap();
        assert!(limiter.check(limiter.network_key(a, None)).is_ok());
        assert!(limiter.check(limiter.network_key(b, None)).is_ok());
        assert!(limiter.check(limiter.network_key(a, None)).is_err());
        assert!(limiter.check(limiter.network_key(b, None)).is_err());
        assert_eq!(limiter.keys(), 1);
    }
}
