//! The SSE `id:` of every event: `<epoch>-<seq>`.
//!
//! `epoch` names one log: one run of an in-memory server (its start second
//! since the Unix epoch times 10^6, plus a random part below 10^6, so that
//! two runs never share one), or one life of a shared Redis stream (Redis's
//! clock in microseconds when it began). `seq` is the event's place in that
//! log. From an id a server learns in O(1) which log produced it, where it
//! sits in the log and whether the history still holds it.

use std::fmt;
use std::str::FromStr;

use crate::message::MAX_EVENT_ID_LEN;

/// A parsed event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    /// The server run that produced the event.
    pub epoch: u64,
    /// The event's sequence number within that run.
    pub seq: u64,
}

/// Why a string is not an [`EventId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventIdError {
    /// No `-` between epoch and seq.
    #[error("an event id has the form <epoch>-<seq>")]
    MissingSeparator,
    /// Longer than any id a server issues (see [`MAX_EVENT_ID_LEN`]).
    #[error("an event id is at most {MAX_EVENT_ID_LEN} bytes long")]
    TooLong,
    /// A part is empty, has a character other than an ASCII digit, or is too large.
    #[error("{part} is not a decimal number that fits in 64 bits")]
    BadNumber {
        /// `epoch` or `seq`.
        part: &'static str,
    },
}

impl EventId {
    /// An id for `seq` in run `epoch`.
    pub const fn new(epoch: u64, seq: u64) -> Self {
        Self { epoch, seq }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

fn number(s: &str, part: &'static str) -> Result<u64, EventIdError> {
    // `u64::from_str` accepts a leading '+'; an id is digits only.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EventIdError::BadNumber { part });
    }
    s.parse().map_err(|_| EventIdError::BadNumber { part })
}

impl FromStr for EventId {
    type Err = EventIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_EVENT_ID_LEN {
            return Err(EventIdError::TooLong);
        }
        let (epoch, seq) = s.split_once('-').ok_or(EventIdError::MissingSeparator)?;
        Ok(Self {
            epoch: number(epoch, "epoch")?,
            seq: number(seq, "seq")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_what_is_not_an_id() {
        assert_eq!("12".parse::<EventId>(), Err(EventIdError::MissingSeparator));
        assert_eq!(
            "+1-2".parse::<EventId>(),
            Err(EventIdError::BadNumber { part: "epoch" })
        );
        assert_eq!(
            "1-".parse::<EventId>(),
            Err(EventIdError::BadNumber { part: "seq" })
        );
        assert_eq!(
            "1-2-3".parse::<EventId>(),
            Err(EventIdError::BadNumber { part: "seq" })
        );
        assert_eq!(
            "1-99999999999999999999".parse::<EventId>(),
            Err(EventIdError::BadNumber { part: "seq" })
        );
        let long = format!("1-{}", "0".repeat(MAX_EVENT_ID_LEN));
        assert_eq!(long.parse::<EventId>(), Err(EventIdError::TooLong));
    }

    proptest! {
        #[test]
        fn display_round_trips(epoch: u64, seq: u64) {
            let id = EventId::new(epoch, seq);
            prop_assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
        }

        #[test]
        fn parsing_never_panics(s in ".*") {
            let _ = s.parse::<EventId>();
        }
    }
}
