//! The live list of messages, newest first, with pause and clear.

use std::sync::Arc;

use leptos::prelude::*;
use shared::ResetReason;

use crate::feed::{clock_time, Row, RowKind, MAX_ROWS};
use crate::stream::Stream;

/// The rows of `stream`, newest at the top so the latest is always in view.
/// While `paused`, the list stays as it is (events are still received and
/// counted) until resumed.
#[component]
pub fn MessageList(
    /// The live stream.
    stream: Stream,
    /// Whether rendering of new rows is paused.
    paused: RwSignal<bool>,
) -> impl IntoView {
    let rows = stream.rows;
    view! {
        <section class="card feed" aria-labelledby="feed-title">
            <header class="feed-head">
                <h2 id="feed-title">"Messages"</h2>
                <span class="hint">{format!("newest first · times in UTC · keeps the last {MAX_ROWS}")}</span>
                <div class="feed-actions">
                    <button
                        id="pause"
                        type="button"
                        aria-pressed=move || paused.get().to_string()
                        on:click=move |_| paused.update(|p| *p = !*p)
                    >
                        {move || if paused.get() { "Resume" } else { "Pause" }}
                    </button>
                    <button id="clear" type="button" on:click=move |_| stream.clear()>
                        "Clear"
                    </button>
                </div>
            </header>
            <Show when=move || paused.get()>
                <p id="paused-note" class="note">
                    "Paused: events are still received and counted; the list catches up when you resume."
                </p>
            </Show>
            <ol id="messages" class="messages" data-count=move || rows.with(Vec::len)>
                <For each=move || rows.get() key=|row| row.key children={|row: Arc<Row>| row_view(&row)} />
            </ol>
            <Show when=move || rows.with(Vec::is_empty)>
                <p class="empty">"Waiting for events…"</p>
            </Show>
        </section>
    }
}

fn reason_name(reason: ResetReason) -> &'static str {
    match reason {
        ResetReason::HistoryExceeded => "history_exceeded",
        ResetReason::ServerRestarted => "server_restarted",
        ResetReason::FellBehind => "fell_behind",
    }
}

fn row_view(row: &Row) -> AnyView {
    match &row.kind {
        RowKind::Event { id, event } => {
            let clock = clock_time(&event.time).to_owned();
            view! {
                <li
                    class="row event"
                    data-kind="event"
                    data-id=id.to_string()
                    data-epoch=id.epoch
                    data-seq=id.seq
                    data-topic=event.topic.clone()
                >
                    <span class="seq" title="sequence number">{format!("#{}", event.seq)}</span>
                    <time class="time" datetime=event.time.clone() title=event.time.clone()>{clock}</time>
                    <span class="topic">{event.topic.clone()}</span>
                    <span class="message">{event.message.clone()}</span>
                </li>
            }
            .into_any()
        }
        RowKind::Reset { id, notice } => {
            let count = match notice.missed_count {
                Some(1) => " 1 event".to_owned(),
                Some(n) => format!(" {n} events"),
                None => String::new(),
            };
            let missed = match (notice.missed_from, notice.missed_to) {
                (Some(from), Some(to)) if from == to => format!(" Missed{count} #{from}."),
                (Some(from), Some(to)) => format!(" Missed{count} between #{from} and #{to}."),
                _ => String::new(),
            };
            view! {
                <li
                    class="row reset"
                    data-kind="reset"
                    data-id=id.map(|id| id.to_string())
                    data-reason=reason_name(notice.reason)
                    data-resume-seq=notice.resume_seq
                >
                    <span class="seq" aria-hidden="true">"⚠"</span>
                    <strong class="reset-title">"Events missed"</strong>
                    <span class="message">{format!("{}{missed}", notice.message)}</span>
                </li>
            }
            .into_any()
        }
    }
}
