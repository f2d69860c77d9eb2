//! The page's keys: `/` focuses the search, `p` pauses or resumes, Escape
//! closes the event details. Not while typing in a field.

use std::sync::Arc;

use leptos::ev::KeyboardEvent;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::feed::Row;

/// Listens for the page's keys on the window until the calling component
/// is cleaned up.
pub fn use_shortcuts(paused: RwSignal<bool>, selected: RwSignal<Option<Arc<Row>>>) {
    let handle = window_event_listener(leptos::ev::keydown, move |ev: KeyboardEvent| {
        if ev.ctrl_key() || ev.meta_key() || ev.alt_key() || ev.default_prevented() {
            return;
        }
        if ev.key() == "Escape" && selected.with_untracked(Option::is_some) {
            selected.set(None);
            return;
        }
        if typing(&ev) {
            return;
        }
        match ev.key().as_str() {
            "/" => {
                ev.prevent_default();
                if let Some(search) = document()
                    .get_element_by_id("search")
                    .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
                {
                    let _ = search.focus();
                }
            }
            "p" | "P" => paused.update(|p| *p = !*p),
            _ => {}
        }
    });
    on_cleanup(move || handle.remove());
}

/// Whether the key goes to a text field (or a select) rather than to the
/// page.
fn typing(ev: &KeyboardEvent) -> bool {
    let Some(element) = ev
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
    else {
        return false;
    };
    match element.tag_name().as_str() {
        "INPUT" => !matches!(
            element.get_attribute("type").as_deref(),
            Some("radio" | "checkbox" | "button" | "submit")
        ),
        "TEXTAREA" | "SELECT" => true,
        _ => element.has_attribute("contenteditable"),
    }
}
