//! The browser's connection limit: over HTTP/1.1 a browser opens at most
//! [`PER_ORIGIN`] connections to one origin, and an open event stream holds
//! one for good. The seventh stream (and every other request to the origin:
//! pages, fetches) waits until one closes.
//!
//! Tabs of this page tell each other over a `BroadcastChannel` how many
//! streams they hold ([`Announcement`]); [`Peers`] keeps what the others
//! said, and [`diagnose`] names the cause when the limit is, or may be,
//! what holds a stream back.

/// Connections a browser opens to one origin over HTTP/1.1.
pub const PER_ORIGIN: u32 = 6;
/// A tab that has not spoken for this long is forgotten (a tab in the
/// background may have its timers slowed to one a minute).
pub const PEER_TTL_MS: f64 = 75_000.0;
/// How often a tab repeats its announcement.
pub const ANNOUNCE_EVERY_MS: f64 = 2000.0;
/// A stream connecting for longer than this while other tabs hold streams
/// is likely waiting for a connection.
pub const STUCK_AFTER_MS: f64 = 3000.0;
/// The channel's name.
pub const CHANNEL: &str = "sse-page-streams";

/// What a tab tells the others, as one line of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// A tab has started: the others announce themselves at once.
    Hello,
    /// Tab `id` holds `open` open streams to the origin.
    Streams {
        /// The tab's random id.
        id: String,
        /// Its open streams.
        open: u32,
    },
    /// Tab `id` is going away.
    Bye {
        /// The tab's random id.
        id: String,
    },
}

impl Announcement {
    /// The text sent on the channel.
    pub fn encode(&self) -> String {
        match self {
            Self::Hello => "hello".to_owned(),
            Self::Streams { id, open } => format!("streams {id} {open}"),
            Self::Bye { id } => format!("bye {id}"),
        }
    }

    /// Reads a text received on the channel; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let mut words = text.split(' ');
        let announcement = match (words.next()?, words.next(), words.next()) {
            ("hello", None, None) => Self::Hello,
            ("streams", Some(id), Some(open)) if !id.is_empty() => Self::Streams {
                id: id.to_owned(),
                open: open.parse().ok()?,
            },
            ("bye", Some(id), None) if !id.is_empty() => Self::Bye { id: id.to_owned() },
            _ => return None,
        };
        words.next().is_none().then_some(announcement)
    }
}

/// What the other tabs last said.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    /// (tab id, open streams, when it last spoke).
    tabs: Vec<(String, u32, f64)>,
}

impl Peers {
    /// No other tab known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in an announcement heard at `now_ms`; returns whether this tab
    /// should announce itself in answer (to a hello).
    pub fn heard(&mut self, announcement: Announcement, now_ms: f64) -> bool {
        match announcement {
            Announcement::Hello => return true,
            Announcement::Streams { id, open } => {
                match self.tabs.iter_mut().find(|(tab, _, _)| *tab == id) {
                    Some(entry) => {
                        entry.1 = open;
                        entry.2 = now_ms;
                    }
                    None => self.tabs.push((id, open, now_ms)),
                }
            }
            Announcement::Bye { id } => self.tabs.retain(|(tab, _, _)| *tab != id),
        }
        false
    }

    /// Open streams of the other tabs that spoke within [`PEER_TTL_MS`],
    /// and how many such tabs hold one.
    pub fn open(&mut self, now_ms: f64) -> (u32, u32) {
        self.tabs
            .retain(|(_, _, seen)| now_ms - seen <= PEER_TTL_MS);
        self.tabs
            .iter()
            .fold((0, 0), |(streams, tabs), (_, open, _)| {
                (streams + open, tabs + u32::from(*open > 0))
            })
    }
}

/// Whether the limit applies: the protocol is HTTP/1.x, or not known.
pub fn limited(protocol: Option<&str>) -> bool {
    !matches!(protocol, Some(p) if p.starts_with("h2") || p.starts_with("h3"))
}

/// Why this page's streams may be held back by the connection limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitHint {
    /// `streams` streams are open to the origin (this tab's included), from
    /// `tabs` tabs: the limit is reached.
    Reached {
        /// Open streams.
        streams: u32,
        /// Tabs that hold them.
        tabs: u32,
    },
    /// This tab's stream has been connecting for `waited_ms` while other
    /// tabs hold `streams` streams.
    Waiting {
        /// How long this stream has been connecting.
        waited_ms: f64,
        /// Open streams of the other tabs.
        streams: u32,
    },
}

impl LimitHint {
    /// The cause and the fix, for people.
    pub fn text(&self) -> String {
        let cause = match *self {
            Self::Reached { streams, tabs } => format!(
                "{streams} event streams are open to this origin from {tabs} tab{} of this page. \
                 Over HTTP/1.1 a browser opens at most {PER_ORIGIN} connections to one origin, \
                 and each open stream holds one: another stream, and any other request to it, waits.",
                if tabs == 1 { "" } else { "s" }
            ),
            Self::Waiting { waited_ms, streams } => format!(
                "This stream has been connecting for {} s while other tabs of this page hold \
                 {streams} stream{}: over HTTP/1.1 it waits for one of the browser's {PER_ORIGIN} \
                 connections to this origin.",
                crate::decimal::fixed((waited_ms / 1000.0).floor(), 0),
                if streams == 1 { "" } else { "s" }
            ),
        };
        format!(
            "{cause} Fix: serve the stream over HTTP/2 (one connection carries every stream), \
             or open one stream with several topics (/stream?topic=a&topic=b) instead of one per topic."
        )
    }
}

/// The connection-limit rule: on HTTP/1.1 (or an unknown protocol), when
/// [`PER_ORIGIN`] or more streams are open to the origin, or this tab's
/// stream has been connecting for [`STUCK_AFTER_MS`] while others are open.
///
/// `own_open` is whether this tab's stream is open; `connecting_ms` how long
/// it has been connecting (`None` when it is not); `others` the other tabs'
/// open streams and how many tabs hold them.
pub fn diagnose(
    protocol: Option<&str>,
    own_open: bool,
    connecting_ms: Option<f64>,
    others: (u32, u32),
) -> Option<LimitHint> {
    if !limited(protocol) {
        return None;
    }
    let (streams, tabs) = others;
    let total = streams + u32::from(own_open);
    if total >= PER_ORIGIN {
        return Some(LimitHint::Reached {
            streams: total,
            tabs: tabs + u32::from(own_open),
        });
    }
    match connecting_ms {
        Some(waited_ms) if waited_ms >= STUCK_AFTER_MS && streams > 0 => {
            Some(LimitHint::Waiting { waited_ms, streams })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_and_strangers_are_ignored() {
        for a in [
            Announcement::Hello,
            Announcement::Streams {
                id: "a1b2".to_owned(),
                open: 1,
            },
            Announcement::Bye {
                id: "a1b2".to_owned(),
            },
        ] {
            assert_eq!(Announcement::decode(&a.encode()), Some(a));
        }
        for bad in [
            "",
            "hello there",
            "streams x",
            "streams x y",
            "streams  1",
            "bye",
            "streams a 1 2",
        ] {
            assert_eq!(Announcement::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn peers_are_counted_until_they_leave_or_go_silent() {
        let mut peers = Peers::new();
        let streams = |id: &str, open| Announcement::Streams {
            id: id.to_owned(),
            open,
        };
        assert!(peers.heard(Announcement::Hello, 0.0), "answer a hello");
        assert!(!peers.heard(streams("a", 1), 0.0));
        peers.heard(streams("b", 1), 10.0);
        peers.heard(streams("c", 0), 10.0);
        assert_eq!(peers.open(20.0), (2, 2));
        // b's stream closes; a leaves.
        peers.heard(streams("b", 0), 30.0);
        peers.heard(Announcement::Bye { id: "a".to_owned() }, 40.0);
        assert_eq!(peers.open(50.0), (0, 0));
        // c went silent.
        peers.heard(streams("c", 1), 60.0);
        assert_eq!(peers.open(60.0 + PEER_TTL_MS), (1, 1));
        assert_eq!(peers.open(61.0 + PEER_TTL_MS), (0, 0));
    }

    #[test]
    fn six_streams_on_http1_reach_the_limit() {
        let h1 = Some("http/1.1");
        assert_eq!(
            diagnose(h1, true, None, (5, 5)),
            Some(LimitHint::Reached {
                streams: 6,
                tabs: 6
            })
        );
        assert_eq!(diagnose(h1, true, None, (4, 4)), None);
        // Unknown protocol: the limit may apply.
        assert!(diagnose(None, false, None, (6, 3)).is_some());
        // HTTP/2 and HTTP/3 multiplex streams over one connection.
        assert_eq!(diagnose(Some("h2"), true, None, (9, 9)), None);
        assert_eq!(diagnose(Some("h3"), false, Some(10_000.0), (9, 9)), None);
    }

    #[test]
    fn a_stream_stuck_connecting_while_others_are_open_waits_for_a_connection() {
        let h1 = Some("http/1.1");
        assert_eq!(
            diagnose(h1, false, Some(4000.0), (2, 2)),
            Some(LimitHint::Waiting {
                waited_ms: 4000.0,
                streams: 2
            })
        );
        assert_eq!(diagnose(h1, false, Some(1000.0), (2, 2)), None, "not yet");
        assert_eq!(
            diagnose(h1, false, Some(9000.0), (0, 0)),
            None,
            "no one else"
        );
    }

    #[test]
    fn the_hint_names_the_cause_and_the_fix() {
        let text = LimitHint::Reached {
            streams: 7,
            tabs: 7,
        }
        .text();
        assert!(
            text.starts_with("7 event streams are open to this origin from 7 tabs"),
            "{text}"
        );
        assert!(text.contains("at most 6 connections"), "{text}");
        assert!(text.contains("HTTP/2"), "{text}");
        assert!(text.contains("/stream?topic=a&topic=b"), "{text}");
        let text = LimitHint::Waiting {
            waited_ms: 4200.0,
            streams: 1,
        }
        .text();
        assert!(
            text.starts_with("This stream has been connecting for 4 s"),
            "{text}"
        );
        assert!(text.contains("hold 1 stream:"), "{text}");
    }
}
