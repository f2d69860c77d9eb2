//! The live list of messages, newest first, with search, pause and clear.
//! A row opens its details when clicked, or with Enter once focused (the
//! arrow keys, Home and End move between rows).

use std::sync::Arc;

use leptos::ev::{KeyboardEvent, MouseEvent};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::feed::{clock_time, reason_name, search, Row, RowKind, MAX_ROWS};
use crate::latency::format_ms;
use crate::stream::Stream;

/// The rows of `stream`, newest at the top so the latest is always in view.
/// While `paused`, the list stays as it is (events are still received and
/// counted) until resumed. `query` filters the kept rows; `selected` is the
/// row whose details are open.
#[component]
pub fn MessageList(
    /// The live stream.
    stream: Stream,
    /// Whether rendering of new rows is paused.
    paused: RwSignal<bool>,
    /// The search text.
    query: RwSignal<String>,
    /// The row whose details are shown.
    selected: RwSignal<Option<Arc<Row>>>,
) -> impl IntoView {
    let all = stream.rows;
    // Rows are shared, never changed: the same rows are the same list.
    let rows = Memo::new_with_compare(
        move |_| query.with(|q| all.with(|rows| search(rows, q))),
        |old, new| match (old, new) {
            (Some(old), Some(new)) => {
                old.len() != new.len() || old.iter().zip(new).any(|(a, b)| !Arc::ptr_eq(a, b))
            }
            _ => true,
        },
    );
    let open_key = move |key: &str| {
        let key = key.parse::<u64>().ok();
        let row = rows.with_untracked(|rows| rows.iter().find(|r| Some(r.key) == key).cloned());
        if row.is_some() {
            selected.set(row);
        }
    };
    let on_click = move |ev: MouseEvent| {
        if let Some(li) = target_row(ev.target()) {
            let _ = li.focus();
            open_key(&li.dataset().get("key").unwrap_or_default());
        }
    };
    let on_key = move |ev: KeyboardEvent| {
        let Some(current) = target_row(ev.target()) else {
            // On the list itself: the arrow keys enter it.
            if matches!(ev.key().as_str(), "ArrowDown" | "Home") {
                ev.prevent_default();
                focus_row(ev.current_target(), true);
            }
            return;
        };
        let next = match ev.key().as_str() {
            "Enter" | " " => {
                ev.prevent_default();
                open_key(&current.dataset().get("key").unwrap_or_default());
                return;
            }
            "ArrowDown" => current.next_element_sibling(),
            "ArrowUp" => current.previous_element_sibling(),
            "Home" | "End" => {
                ev.prevent_default();
                focus_row(ev.current_target(), ev.key() == "Home");
                return;
            }
            _ => return,
        };
        ev.prevent_default();
        if let Some(next) = next.and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
            let _ = next.focus();
        }
    };
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
                        aria-keyshortcuts="p"
                        on:click=move |_| paused.update(|p| *p = !*p)
                    >
                        {move || if paused.get() { "Resume" } else { "Pause" }}
                    </button>
                    <button id="clear" type="button" on:click=move |_| stream.clear()>
                        "Clear"
                    </button>
                </div>
                <div class="search">
                    <label for="search" class="visually-hidden">"Search the kept rows"</label>
                    <input
                        id="search"
                        type="search"
                        placeholder="Search seq, topic, message  ( / )"
                        autocomplete="off"
                        aria-keyshortcuts="/"
                        aria-controls="messages"
                        on:input=move |ev| query.set(event_target_value(&ev))
                    />
                    <span id="search-count" class="hint" aria-live="polite">
                        {move || {
                            query.with(|q| !q.trim().is_empty()).then(|| {
                                format!("{} of {} rows", rows.with(Vec::len), all.with(Vec::len))
                            })
                        }}
                    </span>
                </div>
            </header>
            <Show when=move || paused.get()>
                <p id="paused-note" class="note">
                    "Paused: events are still received and counted; the list catches up when you resume."
                </p>
            </Show>
            <ol
                id="messages"
                class="messages"
                tabindex="0"
                aria-label="Messages, newest first: arrow keys move, Enter shows details"
                data-count=move || rows.with(Vec::len)
                on:click=on_click
                on:keydown=on_key
            >
                <For each=move || rows.get() key=|row| row.key children={|row: Arc<Row>| row_view(&row)} />
            </ol>
            <Show when=move || rows.with(Vec::is_empty)>
                <p class="empty">
                    {move || if all.with(Vec::is_empty) { "Waiting for events…" } else { "No kept row matches." }}
                </p>
            </Show>
        </section>
    }
}

/// The row (`<li>`) an event happened in, if any.
fn target_row(target: Option<web_sys::EventTarget>) -> Option<web_sys::HtmlElement> {
    let element = target?.dyn_into::<web_sys::Element>().ok()?;
    element.closest("#messages > li").ok()??.dyn_into().ok()
}

/// Focuses the first (or last) row of the list `list`.
fn focus_row(list: Option<web_sys::EventTarget>, first: bool) {
    let Some(list) = list.and_then(|l| l.dyn_into::<web_sys::Element>().ok()) else {
        return;
    };
    let row = if first {
        list.first_element_child()
    } else {
        list.last_element_child()
    };
    if let Some(row) = row.and_then(|r| r.dyn_into::<web_sys::HtmlElement>().ok()) {
        let _ = row.focus();
    }
}

/// The latency cell of an event row.
fn latency_text(row: &Row) -> String {
    match (row.arrival.latency_ms, row.arrival.replayed) {
        (Some(ms), true) => format!("replay {}", format_ms(ms)),
        (Some(ms), false) => format_ms(ms),
        (None, true) => "replay".to_owned(),
        (None, false) => "—".to_owned(),
    }
}

fn row_view(row: &Row) -> AnyView {
    match &row.kind {
        RowKind::Event { id, event } => {
            let clock = clock_time(&event.time).to_owned();
            view! {
                <li
                    class="row event"
                    tabindex="-1"
                    data-key=row.key
                    data-kind="event"
                    data-id=id.to_string()
                    data-epoch=id.epoch
                    data-seq=id.seq
                    data-topic=event.topic.clone()
                    data-latency=row.arrival.latency_ms.map(|ms| crate::decimal::fixed(ms, 1))
                    data-replayed=row.arrival.replayed.then_some("true")
                >
                    <span class="seq" title="sequence number">{format!("#{}", event.seq)}</span>
                    <time class="time" datetime=event.time.clone() title=event.time.clone()>{clock}</time>
                    <span class="topic">{event.topic.clone()}</span>
                    <span class="latency" title="latency: from the event's time to its arrival">{latency_text(row)}</span>
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
                    tabindex="-1"
                    data-key=row.key
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
