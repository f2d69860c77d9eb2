//! The live topics, from `GET /topics`, with their rates.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use leptos::ev::MouseEvent;
use leptos::prelude::*;
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;

use crate::render;
use crate::topic::TopicChoice;
use crate::topic_rates::{TopicLine, TopicRates};

/// The rows are replaced when their figures change: a topic's button that
/// has the keyboard focus gets it back in the next frame.
fn keep_focus() {
    let focused = document()
        .active_element()
        .filter(|e| e.closest("#topic-list").ok().flatten().is_some())
        .and_then(|e| e.get_attribute("data-follow"));
    let Some(name) = focused else { return };
    request_animation_frame(move || {
        let button = document()
            .query_selector(&format!("#topic-list [data-follow='{name}']"))
            .ok()
            .flatten()
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
        if let Some(button) = button {
            let _ = button.focus();
        }
    });
}

/// How often the list is asked for.
const POLL: Duration = Duration::from_secs(2);

/// The first 100 live topics this page may read, polled every 2 s, each
/// with its subscribers and events per second; choosing one follows it.
#[component]
pub fn TopicList(
    /// The subscription, set when a topic is chosen.
    topic: RwSignal<TopicChoice>,
) -> impl IntoView {
    let lines = RwSignal::new(Vec::<TopicLine>::new());
    let error = RwSignal::new(None::<String>);
    let rates = Rc::new(RefCell::new(TopicRates::new()));
    let pending = Rc::new(RefCell::new(false));
    let poll = move || {
        if pending.replace(true) {
            return;
        }
        let (rates, pending) = (Rc::clone(&rates), Rc::clone(&pending));
        leptos::task::spawn_local(async move {
            let answer = crate::api::topics(100).await;
            pending.replace(false);
            match answer {
                Ok(page) => {
                    lines.set(rates.borrow_mut().update(&page, js_sys::Date::now()));
                    error.set(None);
                }
                Err(text) => error.set(Some(text)),
            }
        });
    };
    poll();
    let poll = SendWrapper::new(poll);
    let timer = set_interval_with_handle(move || (*poll)(), POLL).ok();
    on_cleanup(move || {
        if let Some(timer) = timer {
            timer.clear();
        }
    });
    let rows = Memo::new(move |_| {
        let error = error.get();
        let html = topic.with(|t| lines.with(|l| render::topics(l, t.topic(), error.as_deref())));
        keep_focus();
        html
    });
    // A click on a topic's button (`data-follow`) follows it.
    let follow = move |ev: MouseEvent| {
        let name = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|e| e.closest("[data-follow]").ok().flatten())
            .and_then(|e| e.get_attribute("data-follow"));
        let Some(name) = name else { return };
        let choice = match name.as_str() {
            shared::TICKER_TOPIC => TopicChoice::Ticker,
            shared::DEFAULT_TOPIC => TopicChoice::Default,
            _ => TopicChoice::Custom(name),
        };
        if topic.get_untracked() != choice {
            topic.set(choice);
        }
    };
    view! {
        <details id="topics-panel" class="card panel" open>
            <summary><h2>"Live topics"</h2></summary>
            <table id="topic-list" class="topic-list" on:click=follow>
                <thead>
                    <tr><th scope="col">"Topic"</th><th scope="col" title="subscribers">"Subs"</th><th scope="col">"Events/s"</th></tr>
                </thead>
                <tbody inner_html=rows></tbody>
            </table>
        </details>
    }
}
