//! When the page's signals are refreshed from the plain state: the figures
//! at most once per animation frame, the list at most every
//! [`ROWS_EVERY_MS`], and the state only when it changed.

use super::link::ConnState;

/// The list is redrawn at most this often. Laying out and painting a list
/// of hundreds of rows costs the browser far more than taking the events
/// in: at 1,000 events a second, redrawing it every frame leaves the page
/// no time for anything else, ten times a second keeps it responsive.
pub(super) const ROWS_EVERY_MS: f64 = 100.0;

/// What a refresh does with the list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Rows {
    /// Nothing to draw: unchanged, paused, or a later redraw is already
    /// waiting.
    Keep,
    /// Draw the rows now.
    Draw,
    /// Changed, but drawn too recently: come back after this many ms.
    Later(f64),
}

/// The redraw schedule.
#[derive(Debug, Default)]
pub(super) struct Redraw {
    /// The state the status bar shows.
    state_shown: Option<ConnState>,
    /// The rows changed since they were last drawn.
    rows_dirty: bool,
    /// Redraw the rows even while paused (after Clear, a new topic).
    force_rows: bool,
    /// An animation frame is asked for.
    frame_pending: bool,
    /// When the rows were last drawn.
    rows_drawn_at: f64,
    /// A redraw of the rows waits for [`ROWS_EVERY_MS`] to pass.
    later_pending: bool,
}

impl Redraw {
    /// The rows changed.
    pub(super) fn rows_changed(&mut self) {
        self.rows_dirty = true;
    }

    /// The rows were replaced: shown even while paused.
    pub(super) fn rows_replaced(&mut self) {
        self.rows_dirty = true;
        self.force_rows = true;
    }

    /// Asks for an animation frame; false when one is already asked for.
    pub(super) fn ask_frame(&mut self) -> bool {
        !std::mem::replace(&mut self.frame_pending, true)
    }

    /// The asked-for frame came.
    pub(super) fn frame_came(&mut self) {
        self.frame_pending = false;
    }

    /// The delayed redraw of the rows came.
    pub(super) fn later_came(&mut self) {
        self.later_pending = false;
    }

    /// What to do with the rows at `at` (ms).
    pub(super) fn rows(&mut self, at: f64, paused: bool) -> Rows {
        let due = self.rows_dirty && (!paused || self.force_rows);
        if !due {
            return Rows::Keep;
        }
        let waited = at - self.rows_drawn_at;
        // A clock that went back counts as time enough.
        let soon = (0.0..ROWS_EVERY_MS).contains(&waited) && !self.force_rows;
        if !soon {
            self.rows_dirty = false;
            self.force_rows = false;
            self.rows_drawn_at = at;
            return Rows::Draw;
        }
        if std::mem::replace(&mut self.later_pending, true) {
            return Rows::Keep;
        }
        Rows::Later(ROWS_EVERY_MS - waited)
    }

    /// `state`, when it is not the one the status bar shows.
    pub(super) fn state_change(&mut self, state: ConnState) -> Option<ConnState> {
        (self.state_shown.replace(state) != Some(state)).then_some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_drawn_at_most_every_100_ms_and_a_later_redraw_is_asked_once() {
        let mut redraw = Redraw::default();
        redraw.rows_changed();
        assert_eq!(redraw.rows(1_000.0, false), Rows::Draw);
        assert_eq!(redraw.rows(1_010.0, false), Rows::Keep, "nothing changed");
        redraw.rows_changed();
        assert_eq!(redraw.rows(1_040.0, false), Rows::Later(60.0));
        redraw.rows_changed();
        assert_eq!(redraw.rows(1_050.0, false), Rows::Keep, "already waiting");
        redraw.later_came();
        assert_eq!(redraw.rows(1_100.0, false), Rows::Draw);
    }

    #[test]
    fn paused_rows_wait_unless_they_were_replaced() {
        let mut redraw = Redraw::default();
        redraw.rows_changed();
        assert_eq!(redraw.rows(1_000.0, true), Rows::Keep);
        redraw.rows_replaced();
        assert_eq!(redraw.rows(1_001.0, true), Rows::Draw);
        redraw.rows_changed();
        assert_eq!(redraw.rows(5_000.0, true), Rows::Keep);
        assert_eq!(redraw.rows(5_001.0, false), Rows::Draw);
    }

    #[test]
    fn a_clock_that_went_back_counts_as_time_enough() {
        let mut redraw = Redraw::default();
        redraw.rows_changed();
        assert_eq!(redraw.rows(10_000.0, false), Rows::Draw);
        redraw.rows_changed();
        assert_eq!(redraw.rows(9_000.0, false), Rows::Draw);
    }

    #[test]
    fn one_frame_is_asked_for_at_a_time_and_the_state_is_set_when_it_changes() {
        let mut redraw = Redraw::default();
        assert!(redraw.ask_frame());
        assert!(!redraw.ask_frame());
        redraw.frame_came();
        assert!(redraw.ask_frame());
        assert_eq!(
            redraw.state_change(ConnState::Connecting),
            Some(ConnState::Connecting)
        );
        assert_eq!(redraw.state_change(ConnState::Connecting), None);
        assert_eq!(redraw.state_change(ConnState::Live), Some(ConnState::Live));
    }
}
