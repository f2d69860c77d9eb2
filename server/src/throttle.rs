//! A log line that a client can make the server repeat (a refused request,
//! a failed accept) is written at most once per [`EVERY`], with the number
//! of times it was left out since.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one kind of line is written at most.
pub const EVERY: Duration = Duration::from_secs(10);

/// One kind of log line and when it was last written.
#[derive(Debug)]
pub struct Throttle {
    /// When the line was last written and how many were left out since.
    state: Mutex<Option<(Instant, u64)>>,
}

impl Throttle {
    /// A line not written yet: the first call lets it through.
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(None),
        }
    }

    /// `Some(left_out)` when the line should be written now, with how many
    /// were left out since the last one; `None` when it is left out.
    pub fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        // A panic elsewhere while holding the lock cannot leave this state
        // inconsistent, so a poisoned lock is used as is.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *state {
            Some((last, left_out)) if now.duration_since(*last) < EVERY => {
                *left_out += 1;
                None
            }
            _ => {
                let left_out = state.map_or(0, |(_, n)| n);
                *state = Some((now, 0));
                Some(left_out)
            }
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_passes_then_repeats_are_counted() {
        let throttle = Throttle::new();
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        // As if the interval had passed.
        let mut state = throttle.state.lock().unwrap();
        let left_out = state.map(|(_, n)| n);
        *state = state.map(|(at, n)| (at.checked_sub(EVERY).expect("uptime over 10 s"), n));
        drop(state);
        assert_eq!(left_out, Some(2));
        assert_eq!(throttle.admit(), Some(2));
        assert_eq!(throttle.admit(), None);
    }
}
