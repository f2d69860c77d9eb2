//! Which topics the page subscribes to, where a stream starts, and the
//! `/stream` URL for both.

use shared::{EventId, DEFAULT_TOPIC, TICKER_TOPIC};

use crate::feed::MAX_ROWS;

/// The most events a fresh stream asks for (`?last=`): as many as the list
/// keeps, so that a new tab opens on the list a tab watching all along
/// would show; more would only be dropped.
pub const LAST_WANTED: u64 = MAX_ROWS as u64;

/// The topic picker's choice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TopicChoice {
    /// Every topic (no `?topic=`).
    #[default]
    All,
    /// The demo ticker's topic.
    Ticker,
    /// The topic of messages published without one.
    Default,
    /// A topic typed in by the person, already checked by [`TopicChoice::custom`].
    Custom(String),
}

impl TopicChoice {
    /// A custom topic, checked against the server's rules.
    ///
    /// # Errors
    /// The sentence from [`shared::TopicPattern::parse`] saying what is wrong.
    pub fn custom(name: &str) -> Result<Self, String> {
        let name = name.trim();
        // A topic, or a pattern: `prefix.*` or `*`.
        shared::TopicPattern::parse(name)?;
        Ok(Self::Custom(name.to_owned()))
    }

    /// The topic name to subscribe to, or `None` for all topics.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::Ticker => Some(TICKER_TOPIC),
            Self::Default => Some(DEFAULT_TOPIC),
            Self::Custom(name) => Some(name),
        }
    }

    /// What the page calls this choice.
    pub fn label(&self) -> &str {
        self.topic().unwrap_or("all topics")
    }

    /// The radio button value of this choice.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Ticker => "ticker",
            Self::Default => "default",
            Self::Custom(_) => "custom",
        }
    }
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Live: nothing published before it.
    Live,
    /// With the newest `n` events of the choice (`?last=n`, `n` above 0),
    /// then live.
    Last(u64),
    /// Right after the event `id` (`?lastEventId=`): what came since, then
    /// live.
    After(EventId),
}

impl Start {
    /// After `resume` when the page has an id; else with the newest events,
    /// [`LAST_WANTED`] of them but no more than `server_max` (the server's
    /// `history_per_topic`, the largest `last` it accepts: a larger one is a
    /// `400` that an `EventSource` cannot see and would retry for ever);
    /// live when the server's limit is unknown or 0.
    pub fn new(resume: Option<EventId>, server_max: Option<u64>) -> Self {
        match (resume, server_max.map(|max| max.min(LAST_WANTED))) {
            (Some(id), _) => Self::After(id),
            (None, Some(n)) if n > 0 => Self::Last(n),
            _ => Self::Live,
        }
    }
}

/// The relative `/stream` URL for `choice`, starting at `start`.
///
/// Topic names and event ids use only characters that need no escaping in a
/// query string (letters, digits, `-`, `_`, `.`).
pub fn stream_url(choice: &TopicChoice, start: Start) -> String {
    let mut params = Vec::new();
    if let Some(topic) = choice.topic() {
        params.push(format!("topic={topic}"));
    }
    match start {
        Start::Live => {}
        Start::Last(n) => params.push(format!("last={n}")),
        Start::After(id) => params.push(format!("lastEventId={id}")),
    }
    if params.is_empty() {
        "/stream".to_owned()
    } else {
        format!("/stream?{}", params.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_each_choice_and_start() {
        assert_eq!(stream_url(&TopicChoice::All, Start::Live), "/stream");
        assert_eq!(
            stream_url(&TopicChoice::Ticker, Start::Live),
            "/stream?topic=ticker"
        );
        assert_eq!(
            stream_url(&TopicChoice::Default, Start::After(EventId::new(17, 4))),
            "/stream?topic=default&lastEventId=17-4"
        );
        assert_eq!(
            stream_url(&TopicChoice::All, Start::After(EventId::new(1, 2))),
            "/stream?lastEventId=1-2"
        );
        assert_eq!(
            stream_url(&TopicChoice::All, Start::Last(100)),
            "/stream?last=100"
        );
        assert_eq!(
            stream_url(&TopicChoice::custom("news.*").unwrap(), Start::Last(7)),
            "/stream?topic=news.*&last=7"
        );
    }

    #[test]
    fn a_fresh_start_asks_for_the_list_within_the_servers_limit() {
        // The server's default keeps 100 a topic: fewer than the list.
        assert_eq!(Start::new(None, Some(100)), Start::Last(100));
        assert_eq!(Start::new(None, Some(1)), Start::Last(1));
        // A server that keeps more is asked for the list's length only.
        assert_eq!(LAST_WANTED, 500);
        assert_eq!(Start::new(None, Some(500)), Start::Last(500));
        assert_eq!(Start::new(None, Some(501)), Start::Last(500));
        assert_eq!(Start::new(None, Some(u64::MAX)), Start::Last(500));
        // Nothing to ask for: live, with no `last` at all.
        assert_eq!(Start::new(None, Some(0)), Start::Live);
        assert_eq!(Start::new(None, None), Start::Live);
        assert_eq!(
            stream_url(&TopicChoice::Ticker, Start::new(None, Some(0))),
            "/stream?topic=ticker"
        );
    }

    #[test]
    fn an_id_to_resume_after_wins_and_sends_no_last() {
        let id = EventId::new(9, 3);
        for server_max in [None, Some(0), Some(20), Some(1000)] {
            assert_eq!(Start::new(Some(id), server_max), Start::After(id));
            let url = stream_url(&TopicChoice::Ticker, Start::new(Some(id), server_max));
            assert_eq!(url, "/stream?topic=ticker&lastEventId=9-3");
        }
    }

    #[test]
    fn custom_topics_follow_the_server_rules() {
        assert_eq!(
            TopicChoice::custom(" news.eu "),
            Ok(TopicChoice::Custom("news.eu".to_owned()))
        );
        assert_eq!(
            TopicChoice::custom("").unwrap_err(),
            "topic must not be empty"
        );
        assert!(TopicChoice::custom("a&b").is_err());
        assert_eq!(
            stream_url(&TopicChoice::custom("news.eu").unwrap(), Start::Live),
            "/stream?topic=news.eu"
        );
        assert_eq!(TopicChoice::custom("x").unwrap().kind(), "custom");
    }
}
