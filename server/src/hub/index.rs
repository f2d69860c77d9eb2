//! Who follows what: a subscription's filter, and the index a publish uses
//! to wake only the subscribers whose filter matches.
//!
//! A publish to topic `a.b.c` wakes the exact subscribers of `a.b.c` (held
//! by the topic itself), the subscribers of the prefix patterns `a.*` and
//! `a.b.*` (looked up by the topic's prefixes that end with `.`, never by
//! scanning patterns or topics), and those who follow every topic. A
//! prefix pattern keeps the seqs of its matching events since it was first
//! followed, so a woken pattern subscriber reads only what matches it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use shared::TopicPattern;
use slab::Slab;

use super::Slot;

/// What one subscription follows, with nothing named twice: every topic;
/// or exact topics and prefix patterns (each prefix ending with `.`), none
/// of them covered by another.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Filter {
    /// Every topic.
    #[default]
    All,
    /// These topics and the topics under these prefixes.
    Some {
        /// Exact topic names, sorted.
        topics: Vec<Arc<str>>,
        /// Prefixes (`orders.` for `orders.*`), sorted.
        prefixes: Vec<Arc<str>>,
    },
}

impl Filter {
    /// The filter of `patterns`; none means every topic.
    pub fn new(patterns: impl IntoIterator<Item = TopicPattern>) -> Self {
        let patterns: BTreeSet<TopicPattern> = patterns.into_iter().collect();
        if patterns.is_empty() || patterns.contains(&TopicPattern::All) {
            return Self::All;
        }
        let covered = |p: &TopicPattern| patterns.iter().any(|other| other != p && other.covers(p));
        let mut topics = Vec::new();
        let mut prefixes = Vec::new();
        for pattern in &patterns {
            if covered(pattern) {
                continue;
            }
            match pattern {
                TopicPattern::Exact(name) => topics.push(Arc::from(name.as_str())),
                TopicPattern::Prefix(prefix) => prefixes.push(Arc::from(prefix.as_str())),
                TopicPattern::All => {}
            }
        }
        Self::Some { topics, prefixes }
    }

    /// Whether `topic` is followed.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::All => true,
            // Both lists are sorted: a lookup per prefix of the topic,
            // never a scan of the filter.
            Self::Some { topics, prefixes } => {
                topics.binary_search_by(|t| (**t).cmp(topic)).is_ok()
                    || prefixes_of(topic)
                        .any(|p| prefixes.binary_search_by(|x| (**x).cmp(p)).is_ok())
            }
        }
    }

    /// How many topics and patterns it names (0 for every topic).
    pub fn len(&self) -> usize {
        match self {
            Self::All => 0,
            Self::Some { topics, prefixes } => topics.len() + prefixes.len(),
        }
    }

    /// Whether it follows every topic.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::All)
    }

    /// The patterns it follows, in their text form.
    pub fn patterns(&self) -> Vec<TopicPattern> {
        match self {
            Self::All => vec![TopicPattern::All],
            Self::Some { topics, prefixes } => topics
                .iter()
                .map(|t| TopicPattern::Exact(t.to_string()))
                .chain(prefixes.iter().map(|p| TopicPattern::Prefix(p.to_string())))
                .collect(),
        }
    }
}

/// The topics a token may not read: private ones (`--private`) its claims
/// do not cover. A subscription to every topic skips them; one that names a
/// hidden topic is refused before it subscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    /// Patterns of the topics that need a token.
    pub private: Vec<TopicPattern>,
    /// What the token may read.
    pub allowed: Vec<TopicPattern>,
}

impl Hidden {
    /// Whether events of `topic` are hidden.
    pub fn hides(&self, topic: &str) -> bool {
        self.private.iter().any(|p| p.matches(topic))
            && !self.allowed.iter().any(|a| a.matches(topic))
    }
}

/// The prefixes of `topic` that a prefix pattern could name: each ends with
/// a `.` that is not the topic's last character.
pub(crate) fn prefixes_of(topic: &str) -> impl Iterator<Item = &str> {
    topic
        .char_indices()
        .filter(move |&(i, c)| c == '.' && i + 1 < topic.len())
        .map(move |(i, _)| &topic[..=i])
}

/// A followed prefix pattern: the seqs of its events, and its subscribers.
#[derive(Debug)]
pub(crate) struct Pattern {
    /// The prefix, ending with `.`.
    pub(crate) prefix: Arc<str>,
    /// Seqs of matching events published since it was followed.
    pub(crate) seqs: Mutex<PatternSeqs>,
    /// Its subscribers, woken by each matching publish.
    pub(crate) subs: Mutex<Slab<Arc<Slot>>>,
}

/// The seqs a pattern has seen.
#[derive(Debug)]
pub(crate) struct PatternSeqs {
    /// Matching seqs, oldest first.
    pub(crate) seqs: VecDeque<u64>,
    /// Every matching seq from this one on is in `seqs`.
    pub(crate) since: u64,
    /// Most seqs kept (the history's size: older ones are read from the
    /// topics instead).
    cap: usize,
}

impl PatternSeqs {
    /// Records a matching seq.
    pub(crate) fn push(&mut self, seq: u64) {
        self.seqs.push_back(seq);
        while self.seqs.len() > self.cap {
            if let Some(old) = self.seqs.pop_front() {
                self.since = old + 1;
            }
        }
    }
}

/// The followed prefix patterns, by prefix.
#[derive(Debug, Default)]
pub(crate) struct Patterns {
    /// Prefix → pattern.
    by_prefix: HashMap<Arc<str>, Arc<Pattern>>,
}

impl Patterns {
    /// The pattern of `prefix`, made (complete from `since` on) when missing.
    pub(crate) fn get_or_create(
        &mut self,
        prefix: &Arc<str>,
        since: u64,
        cap: usize,
    ) -> Arc<Pattern> {
        self.by_prefix
            .entry(prefix.clone())
            .or_insert_with(|| {
                Arc::new(Pattern {
                    prefix: prefix.clone(),
                    seqs: Mutex::new(PatternSeqs {
                        seqs: VecDeque::new(),
                        since,
                        cap: cap.max(1),
                    }),
                    subs: Mutex::new(Slab::new()),
                })
            })
            .clone()
    }

    /// Forgets the pattern of `prefix` (its last subscriber left).
    pub(crate) fn remove(&mut self, prefix: &str) {
        self.by_prefix.remove(prefix);
    }

    /// The followed patterns that cover `topic`.
    pub(crate) fn matching(&self, topic: &str) -> Vec<Arc<Pattern>> {
        if self.by_prefix.is_empty() {
            return Vec::new();
        }
        prefixes_of(topic)
            .filter_map(|prefix| self.by_prefix.get(prefix).cloned())
            .collect()
    }

    /// Every followed pattern (to start them anew with the log).
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Pattern>> {
        self.by_prefix.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str]) -> Filter {
        Filter::new(patterns.iter().map(|p| TopicPattern::parse(p).unwrap()))
    }

    #[test]
    fn a_filter_names_nothing_twice() {
        assert_eq!(filter(&[]), Filter::All);
        assert_eq!(filter(&["a", "*"]), Filter::All);
        let f = filter(&["orders.1", "orders.*", "orders.eu.*", "b", "b"]);
        assert_eq!(
            f,
            Filter::Some {
                topics: vec![Arc::from("b")],
                prefixes: vec![Arc::from("orders.")],
            }
        );
        assert!(f.matches("orders.eu.1") && f.matches("b"));
        assert!(!f.matches("orders") && !f.matches("c"));
    }

    #[test]
    fn prefixes_end_at_inner_dots() {
        let found: Vec<&str> = prefixes_of("a.b.c").collect();
        assert_eq!(found, ["a.", "a.b."]);
        assert_eq!(prefixes_of("a.").count(), 0);
        assert_eq!(prefixes_of("abc").count(), 0);
    }
}
