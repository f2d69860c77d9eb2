//! The SSE `id:` of every event: `<epoch>-<seq>`.
//!
//! `epoch` names one run of the server (its start time in milliseconds since
//! the Unix epoch) and `seq` the event's place in that run's log. From an id a
//! server learns in O(1) which run produced it, where it sits in the log and
//! whether the history still holds it.

use std::fmt;
use std::str::FromStr;

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
