//! Which topics the page subscribes to, and the `/stream` URL for a choice.

use shared::{EventId, DEFAULT_TOPIC, TICKER_TOPIC};

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

/// The relative `/stream` URL for `choice`, resuming after `resume` when given.
///
/// Topic names and event ids use only characters that need no escaping in a
/// query string (letters, digits, `-`, `_`, `.`).
pub fn stream_url(choice: &TopicChoice, resume: Option<EventId>) -> String {
    let mut params = Vec::new();
    if let Some(topic) = choice.topic() {
        params.push(format!("topic={topic}"));
    }
    if let Some(id) = resume {
        params.push(format!("lastEventId={id}"));
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
    fn urls_for_each_choice() {
        assert_eq!(stream_url(&TopicChoice::All, None), "/stream");
        assert_eq!(
            stream_url(&TopicChoice::Ticker, None),
            "/stream?topic=ticker"
        );
        assert_eq!(
            stream_url(&TopicChoice::Default, Some(EventId::new(17, 4))),
            "/stream?topic=default&lastEventId=17-4"
        );
        assert_eq!(
            stream_url(&TopicChoice::All, Some(EventId::new(1, 2))),
            "/stream?lastEventId=1-2"
        );
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
            stream_url(&TopicChoice::custom("news.eu").unwrap(), None),
            "/stream?topic=news.eu"
        );
        assert_eq!(TopicChoice::custom("x").unwrap().kind(), "custom");
    }
}
