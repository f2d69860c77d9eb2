//! One event, looked inside: its SSE lines, its JSON, and the command that
//! resumes the stream right after it.

use std::sync::Arc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::details::{resume_command, sse_lines};
use crate::feed::{Row, RowKind};
use crate::render;
use crate::topic::TopicChoice;

/// The details of the `selected` row, shown while one is: the event as SSE
/// lines (rebuilt from what `EventSource` parsed), its JSON pretty-printed
/// (by the browser's `JSON.stringify`), and "copy resume command". Closing
/// (the button, or Escape) gives the focus back to the row.
#[component]
pub fn EventDetails(
    /// The row shown.
    selected: RwSignal<Option<Arc<Row>>>,
    /// The subscription, for the resume command's query.
    topic: Signal<TopicChoice>,
) -> impl IntoView {
    let heading = NodeRef::<leptos::html::H2>::new();
    let copied = RwSignal::new(None::<&'static str>);
    let command = move || {
        let id = selected.with(|row| row.as_ref().and_then(|r| r.id()))?;
        let origin = window().location().origin().unwrap_or_default();
        let token = crate::token::reading_cookie_set();
        Some(topic.with(|t| resume_command(&origin, t, &id.to_string(), token)))
    };
    let body = Memo::new(move |_| {
        selected.with(|row| {
            row.as_ref().map(|r| {
                let id = r.id().map(|id| id.to_string());
                let lines = sse_lines(id.as_deref(), r.event_type(), &r.data);
                let command = command().unwrap_or_default();
                render::details(&title(r), &lines, &pretty(&r.data), &command)
            })
        })
    });
    // Mark the row shown, and focus the heading when a row opens, so that
    // the keyboard is here.
    Effect::new(move |_| {
        let key = selected.with(|row| row.as_ref().map(|r| r.key));
        if let Ok(Some(old)) = document().query_selector("#messages > li[data-selected]") {
            let _ = old.remove_attribute("data-selected");
        }
        let Some(key) = key else { return };
        if let Some(row) = row_element(key) {
            let _ = row.set_attribute("data-selected", "");
        }
        copied.set(None);
        if let Some(h) = heading.get() {
            let _ = h.focus();
        }
    });
    let close = move || {
        let key = selected.with_untracked(|row| row.as_ref().map(|r| r.key));
        selected.set(None);
        if let Some(row) = key.and_then(row_element) {
            let _ = row.focus();
        }
    };
    let copy = move |_| {
        let Some(text) = untrack(command) else {
            return;
        };
        let promise = window().navigator().clipboard().write_text(&text);
        leptos::task::spawn_local(async move {
            let done = wasm_bindgen_futures::JsFuture::from(promise).await.is_ok();
            copied.set(Some(if done {
                "Copied."
            } else {
                "The browser refused the clipboard: select the command and copy it."
            }));
        });
    };
    view! {
        <section
            id="details"
            class="card panel details"
            aria-labelledby="details-title"
            hidden=move || selected.with(Option::is_none)
            on:keydown=move |ev| {
                if ev.key() == "Escape" {
                    close();
                }
            }
        >
            <header class="panel-head">
                <h2 id="details-title" tabindex="-1" node_ref=heading>"Event details"</h2>
                <button id="details-close" type="button" class="secondary" on:click=move |_| close()>
                    "Close"
                </button>
            </header>
            <div inner_html=body></div>
            <div class="actions">
                <button id="details-copy" type="button" on:click=copy>"Copy resume command"</button>
            </div>
            <p id="details-copied" class="hint" role="status">{move || copied.get()}</p>
        </section>
    }
}

/// The list's `<li>` of the row with `key`, if it is shown.
fn row_element(key: u64) -> Option<web_sys::HtmlElement> {
    document()
        .query_selector(&format!("#messages > li[data-key='{key}']"))
        .ok()
        .flatten()?
        .dyn_into()
        .ok()
}

fn title(row: &Row) -> String {
    match &row.kind {
        RowKind::Event { event, .. } => format!("Event #{} · {}", event.seq, event.topic),
        RowKind::Reset { .. } => "Reset notice".to_owned(),
    }
}

/// `data` pretty-printed by the browser (`JSON.stringify(…, null, 2)`), or
/// as it is when it is not JSON.
fn pretty(data: &str) -> String {
    js_sys::JSON::parse(data)
        .ok()
        .and_then(|value| {
            js_sys::JSON::stringify_with_replacer_and_space(
                &value,
                &wasm_bindgen::JsValue::NULL,
                &2.into(),
            )
            .ok()
        })
        .and_then(|text| text.as_string())
        .unwrap_or_else(|| data.to_owned())
}
