//! One target under test (a server, or several sharing one event log): where
//! subscribers connect, where and how events are published, and where the
//! payload sits in an event.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shared::PublishRequest;

use crate::payload::DataFormat;

/// How an event is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PublishFormat {
    /// `POST` of a [`shared::PublishRequest`] JSON (our server, the baseline).
    Json,
    /// `POST` of the payload as a `text/plain` body (nchan's publisher).
    Raw,
    /// `POST` of a Pushpin publish command (`{"items": [...]}`, its HTTP
    /// control API): one item on the event's topic as the channel, whose
    /// `http-stream` content is the event with the payload as its `data`
    /// (so subscribers read it as `raw`).
    Pushpin,
}

impl PublishFormat {
    /// The publish request's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json | Self::Pushpin => "application/json",
            Self::Raw => "text/plain",
        }
    }

    /// The body that publishes `text` to `topic` (JSON: the server's
    /// default topic when `None`; raw: the topic is in the path; Pushpin:
    /// the channel, which it needs).
    pub fn body(self, topic: Option<&str>, text: String) -> Bytes {
        match self {
            Self::Raw => Bytes::from(text),
            Self::Json => Bytes::from(
                serde_json::to_vec(&PublishRequest {
                    message: text,
                    topic: topic.map(str::to_owned),
                })
                .expect("a publish request serializes"),
            ),
            Self::Pushpin => Bytes::from(pushpin_publish(topic.unwrap_or_default(), &text)),
        }
    }
}

/// A Pushpin publish command sending `text` to the streams held on
/// `channel`: the SSE event `event: message` with one `data:` line per line
/// of `text`, as an EventSource reads it back.
pub fn pushpin_publish(channel: &str, text: &str) -> Vec<u8> {
    let mut content = String::with_capacity(text.len() + 32);
    content.push_str("event: message\n");
    for line in text.split('\n') {
        content.push_str("data: ");
        content.push_str(line);
        content.push('\n');
    }
    content.push('\n');
    serde_json::to_vec(&serde_json::json!({
        "items": [{
            "channel": channel,
            "formats": { "http-stream": { "content": content } },
        }]
    }))
    .expect("a publish command serializes")
}

/// An `http://` URL on an IP address, split into what a raw HTTP/1.1 client
/// needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The server's address.
    pub addr: SocketAddr,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Why a URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("{0:?} is not a URL")]
    Invalid(String),
    /// Only plain `http://` is supported.
    #[error("{0:?}: only http:// URLs are supported")]
    Scheme(String),
    /// The host must be an IP address (or `localhost`): the benchmark stays
    /// on loopback and does no name resolution.
    #[error("{0:?}: the host must be an IP address or localhost")]
    Host(String),
}

impl Endpoint {
    /// Parses `http://<ip>[:port]/path?query`.
    ///
    /// # Errors
    /// [`UrlError`] when the URL is not `http://` on an IP address.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let uri: http::Uri = url.parse().map_err(|_| UrlError::Invalid(url.to_owned()))?;
        if uri.scheme_str() != Some("http") {
            return Err(UrlError::Scheme(url.to_owned()));
        }
        let host = uri.host().ok_or_else(|| UrlError::Host(url.to_owned()))?;
        let ip: IpAddr = if host == "localhost" {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| UrlError::Host(url.to_owned()))?
        };
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self {
            addr: SocketAddr::new(ip, uri.port_u16().unwrap_or(80)),
            path,
        })
    }

    /// The `Host` header value.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

/// How a server names topics in its URLs, for the topic workloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRoutes {
    /// The path and query subscribers `GET`, in which `{topics}` is the
    /// followed topics joined by `join` (e.g. `/stream?topic={topics}`
    /// with `&topic=`, or nchan's `/sub/{topics}` with `,`).
    pub subscribe: String,
    /// What stands between two topics in `{topics}`.
    pub join: String,
    /// The path events are `POST`ed to, in which `{topic}` is the event's
    /// topic (JSON publish bodies name it too).
    pub publish: String,
    /// Whether the server follows prefix patterns (`room.*`).
    #[serde(default)]
    pub patterns: bool,
}

impl TopicRoutes {
    /// The path that follows `topics`.
    pub fn subscribe_path(&self, topics: &[String]) -> String {
        self.subscribe.replace("{topics}", &topics.join(&self.join))
    }

    /// The path that publishes to `topic`.
    pub fn publish_path(&self, topic: &str) -> String {
        self.publish.replace("{topic}", topic)
    }
}

/// Everything the load generator needs to know about one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Where subscribers connect (`GET`, `Accept: text/event-stream`): one
    /// endpoint per server, the subscribers split evenly across them
    /// (subscriber `i` of the run on endpoint `i % len`).
    pub subscribe: Vec<Endpoint>,
    /// Where events are published (`POST`).
    pub publish: Endpoint,
    /// The publish body's form.
    pub publish_format: PublishFormat,
    /// Where the payload sits in an event's `data`.
    pub data_format: DataFormat,
    /// The topic to publish to when the format has one.
    pub topic: Option<String>,
    /// How the server names topics, when it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<TopicRoutes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_urls() {
        let e = Endpoint::parse("http://127.0.0.1:8080/sub?id=bench").unwrap();
        assert_eq!(e.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(e.path, "/sub?id=bench");
        assert_eq!(e.host(), "127.0.0.1:8080");
        let e = Endpoint::parse("http://localhost/stream").unwrap();
        assert_eq!(e.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(Endpoint::parse("http://127.0.0.1:1").unwrap().path, "/");
    }

    #[test]
    fn topic_routes_fill_in_the_topics() {
        let ours = TopicRoutes {
            subscribe: "/stream?topic={topics}".into(),
            join: "&topic=".into(),
            publish: "/publish".into(),
            patterns: true,
        };
        assert_eq!(
            ours.subscribe_path(&["a".into(), "room.*".into()]),
            "/stream?topic=a&topic=room.*"
        );
        assert_eq!(ours.publish_path("a"), "/publish");
        let nchan = TopicRoutes {
            subscribe: "/sub/{topics}".into(),
            join: ",".into(),
            publish: "/pub/{topic}".into(),
            patterns: false,
        };
        assert_eq!(nchan.subscribe_path(&["a".into(), "b".into()]), "/sub/a,b");
        assert_eq!(nchan.publish_path("user.7"), "/pub/user.7");
    }

    #[test]
    fn publish_bodies() {
        assert_eq!(
            PublishFormat::Raw.body(Some("a"), "bench:1".into()),
            "bench:1"
        );
        assert_eq!(PublishFormat::Raw.content_type(), "text/plain");
        let json: PublishRequest =
            serde_json::from_slice(&PublishFormat::Json.body(None, "x".into())).unwrap();
        assert_eq!((json.message.as_str(), json.topic), ("x", None));
        let json: PublishRequest =
            serde_json::from_slice(&PublishFormat::Json.body(Some("user.1"), "x".into())).unwrap();
        assert_eq!(json.topic.as_deref(), Some("user.1"));
        assert_eq!(PublishFormat::Pushpin.content_type(), "application/json");
        let body = PublishFormat::Pushpin.body(Some("room.3"), "bench:7:123:xx".into());
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"items":[{"channel":"room.3","formats":{"http-stream":{"content":"event: message\ndata: bench:7:123:xx\n\n"}}}]}"#
        );
        // Each line of the text is a `data:` line of the one event.
        let value: serde_json::Value =
            serde_json::from_slice(&pushpin_publish("bench", "a\nb")).unwrap();
        assert_eq!(
            value["items"][0]["formats"]["http-stream"]["content"],
            "event: message\ndata: a\ndata: b\n\n"
        );
        assert_eq!(value["items"][0]["channel"], "bench");
        assert_eq!(
            serde_json::from_str::<PublishFormat>("\"pushpin\"").unwrap(),
            PublishFormat::Pushpin
        );
    }

    #[test]
    fn refuses_what_it_cannot_reach() {
        assert!(matches!(
            Endpoint::parse("https://127.0.0.1/"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            Endpoint::parse("http://example.com/"),
            Err(UrlError::Host(_))
        ));
        assert!(Endpoint::parse("::").is_err());
    }
}
