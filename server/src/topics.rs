//! `GET /topics?limit=100&after=NAME`: the live topics, sorted by name, a
//! page at a time, and how many events each keeps (`history_per_topic`).

use serde::Serialize;
use warp::Reply;

use crate::error::ApiError;
use crate::hub::{Hub, TopicInfo};

/// Topics listed when the request names no limit.
pub const DEFAULT_LIMIT: usize = 100;

/// The most topics one page may hold.
pub const MAX_LIMIT: usize = 1000;

/// One page of `GET /topics`.
#[derive(Debug, Serialize)]
pub struct TopicsPage {
    /// The topics, by name.
    pub topics: Vec<TopicInfo>,
    /// The `after` of the next page, or `null` on the last one.
    pub next: Option<String>,
    /// The events each topic keeps while the history has room
    /// (`--history-per-topic`): the largest `last` a stream may ask for.
    pub history_per_topic: u64,
}

/// Answers `GET /topics` with the topics `readable` admits, and the
/// server's `history_per_topic`.
///
/// # Errors
/// [`ApiError::InvalidQuery`] for a `limit` that is not a number from 1 to
/// [`MAX_LIMIT`], or an `after` that is not a topic name.
pub fn list(
    hub: &Hub,
    query: &str,
    history_per_topic: u64,
    readable: impl Fn(&str) -> bool,
) -> Result<warp::reply::Response, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let mut after = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::InvalidQuery(format!(
                            "limit must be a number from 1 to {MAX_LIMIT}, not {value:?}"
                        ))
                    })?;
            }
            "after" => {
                shared::validate_topic(&value)
                    .map_err(|e| ApiError::InvalidQuery(format!("after: {e}")))?;
                after = Some(value.into_owned());
            }
            _ => {}
        }
    }
    // One more than asked tells whether there is a next page; topics the
    // caller may not read are not listed (nor counted).
    let mut topics = hub.topics(after.as_deref(), limit + 1, readable);
    let next = (topics.len() > limit).then(|| {
        topics.truncate(limit);
        topics.last().map(|t| t.name.clone())
    });
    let page = TopicsPage {
        topics,
        next: next.flatten(),
        history_per_topic,
    };
    Ok(warp::reply::json(&page).into_response())
}
