//! Topic patterns: what a subscription follows and what a token may cover.
//!
//! Three forms, one syntax everywhere (`/stream?topic=`, token claims):
//! - an exact topic name, such as `orders.42`;
//! - a prefix pattern `orders.*`, which covers every topic that starts with
//!   `orders.` and is longer than that (`orders.42`, `orders.eu.7`), but not
//!   `orders` itself;
//! - `*`, every topic.

use std::fmt;

use crate::message::{validate_topic, MAX_TOPIC_LEN};

/// A parsed topic pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicPattern {
    /// Every topic (`*`).
    All,
    /// Topics that start with this prefix, which ends with `.` (from
    /// `<prefix>*`), and are longer than it.
    Prefix(String),
    /// One topic.
    Exact(String),
}

impl TopicPattern {
    /// Parses `*`, `<name>.*` or a topic name.
    ///
    /// # Errors
    /// A sentence saying what is wrong: the name part breaks the topic rules
    /// of [`validate_topic`], or a `*` appears other than as the whole pattern
    /// or after a final `.`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::All);
        }
        if let Some(stem) = text.strip_suffix(".*") {
            if stem.contains('*') {
                return Err(format!(
                    "topic pattern {text:?} has a '*' before its end; use NAME.* or *"
                ));
            }
            validate_topic(stem).map_err(|e| format!("in topic pattern {text:?}: {e}"))?;
            if stem.len() + 1 >= MAX_TOPIC_LEN {
                return Err(format!(
                    "topic pattern {text:?} can match no topic: topics are at most \
                     {MAX_TOPIC_LEN} bytes long"
                ));
            }
            return Ok(Self::Prefix(format!("{stem}.")));
        }
        if text.contains('*') {
            return Err(format!(
                "topic pattern {text:?} has a '*' that is not its last part; use NAME.* or *"
            ));
        }
        validate_topic(text)?;
        Ok(Self::Exact(text.to_owned()))
    }

    /// Whether `topic` is one of the topics this pattern follows.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::All => true,
            Self::Prefix(prefix) => topic.len() > prefix.len() && topic.starts_with(prefix),
            Self::Exact(name) => name == topic,
        }
    }

    /// Whether every topic `other` follows is one this pattern follows too.
    pub fn covers(&self, other: &TopicPattern) -> bool {
        match (self, other) {
            (Self::All, _) => true,
            (_, Self::All) => false,
            (Self::Prefix(mine), Self::Prefix(theirs)) => theirs.starts_with(mine.as_str()),
            (Self::Prefix(_), Self::Exact(name)) => self.matches(name),
            (Self::Exact(_), Self::Prefix(_)) => false,
            (Self::Exact(mine), Self::Exact(theirs)) => mine == theirs,
        }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
            Self::Exact(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_three_forms_and_refuses_the_rest() {
        assert_eq!(TopicPattern::parse("*"), Ok(TopicPattern::All));
        assert_eq!(
            TopicPattern::parse("orders.*"),
            Ok(TopicPattern::Prefix("orders.".into()))
        );
        assert_eq!(
            TopicPattern::parse("orders.42"),
            Ok(TopicPattern::Exact("orders.42".into()))
        );
        for bad in ["", "a*", "*.a", "a.*.b.*", "a b.*", ".*", "a.**"] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}.*", "x".repeat(MAX_TOPIC_LEN - 1));
        assert!(TopicPattern::parse(&long)
            .unwrap_err()
            .contains("can match no topic"));
        assert_eq!(
            TopicPattern::parse("a*").unwrap_err(),
            "topic pattern \"a*\" has a '*' that is not its last part; use NAME.* or *"
        );
    }

    #[test]
    fn a_prefix_matches_longer_topics_only() {
        let orders = TopicPattern::parse("orders.*").unwrap();
        assert!(orders.matches("orders.42"));
        assert!(orders.matches("orders.eu.7"));
        assert!(!orders.matches("orders"));
        assert!(!orders.matches("orders."));
        assert!(!orders.matches("ordersx.1"));
        assert!(TopicPattern::All.matches("anything"));
    }

    #[test]
    fn covering() {
        let p = |s: &str| TopicPattern::parse(s).unwrap();
        assert!(p("*").covers(&p("orders.*")));
        assert!(p("orders.*").covers(&p("orders.eu.*")));
        assert!(p("orders.*").covers(&p("orders.1")));
        assert!(!p("orders.*").covers(&p("orders")));
        assert!(!p("orders.eu.*").covers(&p("orders.*")));
        assert!(!p("orders.1").covers(&p("orders.*")));
        assert!(!p("orders.*").covers(&p("*")));
        assert!(p("a").covers(&p("a")));
    }

    proptest! {
        #[test]
        fn display_round_trips(s in "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}(\\.\\*)?|\\*") {
            let pattern = TopicPattern::parse(&s).unwrap();
            prop_assert_eq!(pattern.to_string(), s.clone());
            prop_assert_eq!(TopicPattern::parse(&pattern.to_string()).unwrap(), pattern);
        }

        #[test]
        fn covers_agrees_with_matches(a in "[ab](\\.[ab]){0,2}(\\.\\*)?|\\*", b in "[ab](\\.[ab]){0,2}(\\.\\*)?|\\*", t in "[ab](\\.[ab]){0,3}") {
            let (a, b) = (TopicPattern::parse(&a).unwrap(), TopicPattern::parse(&b).unwrap());
            if a.covers(&b) && b.matches(&t) {
                prop_assert!(a.matches(&t));
            }
        }
    }
}
