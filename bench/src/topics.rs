//! The layout of a topic workload: which topics each subscriber follows,
//! which topic each measured event goes to, and from those two, which
//! events each subscriber must receive.
//!
//! A [`TopicPlan`] is deterministic and small, so the coordinator sends it
//! to every worker and both sides compute the same answers without a list
//! of events or subscribers:
//!
//! - **Subscribers** come in [`Group`]s, in order: the first `count` of the
//!   run are group 0, the next group 1, and so on. A group follows its
//!   topics in one of three ways ([`Follow`]): each member its own topic of
//!   a numbered set (per-user topics, rooms), the same exact names, or a
//!   prefix pattern (`room.*`).
//! - **Events** come from [`Stream`]s that share the publishing schedule in
//!   a fixed cycle: of every `Σ weight` consecutive measured events, the
//!   first `weight` of stream 0 go to stream 0, the next to stream 1, and so
//!   on. Stream `k`'s `j`-th event goes to topic `j mod topics` of its
//!   numbered set, so events are spread evenly and in turn over its topics.
//!
//! A subscriber's [`Interest`] is the set of streams (and, within each, the
//! topic numbers) it follows; [`Interest::next_expected`] finds the next
//! seq it must receive by arithmetic, so sparse subscriptions (one event in
//! ten thousand) cost the load generator nothing per event they skip.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The name of topic `k` of a numbered set `prefix` of `topics` topics: the
/// prefix itself when the set has one topic, `prefix` followed by `k`
/// otherwise (`user.` and 3 → `user.0`, `user.1`, `user.2`).
pub fn topic_name(prefix: &str, topics: u32, k: u32) -> String {
    if topics <= 1 {
        prefix.to_owned()
    } else {
        format!("{prefix}{k}")
    }
}

/// How the members of a group choose their topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Follow {
    /// Member `i` of the group follows topic `i mod topics` of the numbered
    /// set `prefix` (see [`topic_name`]).
    Spread {
        /// The set's name, e.g. `user.`.
        prefix: String,
        /// How many topics the set has.
        topics: u32,
    },
    /// Every member names these exact topics.
    Names(Vec<String>),
    /// Every member follows the prefix pattern `<prefix>*`: every topic
    /// that starts with `prefix` and is longer.
    Prefix(String),
}

/// Subscribers that follow their topics the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// A short name for tables (`busy`, `bystanders`, `users`, `room.*`).
    pub name: String,
    /// How many subscribers.
    pub count: u32,
    /// Their topics.
    pub follow: Follow,
}

/// A share of the measured events, spread over a numbered set of topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// The set's name (see [`topic_name`]).
    pub prefix: String,
    /// How many topics the set has.
    pub topics: u32,
    /// Events of this stream in each cycle.
    pub weight: u32,
}

/// Who follows what, and where every measured event goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPlan {
    /// Subscriber groups, in subscriber order.
    pub groups: Vec<Group>,
    /// Where events go, in cycle order.
    pub streams: Vec<Stream>,
}

/// One stream's place in the cycle, and which of its topics are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    /// The stream's index in the plan.
    stream: usize,
    /// Events per cycle, over all streams.
    cycle: u64,
    /// The stream's first position in the cycle.
    offset: u64,
    /// The stream's events per cycle.
    weight: u64,
    /// The stream's topics.
    topics: u64,
    /// The followed topic numbers, sorted; `None`: all of them.
    topic_numbers: Option<Vec<u64>>,
}

impl Part {
    /// The seq of the stream's `j`-th event.
    fn seq(&self, j: u64) -> u64 {
        (j / self.weight) * self.cycle + self.offset + j % self.weight
    }

    /// The index of the stream's first event at or after `seq`.
    fn first_at_or_after(&self, seq: u64) -> u64 {
        let (cycle, position) = (seq / self.cycle, seq % self.cycle);
        if position < self.offset {
            cycle * self.weight
        } else if position < self.offset + self.weight {
            cycle * self.weight + position - self.offset
        } else {
            (cycle + 1) * self.weight
        }
    }

    /// The first followed event at or after `seq`.
    fn next_expected(&self, seq: u64) -> u64 {
        let j = self.first_at_or_after(seq);
        let j = match &self.topic_numbers {
            None => j,
            Some(numbers) => numbers
                .iter()
                .map(|&t| j + (t + self.topics - j % self.topics) % self.topics)
                .min()
                .unwrap_or(u64::MAX),
        };
        if j == u64::MAX {
            u64::MAX
        } else {
            self.seq(j)
        }
    }
}

/// The measured events one subscriber must receive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interest {
    parts: Vec<Part>,
}

impl Interest {
    /// The first seq at or after `seq` that the subscriber must receive;
    /// `u64::MAX` when there is none (a subscriber of a topic no measured
    /// event goes to).
    pub fn next_expected(&self, seq: u64) -> u64 {
        self.parts
            .iter()
            .map(|p| p.next_expected(seq))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Whether the subscriber must receive `seq`.
    pub fn expects(&self, seq: u64) -> bool {
        self.next_expected(seq) == seq
    }
}

impl TopicPlan {
    /// Subscribers over all groups.
    pub fn subscribers(&self) -> u32 {
        self.groups.iter().map(|g| g.count).sum()
    }

    fn cycle(&self) -> u64 {
        self.streams.iter().map(|s| u64::from(s.weight)).sum()
    }

    /// The group of subscriber `index` (counting over the whole run) and
    /// its index within the group; the last group for indices past the
    /// plan.
    pub fn group_of(&self, index: u32) -> (usize, u32) {
        let mut first = 0;
        for (g, group) in self.groups.iter().enumerate() {
            if index < first + group.count {
                return (g, index - first);
            }
            first += group.count;
        }
        (self.groups.len().saturating_sub(1), index - first)
    }

    /// The topics subscriber `index` names in its request (a pattern as
    /// `prefix*`).
    pub fn follows(&self, index: u32) -> Vec<String> {
        let (g, member) = self.group_of(index);
        match self.groups.get(g).map(|g| &g.follow) {
            Some(Follow::Spread { prefix, topics }) => {
                vec![topic_name(prefix, *topics, member % (*topics).max(1))]
            }
            Some(Follow::Names(names)) => names.clone(),
            Some(Follow::Prefix(prefix)) => vec![format!("{prefix}*")],
            None => Vec::new(),
        }
    }

    /// Which stream and topic number the topic `name` is, if any stream
    /// publishes to it.
    fn locate(&self, name: &str) -> Option<(usize, u64)> {
        self.streams.iter().enumerate().find_map(|(k, s)| {
            if s.topics <= 1 {
                return (name == s.prefix).then_some((k, 0));
            }
            let rest = name.strip_prefix(s.prefix.as_str())?;
            let t: u32 = rest.parse().ok()?;
            (t < s.topics && t.to_string() == rest).then_some((k, u64::from(t)))
        })
    }

    /// The measured events subscriber `index` must receive.
    pub fn interest(&self, index: u32) -> Interest {
        let cycle = self.cycle();
        let mut offsets = Vec::with_capacity(self.streams.len());
        let mut at = 0;
        for s in &self.streams {
            offsets.push(at);
            at += u64::from(s.weight);
        }
        let part = |k: usize, numbers: Option<Vec<u64>>| {
            let s = &self.streams[k];
            Part {
                stream: k,
                cycle,
                offset: offsets[k],
                weight: u64::from(s.weight),
                topics: u64::from(s.topics.max(1)),
                topic_numbers: numbers,
            }
        };
        let (g, _) = self.group_of(index);
        let mut parts = Vec::new();
        match self.groups.get(g).map(|g| &g.follow) {
            Some(Follow::Prefix(prefix)) => {
                for (k, s) in self.streams.iter().enumerate() {
                    let name = topic_name(&s.prefix, s.topics, 0);
                    // A stream's topics share their set's prefix: all of
                    // them match the pattern when one does.
                    if s.weight > 0
                        && name.starts_with(prefix.as_str())
                        && name.len() > prefix.len()
                        && s.prefix.starts_with(prefix.as_str())
                    {
                        parts.push(part(k, None));
                    }
                }
            }
            Some(_) => {
                let mut by_stream: HashMap<usize, Vec<u64>> = HashMap::new();
                for name in self.follows(index) {
                    if let Some((k, t)) = self.locate(&name) {
                        by_stream.entry(k).or_default().push(t);
                    }
                }
                let mut streams: Vec<_> = by_stream.into_iter().collect();
                streams.sort_by_key(|(k, _)| *k);
                for (k, mut numbers) in streams {
                    if self.streams[k].weight == 0 {
                        continue;
                    }
                    numbers.sort_unstable();
                    numbers.dedup();
                    let all = numbers.len() as u64 >= u64::from(self.streams[k].topics.max(1));
                    parts.push(part(k, (!all).then_some(numbers)));
                }
            }
            None => {}
        }
        Interest { parts }
    }

    /// The topic measured event `seq` goes to.
    pub fn topic_of(&self, seq: u64) -> String {
        let cycle = self.cycle().max(1);
        let position = seq % cycle;
        let mut at = 0;
        for s in &self.streams {
            let w = u64::from(s.weight);
            if position < at + w {
                let j = (seq / cycle) * w + position - at;
                let t = j % u64::from(s.topics.max(1));
                return topic_name(&s.prefix, s.topics, u32::try_from(t).unwrap_or(0));
            }
            at += w;
        }
        String::new()
    }

    /// Topics whose events reach every subscriber: one warm-up event to
    /// each shows that every subscription is in place.
    pub fn warmup_topics(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for g in &self.groups {
            match &g.follow {
                Follow::Spread { prefix, topics } => {
                    let n = (*topics).max(1).min(g.count);
                    out.extend((0..n).map(|k| topic_name(prefix, *topics, k)));
                }
                Follow::Names(names) => out.extend(names.first().cloned()),
                Follow::Prefix(prefix) => out.push(format!("{prefix}0")),
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|t| seen.insert(t.clone()));
        out
    }

    /// Whether some group follows a prefix pattern.
    pub fn has_patterns(&self) -> bool {
        self.groups
            .iter()
            .any(|g| matches!(g.follow, Follow::Prefix(_)))
    }

    /// How many subscribers must receive each measured event, computed once
    /// for the whole plan.
    pub fn receivers(&self) -> Receivers {
        let mut exact: HashMap<(usize, u64), u64> = HashMap::new();
        let mut all = vec![0u64; self.streams.len()];
        let cycle = self.cycle();
        let mut offsets = Vec::new();
        let mut at = 0;
        for s in &self.streams {
            offsets.push(at);
            at += u64::from(s.weight);
        }
        for i in 0..self.subscribers() {
            for p in self.interest(i).parts {
                let k = p.stream;
                match p.topic_numbers {
                    None => all[k] += 1,
                    Some(numbers) => {
                        for t in numbers {
                            *exact.entry((k, t)).or_default() += 1;
                        }
                    }
                }
            }
        }
        Receivers {
            cycle,
            streams: self
                .streams
                .iter()
                .zip(&offsets)
                .map(|(s, &o)| (o, u64::from(s.weight), u64::from(s.topics.max(1))))
                .collect(),
            exact,
            all,
        }
    }
}

/// How many subscribers must receive each measured event of a plan.
#[derive(Debug, Clone, Default)]
pub struct Receivers {
    cycle: u64,
    /// Per stream: offset, weight, topics.
    streams: Vec<(u64, u64, u64)>,
    /// Subscribers of (stream, topic number) by name.
    exact: HashMap<(usize, u64), u64>,
    /// Per stream, subscribers of all its topics (patterns, or every name).
    all: Vec<u64>,
}

impl Receivers {
    /// How many subscribers must receive measured event `seq`.
    pub fn of(&self, seq: u64) -> u64 {
        let cycle = self.cycle.max(1);
        let position = seq % cycle;
        for (k, &(offset, weight, topics)) in self.streams.iter().enumerate() {
            if position >= offset && position < offset + weight {
                let j = (seq / cycle) * weight + position - offset;
                let t = j % topics;
                return self.all[k] + self.exact.get(&(k, t)).copied().unwrap_or(0);
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_user(users: u32) -> TopicPlan {
        TopicPlan {
            groups: vec![Group {
                name: "users".into(),
                count: users,
                follow: Follow::Spread {
                    prefix: "user.".into(),
                    topics: users,
                },
            }],
            streams: vec![Stream {
                prefix: "user.".into(),
                topics: users,
                weight: 1,
            }],
        }
    }

    /// What every subscriber must receive, found the slow way: by its
    /// topics' names.
    fn brute_force(plan: &TopicPlan, index: u32, seq: u64) -> bool {
        let topic = plan.topic_of(seq);
        plan.follows(index)
            .iter()
            .any(|f| match f.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix) && topic.len() > prefix.len(),
                None => *f == topic,
            })
    }

    #[test]
    fn per_user_topics_take_turns() {
        let plan = per_user(4);
        let topics: Vec<String> = (0..6).map(|s| plan.topic_of(s)).collect();
        assert_eq!(
            topics,
            ["user.0", "user.1", "user.2", "user.3", "user.0", "user.1"]
        );
        assert_eq!(plan.follows(2), ["user.2"]);
        let interest = plan.interest(2);
        assert_eq!(interest.next_expected(0), 2);
        assert_eq!(interest.next_expected(3), 6);
        assert!(interest.expects(10));
        assert!(!interest.expects(11));
        let receivers = plan.receivers();
        assert!((0..20).all(|s| receivers.of(s) == 1));
        assert_eq!(plan.warmup_topics().len(), 4);
    }

    #[test]
    fn groups_streams_and_patterns_agree_with_names() {
        let plan = TopicPlan {
            groups: vec![
                Group {
                    name: "users".into(),
                    count: 7,
                    follow: Follow::Spread {
                        prefix: "user.".into(),
                        topics: 5,
                    },
                },
                Group {
                    name: "room.*".into(),
                    count: 3,
                    follow: Follow::Prefix("room.".into()),
                },
                Group {
                    name: "rooms by name".into(),
                    count: 2,
                    follow: Follow::Names(vec!["room.1".into(), "room.0".into()]),
                },
                Group {
                    name: "one room".into(),
                    count: 2,
                    follow: Follow::Names(vec!["room.2".into()]),
                },
                Group {
                    name: "bystanders".into(),
                    count: 2,
                    follow: Follow::Names(vec!["quiet".into()]),
                },
            ],
            streams: vec![
                Stream {
                    prefix: "user.".into(),
                    topics: 5,
                    weight: 4,
                },
                Stream {
                    prefix: "room.".into(),
                    topics: 3,
                    weight: 1,
                },
                Stream {
                    prefix: "busy".into(),
                    topics: 1,
                    weight: 2,
                },
            ],
        };
        assert_eq!(plan.subscribers(), 16);
        assert_eq!(plan.group_of(7), (1, 0));
        assert_eq!(plan.follows(8), ["room.*"]);
        let receivers = plan.receivers();
        for index in 0..plan.subscribers() {
            let interest = plan.interest(index);
            for seq in 0..200 {
                assert_eq!(
                    interest.expects(seq),
                    brute_force(&plan, index, seq),
                    "subscriber {index}, seq {seq} ({})",
                    plan.topic_of(seq)
                );
            }
        }
        for seq in 0..200 {
            let n = (0..plan.subscribers())
                .filter(|&i| brute_force(&plan, i, seq))
                .count() as u64;
            assert_eq!(receivers.of(seq), n, "seq {seq}");
        }
        // Bystanders expect nothing at all.
        assert_eq!(plan.interest(14).next_expected(0), u64::MAX);
        assert_eq!(
            plan.warmup_topics(),
            [
                "user.0", "user.1", "user.2", "user.3", "user.4", "room.0", "room.1", "room.2",
                "quiet"
            ]
        );
    }
}
